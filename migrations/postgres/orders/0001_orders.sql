-- Orders, their transactional outbox, and idempotency keys (PostgreSQL).
CREATE TABLE orders (
    -- Insertion order: "newest first" without clock ties (ids are UUIDs).
    seq         BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    id          UUID        PRIMARY KEY,
    user_id     BIGINT      NOT NULL,
    items       JSONB       NOT NULL,                  -- as the client sent them
    total_cents BIGINT      NOT NULL,                  -- money kept exact
    status      TEXT        NOT NULL CHECK (status IN ('PENDING', 'PAID', 'SHIPPED', 'CANCELED')),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, seq DESC);

-- Every status change, for audit and to prove "exactly one PENDING->PAID".
CREATE TABLE order_status_history (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    UUID        NOT NULL REFERENCES orders (id),
    from_status TEXT,
    to_status   TEXT        NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX order_status_history_by_order ON order_status_history (order_id);

-- Events written in the same transaction as the change they announce; relays
-- claim unsent rows with FOR UPDATE SKIP LOCKED, publish, and set sent_at
-- (at-least-once; consumers dedupe on event_id).
CREATE TABLE outbox (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   UUID        NOT NULL UNIQUE,
    subject    TEXT        NOT NULL,
    msg_key    TEXT,
    headers    JSONB       NOT NULL,                   -- JSON object of strings
    payload    TEXT        NOT NULL,                   -- published byte for byte
    created_at TIMESTAMPTZ NOT NULL,
    sent_at    TIMESTAMPTZ
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

CREATE TABLE idempotency_keys (
    user_id    BIGINT      NOT NULL,
    key        TEXT        NOT NULL,
    request    TEXT        NOT NULL,                   -- canonical JSON of the request body
    order_id   UUID        NOT NULL REFERENCES orders (id),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, key)
);
