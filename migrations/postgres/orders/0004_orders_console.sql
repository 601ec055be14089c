-- The operator's console (orderly-console) without scanning every order: the
-- count by status reads this index alone, the orders created in the last
-- minutes are ranges of it, one per status.
CREATE INDEX orders_by_status_created ON orders (status, created_at);
-- Orders PAID in the last minutes, with their created->PAID latency: only
-- the PAID history rows are in this index.
CREATE INDEX order_status_history_paid ON order_status_history (changed_at) WHERE to_status = 'PAID';
