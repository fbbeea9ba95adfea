# syntax=docker/dockerfile:1
#
# calcache: `docker build -t calcache:local .` (docker compose builds it too).
#
# Stages:
#   web      FullCalendar's browser files from npm (web/assets/vendor/)
#   build    dependencies in their own layer, then the calcache binary
#   runtime  debian slim + libpq5 + ca-certificates, non-root, ~100 MB
#
# The dependency layer is rebuilt only when Cargo.toml or Cargo.lock change:
# it compiles every dependency against placeholder sources (cargo-stubs),
# and the real sources are copied afterwards. No cargo-chef needed.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json web/copy-vendor.mjs ./
# postinstall copies the files the page loads into assets/vendor/
RUN npm ci --no-audit --no-fund

# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# pq-sys links libpq, found through pkg-config
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /src

# 1. Dependencies only: this layer stays cached until the manifest or the lock changes.
COPY deploy/cargo-stubs.sh /usr/local/bin/cargo-stubs
COPY Cargo.toml Cargo.lock ./
RUN cargo-stubs \
    && cargo build --release --locked \
    && rm -rf src target/release/calcache target/release/deps/calcache-* \
              target/release/deps/libcalcache-* target/release/.fingerprint/calcache-*

# 2. The application. migrations/ is embedded at compile time
# (embed_migrations!), and so may be pages of web/ (include_str!).
COPY src ./src
COPY migrations ./migrations
COPY web ./web
# placeholders for tests/benches/examples named in Cargo.toml; touch so the
# real sources are newer than anything built from placeholders
RUN cargo-stubs \
    && touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/calcache /out/calcache

# ---------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 calcache \
    && useradd --system --uid 10001 --gid calcache --no-create-home \
               --home-dir /nonexistent --shell /usr/sbin/nologin calcache
WORKDIR /app
COPY --from=build /out/calcache /usr/local/bin/calcache
COPY deploy/healthcheck.sh /usr/local/bin/calcache-healthcheck
# Read-only for the service user: owned by root, world-readable.
COPY config/ /app/config/
COPY web/index.html /app/web/index.html
COPY web/assets/ /app/web/assets/
COPY --from=web /web/assets/vendor/ /app/web/assets/vendor/

# config/production.toml; secrets (DATABASE_URL, REDIS_URL) come from the
# environment at run time, never from the image.
ENV CALCACHE_ENV=production \
    CALCACHE_CONFIG_DIR=/app/config \
    CALCACHE__SERVER__WEB_DIR=/app/web \
    CALCACHE__SERVER__PORT=8080

USER 10001:10001
EXPOSE 8080
# SIGTERM: stop accepting, finish in-flight requests (server.shutdown_timeout_secs), exit.
STOPSIGNAL SIGTERM
# Liveness only: the process answers. Readiness (/readyz, which needs
# PostgreSQL and Redis) is what docker-compose.yml checks on the replicas.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["calcache-healthcheck", "/healthz"]
ENTRYPOINT ["calcache"]
CMD ["serve"]
