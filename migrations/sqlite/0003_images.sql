-- Images (a Glance v2 subset), SQLite. migrations/postgres/0003_images.sql holds the same schema
-- for PostgreSQL; keep the two in step.

CREATE TABLE images (
    id               TEXT PRIMARY KEY,   -- uuid, as Glance shows it
    name             TEXT,
    owner            TEXT NOT NULL,      -- project id
    status           TEXT NOT NULL,      -- queued | saving | active | killed | deleted
    visibility       TEXT NOT NULL,      -- public | private | community | shared
    protected        INTEGER NOT NULL DEFAULT 0,
    os_hidden        INTEGER NOT NULL DEFAULT 0,
    container_format TEXT,
    disk_format      TEXT,
    size             BIGINT,
    checksum         TEXT,               -- md5 of the data
    os_hash_algo     TEXT,
    os_hash_value    TEXT,
    min_disk         BIGINT NOT NULL DEFAULT 0,
    min_ram          BIGINT NOT NULL DEFAULT 0,
    properties       TEXT NOT NULL DEFAULT '{}',  -- JSON object of extra properties
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX images_owner_idx ON images (owner);

CREATE TABLE image_tags (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (image_id, tag)
);
