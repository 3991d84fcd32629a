-- What a create (or an update) may set that Nova keeps with the server: its access addresses
-- (accessIPv4/accessIPv6, shown as given) and whether it asked for a config drive.
ALTER TABLE instances ADD COLUMN access_ip_v4 TEXT;
ALTER TABLE instances ADD COLUMN access_ip_v6 TEXT;
ALTER TABLE instances ADD COLUMN config_drive BOOLEAN NOT NULL DEFAULT FALSE;
-- The trusted image certificate ids a create gave (2.63), a JSON list; NULL when none.
ALTER TABLE instances ADD COLUMN trusted_image_certificates TEXT;
-- The disk configuration the create (or an update) chose: AUTO when true, MANUAL when false.
ALTER TABLE instances ADD COLUMN auto_disk_config BOOLEAN NOT NULL DEFAULT FALSE;
