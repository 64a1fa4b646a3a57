-- A user's projects (an annotator's home page) without scanning every membership.
CREATE INDEX project_members_user ON project_members (user_id);
