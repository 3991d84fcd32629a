-- Security groups and their rules (Neutron's). A project's `default` group is made on first
-- use; the partial unique index keeps it one per project under concurrent first uses.
CREATE TABLE security_groups (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    stateful        BOOLEAN NOT NULL DEFAULT TRUE,
    is_default      BOOLEAN NOT NULL DEFAULT FALSE,
    tags            TEXT NOT NULL DEFAULT '[]',
    revision_number BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX security_groups_project_idx ON security_groups (project_id);
CREATE UNIQUE INDEX security_groups_default_idx ON security_groups (project_id) WHERE is_default;

CREATE TABLE security_group_rules (
    id                TEXT PRIMARY KEY,
    security_group_id TEXT NOT NULL REFERENCES security_groups (id),
    project_id        TEXT NOT NULL,
    direction         TEXT NOT NULL,
    ethertype         TEXT NOT NULL,
    -- NULL: any protocol; a name (`tcp`) or a number as text (`6`), as given.
    protocol          TEXT,
    port_range_min    BIGINT,
    port_range_max    BIGINT,
    remote_ip_prefix  TEXT,
    remote_group_id   TEXT,
    description       TEXT NOT NULL DEFAULT '',
    revision_number   BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX security_group_rules_group_idx ON security_group_rules (security_group_id);
CREATE INDEX security_group_rules_remote_idx ON security_group_rules (remote_group_id);
