-- What an API token may do and until when. `annotate` lets it call only what an
-- annotator may (taking and answering tasks, the caller's own pages), even when its user
-- is a researcher; `research` lets it act with its user's role. A request made with a
-- token acts with the lower of the two (labeling::users::user_for_token).
CREATE TYPE token_scope AS ENUM ('annotate', 'research');

ALTER TABLE api_tokens
    ADD COLUMN scope      token_scope,
    ADD COLUMN expires_at TIMESTAMPTZ;

-- Tokens made before scopes keep what they could do (their user's role) and get the
-- default lifetime, 90 days from when they were made.
UPDATE api_tokens t
SET scope = CASE WHEN u.role = 'annotator' THEN 'annotate' ELSE 'research' END::token_scope,
    expires_at = t.created_at + interval '90 days'
FROM users u
WHERE u.id = t.user_id;

ALTER TABLE api_tokens
    ALTER COLUMN scope SET NOT NULL,
    ALTER COLUMN expires_at SET NOT NULL,
    ADD CONSTRAINT api_tokens_expire_after_they_are_made CHECK (expires_at > created_at);

-- Revoking is final: once set, revoked_at never changes (revoking again keeps it).
CREATE FUNCTION refuse_unrevoking() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'API token % was revoked at %: revoking is final', OLD.id, OLD.revoked_at;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_tokens_revocation_is_final BEFORE UPDATE OF revoked_at ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION refuse_unrevoking();
