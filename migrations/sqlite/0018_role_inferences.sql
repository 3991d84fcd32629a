-- Keystone's implied roles: a token scoped where a user holds `prior_role_id` carries
-- `implied_role_id` too (transitively). The bootstrap records admin ⇒ manager ⇒ member ⇒ reader
-- when there are none.
CREATE TABLE implied_roles (
    prior_role_id   TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    implied_role_id TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (prior_role_id, implied_role_id)
);

ALTER TABLE roles ADD COLUMN description TEXT;
