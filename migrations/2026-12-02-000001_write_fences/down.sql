DROP INDEX cache_invalidations_due_idx;
CREATE INDEX cache_invalidations_due_idx ON cache_invalidations (attempt_after);
ALTER TABLE cache_invalidations DROP COLUMN fence;
