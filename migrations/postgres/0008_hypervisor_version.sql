-- The hypervisor's version as its driver reports it, in Nova's integer encoding
-- (major * 1,000,000 + minor * 1,000 + patch); 0 until the agent reports one.
ALTER TABLE compute_nodes ADD COLUMN hypervisor_version BIGINT NOT NULL DEFAULT 0;
