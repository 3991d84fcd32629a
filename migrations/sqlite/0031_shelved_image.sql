-- Shelve (Nova's shelved_image_id in system metadata): the snapshot a SHELVED_OFFLOADED server
-- is unshelved from, deleted once it is unshelved or deleted.
ALTER TABLE instances ADD COLUMN shelved_image_id TEXT;
