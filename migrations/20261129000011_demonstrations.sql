-- Demonstrations: an annotator's ideal response to a prompt.
CREATE TABLE demonstrations (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prompt_id       BIGINT NOT NULL REFERENCES prompts (id),
    annotator_id    BIGINT NOT NULL REFERENCES users (id),
    task_id         BIGINT REFERENCES tasks (id),
    response        TEXT NOT NULL CHECK (length(response) BETWEEN 1 AND 20000 AND btrim(response) <> ''),
    time_spent_ms   INT CHECK (time_spent_ms >= 0),
    -- Chosen by the client: a retried submit finds its first row instead of adding one.
    idempotency_key UUID NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX demonstrations_prompt ON demonstrations (prompt_id);
