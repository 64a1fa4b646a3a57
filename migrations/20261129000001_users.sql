-- People who use plumb. Passwords are argon2id PHC strings; nothing else is accepted.
CREATE TYPE user_role AS ENUM ('admin', 'researcher', 'annotator');

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    display_name  TEXT NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    role          user_role NOT NULL,
    password_hash TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    disabled      BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
