-- Lineage and snapshot links are written in the transaction that registers their
-- version, never added to an old version later (the UPDATE/DELETE triggers of
-- migrations 6 and 7 do not stop a later INSERT).
CREATE FUNCTION written_with_its_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM model_versions
                   WHERE id = NEW.version_id AND xmin = pg_current_xact_id()::xid) THEN
        RAISE EXCEPTION '% of model version % are written with the version, never added later',
            TG_TABLE_NAME, NEW.version_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER version_parents_with_version BEFORE INSERT ON version_parents
    FOR EACH ROW EXECUTE FUNCTION written_with_its_version();
CREATE TRIGGER version_snapshots_with_version BEFORE INSERT ON version_snapshots
    FOR EACH ROW EXECUTE FUNCTION written_with_its_version();
