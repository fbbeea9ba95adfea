-- Session pruning (service::housekeeping) deletes by expiry, oldest first:
-- without this index every pass scans the whole table.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
