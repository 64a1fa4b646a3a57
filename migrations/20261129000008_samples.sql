-- Model samples for prompts, written in batches by sample runs (or imported).
CREATE TABLE sample_batches (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id       BIGINT NOT NULL REFERENCES projects (id),
    model_version_id BIGINT REFERENCES model_versions (id),
    run_id           BIGINT REFERENCES runs (id),
    -- Sampling settings: temperature, top_p, top_k, max_new_tokens, seed.
    settings         JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (id, project_id)
);

CREATE TABLE samples (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id         BIGINT NOT NULL,
    project_id       BIGINT NOT NULL,
    prompt_id        BIGINT NOT NULL,
    text             TEXT NOT NULL CHECK (length(text) <= 20000),
    model_version_id BIGINT REFERENCES model_versions (id),
    settings         JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    logprobs         REAL[],
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (batch_id, project_id) REFERENCES sample_batches (id, project_id),
    FOREIGN KEY (prompt_id, project_id) REFERENCES prompts (id, project_id),
    UNIQUE (id, prompt_id)
);
CREATE INDEX samples_prompt ON samples (prompt_id);
