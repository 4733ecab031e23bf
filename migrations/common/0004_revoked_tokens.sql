CREATE TABLE revoked_token (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_token_expiry ON revoked_token (expires_at)
