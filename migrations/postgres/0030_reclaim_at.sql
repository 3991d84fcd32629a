-- Deferred delete (Nova's soft delete with `reclaim_instance_interval`): when a SOFT_DELETED
-- server is to be deleted for good, unless it is restored first. NULL for every other server.
ALTER TABLE instances ADD COLUMN reclaim_at BIGINT;
CREATE INDEX instances_reclaim ON instances (reclaim_at) WHERE reclaim_at IS NOT NULL;
