-- The initial schema (SQLite). migrations/postgres/0001_initial.sql holds the same schema for
-- PostgreSQL; keep the two in step. Timestamps are epoch milliseconds (BIGINT) in both backends so
-- that comparisons behave the same.

CREATE TABLE flavors (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    flavorid     TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL UNIQUE,
    memory_mb    BIGINT NOT NULL,
    vcpus        BIGINT NOT NULL,
    root_gb      BIGINT NOT NULL,
    ephemeral_gb BIGINT NOT NULL DEFAULT 0,
    swap         BIGINT NOT NULL DEFAULT 0,
    rxtx_factor  REAL NOT NULL DEFAULT 1.0,
    is_public    INTEGER NOT NULL DEFAULT 1,
    disabled     INTEGER NOT NULL DEFAULT 0,
    description  TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE flavor_extra_specs (
    flavor_id BIGINT NOT NULL REFERENCES flavors(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (flavor_id, key)
);

CREATE TABLE instances (
    uuid              BLOB PRIMARY KEY,
    name              TEXT NOT NULL,
    project_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    vm_state          TEXT NOT NULL,
    task_state        TEXT,
    power_state       INTEGER NOT NULL DEFAULT 0,
    host              TEXT,
    node              TEXT,
    node_type         TEXT NOT NULL,
    flavor            TEXT NOT NULL,  -- JSON snapshot of the flavor at create time
    image_ref         TEXT NOT NULL,
    metadata          TEXT NOT NULL,  -- JSON object
    user_data         TEXT,
    availability_zone TEXT,
    launched_at       BIGINT,
    terminated_at     BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    deleted_at        BIGINT,
    deleted           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX instances_project_idx ON instances (project_id, deleted, created_at);
CREATE INDEX instances_state_idx ON instances (vm_state, deleted);

CREATE TABLE instance_faults (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_uuid BLOB NOT NULL REFERENCES instances(uuid),
    code          INTEGER NOT NULL,
    message       TEXT NOT NULL,
    details       TEXT,
    host          TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX instance_faults_instance_idx ON instance_faults (instance_uuid, id);

CREATE TABLE instance_actions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_uuid BLOB NOT NULL REFERENCES instances(uuid),
    action        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    start_time    BIGINT NOT NULL,
    finish_time   BIGINT,
    message       TEXT
);
CREATE INDEX instance_actions_instance_idx ON instance_actions (instance_uuid, id);

CREATE TABLE instance_action_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id   BIGINT NOT NULL REFERENCES instance_actions(id),
    event       TEXT NOT NULL,
    start_time  BIGINT NOT NULL,
    finish_time BIGINT,
    result      TEXT,
    host        TEXT,
    details     TEXT
);
CREATE INDEX instance_action_events_action_idx ON instance_action_events (action_id);

CREATE TABLE services (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid            BLOB NOT NULL UNIQUE,
    binary_name     TEXT NOT NULL,
    host            TEXT NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    forced_down     INTEGER NOT NULL DEFAULT 0,
    last_seen_at    BIGINT,
    report_count    BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (host, binary_name)
);

CREATE TABLE compute_nodes (
    uuid                  BLOB PRIMARY KEY,
    host                  TEXT NOT NULL,
    name                  TEXT NOT NULL,
    node_type             TEXT NOT NULL,
    hypervisor_type       TEXT NOT NULL,
    vcpus                 BIGINT NOT NULL,
    memory_mb             BIGINT NOT NULL,
    local_gb              BIGINT NOT NULL,
    vcpus_used            BIGINT NOT NULL DEFAULT 0,
    memory_mb_used        BIGINT NOT NULL DEFAULT 0,
    local_gb_used         BIGINT NOT NULL DEFAULT 0,
    cpu_allocation_ratio  REAL NOT NULL,
    ram_allocation_ratio  REAL NOT NULL,
    disk_allocation_ratio REAL NOT NULL,
    generation            BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (host, name)
);
CREATE INDEX compute_nodes_type_idx ON compute_nodes (node_type);

-- One allocation per instance: what it claimed on which node.
CREATE TABLE allocations (
    instance_uuid BLOB PRIMARY KEY REFERENCES instances(uuid),
    node_uuid     BLOB NOT NULL REFERENCES compute_nodes(uuid),
    vcpus         BIGINT NOT NULL,
    memory_mb     BIGINT NOT NULL,
    disk_gb       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX allocations_node_idx ON allocations (node_uuid);

-- A user request the conductor carries out; the message on the bus only points at it.
CREATE TABLE tasks (
    id            BLOB PRIMARY KEY,
    instance_uuid BLOB NOT NULL REFERENCES instances(uuid),
    kind          TEXT NOT NULL,  -- JSON of rpc::TaskKind
    state         TEXT NOT NULL,  -- pending | dispatched | done | failed
    request_id    TEXT NOT NULL,
    action_id     BIGINT REFERENCES instance_actions(id),
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX tasks_state_idx ON tasks (state, updated_at);
CREATE INDEX tasks_instance_idx ON tasks (instance_uuid);

-- The flavors devstack creates, so that a fresh deployment can boot something.
INSERT INTO flavors (flavorid, name, memory_mb, vcpus, root_gb, created_at) VALUES
    ('1', 'm1.tiny', 512, 1, 1, 0),
    ('2', 'm1.small', 2048, 1, 20, 0),
    ('3', 'm1.medium', 4096, 2, 40, 0),
    ('4', 'm1.large', 8192, 4, 80, 0),
    ('5', 'm1.xlarge', 16384, 8, 160, 0),
    ('42', 'm1.nano', 128, 1, 1, 0),
    ('84', 'm1.micro', 192, 1, 1, 0);
