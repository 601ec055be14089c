-- Orders, their transactional outbox, and idempotency keys (SQLite).
CREATE TABLE orders (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order: "newest first" without clock ties
    id          TEXT    NOT NULL UNIQUE,           -- UUID
    user_id     INTEGER NOT NULL,
    items       TEXT    NOT NULL,                  -- JSON array as the client sent it
    total_cents INTEGER NOT NULL,                  -- money kept exact
    status      TEXT    NOT NULL CHECK (status IN ('PENDING', 'PAID', 'SHIPPED', 'CANCELED')),
    created_at  TEXT    NOT NULL,                  -- RFC 3339, UTC
    updated_at  TEXT    NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, seq DESC);

-- Every status change, for audit and to prove "exactly one PENDING->PAID".
CREATE TABLE order_status_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   TEXT    NOT NULL REFERENCES orders (id),
    from_status TEXT,
    to_status  TEXT    NOT NULL,
    changed_at TEXT    NOT NULL
);
CREATE INDEX order_status_history_by_order ON order_status_history (order_id);

-- Events written in the same transaction as the change they announce; the relay
-- publishes them and sets sent_at (at-least-once; consumers dedupe on event_id).
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL UNIQUE,
    subject    TEXT    NOT NULL,
    msg_key    TEXT,
    headers    TEXT    NOT NULL,                   -- JSON object
    payload    TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    sent_at    TEXT
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

CREATE TABLE idempotency_keys (
    user_id    INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    request    TEXT    NOT NULL,                   -- canonical JSON of the request body
    order_id   TEXT    NOT NULL REFERENCES orders (id),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (user_id, key)
);
