-- Keystone's policy API (deprecated there, kept for its clients): blobs of a type that an
-- admin stores and reads back. Nothing here enforces them, as Keystone enforces none of them
-- either (its own policy is its configuration's).
CREATE TABLE policies (
    id    TEXT PRIMARY KEY,
    type  TEXT NOT NULL,
    blob  TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}'
);
