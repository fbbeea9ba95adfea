DROP INDEX sessions_expires_at_idx;
