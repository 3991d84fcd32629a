-- Work that one process of many must do at a time (the conductor's reconciler): a named lease
-- that its holder renews and that another may take once it has expired.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
