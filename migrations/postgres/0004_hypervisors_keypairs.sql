-- Hypervisor ids and host addresses as the Compute API shows them, and key pairs. PostgreSQL;
-- migrations/sqlite/0004_hypervisors_keypairs.sql holds the same schema for SQLite.

-- Below microversion 2.53 a hypervisor's id is an integer.
ALTER TABLE compute_nodes ADD COLUMN api_id BIGSERIAL;
CREATE UNIQUE INDEX compute_nodes_api_id_idx ON compute_nodes (api_id);

-- The address the compute agent reports (Nova's my_ip), shown as a hypervisor's host_ip.
ALTER TABLE services ADD COLUMN host_ip TEXT;

CREATE TABLE keypairs (
    id          BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    key_type    TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (user_id, name)
);
