//! Role checks: the default policies the OpenStack services ship, as far as these APIs go —
//! admin-only APIs, member (or admin) writes, reader (or member, or admin) reads. A refusal
//! names the service's rule, in the service's words ([`FaultFormat::policy_denied`]).

use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult, FaultFormat};
use actix_web::dev::ServiceRequest;

/// One service's role checks.
#[derive(Clone, Copy, Debug)]
pub struct Policy(pub FaultFormat);

pub const NOVA: Policy = Policy(FaultFormat::Nova);
pub const GLANCE: Policy = Policy(FaultFormat::Glance);
pub const NEUTRON: Policy = Policy(FaultFormat::Neutron);
pub const KEYSTONE: Policy = Policy(FaultFormat::Keystone);
pub const IRONIC: Policy = Policy(FaultFormat::Ironic);

impl Policy {
    /// The refusal of `rule`.
    pub fn denied(self, rule: &str) -> ApiError {
        self.0.policy_denied(rule)
    }

    /// `project_member` (writes): members and admins; a reader only reads.
    pub fn require_write(self, ctx: &RequestContext, rule: &str) -> ApiResult<()> {
        if ctx.can_write() {
            Ok(())
        } else {
            Err(self.denied(rule))
        }
    }

    /// `PROJECT_READER_OR_ADMIN` for a read (GET or HEAD) under one of `prefixes`: the reader
    /// role, or one that Keystone's bootstrap makes imply it (member, manager, admin; a token of
    /// another Keystone may carry them without it). A caller with only a custom role is refused
    /// `rule`. Called by a service's middleware before routing; `None` lets the request on (a
    /// missing or bad token is refused by the handler's own extraction).
    pub async fn reader_check(
        self,
        req: &mut ServiceRequest,
        prefixes: &[&str],
        rule: &str,
    ) -> Option<ApiError> {
        let read = matches!(req.method().as_str(), "GET" | "HEAD");
        // Decoded, as the router matches it: `/v2.1/%73ervers` is `/v2.1/servers`.
        let decoded = percent_encoding::percent_decode_str(req.path()).decode_utf8_lossy();
        let path = decoded.as_ref();
        let under = prefixes.iter().any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if !read || !under {
            return None;
        }
        let ctx = req.extract::<RequestContext>().await.ok()?;
        let reads = ["reader", "member", "manager", "admin"];
        if reads.iter().any(|r| ctx.has_role(r)) {
            None
        } else {
            Some(self.denied(rule))
        }
    }

    /// `admin_api`: the admin role.
    pub fn require_admin(self, ctx: &RequestContext, rule: &str) -> ApiResult<()> {
        if ctx.is_admin() {
            Ok(())
        } else {
            Err(self.denied(rule))
        }
    }
}
