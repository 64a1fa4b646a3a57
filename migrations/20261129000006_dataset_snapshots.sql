-- Dataset snapshots: a frozen list of ids with the SHA-256 of their exported content.
CREATE TYPE snapshot_kind AS ENUM ('prompts', 'demonstrations', 'rankings', 'comparisons');

CREATE TABLE dataset_snapshots (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id     BIGINT NOT NULL REFERENCES projects (id),
    kind           snapshot_kind NOT NULL,
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    filter         JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(filter) = 'object'),
    item_count     INT NOT NULL CHECK (item_count >= 0),
    content_sha256 BYTEA NOT NULL CHECK (length(content_sha256) = 32),
    created_by     BIGINT REFERENCES users (id),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE snapshot_items (
    snapshot_id BIGINT NOT NULL REFERENCES dataset_snapshots (id),
    item_id     BIGINT NOT NULL,
    PRIMARY KEY (snapshot_id, item_id)
);

-- Frozen means frozen: once written, neither a snapshot nor its items change.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER dataset_snapshots_frozen BEFORE UPDATE OR DELETE ON dataset_snapshots
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER snapshot_items_frozen BEFORE UPDATE OR DELETE ON snapshot_items
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
