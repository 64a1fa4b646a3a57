-- A labeling project: its guidelines (Markdown), how many annotators see each task
-- (overlap) and how many samples a ranking task shows (K).
CREATE TABLE projects (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    guidelines       TEXT NOT NULL DEFAULT '' CHECK (length(guidelines) <= 200000),
    overlap          INT NOT NULL DEFAULT 1 CHECK (overlap BETWEEN 1 AND 20),
    samples_per_task INT NOT NULL DEFAULT 4 CHECK (samples_per_task BETWEEN 2 AND 9),
    created_by       BIGINT REFERENCES users (id),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
