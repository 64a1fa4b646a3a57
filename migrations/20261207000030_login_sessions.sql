-- Login sessions, held in Postgres: the browser's (encrypted) cookie carries only a
-- session's secret, of which the SHA-256 is stored. Logging out revokes the row, so a
-- copied cookie stops working with it; a session ends after a time without use (idle) or
-- a time after login (absolute), both settings; disabling a user ends theirs at once. A
-- user sees their sessions and can end them.
CREATE TABLE login_sessions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256 BYTEA NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    -- What the person sees in their list to tell sessions apart.
    user_agent   TEXT NOT NULL DEFAULT '' CHECK (length(user_agent) <= 300),
    address      TEXT NOT NULL DEFAULT '' CHECK (length(address) <= 100),
    CHECK (expires_at > created_at)
);
CREATE INDEX login_sessions_user ON login_sessions (user_id) WHERE revoked_at IS NULL;
