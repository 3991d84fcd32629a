-- Keystone's domain-specific roles: a role of a domain (`domain_id`); NULL: a global role.
-- Role names stay unique across the deployment (Keystone makes a domain's unique within its
-- domain): SQLite cannot drop the UNIQUE (name) without making the table again, which would
-- cascade to every grant.
ALTER TABLE roles ADD COLUMN domain_id TEXT REFERENCES domains(id);
