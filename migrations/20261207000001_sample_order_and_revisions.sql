-- The order in which an assignment shows a ranking task's samples, drawn at random when
-- the task is first leased to that annotator: slot i shows the sample at task position
-- sample_order[i + 1]. No position (such as the base model's sample in a task sent back
-- from an eval) is always first. Ranks stay stored by task position, that is by sample,
-- whatever order they were shown in. NULL for demonstrations and A/B votes (whose sides
-- are drawn at random when the task is made), and where the project keeps task order.
CREATE FUNCTION is_permutation(items SMALLINT[]) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT array_ndims(items) = 1
       AND (SELECT array_agg(i ORDER BY i) FROM unnest(items) i)
           = (SELECT array_agg(i::smallint ORDER BY i) FROM generate_series(0, cardinality(items) - 1) i)
$$;
ALTER TABLE assignments ADD COLUMN sample_order SMALLINT[] CHECK (is_permutation(sample_order));
-- A project may keep its samples in task order instead (say, a reference answer always
-- shown first).
ALTER TABLE projects ADD COLUMN shuffle_samples BOOLEAN NOT NULL DEFAULT true;

-- Revisions: an annotator may revise an answer while the project allows it. A revision is
-- a new row that supersedes the current one of the same assignment; nothing is
-- overwritten, so every earlier answer (and every snapshot frozen from it) stays. An
-- assignment's answers form one chain: one first answer, each superseded at most once.
ALTER TABLE projects ADD COLUMN revisions_allowed BOOLEAN NOT NULL DEFAULT true;

ALTER TABLE rankings DROP CONSTRAINT rankings_assignment_id_key;
ALTER TABLE rankings ADD COLUMN supersedes BIGINT UNIQUE;
ALTER TABLE rankings ADD UNIQUE (id, assignment_id);
ALTER TABLE rankings ADD FOREIGN KEY (supersedes, assignment_id) REFERENCES rankings (id, assignment_id);
CREATE UNIQUE INDEX rankings_first_answer ON rankings (assignment_id) WHERE supersedes IS NULL;

ALTER TABLE comparison_votes DROP CONSTRAINT comparison_votes_assignment_id_key;
ALTER TABLE comparison_votes ADD COLUMN supersedes BIGINT UNIQUE;
ALTER TABLE comparison_votes ADD UNIQUE (id, assignment_id);
ALTER TABLE comparison_votes ADD FOREIGN KEY (supersedes, assignment_id)
    REFERENCES comparison_votes (id, assignment_id);
CREATE UNIQUE INDEX comparison_votes_first_answer ON comparison_votes (assignment_id) WHERE supersedes IS NULL;

-- Only a demonstration written for an assignment can be revised.
ALTER TABLE demonstrations DROP CONSTRAINT demonstrations_assignment_id_key;
ALTER TABLE demonstrations ADD COLUMN supersedes BIGINT UNIQUE
    CHECK (supersedes IS NULL OR assignment_id IS NOT NULL);
ALTER TABLE demonstrations ADD UNIQUE (id, assignment_id);
ALTER TABLE demonstrations ADD FOREIGN KEY (supersedes, assignment_id)
    REFERENCES demonstrations (id, assignment_id);
CREATE UNIQUE INDEX demonstrations_first_answer ON demonstrations (assignment_id)
    WHERE supersedes IS NULL AND assignment_id IS NOT NULL;

-- The answers that stand: those no revision supersedes. Everything that reads answers
-- (agreement, consensus, snapshots, counts, win rates) reads these.
CREATE VIEW current_rankings AS
    SELECT * FROM rankings r WHERE NOT EXISTS (SELECT 1 FROM rankings n WHERE n.supersedes = r.id);
CREATE VIEW current_comparison_votes AS
    SELECT * FROM comparison_votes v
    WHERE NOT EXISTS (SELECT 1 FROM comparison_votes n WHERE n.supersedes = v.id);
CREATE VIEW current_demonstrations AS
    SELECT * FROM demonstrations d WHERE NOT EXISTS (SELECT 1 FROM demonstrations n WHERE n.supersedes = d.id);
