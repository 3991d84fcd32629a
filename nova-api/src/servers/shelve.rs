//! The `shelve`, `shelveOffload` and `unshelve` actions (Nova's os-shelve), with Nova's default
//! `shelved_offload_time` of 0: a shelve snapshots the server into an image
//! (`<name>-shelved`) and offloads it at once (SHELVED_OFFLOADED: no host, no claim, its ports
//! kept); an unshelve places it again and spawns it from that image. A server is never left
//! SHELVED, so `shelveOffload` (a manager's or an admin's, as Nova's policy) finds none to
//! offload: Nova's 409 for the state.

use super::actions::{begin_task, could_begin, no_argument, refuse_unsupported, refused_state};
use super::{submit, visible};
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::model::{TaskState, VmState};
use nova_core::rpc::TaskKind;
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
    let probe = TaskKind::Shelve {
        image: uuid::Uuid::nil(),
    };
    refuse_unsupported(&probe, &instance, could_begin(SHELVE, &instance, ctx, true))?;
    // As Nova's: the snapshot is named after the server.
    let name = format!("{}-shelved", instance.name);
    let image = super::snapshot::record(state, ctx, &instance, name, BTreeMap::new()).await?;
    nova_db::images::create(&state.db, &image).await?;
    let image_id: uuid::Uuid = image
        .id
        .parse()
        .map_err(|_| ApiError::Internal("image id".into()))?;
    let kind = TaskKind::Shelve { image: image_id };
    match begin_task(state, ctx, instance.uuid, SHELVE, kind).await {
        Ok(task) => {
            submit(state, task, instance.uuid, &ctx.request_id).await;
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

/// An unshelve's choice of where (2.77's `availability_zone`, 2.91's `host` and null zone).
#[derive(Default)]
struct Destination {
    /// `Some(None)`: unpinned from its zone (2.91's null).
    zone: Option<Option<String>>,
    host: Option<String>,
}

/// Nova's schemas: before 2.77 anything (`null` is all clients send); at 2.77 `null` or an
/// object with a zone name and nothing else; from 2.91 `null` or an object with a zone name or
/// null and a host.
fn destination(req: &HttpRequest, arg: &Value) -> ApiResult<Destination> {
    let version = ApiVersion::of(req);
    if !version.at_least(77) || arg.is_null() {
        return Ok(Destination::default());
    }
    let obj = arg.as_object().ok_or_else(|| {
        invalid(
            "unshelve",
            arg,
            &format!("{arg} is not of type 'object', 'null'"),
        )
    })?;
    let mut d = Destination::default();
    if version.at_least(91) {
        body::only(obj, &["availability_zone", "host"])?;
        match obj.get("availability_zone") {
            None => {}
            Some(Value::Null) => d.zone = Some(None),
            Some(Value::String(z)) => d.zone = Some(Some(z.clone())),
            Some(v) => {
                return Err(invalid(
                    "availability_zone",
                    v,
                    &format!("{v} is not of type 'string', 'null'"),
                ))
            }
        }
        match obj.get("host") {
            None => {}
            Some(Value::String(h)) => d.host = Some(h.clone()),
            Some(v) => return Err(invalid("host", v, &format!("{v} is not of type 'string'"))),
        }
    } else {
        body::only(obj, &["availability_zone"])?;
        match obj.get("availability_zone") {
            Some(v) => d.zone = Some(Some(body::nova_name("availability_zone", v)?)),
            None => {
                return Err(invalid(
                    "unshelve",
                    arg,
                    "'availability_zone' is a required property",
                ))
            }
        }
    }
    Ok(d)
}

/// `unshelve`: a SHELVED_OFFLOADED server placed again, in the zone asked for (2.77; from
/// 2.91 a null zone unpins it) and on the host asked for (2.91, an admin's), as Nova's
/// `unshelve` checks them: only of a SHELVED_OFFLOADED server (409), a zone that is available
/// and a host that exists (400), in the zone the server will have (409).
pub(super) async fn unshelve(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    let wanted = destination(req, arg)?;
    NOVA.require_write(ctx, "os_compute_api:os-shelve:unshelve")?;
    let rule = TransitionRule {
        from_vm_states: &[VmState::Shelved, VmState::ShelvedOffloaded],
        task_state: TaskState::Unshelving,
    };
    let instance = visible(state, ctx, id).await?;
    if (wanted.zone.is_some() || wanted.host.is_some())
        && instance.vm_state != VmState::ShelvedOffloaded
    {
        return Err(ApiError::Conflict(format!(
            "Specifying an availability zone or a host when unshelving server \"{}\" with \
             status \"{}\" is not supported. The server status must be SHELVED_OFFLOADED.",
            instance.uuid, instance.vm_state
        )));
    }
    if let Some(Some(zone)) = &wanted.zone {
        let zones = crate::os_availability_zone::compute_zones(state).await?;
        if zones.get(zone) != Some(&true) {
            return Err(bad("The requested availability zone is not available"));
        }
    }
    let zone = match &wanted.zone {
        Some(z) => z.clone(),
        None => instance.availability_zone.clone(),
    };
    if let Some(host) = &wanted.host {
        if !ctx.is_admin() {
            return Err(NOVA.denied("os_compute_api:os-shelve:unshelve_to_host"));
        }
        // Nova's `get_first_node_by_host_for_old_compat`: a host with a compute node.
        let nodes = nova_db::nodes::nodes(&state.db).await?;
        if !nodes.iter().any(|n| &n.host == host) {
            return Err(bad(format!("Compute host {host} could not be found.")));
        }
        if let Some(zone) = &zone {
            let zones = crate::os_availability_zone::host_zones(&state.db).await?;
            if crate::os_availability_zone::zone_of(&zones, host) != zone {
                return Err(ApiError::Conflict(format!(
                    "Host \"{host}\" is not in the availability zone \"{zone}\"."
                )));
            }
        }
    }
    // Nova's requested destination is this placement's alone (its request spec never keeps
    // one): the host asked for now, or none — not one a create (2.74) or an earlier unshelve
    // asked for.
    let mut hints = instance.scheduler_hints.clone();
    hints.host = wanted.host.clone();
    hints.node = None;
    let task = begin_task(state, ctx, instance.uuid, rule, TaskKind::Unshelve)
        .await
        .map_err(|e| refused_state(e, id, "unshelve", rule.from_vm_states))?;
    // Written once the unshelve is the server's (its state and lock checked under its row),
    // before the conductor hears of it. As Nova's request spec, the zone stays the server's
    // even if the unshelve cannot place it.
    instances::set_placement(&state.db, instance.uuid, zone.as_deref(), &hints).await?;
    submit(state, task, instance.uuid, &ctx.request_id).await;
    Ok(HttpResponse::Accepted().finish())
}
