-- Image members (Glance v2): the projects a `shared` image is offered to, and whether each
-- accepted it. The same schema for both backends; keep the two copies in step.
CREATE TABLE image_members (
    image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    member_id  TEXT NOT NULL,           -- project id
    status     TEXT NOT NULL,           -- pending | accepted | rejected
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (image_id, member_id)
);
CREATE INDEX image_members_member_idx ON image_members (member_id);
