-- What annotators submitted is the record that datasets are frozen from: never edited.
CREATE TRIGGER demonstrations_immutable BEFORE UPDATE ON demonstrations
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER rankings_immutable BEFORE UPDATE ON rankings
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER comparison_votes_immutable BEFORE UPDATE ON comparison_votes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER samples_immutable BEFORE UPDATE ON samples
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
