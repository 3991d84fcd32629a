-- Keystone's credentials: a user's blobs of a type (EC2 access keys, TOTP secrets, …), kept
-- sealed (AES-256-GCM under the key repository's `credential.key`, as Keystone keeps them
-- encrypted under its credential keys) and shown opened to their owner and admins. They go
-- with their user, and with their project.
CREATE TABLE credentials (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id     TEXT,
    type           TEXT NOT NULL,
    encrypted_blob TEXT NOT NULL,
    extra          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX credentials_user_idx ON credentials (user_id);
