-- A table with every kind of value the query layer maps (SQLite).
CREATE TABLE things (
    id    INTEGER PRIMARY KEY,
    uid   TEXT    NOT NULL,
    at    TEXT    NOT NULL,
    doc   TEXT    NOT NULL,
    note  TEXT
);
