-- What each server holds of its flavor, as columns, so that quota usage is a SUM in the
-- database instead of reading every server's flavor snapshot (the same copy for SQLite uses
-- its JSON functions for the backfill).
ALTER TABLE instances ADD COLUMN vcpus BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN memory_mb BIGINT NOT NULL DEFAULT 0;
UPDATE instances SET vcpus = (flavor::json->>'vcpus')::bigint,
    memory_mb = (flavor::json->>'memory_mb')::bigint;
