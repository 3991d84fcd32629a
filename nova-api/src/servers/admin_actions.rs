//! The server actions beyond the life cycle's tasks: an admin's `os-resetState` and
//! `injectNetworkInfo`, the deferred-delete pair `forceDelete` and `restore`, and the
//! migrations `migrate` and `os-migrateLive`.
//!
//! Moving a server between hosts is not built yet (it waits for the multi-host work), so the
//! migrations are switched off the way a Nova operator switches them off: by policy. The
//! server is looked up first, as Nova does (404), and then no one is allowed (403).
//!
//! `restore` powers a SOFT_DELETED server on again (deletes are deferred when
//! `api.reclaim_instance_interval_s` is set); `forceDelete` deletes at once, whatever the
//! interval.

use super::actions::{begin, hard_delete, no_argument};
use super::{not_found, visible};
use crate::AppState;
use actix_web::HttpResponse;
use api_toolkit::body::invalid;
use api_toolkit::policy::NOVA;
use api_toolkit::{ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_core::model::{TaskState, VmState};
use nova_core::rpc::TaskKind;
use nova_db::instances;
use nova_db::instances::TransitionRule;
use serde_json::Value;

/// Handles `name` if it is one of these actions; `None` otherwise.
pub(super) async fn handle(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    name: &str,
    arg: &Value,
) -> ApiResult<Option<HttpResponse>> {
    match name {
        "os-resetState" => reset_state(ctx, state, id, arg).await?,
        "injectNetworkInfo" => inject_network_info(ctx, state, id, arg).await?,
        "forceDelete" => {
            // (Nova's schema takes any value.)
            NOVA.require_write(ctx, "os_compute_api:os-deferred-delete:force")?;
            // Never deferred: a SOFT_DELETED server (or any other) goes now.
            hard_delete(ctx, state, id).await?;
        }
        "restore" => {
            NOVA.require_write(ctx, "os_compute_api:os-deferred-delete:restore")?;
            let instance = visible(state, ctx, id).await?;
            // As Nova's restore: the server counts against the quota again (a SOFT_DELETED
            // one does not).
            if instance.vm_state == VmState::SoftDeleted {
                let quota =
                    crate::quotas::ProjectQuota::of(&state.db, &instance.project_id).await?;
                quota.check_server_create(1, instance.flavor.vcpus, instance.flavor.memory_mb)?;
            }
            let rule = TransitionRule {
                from_vm_states: &[VmState::SoftDeleted],
                task_state: TaskState::Restoring,
            };
            begin(state, ctx, id, "restore", rule, TaskKind::Restore).await?;
        }
        "migrate" | "os-migrateLive" => {
            visible(state, ctx, id).await?;
            let rule = if name == "migrate" {
                "os_compute_api:os-migrate-server:migrate"
            } else {
                "os_compute_api:os-migrate-server:migrate_live"
            };
            return Err(NOVA.denied(rule));
        }
        _ => return Ok(None),
    }
    Ok(Some(HttpResponse::Accepted().finish()))
}

/// `os-resetState` (admin): `active` or `error`, the task state cleared.
async fn reset_state(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<()> {
    NOVA.require_admin(ctx, "os_compute_api:os-admin-actions:reset_state")?;
    let wanted = arg.get("state").unwrap_or(&Value::Null);
    let vm_state = match (arg.as_object().map(|o| o.len()), wanted.as_str()) {
        (Some(1), Some("active")) => VmState::Active,
        (Some(1), Some("error")) => VmState::Error,
        _ => {
            return Err(invalid(
                "state",
                wanted,
                "is not one of ['active', 'error']",
            ))
        }
    };
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    if !instances::reset_state(&state.db, uuid, vm_state).await? {
        return Err(not_found(id));
    }
    Ok(())
}

/// `injectNetworkInfo` (admin): no driver here keeps network configuration inside the guest
/// to inject into (as most of Nova's drivers, for which it is a no-op), so it is accepted for
/// a server that exists and changes nothing.
async fn inject_network_info(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<()> {
    NOVA.require_admin(ctx, "os_compute_api:os-admin-actions:inject_network_info")?;
    if !no_argument(arg) {
        return Err(invalid(
            "injectNetworkInfo",
            arg,
            "None is the only accepted value",
        ));
    }
    visible(state, ctx, id).await?;
    Ok(())
}
