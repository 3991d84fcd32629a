-- Identity (Keystone v3 subset). migrations/sqlite/0002_identity.sql holds the same schema for
-- SQLite; keep the two in step. Ids are Keystone-style hex strings (uuid4 without dashes).

CREATE TABLE domains (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    domain_id   TEXT NOT NULL REFERENCES domains(id),
    description TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    domain_id     TEXT NOT NULL REFERENCES domains(id),
    password_hash TEXT,            -- argon2 PHC string; NULL: cannot log in with a password
    email         TEXT,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    default_project_id TEXT,
    created_at    BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE roles (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- A role of a user on a project or on a domain (exactly one of the two).
CREATE TABLE role_assignments (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id    TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL DEFAULT '',
    domain_id  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, role_id, project_id, domain_id)
);
CREATE INDEX role_assignments_project_idx ON role_assignments (project_id);

-- Revocations, as Keystone's revocation events: a token is revoked when its audit id is listed,
-- or when it was issued before `issued_before` for a listed user (and project, if given).
CREATE TABLE revocation_events (
    id            BIGSERIAL PRIMARY KEY,
    audit_id      TEXT,
    user_id       TEXT,
    project_id    TEXT,
    issued_before BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,  -- when the event can be forgotten (no token it hits is valid)
    created_at    BIGINT NOT NULL
);
CREATE INDEX revocation_events_created_idx ON revocation_events (id);
