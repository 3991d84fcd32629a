-- Keystone's lockout (`[security_compliance] lockout_failure_attempts`, `lockout_duration`):
-- failed password checks in a row, and when the last one was. A success resets the count.
ALTER TABLE users ADD COLUMN failed_auth_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN failed_auth_at BIGINT;
