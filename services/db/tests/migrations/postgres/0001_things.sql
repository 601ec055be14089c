-- A table with every kind of value the query layer maps (PostgreSQL).
CREATE TABLE things (
    id    BIGINT      PRIMARY KEY,
    uid   UUID        NOT NULL,
    at    TIMESTAMPTZ NOT NULL,
    doc   JSONB       NOT NULL,
    note  TEXT
);
