-- Security groups on ports (Neutron's port security and securitygroupportbindings), and the
-- generation the conductor watches to push hosts their packet filters again.
ALTER TABLE networks ADD COLUMN port_security_enabled BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE ports ADD COLUMN port_security_enabled BOOLEAN NOT NULL DEFAULT TRUE;
-- Networks and ports made before groups were enforced keep their traffic: filtering them
-- now would cut running servers off (their groups were never chosen with filtering in mind),
-- and new servers on those networks would be cut off from the old ones. An admin turns port
-- security on for such a network (`openstack network set --enable-port-security`); networks
-- made from now on have it, as Neutron's.
UPDATE networks SET port_security_enabled = FALSE;
UPDATE ports SET port_security_enabled = FALSE;

CREATE TABLE port_security_groups (
    port_id           TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    security_group_id TEXT NOT NULL REFERENCES security_groups (id),
    PRIMARY KEY (port_id, security_group_id)
);
CREATE INDEX port_security_groups_group_idx ON port_security_groups (security_group_id);

-- One row: bumped by every change that alters some host's packet filter (groups, rules, a
-- port's groups or addresses, a server built or deleted). The conductor pushes the hosts
-- their whole filter again when it moves.
CREATE TABLE firewall_generation (
    id         BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO firewall_generation (id, generation) VALUES (1, 0);
