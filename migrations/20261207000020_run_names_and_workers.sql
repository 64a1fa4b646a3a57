-- Runs get a name and notes, for researchers to tell them apart; empty when not given
-- (the pages then say "run #id"). A name is one trimmed line.
ALTER TABLE runs
    ADD COLUMN name  TEXT NOT NULL DEFAULT ''
        CHECK (char_length(name) <= 200 AND name = btrim(name) AND name !~ '[[:cntrl:]]'),
    ADD COLUMN notes TEXT NOT NULL DEFAULT '' CHECK (char_length(notes) <= 10000);

-- Workers say they are there each time they ask for a run and each time they renew a
-- lease: a queued run's page says when none has been seen lately.
CREATE TABLE workers (
    name      TEXT PRIMARY KEY CHECK (name <> ''),
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
