-- Keystone's system scope: a user's roles on the whole deployment (`{"system": {"all": true}}`),
-- kept apart from project and domain grants as Keystone keeps them.
CREATE TABLE system_role_assignments (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);

-- A user's attributes beyond the fixed columns, as a JSON object: Keystone's `extra`, which holds
-- `description` and any other property a client gives.
ALTER TABLE users ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';

-- Project tags (Keystone's: at most 80 per project, each at most 255 characters, no `/` or `,`).
CREATE TABLE project_tags (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (project_id, tag)
);

-- Groups of users (Keystone's), their members, and their role grants on a project, a domain or
-- the system (`system` = 'all'; otherwise exactly one of project_id and domain_id is set). A
-- user's roles on a target are their own grants and those of their groups.
CREATE TABLE user_groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    domain_id   TEXT NOT NULL REFERENCES domains(id),
    description TEXT NOT NULL DEFAULT '',
    UNIQUE (domain_id, name)
);
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);
CREATE TABLE group_role_assignments (
    group_id   TEXT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    role_id    TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL DEFAULT '',
    domain_id  TEXT NOT NULL DEFAULT '',
    system     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (group_id, role_id, project_id, domain_id, system)
);
