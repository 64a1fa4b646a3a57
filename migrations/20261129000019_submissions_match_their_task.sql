-- A submission answers a task of its own kind, a demonstration for a task is for that
-- task's prompt and answers one assignment, and flags are as immutable as rankings.
ALTER TABLE tasks ADD CONSTRAINT tasks_id_kind_key UNIQUE (id, kind);
ALTER TABLE rankings
    ADD COLUMN task_kind task_kind NOT NULL DEFAULT 'ranking' CHECK (task_kind = 'ranking'),
    ADD FOREIGN KEY (task_id, task_kind) REFERENCES tasks (id, kind);
ALTER TABLE comparison_votes
    ADD COLUMN task_kind task_kind NOT NULL DEFAULT 'comparison' CHECK (task_kind = 'comparison'),
    ADD FOREIGN KEY (task_id, task_kind) REFERENCES tasks (id, kind);
ALTER TABLE demonstrations
    ADD COLUMN task_kind task_kind NOT NULL DEFAULT 'demonstration' CHECK (task_kind = 'demonstration'),
    ADD FOREIGN KEY (task_id, task_kind) REFERENCES tasks (id, kind),
    ADD FOREIGN KEY (task_id, prompt_id) REFERENCES tasks (id, prompt_id),
    ADD COLUMN assignment_id BIGINT UNIQUE,
    ADD FOREIGN KEY (assignment_id, task_id, annotator_id) REFERENCES assignments (id, task_id, annotator_id),
    ADD CHECK ((assignment_id IS NULL) = (task_id IS NULL));
CREATE TRIGGER ranking_flags_immutable BEFORE UPDATE ON ranking_flags
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
