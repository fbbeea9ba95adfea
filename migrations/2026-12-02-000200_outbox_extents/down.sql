ALTER TABLE cache_invalidations DROP COLUMN extents;
