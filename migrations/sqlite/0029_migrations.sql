-- Migrations (Nova's `migrations` table): a resize of a server, from the request to its
-- confirm or revert. While the server waits in VERIFY_RESIZE it holds its new flavor's claim
-- (in `allocations`) and its migration holds the old flavor's (the `held_*` columns), as
-- Nova's migration record consumes the old allocation in Placement; a confirm lets the held
-- one go, a revert gives it back to the server.
CREATE TABLE migrations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid           BLOB NOT NULL UNIQUE,
    instance_uuid  BLOB NOT NULL REFERENCES instances (uuid),
    project_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    -- resize (cold and live migrations wait for the multi-host work).
    migration_type TEXT NOT NULL,
    -- pre-migrating, migrating, finished, confirming, confirmed, reverting, reverted, error.
    status         TEXT NOT NULL,
    source_compute TEXT,
    source_node    TEXT,
    dest_compute   TEXT,
    dest_node      TEXT,
    -- JSON snapshots of the flavors, as the server keeps its own.
    old_flavor     TEXT NOT NULL,
    new_flavor     TEXT NOT NULL,
    -- The vm state the server returns to after a confirm or a revert (active or stopped).
    old_vm_state   TEXT NOT NULL,
    held_node_uuid BLOB,
    held_vcpus     BIGINT,
    held_memory_mb BIGINT,
    held_disk_gb   BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX migrations_instance ON migrations (instance_uuid, created_at);
CREATE INDEX migrations_status ON migrations (status, updated_at);
