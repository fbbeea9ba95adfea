-- The write fence an outbox row lifts once applied (see src/cache/fence.rs):
-- the id the mutation added to its users' fence sets in Redis before its
-- transaction. NULL for rows that lift no fence (session revocations, rows
-- written before fences existed).
ALTER TABLE cache_invalidations ADD COLUMN fence UUID;

-- A drainer takes the rows that are due, oldest schedule first, 500 at a
-- time: with the schedule and the id in one index that is a short range
-- scan however large a backlog grows (the old index on the schedule alone
-- made PostgreSQL sort every due row by id on every pass).
DROP INDEX cache_invalidations_due_idx;
CREATE INDEX cache_invalidations_due_idx ON cache_invalidations (attempt_after, id);
