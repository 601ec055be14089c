-- The reconciler's question, "which orders are still PENDING, oldest first?",
-- without scanning every order: only PENDING rows are in this index.
CREATE INDEX orders_pending_by_age ON orders (created_at) WHERE status = 'PENDING';
