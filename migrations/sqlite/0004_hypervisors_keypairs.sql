-- Hypervisor ids and host addresses as the Compute API shows them, and key pairs. SQLite;
-- migrations/postgres/0004_hypervisors_keypairs.sql holds the same schema for PostgreSQL.

-- Below microversion 2.53 a hypervisor's id is an integer: the row's own, set on insert.
ALTER TABLE compute_nodes ADD COLUMN api_id INTEGER;
UPDATE compute_nodes SET api_id = rowid;
CREATE UNIQUE INDEX compute_nodes_api_id_idx ON compute_nodes (api_id);
CREATE TRIGGER compute_nodes_api_id AFTER INSERT ON compute_nodes
BEGIN
    UPDATE compute_nodes SET api_id = NEW.rowid WHERE rowid = NEW.rowid;
END;

-- The address the compute agent reports (Nova's my_ip), shown as a hypervisor's host_ip.
ALTER TABLE services ADD COLUMN host_ip TEXT;

CREATE TABLE keypairs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    key_type    TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (user_id, name)
);
