-- A relay claims unsent rows for a while (claimed_until) and commits at once,
-- instead of holding their row locks open while it publishes; a relay that
-- dies mid-batch leaves claims that expire, and the rows go out again.
ALTER TABLE outbox ADD COLUMN claimed_until TIMESTAMPTZ;
