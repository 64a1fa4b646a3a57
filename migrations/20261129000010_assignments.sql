-- Who works on which task. A task goes to `overlap` distinct annotators; a lease that
-- expires returns it to the queue. The primary key means never the same annotator twice.
CREATE TYPE assignment_state AS ENUM ('leased', 'submitted', 'skipped');

CREATE TABLE assignments (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      BIGINT NOT NULL REFERENCES tasks (id),
    annotator_id BIGINT NOT NULL REFERENCES users (id),
    state        assignment_state NOT NULL DEFAULT 'leased',
    leased_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until  TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    UNIQUE (task_id, annotator_id),
    UNIQUE (id, task_id, annotator_id),
    CHECK ((state = 'leased') = (finished_at IS NULL))
);
CREATE INDEX assignments_annotator ON assignments (annotator_id, state);
