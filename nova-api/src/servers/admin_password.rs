//! The `changePassword` action (Nova's os-admin-password). Nova sets the password through the
//! hypervisor's guest agent (libvirt's QEMU guest agent, for images with
//! `hw_qemu_guest_agent`); no guest here has one, so this answers as Nova does without it,
//! after the same checks: a VM's 409 "QEMU guest agent is not enabled" (libvirt's
//! InstanceAgentNotEnabled), and for containers and bare metal, whose drivers have no way to
//! set it, the 501 of a driver's NotImplementedError. Nothing changes.

use super::actions::refused_state;
use super::visible;
use crate::AppState;
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_core::model::{NodeType, VmState};
use nova_db::instances::TransitionError;
use serde_json::Value;

pub(super) async fn change_password(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<()> {
    // Nova's schema: an object with an `adminPass` string, nothing else.
    let obj = arg.as_object().ok_or_else(|| {
        invalid(
            "changePassword",
            arg,
            &format!("{arg} is not of type 'object'"),
        )
    })?;
    body::only(obj, &["adminPass"])?;
    match obj.get("adminPass") {
        Some(Value::String(_)) => {}
        Some(v) => {
            return Err(invalid(
                "adminPass",
                v,
                &format!("{v} is not of type 'string'"),
            ))
        }
        None => {
            return Err(invalid(
                "changePassword",
                arg,
                "'adminPass' is a required property",
            ))
        }
    }
    NOVA.require_write(ctx, "os_compute_api:os-admin-password")?;
    let instance = visible(state, ctx, id).await?;
    // Nova's set_admin_password: not locked (but by an admin), ACTIVE, no task running.
    let from = &[VmState::Active];
    if instance.locked_by.is_some() && !ctx.is_admin() {
        return Err(refused_state(
            TransitionError::Locked,
            id,
            "changePassword",
            from,
        ));
    }
    if instance.vm_state != VmState::Active || instance.task_state.is_some() {
        let e = TransitionError::Conflict {
            vm_state: instance.vm_state,
            task_state: instance.task_state,
        };
        return Err(refused_state(e, id, "changePassword", from));
    }
    Err(match instance.node_type {
        NodeType::Vm => ApiError::Conflict("QEMU guest agent is not enabled".into()),
        NodeType::Container | NodeType::Baremetal => {
            ApiError::NotImplemented("Unable to set password on instance".into())
        }
    })
}
