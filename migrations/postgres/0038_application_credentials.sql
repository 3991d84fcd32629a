-- Keystone's application credentials: a user's secret (kept as an argon2 hash) that logs in to
-- one project with some of the user's roles there, until it expires or is deleted. `roles` is a
-- JSON list of {id, name}; `unrestricted` lets its tokens make further application credentials.
CREATE TABLE application_credentials (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id    TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    description   TEXT,
    expires_at_us BIGINT,
    unrestricted  BOOLEAN NOT NULL DEFAULT FALSE,
    roles         TEXT NOT NULL,
    UNIQUE (user_id, name)
);
