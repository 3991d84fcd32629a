//! The `shelve`, `shelveOffload` and `unshelve` actions (Nova's os-shelve), with Nova's default
//! `shelved_offload_time` of 0: a shelve snapshots the server into an image
//! (`<name>-shelved`) and offloads it at once (SHELVED_OFFLOADED: no host, no claim, its ports
//! kept); an unshelve places it again and spawns it from that image. A server is never left
//! SHELVED, so `shelveOffload` (a manager's or an admin's, as Nova's policy) finds none to
//! offload: Nova's 409 for the state.

use super::actions::{begin, no_argument, refused_state};
use super::{publish_task, visible};
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{HttpRequest, HttpResponse};
use api_toolkit::body::invalid;
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::model::{TaskState, VmState};
use nova_core::rpc::TaskKind;
use nova_db::actions::Requester;
use nova_db::instances::{self, TransitionRule};
use serde_json::Value;
use std::collections::BTreeMap;

/// Nova's shelve: from these vm states, not locked, with no task running.
const SHELVE: TransitionRule = TransitionRule {
    from_vm_states: &[
        VmState::Active,
        VmState::Stopped,
        VmState::Paused,
        VmState::Suspended,
    ],
    task_state: TaskState::Shelving,
};

pub(super) async fn shelve(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(ctx, "os_compute_api:os-shelve:shelve")?;
    if !no_argument(arg) {
        return Err(invalid("shelve", arg, "None is the only accepted value"));
    }
    let instance = visible(state, ctx, id).await?;
    let could = SHELVE.from_vm_states.contains(&instance.vm_state)
        && instance.task_state.is_none()
        && (instance.locked_by.is_none() || ctx.is_admin());
    let probe = TaskKind::Shelve {
        image: uuid::Uuid::nil(),
    };
    if let Some(reason) = probe.unsupported_on(instance.node_type).filter(|_| could) {
        return Err(ApiError::NotImplemented(format!(
            "The requested functionality is not supported: {reason}."
        )));
    }
    // As Nova's: the snapshot is named after the server.
    let name = format!("{}-shelved", instance.name);
    let image = super::snapshot::record(state, ctx, &instance, name, BTreeMap::new()).await?;
    nova_db::images::create(&state.db, &image).await?;
    let image_id: uuid::Uuid = image
        .id
        .parse()
        .map_err(|_| ApiError::Internal("image id".into()))?;
    let who = Requester {
        request_id: &ctx.request_id,
        project_id: &ctx.project_id,
        user_id: &ctx.user_id,
    };
    let project = (!ctx.is_admin()).then_some(ctx.project_id.as_str());
    let kind = TaskKind::Shelve { image: image_id };
    let begun = instances::begin_action(
        &state.db,
        instance.uuid,
        project,
        ctx.is_admin(),
        SHELVE,
        kind,
        &who,
    )
    .await;
    match begun {
        Ok(task) => {
            publish_task(state, task, instance.uuid, &ctx.request_id).await;
            Ok(HttpResponse::Accepted().finish())
        }
        Err(e) => {
            nova_db::images::delete(&state.db, &image.id).await?;
            Err(refused_state(e, id, "shelve", SHELVE.from_vm_states))
        }
    }
}

/// `shelveOffload`: a manager's or an admin's (Nova's default policy; 403 otherwise), and only
/// of a SHELVED server, which this deployment never leaves (its shelve offloads at once):
/// Nova's 409 for the state.
pub(super) async fn shelve_offload(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(ctx, "os_compute_api:os-shelve:shelve_offload")?;
    if !no_argument(arg) {
        return Err(invalid(
            "shelveOffload",
            arg,
            "None is the only accepted value",
        ));
    }
    let instance = visible(state, ctx, id).await?;
    // Nova's default policy: a project's manager, or an admin.
    if !(ctx.is_admin() || ctx.has_role("manager")) {
        return Err(NOVA.denied("os_compute_api:os-shelve:shelve_offload"));
    }
    Err(ApiError::Conflict(format!(
        "Cannot 'shelveOffload' instance {id} while it is in vm_state {}",
        instance.vm_state
    )))
}

/// `unshelve`: a SHELVED_OFFLOADED server placed again. Choosing its zone or host (2.77,
/// 2.91) is not supported yet: refused rather than ignored.
pub(super) async fn unshelve(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(ctx, "os_compute_api:os-shelve:unshelve")?;
    if !no_argument(arg) {
        if ApiVersion::of(req).at_least(77) && arg.is_object() {
            return Err(bad(
                "Choosing the availability zone or host of an unshelve is not supported by \
                 this deployment.",
            ));
        }
        return Err(invalid("unshelve", arg, "None is the only accepted value"));
    }
    let rule = TransitionRule {
        from_vm_states: &[VmState::Shelved, VmState::ShelvedOffloaded],
        task_state: TaskState::Unshelving,
    };
    begin(state, ctx, id, "unshelve", rule, TaskKind::Unshelve).await?;
    Ok(HttpResponse::Accepted().finish())
}
