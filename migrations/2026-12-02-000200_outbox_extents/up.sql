-- What the changed item covered before and after the write, as closed
-- intervals of unix seconds flattened to [start, end, start, end, ...], for
-- the `bucketed` cache strategy (src/cache/buckets.rs): it bumps only the
-- time buckets these cover. Times, not bucket numbers, so a row written by
-- a process with another bucket width is still applied right. NULL bumps
-- the user-wide version (session revocations, rows written before this
-- column existed, and every row under the `versioned` strategy).
ALTER TABLE cache_invalidations ADD COLUMN extents BIGINT[];
