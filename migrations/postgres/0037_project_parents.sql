-- Keystone's project hierarchy: a project's parent project (NULL: its parent is its domain, a
-- top-level project). The parent is in the same domain and is fixed at create.
ALTER TABLE projects ADD COLUMN parent_id TEXT REFERENCES projects(id);
CREATE INDEX projects_parent_idx ON projects (parent_id);
