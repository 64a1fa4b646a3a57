-- Blind A/B votes between two model versions' samples on a prompt (a comparison task:
-- position 0 is side A, position 1 side B, sides randomised when the task is made).
CREATE TYPE ab_vote AS ENUM ('a', 'b', 'tie', 'both_bad');

CREATE TABLE comparison_votes (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id         BIGINT NOT NULL,
    annotator_id    BIGINT NOT NULL,
    assignment_id   BIGINT NOT NULL UNIQUE,
    vote            ab_vote NOT NULL,
    comment         TEXT NOT NULL DEFAULT '' CHECK (length(comment) <= 5000),
    time_spent_ms   INT CHECK (time_spent_ms >= 0),
    idempotency_key UUID NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (assignment_id, task_id, annotator_id)
        REFERENCES assignments (id, task_id, annotator_id)
);
CREATE INDEX comparison_votes_task ON comparison_votes (task_id);
