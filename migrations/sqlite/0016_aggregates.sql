-- Host aggregates (Nova's os-aggregates): named groups of compute hosts with metadata. The
-- `availability_zone` metadata key makes an aggregate's hosts an availability zone.
CREATE TABLE aggregates (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid        BLOB NOT NULL UNIQUE,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT
);
CREATE TABLE aggregate_hosts (
    aggregate_id INTEGER NOT NULL REFERENCES aggregates (id) ON DELETE CASCADE,
    host         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (aggregate_id, host)
);
CREATE INDEX aggregate_hosts_host ON aggregate_hosts (host);
CREATE TABLE aggregate_metadata (
    aggregate_id INTEGER NOT NULL REFERENCES aggregates (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, key)
);
