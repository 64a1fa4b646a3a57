-- Conversations as prompts, and annotations imported from files.
--
-- A prompt may be a conversation: `messages` holds its list of {"role", "content"}
-- messages (system first if any, ending with the user's turn), and `text` what plumb's
-- chat template (`spec::chat`) renders of it, the text a model is prompted with. Existing
-- prompts are plain text, `messages` NULL.
CREATE FUNCTION is_conversation(messages JSONB) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT jsonb_typeof(messages) = 'array'
       AND jsonb_array_length(messages) >= 1
       AND NOT EXISTS (
           SELECT 1 FROM jsonb_array_elements(messages) WITH ORDINALITY AS m (message, n)
           WHERE CASE WHEN jsonb_typeof(message) <> 'object' THEN true
                      ELSE NOT (message ?& ARRAY['role', 'content'])
                           OR (SELECT count(*) FROM jsonb_object_keys(message)) <> 2
                           OR jsonb_typeof(message -> 'content') <> 'string'
                           OR message ->> 'role' NOT IN ('system', 'user', 'assistant')
                           OR (message ->> 'role' = 'system' AND n > 1)
                 END)
       AND messages -> -1 ->> 'role' = 'user'
$$;

ALTER TABLE prompts ADD COLUMN messages JSONB CHECK (is_conversation(messages));

-- An import: one file brought into a project, named by its SHA-256 so that the same file
-- again adds nothing. What it brings is attributed to it, not to a person: agreement and
-- annotator statistics stay about people.
CREATE TYPE import_format AS ENUM ('trl', 'hh', 'messages', 'kwise');

CREATE TABLE import_sources (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200 AND name ~ '\S'),
    format      import_format NOT NULL,
    file_sha256 BYTEA NOT NULL CHECK (length(file_sha256) = 32),
    line_count  INT NOT NULL CHECK (line_count >= 0),
    imported_by BIGINT REFERENCES users (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, file_sha256)
);

-- Provenance: the import and the line of its file each row came from. Imported tasks are
-- answered already and never leased to annotators.
ALTER TABLE sample_batches ADD COLUMN import_source_id BIGINT REFERENCES import_sources (id);
ALTER TABLE tasks ADD COLUMN import_source_id BIGINT REFERENCES import_sources (id);

ALTER TABLE rankings
    ALTER COLUMN annotator_id DROP NOT NULL,
    ALTER COLUMN assignment_id DROP NOT NULL,
    ADD COLUMN import_source_id BIGINT REFERENCES import_sources (id),
    ADD COLUMN import_line INT CHECK (import_line >= 1),
    ADD CONSTRAINT rankings_by_a_person_or_an_import CHECK (
        CASE WHEN import_source_id IS NULL THEN annotator_id IS NOT NULL AND assignment_id IS NOT NULL
                                                AND import_line IS NULL
             ELSE annotator_id IS NULL AND assignment_id IS NULL AND import_line IS NOT NULL END),
    ADD UNIQUE (import_source_id, import_line);

ALTER TABLE demonstrations
    ALTER COLUMN annotator_id DROP NOT NULL,
    ADD COLUMN import_source_id BIGINT REFERENCES import_sources (id),
    ADD COLUMN import_line INT CHECK (import_line >= 1),
    ADD CONSTRAINT demonstrations_by_a_person_or_an_import CHECK (
        CASE WHEN import_source_id IS NULL THEN annotator_id IS NOT NULL AND import_line IS NULL
             ELSE annotator_id IS NULL AND task_id IS NULL AND import_line IS NOT NULL END),
    ADD UNIQUE (import_source_id, import_line);

-- The current_* views were expanded from `*` when made: take the new columns in.
CREATE OR REPLACE VIEW current_rankings AS
    SELECT * FROM rankings r WHERE NOT EXISTS (SELECT 1 FROM rankings n WHERE n.supersedes = r.id);
CREATE OR REPLACE VIEW current_demonstrations AS
    SELECT * FROM demonstrations d WHERE NOT EXISTS (SELECT 1 FROM demonstrations n WHERE n.supersedes = d.id);
