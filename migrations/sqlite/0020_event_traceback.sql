-- What an event's failure was in full (a driver's or an engine's own words): Nova's traceback,
-- shown to admins only. `details` keeps what a project may read.
ALTER TABLE instance_action_events ADD COLUMN traceback TEXT;
