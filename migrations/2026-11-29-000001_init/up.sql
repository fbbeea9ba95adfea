-- Users. Passwords are argon2id PHC strings; never the password itself.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT        NOT NULL UNIQUE,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Sessions live in PostgreSQL (the source of truth) so that a Redis outage or
-- a Redis restarted empty neither logs everybody out nor lets a revoked token
-- back in. Redis only caches "this token hash is valid" for a short time.
-- Only a SHA-256 of the token is stored: a database dump leaks no session.
CREATE TABLE sessions (
    token_hash  BYTEA       PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE work_items (
    id          UUID        PRIMARY KEY,
    owner_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description TEXT        NOT NULL DEFAULT '' CHECK (char_length(description) <= 10000),
    work_type   TEXT        NOT NULL CHECK (work_type IN ('project', 'activity', 'task')),
    status      TEXT        NOT NULL CHECK (status IN ('not_started', 'in_progress', 'completed', 'cancelled')),
    start_at    TIMESTAMPTZ NOT NULL,
    end_at      TIMESTAMPTZ NOT NULL,
    all_day     BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (end_at >= start_at)
);
-- The feed asks "items of user U with start_at < :end and end_at > :start".
-- Leading with the owner and start_at bounds the scan on one side; end_at in
-- the index lets PostgreSQL filter the other side without visiting the heap.
CREATE INDEX work_items_owner_range_idx ON work_items (owner_id, start_at, end_at);

CREATE TABLE work_item_assignees (
    work_item_id UUID   NOT NULL REFERENCES work_items (id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (work_item_id, user_id)
);
-- "Which items is U assigned to" for the feed.
CREATE INDEX work_item_assignees_user_idx ON work_item_assignees (user_id, work_item_id);

-- The invalidation outbox. A mutation writes one row per affected user in the
-- same transaction as the change; after commit the rows are applied to Redis
-- (INCR of the user's feed version, or DEL of a revoked session's cache entry)
-- and deleted. Rows left behind by a Redis outage are drained by a background
-- task in every process (FOR UPDATE SKIP LOCKED), so an invalidation can be
-- late but never lost.
CREATE TABLE cache_invalidations (
    id          BIGSERIAL   PRIMARY KEY,
    user_id     BIGINT      NOT NULL,
    -- NULL: bump the user's feed version. Otherwise: the hash of a revoked
    -- session whose cached validity must be deleted.
    session_hash BYTEA,
    -- Drainers take a row only after this instant: the request that wrote
    -- the row gets a head start to apply it itself, and a drainer that
    -- claims a row pushes it forward (a lease with backoff), so processes
    -- draining at once do not repeat each other's work.
    attempt_after TIMESTAMPTZ NOT NULL,
    attempts    INT         NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cache_invalidations_due_idx ON cache_invalidations (attempt_after);
