-- `Idempotency-Key` on POST /servers: the key a project sent, a digest of the request's body,
-- and the (first) server the request created. Written in the transaction that creates the
-- servers, so that one key makes servers once, however many times it is sent.
CREATE TABLE idempotency_keys (
    project_id     TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    instance_uuid  UUID NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
