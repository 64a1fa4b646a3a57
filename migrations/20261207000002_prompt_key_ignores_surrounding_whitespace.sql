-- A prompt is stored exactly as given (a trailing newline is part of what a model is
-- prompted with), but two prompts that differ only in surrounding whitespace are the
-- same prompt: the per-project unique key hashes the text without it. The trimmed
-- characters are ASCII whitespace, as `labeling::prompts::prompt_key` trims them.
CREATE FUNCTION prompt_key(t TEXT) RETURNS BYTEA
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT text_sha256(btrim(t, E' \t\n\r\f\v')) $$;

ALTER TABLE prompts DROP COLUMN text_sha256;
ALTER TABLE prompts ADD COLUMN text_key BYTEA NOT NULL GENERATED ALWAYS AS (prompt_key(text)) STORED;
ALTER TABLE prompts ADD CONSTRAINT prompts_project_id_text_key_key UNIQUE (project_id, text_key);
