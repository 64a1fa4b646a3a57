-- Gang-scheduled runs: a run that trains data-parallel on `world_size` workers at once.
--
-- The worker that claims such a run is its rank 0. In the same transaction it takes
-- `world_size - 1` idle workers (`workers.idle_until` in the future) as the other ranks,
-- or takes none: a gang is claimed whole or not at all, so two half-claimed runs never
-- wait on each other. Rank 0 then publishes its rendezvous address (`runs.rendezvous`,
-- host:port of c10d's TCPStore), and each rank renews its own lease in `run_ranks`.
ALTER TABLE runs
    ADD COLUMN world_size INTEGER NOT NULL DEFAULT 1 CHECK (world_size BETWEEN 1 AND 64),
    ADD COLUMN rendezvous TEXT CHECK (rendezvous ~ '^\S+:[0-9]{1,5}$');

-- Until when the worker waits for work: another worker's claim may make it a rank then.
ALTER TABLE workers ADD COLUMN idle_until TIMESTAMPTZ;
CREATE INDEX workers_idle ON workers (idle_until) WHERE idle_until IS NOT NULL;

-- The ranks of a gang run's current attempt (`attempt` = `runs.attempts` when claimed).
-- A new claim of the run replaces them; rows of the last attempt stay for the run page.
CREATE TABLE run_ranks (
    run_id       BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    rank         INTEGER NOT NULL CHECK (rank >= 0),
    attempt      INTEGER NOT NULL CHECK (attempt >= 1),
    worker       TEXT NOT NULL CHECK (worker <> ''),
    -- assigned: not yet picked up by its worker; training: joined; done: its stage ended;
    -- lost: its lease expired or its stage failed while the gang trained.
    state        TEXT NOT NULL CHECK (state IN ('assigned', 'training', 'done', 'lost')),
    lease_until  TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ,
    PRIMARY KEY (run_id, rank)
);
CREATE INDEX run_ranks_worker ON run_ranks (worker) WHERE state = 'assigned';
