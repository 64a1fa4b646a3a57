-- What an eval run measured: for each version it evaluated and each prompt, the sample it
-- wrote (all versions with the same seed per prompt) and its scores. Written once per
-- run; the compare pages aggregate them (means, win rates with bootstrap intervals).
CREATE TABLE eval_samples (
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    version_id BIGINT NOT NULL REFERENCES model_versions (id),
    prompt_id  BIGINT NOT NULL REFERENCES prompts (id),
    text       TEXT NOT NULL,
    -- New tokens, EOS not counted; whether it ended with EOS (not the token limit).
    tokens     INT NOT NULL CHECK (tokens >= 0),
    eos        BOOLEAN NOT NULL,
    -- Share of the response's words that repeat an earlier word, in [0, 1].
    repetition REAL NOT NULL CHECK (repetition BETWEEN 0 AND 1),
    -- The reward model's score, when the run named one.
    reward     REAL,
    -- log π(sample) − log π_ref(sample), when the run named a reference.
    kl         REAL,
    -- The demo world's oracle score in [-1, 1], for its prompts.
    oracle     REAL CHECK (oracle BETWEEN -1 AND 1),
    PRIMARY KEY (run_id, version_id, prompt_id)
);
CREATE INDEX eval_samples_version ON eval_samples (version_id);
