-- Networks (a Neutron subset): what a server create may choose by id. `backend` is the network
-- as compute hosts know it (for Docker, the name of an engine network): Neutron's
-- provider:physical_network.
CREATE TABLE networks (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    project_id     TEXT NOT NULL,
    shared         BOOLEAN NOT NULL DEFAULT FALSE,
    admin_state_up BOOLEAN NOT NULL DEFAULT TRUE,
    backend        TEXT NOT NULL,
    tags           TEXT NOT NULL DEFAULT '[]',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX networks_name_idx ON networks (name);
