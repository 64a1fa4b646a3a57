-- A finished run holds no lease (migration 5 said so in a comment; now it is checked).
ALTER TABLE runs ADD CHECK (finished_at IS NULL OR lease_until IS NULL);
