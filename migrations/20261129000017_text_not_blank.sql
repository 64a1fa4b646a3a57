-- A prompt or demonstration of only whitespace (newlines, tabs) is blank too: btrim
-- strips only spaces, so check for a non-space character instead.
ALTER TABLE prompts DROP CONSTRAINT prompts_text_check,
    ADD CONSTRAINT prompts_text_check CHECK (length(text) BETWEEN 1 AND 20000 AND text ~ '\S');
ALTER TABLE demonstrations DROP CONSTRAINT demonstrations_response_check,
    ADD CONSTRAINT demonstrations_response_check
        CHECK (length(response) BETWEEN 1 AND 20000 AND response ~ '\S');
