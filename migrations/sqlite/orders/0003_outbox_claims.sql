-- The claim column PostgreSQL's relays use (same statements on both kinds);
-- on SQLite every relay is in one process and takes turns instead.
ALTER TABLE outbox ADD COLUMN claimed_until TEXT;
