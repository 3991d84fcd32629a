-- Servers are listed by flavor in SQL (`GET /servers?flavor=`): the flavor's id, copied out of
-- the flavor snapshot, as a column of its own.
ALTER TABLE instances ADD COLUMN flavor_id TEXT;
UPDATE instances SET flavor_id = flavor::json->>'flavorid';
