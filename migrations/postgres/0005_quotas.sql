-- Quota limits set per project (os-quota-sets); a resource without a row has the default.
-- The same schema for both backends (this is the postgres copy).
CREATE TABLE quotas (
    project_id  TEXT NOT NULL,
    resource    TEXT NOT NULL,
    hard_limit  BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);
