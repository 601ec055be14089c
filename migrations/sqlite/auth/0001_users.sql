-- Users of the auth service. Ids start at 1 (AUTOINCREMENT never reuses an id,
-- so a deleted user's id cannot be handed to someone else with live tokens).
CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stored lowercased; NOCASE additionally guards the uniqueness check.
    email           TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    -- NULL for accounts that only ever signed in with Google.
    hashed_password TEXT    NULL,
    google_sub      TEXT    NULL UNIQUE,
    role            TEXT    NOT NULL DEFAULT 'user',
    created_at      TEXT    NOT NULL
);
