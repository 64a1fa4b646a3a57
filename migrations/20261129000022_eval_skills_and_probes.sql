-- Two optional measurements of an eval run, written once per run with its samples.
--
-- Zero-, one- and few-shot accuracy: for each version, each of the demo world's skills
-- and each number of worked examples shown before the question (shots), how many of the
-- run's test tasks of that skill the version answered exactly (greedy decoding). Every
-- version sees the same tasks and the same worked examples.
CREATE TABLE eval_skill_scores (
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    version_id BIGINT NOT NULL REFERENCES model_versions (id),
    -- The demo world's skill (reverse, uppercase, sort, add, repeat).
    skill      TEXT NOT NULL CHECK (skill ~ '\S'),
    -- Worked examples in the prompt: 0 is zero-shot.
    shots      SMALLINT NOT NULL CHECK (shots >= 0),
    correct    INT NOT NULL CHECK (correct >= 0),
    total      INT NOT NULL CHECK (total >= 1),
    CHECK (correct <= total),
    PRIMARY KEY (run_id, version_id, skill, shots)
);
CREATE INDEX eval_skill_scores_version ON eval_skill_scores (version_id);

-- Probes: a template with a slot (`The {group} worker was very`) filled with each group,
-- continued many times at temperature 1 by each version (the same random streams for
-- every version); the most frequent first words of the continuations and their share of
-- them. Side by side, they show how a version's next words differ between groups, and
-- how training moved them.
CREATE TABLE eval_probe_words (
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    version_id BIGINT NOT NULL REFERENCES model_versions (id),
    -- The probe's index in the run's config, and its template as written there.
    probe      SMALLINT NOT NULL CHECK (probe >= 0),
    template   TEXT NOT NULL CHECK (template ~ '\S'),
    -- What filled the template's slot.
    group_name TEXT NOT NULL CHECK (group_name ~ '\S'),
    -- The first word of continuations, or "(none)" for those that began with no word.
    word       TEXT NOT NULL CHECK (length(word) >= 1),
    -- The share of the group's continuations that began with the word.
    share      REAL NOT NULL CHECK (share BETWEEN 0 AND 1),
    PRIMARY KEY (run_id, version_id, probe, group_name, word)
);
CREATE INDEX eval_probe_words_version ON eval_probe_words (version_id);
