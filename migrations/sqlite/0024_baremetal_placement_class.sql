-- The node's resource class in placement's form (`CUSTOM_` and the class upper-cased, each run
-- of other characters one `_`), as a flavor asks for it (`resources:CUSTOM_<CLASS>=1`): the scheduler picks
-- a free machine of that class in one indexed query instead of reading every machine.
-- Written with `resource_class` by the API; rows from before are filled in at start
-- (nova_db::baremetal::backfill_placement_classes), as the normalisation is the service's.
ALTER TABLE baremetal_nodes ADD COLUMN placement_class TEXT;
CREATE INDEX baremetal_nodes_free_idx ON baremetal_nodes (placement_class, provision_state);
-- A machine's compute node is found by its name (the node's uuid).
CREATE INDEX compute_nodes_name_idx ON compute_nodes (name);
