-- Keystone's endpoint filter (OS-EP-FILTER): endpoint groups (a filter on interface, service
-- and region) and the endpoints and groups associated with a project. A token scoped to a
-- project with associations lists only those endpoints in its catalog; a project with none
-- lists every endpoint (Keystone's `return_all_endpoints_if_no_filter`).
CREATE TABLE endpoint_groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    filters     TEXT NOT NULL
);
CREATE TABLE project_endpoint_groups (
    endpoint_group_id TEXT NOT NULL REFERENCES endpoint_groups(id) ON DELETE CASCADE,
    project_id        TEXT NOT NULL,
    PRIMARY KEY (endpoint_group_id, project_id)
);
CREATE TABLE project_endpoints (
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, project_id)
);
