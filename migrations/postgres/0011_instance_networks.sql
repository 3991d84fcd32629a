-- What the create asked of networks ('none' or 'auto'; NULL: rows from before, which were
-- booted on whatever the host gave, as 'auto') and the addresses the driver reported when the
-- server became ACTIVE (a JSON list).
ALTER TABLE instances ADD COLUMN networks TEXT;
ALTER TABLE instances ADD COLUMN addresses TEXT NOT NULL DEFAULT '[]';
