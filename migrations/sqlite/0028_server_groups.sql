-- Server groups (Nova's os-server-groups): a placement policy for the servers created into the
-- group with the `group` scheduler hint. Groups are deleted outright, as Nova's are; a member
-- row stays with its server's soft-deleted row, and listings show live members only.
CREATE TABLE server_groups (
    uuid                BLOB PRIMARY KEY,
    name                TEXT NOT NULL,
    project_id          TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    -- affinity, anti-affinity, soft-affinity or soft-anti-affinity.
    policy              TEXT NOT NULL,
    -- The anti-affinity rule of 2.64 (none: one server per host).
    max_server_per_host INTEGER,
    created_at          BIGINT NOT NULL
);
CREATE INDEX server_groups_project ON server_groups (project_id, created_at);
CREATE TABLE server_group_members (
    group_uuid    BLOB NOT NULL REFERENCES server_groups (uuid) ON DELETE CASCADE,
    instance_uuid BLOB NOT NULL REFERENCES instances (uuid),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (group_uuid, instance_uuid)
);
CREATE INDEX server_group_members_instance ON server_group_members (instance_uuid);
