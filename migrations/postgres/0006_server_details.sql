-- What a server carries beyond its build: description (2.19), key pair (name and public key as
-- at create, as Nova keeps them), lock (who locked: 'owner' or 'admin', and why, 2.73), tags
-- (2.26, a JSON array). And flavor access: the projects a private flavor is shared with.
-- The same schema for both backends; keep the two copies in step.
ALTER TABLE instances ADD COLUMN description TEXT;
ALTER TABLE instances ADD COLUMN key_name TEXT;
ALTER TABLE instances ADD COLUMN key_data TEXT;
ALTER TABLE instances ADD COLUMN locked_by TEXT;
ALTER TABLE instances ADD COLUMN locked_reason TEXT;
ALTER TABLE instances ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

CREATE TABLE flavor_projects (
    flavor_id  BIGINT NOT NULL REFERENCES flavors(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    PRIMARY KEY (flavor_id, project_id)
);
