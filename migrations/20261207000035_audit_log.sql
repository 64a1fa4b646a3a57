-- Who changed what about people, roles and model aliases, and when: an admin's record
-- that nobody, admins included, can edit or remove. `actor_id` is null for changes made
-- with the command line (whoever holds the database), `action` is `subject.verb`
-- (`user.create`, `alias.set`), `subject` names what was changed (`user ann`,
-- `alias policy@prod`) and `details` holds the rest (the new role, the version).
CREATE TABLE audit_log (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id BIGINT REFERENCES users (id),
    action   TEXT NOT NULL CHECK (action ~ '^[a-z]+(_[a-z]+)*\.[a-z]+(_[a-z]+)*$'),
    subject  TEXT NOT NULL CHECK (subject <> '' AND char_length(subject) <= 300),
    details  JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object')
);

-- The admin page lists it newest first, all of it or one action's.
CREATE INDEX audit_log_by_action ON audit_log (action, id DESC);

-- Append-only: an entry, once written, is what happened.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_not_truncated BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
