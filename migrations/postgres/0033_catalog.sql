-- (PostgreSQL; migrations/sqlite/0033_catalog.sql holds the same schema for SQLite.)
-- Keystone's catalog: regions, services and their endpoints, which the tokens' catalog lists
-- (the enabled ones). The first start writes the deployment's own services (see
-- keystone-auth's bootstrap); an admin adds, changes and removes entries through
-- /v3/regions, /v3/services and /v3/endpoints. Keystone keeps a service's `name` and
-- `description` (and any other attribute a client gives) in `extra`, as here.
CREATE TABLE regions (
    id               TEXT PRIMARY KEY,
    description      TEXT NOT NULL DEFAULT '',
    parent_region_id TEXT REFERENCES regions(id),
    extra            TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE catalog_services (
    id      TEXT PRIMARY KEY,
    type    TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    extra   TEXT NOT NULL DEFAULT '{}'
);
-- An endpoint's URL may hold Keystone's substitutions (`$(public_url)s` for the address the
-- client reached, `$(project_id)s`), filled in the token's catalog.
CREATE TABLE endpoints (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES catalog_services(id) ON DELETE CASCADE,
    interface  TEXT NOT NULL,
    region_id  TEXT REFERENCES regions(id),
    url        TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    extra      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX endpoints_service_idx ON endpoints (service_id);
