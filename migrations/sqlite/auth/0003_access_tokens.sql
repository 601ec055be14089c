-- Access tokens issued, by their jti, so a revoked one can be named to the
-- services that verify tokens (GET /auth/revoked-tokens). A row is needed only
-- until the token expires. Times are Unix seconds.
CREATE TABLE access_tokens (
    jti         TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   TEXT    NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER NULL
);
CREATE INDEX access_tokens_family ON access_tokens (family_id);
CREATE INDEX access_tokens_user ON access_tokens (user_id);
CREATE INDEX access_tokens_revoked ON access_tokens (revoked_at, expires_at);
