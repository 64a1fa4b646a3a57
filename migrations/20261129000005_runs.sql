-- Runs: the job queue that trainer workers claim with FOR UPDATE SKIP LOCKED.
CREATE TYPE run_kind AS ENUM ('pretrain', 'sft', 'reward', 'ppo', 'sample', 'eval');
CREATE TYPE run_status AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

CREATE TABLE runs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id       BIGINT REFERENCES projects (id),
    kind             run_kind NOT NULL,
    config           JSONB NOT NULL CHECK (jsonb_typeof(config) = 'object'),
    status           run_status NOT NULL DEFAULT 'queued',
    created_by       BIGINT REFERENCES users (id),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    worker           TEXT,
    attempts         INT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_until      TIMESTAMPTZ,
    heartbeat_at     TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    step             BIGINT NOT NULL DEFAULT 0 CHECK (step >= 0),
    total_steps      BIGINT CHECK (total_steps >= 0),
    progress         REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    error            TEXT,
    -- A running run holds a lease; a finished one has a finish time and holds none.
    CHECK (status <> 'running' OR (worker IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CHECK (status <> 'failed' OR error IS NOT NULL)
);
CREATE INDEX runs_queue ON runs (created_at, id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_project ON runs (project_id, id);

CREATE TABLE run_metrics (
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name   TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    step   BIGINT NOT NULL CHECK (step >= 0),
    value  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, name, step)
);

-- What a run printed: shown on the run page.
CREATE TABLE run_logs (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    line    TEXT NOT NULL
);
CREATE INDEX run_logs_run ON run_logs (run_id, id);
