-- The model registry: models, their numbered versions, lineage, aliases and tags.
CREATE TYPE model_kind AS ENUM ('base', 'sft', 'reward', 'policy');

CREATE TABLE models (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    latest_version INT NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id        BIGINT NOT NULL REFERENCES models (id),
    version         INT NOT NULL CHECK (version >= 1),
    kind            model_kind NOT NULL,
    -- At most one version per run: a worker that registers twice gets the first back.
    run_id          BIGINT UNIQUE REFERENCES runs (id),
    config          JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    metrics         JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
    artifact_uri    TEXT NOT NULL CHECK (length(artifact_uri) > 0),
    artifact_sha256 BYTEA NOT NULL CHECK (length(artifact_sha256) = 32),
    artifact_size   BIGINT NOT NULL CHECK (artifact_size >= 0),
    tags            TEXT[] NOT NULL DEFAULT '{}',
    created_by      BIGINT REFERENCES users (id),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (model_id, version),
    UNIQUE (id, model_id)
);

-- A version is immutable: only its tags may change, and it is never deleted.
CREATE FUNCTION model_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'model version % is immutable: it cannot be deleted', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, NEW.model_id, NEW.version, NEW.kind, NEW.run_id, NEW.config, NEW.metrics,
        NEW.artifact_uri, NEW.artifact_sha256, NEW.artifact_size, NEW.created_by, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.model_id, OLD.version, OLD.kind, OLD.run_id, OLD.config, OLD.metrics,
        OLD.artifact_uri, OLD.artifact_sha256, OLD.artifact_size, OLD.created_by, OLD.created_at)
    THEN
        RAISE EXCEPTION 'model version % is immutable: only its tags may change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER model_versions_immutable BEFORE UPDATE OR DELETE ON model_versions
    FOR EACH ROW EXECUTE FUNCTION model_versions_immutable();

-- Lineage: the versions a version was trained from, and in which role
-- (base, sft, reward, reference, ...). Written with the version, never changed.
CREATE TABLE version_parents (
    version_id BIGINT NOT NULL REFERENCES model_versions (id),
    parent_id  BIGINT NOT NULL REFERENCES model_versions (id),
    role       TEXT NOT NULL CHECK (role ~ '^[a-z_]{1,32}$'),
    PRIMARY KEY (version_id, parent_id, role),
    CHECK (version_id <> parent_id)
);
CREATE INDEX version_parents_parent ON version_parents (parent_id);
CREATE TRIGGER version_parents_frozen BEFORE UPDATE OR DELETE ON version_parents
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

CREATE TABLE version_snapshots (
    version_id  BIGINT NOT NULL REFERENCES model_versions (id),
    snapshot_id BIGINT NOT NULL REFERENCES dataset_snapshots (id),
    PRIMARY KEY (version_id, snapshot_id)
);
CREATE TRIGGER version_snapshots_frozen BEFORE UPDATE OR DELETE ON version_snapshots
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Aliases (such as `champion`) name one version of a model and can be moved.
CREATE TABLE model_aliases (
    model_id   BIGINT NOT NULL REFERENCES models (id),
    alias      TEXT NOT NULL CHECK (alias ~ '^[a-z][a-z0-9_-]{0,63}$'),
    version_id BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, alias),
    -- The version must be one of this model's.
    FOREIGN KEY (version_id, model_id) REFERENCES model_versions (id, model_id)
);
