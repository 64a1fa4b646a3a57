-- Every first word of a version's continuations of a probe, per group, with its count:
-- eval_probe_words keeps only the `top` most frequent, and the probe statistics (the
-- Jensen–Shannon divergence between groups, its bootstrap interval, the words that differ
-- most, the change between versions) need the whole distribution.
CREATE TABLE eval_probe_counts (
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    version_id BIGINT NOT NULL REFERENCES model_versions (id),
    probe      SMALLINT NOT NULL CHECK (probe >= 0),
    group_name TEXT NOT NULL CHECK (group_name ~ '\S'),
    word       TEXT NOT NULL CHECK (length(word) >= 1),
    count      INTEGER NOT NULL CHECK (count >= 1),
    PRIMARY KEY (run_id, version_id, probe, group_name, word)
);
CREATE INDEX eval_probe_counts_version ON eval_probe_counts (version_id);
