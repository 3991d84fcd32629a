//! Nova's default policies, as far as this API goes: admin-only APIs, member writes, reader
//! reads. Every check names Nova's rule in its message.

use crate::error::{ApiError, ApiResult};
use keystone_auth::RequestContext;

fn denied(rule: &str) -> ApiError {
    ApiError::Forbidden(format!("Policy doesn't allow {rule} to be performed."))
}

/// `project_member` (writes): members and admins; a reader only reads.
pub fn require_write(ctx: &RequestContext, rule: &str) -> ApiResult<()> {
    if ctx.can_write() {
        Ok(())
    } else {
        Err(denied(rule))
    }
}

/// `admin_api`: the admin role.
pub fn require_admin(ctx: &RequestContext, rule: &str) -> ApiResult<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(denied(rule))
    }
}
