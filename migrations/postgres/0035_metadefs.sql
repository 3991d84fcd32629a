-- Glance's metadata definitions (`/v2/metadefs`): namespaces of property, object and tag
-- definitions that clients (Horizon's "Update Metadata") offer for images, flavors, servers
-- and aggregates, each namespace associated with the resource types it applies to. A
-- property's and an object's definition is a JSON schema fragment, kept as given.
CREATE TABLE metadef_namespaces (
    id           TEXT PRIMARY KEY,
    namespace    TEXT NOT NULL UNIQUE,
    display_name TEXT,
    description  TEXT,
    visibility   TEXT NOT NULL,
    protected    BOOLEAN NOT NULL DEFAULT FALSE,
    owner        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE TABLE metadef_resource_types (
    name       TEXT PRIMARY KEY,
    protected  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE metadef_associations (
    namespace_id      TEXT NOT NULL REFERENCES metadef_namespaces(id) ON DELETE CASCADE,
    resource_type     TEXT NOT NULL REFERENCES metadef_resource_types(name),
    prefix            TEXT,
    properties_target TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, resource_type)
);
-- Objects and properties: `doc` is the definition without its name (a JSON object).
CREATE TABLE metadef_objects (
    namespace_id TEXT NOT NULL REFERENCES metadef_namespaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    doc          TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, name)
);
CREATE TABLE metadef_properties (
    namespace_id TEXT NOT NULL REFERENCES metadef_namespaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    doc          TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, name)
);
CREATE TABLE metadef_tags (
    namespace_id TEXT NOT NULL REFERENCES metadef_namespaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, name)
);
-- The resource types this deployment serves (Glance's load them with its definitions): the
-- ones Horizon asks namespaces for.
INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) VALUES
    ('OS::Glance::Image', TRUE, 0, 0),
    ('OS::Nova::Flavor', TRUE, 0, 0),
    ('OS::Nova::Server', TRUE, 0, 0),
    ('OS::Nova::Aggregate', TRUE, 0, 0);
