-- Subnets and ports (Neutron's): a subnet's addresses are handed to ports by the service
-- (IPAM). `ip_allocations` has one row per address a port holds; its primary key is what
-- guarantees that no two ports hold one address, whatever the concurrency.
CREATE TABLE subnets (
    id                TEXT PRIMARY KEY,
    network_id        TEXT NOT NULL REFERENCES networks (id),
    project_id        TEXT NOT NULL,
    name              TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    ip_version        BIGINT NOT NULL,
    cidr              TEXT NOT NULL,
    -- NULL: no gateway.
    gateway_ip        TEXT,
    -- JSON lists: [{"start", "end"}], ["ip"], [{"destination", "nexthop"}].
    allocation_pools  TEXT NOT NULL,
    dns_nameservers   TEXT NOT NULL DEFAULT '[]',
    host_routes       TEXT NOT NULL DEFAULT '[]',
    enable_dhcp       BOOLEAN NOT NULL DEFAULT TRUE,
    ipv6_ra_mode      TEXT,
    ipv6_address_mode TEXT,
    tags              TEXT NOT NULL DEFAULT '[]',
    revision_number   BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX subnets_network_idx ON subnets (network_id);

CREATE TABLE ports (
    id                    TEXT PRIMARY KEY,
    network_id            TEXT NOT NULL REFERENCES networks (id),
    project_id            TEXT NOT NULL,
    name                  TEXT NOT NULL DEFAULT '',
    description           TEXT NOT NULL DEFAULT '',
    mac_address           TEXT NOT NULL,
    admin_state_up        BOOLEAN NOT NULL DEFAULT TRUE,
    status                TEXT NOT NULL DEFAULT 'DOWN',
    device_id             TEXT NOT NULL DEFAULT '',
    device_owner          TEXT NOT NULL DEFAULT '',
    -- Neutron's binding:host_id ('' when unbound).
    host_id               TEXT NOT NULL DEFAULT '',
    -- Made by the compute service for a server's NIC (deleted with the server), rather than
    -- by the user (kept, unbound): Nova's preserve_on_delete, inverted.
    compute_owned         BOOLEAN NOT NULL DEFAULT FALSE,
    tags                  TEXT NOT NULL DEFAULT '[]',
    revision_number       BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (network_id, mac_address)
);
CREATE INDEX ports_device_idx ON ports (device_id);
CREATE INDEX ports_network_idx ON ports (network_id);

CREATE TABLE ip_allocations (
    subnet_id  TEXT NOT NULL REFERENCES subnets (id),
    ip_address TEXT NOT NULL,
    port_id    TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    -- The address's place in its port's fixed_ips (the order they were asked for).
    position   BIGINT NOT NULL,
    PRIMARY KEY (subnet_id, ip_address)
);
CREATE INDEX ip_allocations_port_idx ON ip_allocations (port_id);
