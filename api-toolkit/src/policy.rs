//! Role checks: the default policies the OpenStack services ship, as far as these APIs go —
//! admin-only APIs, member (or admin) writes, reader (or member, or admin) reads. A refusal
//! names the service's rule, in the service's words ([`FaultFormat::policy_denied`]).

use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult, FaultFormat};

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

    /// `admin_api`: the admin role.
    pub fn require_admin(self, ctx: &RequestContext, rule: &str) -> ApiResult<()> {
        if ctx.is_admin() {
            Ok(())
        } else {
            Err(self.denied(rule))
        }
    }
}
