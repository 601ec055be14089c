-- Refresh tokens: only the SHA-256 of each token is stored. Every rotation adds
-- a row to the same family; presenting a used token revokes the whole family.
-- Times are Unix seconds.
CREATE TABLE refresh_tokens (
    token_hash  TEXT    PRIMARY KEY,
    family_id   TEXT    NOT NULL,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT  NULL,
    revoked_at  BIGINT  NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
