-- The scheduler hints a create gave that placement honours (same_host, different_host), as
-- JSON; '{}' for servers created without (and before them).
ALTER TABLE instances ADD COLUMN scheduler_hints TEXT NOT NULL DEFAULT '{}';
