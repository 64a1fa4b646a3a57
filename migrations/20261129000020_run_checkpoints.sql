-- A run's newest checkpoint in the artifact store, so that a run whose worker died (or
-- was shut down) resumes on any machine from where it stopped. Both or neither.
ALTER TABLE runs
    ADD COLUMN checkpoint_step   BIGINT CHECK (checkpoint_step >= 0),
    ADD COLUMN checkpoint_sha256 TEXT CHECK (checkpoint_sha256 ~ '^[0-9a-f]{64}$'),
    ADD CHECK ((checkpoint_step IS NULL) = (checkpoint_sha256 IS NULL));
