-- One order's whole life as orderly writes it on PostgreSQL, for pgbench: the
-- ceiling of the pipeline section (README, "Performance"). Statements as in
-- services/orders/src/sql_store.rs; tables of migrations/postgres/orders.
\set uid random(1, 1000000)
SELECT gen_random_uuid() AS order_id, gen_random_uuid() AS created_event, gen_random_uuid() AS paid_event \gset
-- The create: order, history, outbox row, NOTIFY, one transaction.
BEGIN;
INSERT INTO orders (id, user_id, items, total_cents, status, created_at, updated_at) VALUES (:order_id, :uid, '[{"name":"Bench item","price":100.0,"quantity":1}]', 10000, 'PENDING', now(), now());
INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) VALUES (:order_id, NULL, 'PENDING', now());
INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) VALUES (:created_event, 'new_order', :order_id, '{"event-id":"e","event-type":"new_order"}', '{"order_id":"0191d6c5-6b8e-7c51-a0f3-1d2e3f4a5b6c","user_id":1,"timestamp":"2025-01-01T00:00:00Z"}', now()) RETURNING id AS created_row \gset
SELECT pg_notify('orderly_outbox', '');
COMMIT;
-- The relay: the event marked sent.
UPDATE outbox SET sent_at = now(), claimed_until = NULL WHERE id = :created_row;
-- The payment: PENDING -> PAID, history, outbox row, NOTIFY, one transaction.
BEGIN;
UPDATE orders SET status = 'PAID', updated_at = now() WHERE status = 'PENDING' AND id = :order_id RETURNING id, user_id, items, total_cents, status, created_at;
INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) VALUES (:order_id, 'PENDING', 'PAID', now());
INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) VALUES (:paid_event, 'order_status_changed', :order_id, '{"event-id":"e","event-type":"order_status_changed"}', '{"order_id":"0191d6c5-6b8e-7c51-a0f3-1d2e3f4a5b6c","user_id":1,"old_status":"PENDING","new_status":"PAID","timestamp":"2025-01-01T00:00:00Z"}', now()) RETURNING id AS paid_row \gset
SELECT pg_notify('orderly_outbox', '');
COMMIT;
-- The relay again.
UPDATE outbox SET sent_at = now(), claimed_until = NULL WHERE id = :paid_row;
