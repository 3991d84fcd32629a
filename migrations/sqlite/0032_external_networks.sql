-- Neutron's external-net extension: an external network (`router:external`), which every
-- project sees (routers and floating IPs, which would use it, are not served).
ALTER TABLE networks ADD COLUMN router_external BOOLEAN NOT NULL DEFAULT FALSE;
