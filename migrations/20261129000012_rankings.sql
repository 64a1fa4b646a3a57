-- Rankings of a task's K samples. `ranks[i]` is the group of the sample at position i-1:
-- 0 is the best group, samples that share a group are tied, and the groups used are
-- 0..m without gaps. With `all_bad` the annotator may leave the order out.
CREATE TYPE sample_flag AS ENUM ('fails_task', 'harmful', 'hallucination', 'not_followed', 'other');

CREATE FUNCTION is_rank_groups(ranks SMALLINT[]) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT array_ndims(ranks) = 1
       AND NOT EXISTS (SELECT 1 FROM unnest(ranks) r WHERE r IS NULL OR r < 0)
       AND (SELECT count(DISTINCT r) = max(r) + 1 FROM unnest(ranks) r)
$$;

-- Likert ratings: 1..7, or NULL where a sample was not rated.
CREATE FUNCTION is_likert(ratings SMALLINT[]) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT array_ndims(ratings) = 1
       AND NOT EXISTS (SELECT 1 FROM unnest(ratings) r WHERE r < 1 OR r > 7)
$$;

CREATE TABLE rankings (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id         BIGINT NOT NULL,
    k               SMALLINT NOT NULL,
    annotator_id    BIGINT NOT NULL,
    assignment_id   BIGINT NOT NULL UNIQUE,
    ranks           SMALLINT[] CHECK (cardinality(ranks) = k AND is_rank_groups(ranks)),
    all_bad         BOOLEAN NOT NULL DEFAULT false,
    likert          SMALLINT[] CHECK (cardinality(likert) = k AND is_likert(likert)),
    comment         TEXT NOT NULL DEFAULT '' CHECK (length(comment) <= 5000),
    time_spent_ms   INT CHECK (time_spent_ms >= 0),
    idempotency_key UUID NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (task_id, k) REFERENCES tasks (id, k),
    FOREIGN KEY (assignment_id, task_id, annotator_id)
        REFERENCES assignments (id, task_id, annotator_id),
    CHECK (ranks IS NOT NULL OR all_bad),
    UNIQUE (id, task_id)
);
CREATE INDEX rankings_task ON rankings (task_id);

-- Content flags per sample of a ranking.
CREATE TABLE ranking_flags (
    ranking_id BIGINT NOT NULL,
    task_id    BIGINT NOT NULL,
    position   SMALLINT NOT NULL,
    flag       sample_flag NOT NULL,
    PRIMARY KEY (ranking_id, position, flag),
    FOREIGN KEY (ranking_id, task_id) REFERENCES rankings (id, task_id) ON DELETE CASCADE,
    FOREIGN KEY (task_id, position) REFERENCES task_samples (task_id, position)
);
