-- Prompts, unique per project by the SHA-256 of their text (computed by the database).
CREATE TYPE split AS ENUM ('train', 'val', 'test');

-- convert_to is only STABLE (encodings could change); plumb's databases are UTF8, so
-- the hash of a text's UTF-8 bytes never changes and may back a generated column.
CREATE FUNCTION text_sha256(t TEXT) RETURNS BYTEA
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT sha256(convert_to(t, 'UTF8')) $$;

CREATE TABLE prompts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    text        TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 20000 AND btrim(text) <> ''),
    text_sha256 BYTEA NOT NULL GENERATED ALWAYS AS (text_sha256(text)) STORED,
    source      TEXT NOT NULL DEFAULT 'upload' CHECK (length(source) BETWEEN 1 AND 200),
    split       split NOT NULL DEFAULT 'train',
    created_by  BIGINT REFERENCES users (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, text_sha256),
    -- Lets tasks and samples prove that they belong to the same project.
    UNIQUE (id, project_id)
);
CREATE INDEX prompts_project_split ON prompts (project_id, split, id);
