-- Failed logins, counted in Postgres (so every `plumb serve` behind one database counts
-- alike, and a restart forgets nothing) per account and per client address. A key is
-- `account:NAME` or `address:IP`. Rows whose last failure is older than the throttle's
-- memory are deleted as new failures arrive, so the table holds only recent keys: it is
-- bounded by the rate of failures, and nothing ever clears it wholesale.
CREATE TABLE login_throttle (
    key             TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 300),
    failures        INT NOT NULL CHECK (failures >= 1),
    last_failure_at TIMESTAMPTZ NOT NULL,
    blocked_until   TIMESTAMPTZ
);
CREATE INDEX login_throttle_last_failure ON login_throttle (last_failure_at);

-- Browsers that have logged in as a user (a long-lived cookie holds the secret, its
-- SHA-256 is here). An account's back-off does not apply to them, so someone who
-- guesses at an account cannot lock its owner out of the browser they use.
CREATE TABLE login_devices (
    token_sha256 BYTEA PRIMARY KEY CHECK (length(token_sha256) = 32),
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX login_devices_user ON login_devices (user_id);
