-- Tasks for annotators: write a demonstration for a prompt, rank K samples of a prompt,
-- or vote between two model versions' samples (A/B).
CREATE TYPE task_kind AS ENUM ('demonstration', 'ranking', 'comparison');

CREATE TABLE tasks (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id BIGINT NOT NULL,
    prompt_id  BIGINT NOT NULL,
    kind       task_kind NOT NULL,
    -- Number of samples shown: 0 for a demonstration, K = 2..9 for a ranking, 2 for A/B.
    k          SMALLINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (prompt_id, project_id) REFERENCES prompts (id, project_id),
    CHECK (CASE kind WHEN 'demonstration' THEN k = 0
                     WHEN 'ranking' THEN k BETWEEN 2 AND 9
                     ELSE k = 2 END),
    UNIQUE (id, prompt_id),
    UNIQUE (id, k)
);
CREATE INDEX tasks_project ON tasks (project_id, kind, id);

-- The samples a task shows, at positions 0..k-1 (for A/B, position 0 is side A).
-- The composite keys make a sample of another prompt impossible.
CREATE TABLE task_samples (
    task_id   BIGINT NOT NULL,
    prompt_id BIGINT NOT NULL,
    position  SMALLINT NOT NULL CHECK (position BETWEEN 0 AND 8),
    sample_id BIGINT NOT NULL,
    PRIMARY KEY (task_id, position),
    UNIQUE (task_id, sample_id),
    FOREIGN KEY (task_id, prompt_id) REFERENCES tasks (id, prompt_id),
    FOREIGN KEY (sample_id, prompt_id) REFERENCES samples (id, prompt_id)
);
