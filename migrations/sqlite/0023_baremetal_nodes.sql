-- Bare-metal machines enrolled through the bare-metal API (an Ironic v1 subset).
--
-- `driver_info` is Ironic's, as JSON, without the BMC password: that is in `bmc_password`,
-- sealed (AES-256-GCM, with the key repository's baremetal.key and the node's uuid as
-- associated data), never in clear.
--
-- `conductor` is the bare-metal agent (a compute host) that runs the node's operations.
-- `operation` names the one operation running on the node (Ironic's reservation): the API
-- starts one only when none runs, the agent's result ends it only when it names it, and the
-- conductor's reconciler fails it at `operation_deadline`.
CREATE TABLE baremetal_nodes (
    uuid                   TEXT PRIMARY KEY,
    name                   TEXT UNIQUE,
    driver                 TEXT NOT NULL,
    driver_info            TEXT NOT NULL DEFAULT '{}',
    bmc_password           TEXT,
    properties             TEXT NOT NULL DEFAULT '{}',
    extra                  TEXT NOT NULL DEFAULT '{}',
    resource_class         TEXT,
    description            TEXT,
    provision_state        TEXT NOT NULL,
    target_provision_state TEXT,
    power_state            TEXT,
    target_power_state     TEXT,
    maintenance            INTEGER NOT NULL DEFAULT 0,
    maintenance_reason     TEXT,
    fault                  TEXT,
    last_error             TEXT,
    instance_uuid          TEXT,
    conductor              TEXT,
    operation              TEXT,
    operation_kind         TEXT,
    operation_deadline     INTEGER,
    clean_step             TEXT,
    -- Power syncs in a row whose BMC did not answer; at the conductor's limit the node goes
    -- into maintenance (fault `power failure`), as Ironic's power-state sync puts it.
    power_failures         INTEGER NOT NULL DEFAULT 0,
    -- When `power_state` was last set from the BMC: a sync's answer read before that is stale.
    power_updated_at       INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER,
    provision_updated_at   INTEGER
);
CREATE INDEX baremetal_nodes_created_idx ON baremetal_nodes (created_at, uuid);
CREATE INDEX baremetal_nodes_operation_idx ON baremetal_nodes (operation_deadline);

-- The enrolment drivers a compute service runs nodes of (a JSON list, `["redfish"]` for a
-- bare-metal agent; NULL for the others), as Ironic's conductors register theirs: a node is
-- enrolled only where a live service runs its driver.
ALTER TABLE services ADD COLUMN node_drivers TEXT;
