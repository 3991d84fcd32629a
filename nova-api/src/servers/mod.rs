//! `/servers` and what hangs off a server: [`create`], [`list`], [`show`], [`update`],
//! [`actions`] (stop, start, reboot, delete, lock, console output), [`addresses`],
//! [`metadata`], [`tags`] and [`volumes`] (none attached: there is no block storage). Each write is one transaction that also records the task; the
//! task is published after the commit, and a lost publish is re-driven by the conductor's
//! reconciler, so a 202 always means the request will be carried out.

mod actions;
mod addresses;
mod admin_actions;
mod admin_password;
mod create;
mod diagnostics;
mod host_call;
pub mod idempotency;
mod interfaces;
mod list;
mod metadata;
mod params;
mod password;
mod rebuild;
mod rescue;
mod resize;
mod security_groups;
mod shelve;
mod show;
mod snapshot;
pub mod tags;
mod update;
mod volumes;

use crate::versions::ApiVersion;
use crate::{views, AppState};
use actix_web::web;
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::rpc::{Envelope, TaskSubmitted};
use nova_db::instances;
use std::collections::HashMap;

/// How long a request waits for the broker to take its task. The task row is committed
/// already: if the broker is down, the conductor's reconciler re-drives the task later, so the
/// client need not wait for the broker to come back.
pub(super) const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) async fn publish_task(
    state: &AppState,
    task_id: TaskId,
    instance: InstanceUuid,
    request_id: &str,
) {
    let env = Envelope::new(
        Some(request_id.to_owned()),
        TaskSubmitted { task_id, instance },
    );
    publish(
        state,
        &state.queues.conductor_tasks(),
        env.encode(),
        instance,
    )
    .await;
}

/// Sends a begun action on: its command to the server's host (the task written dispatched;
/// as Nova's API casts a power or pause action to nova-compute), or its task to the conductor.
pub(super) async fn submit(
    state: &AppState,
    begun: instances::Begun,
    instance: InstanceUuid,
    request_id: &str,
) {
    match begun.to_host {
        Some((host, command)) => {
            let env = Envelope::new(Some(request_id.to_owned()), command);
            publish(state, &state.queues.compute(&host), env.encode(), instance).await;
        }
        None => publish_task(state, begun.task, instance, request_id).await,
    }
}

/// Publishes a committed task's message, waiting [`PUBLISH_WAIT`] at most: a message that is
/// not sent is the reconciler's to send again.
async fn publish(state: &AppState, queue: &str, payload: Vec<u8>, instance: InstanceUuid) {
    let publish = state.bus.publish(queue, payload);
    match tokio::time::timeout(PUBLISH_WAIT, publish).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, %instance, "task not published; the reconciler will re-drive it")
        }
        Err(_) => {
            tracing::warn!(%instance, "broker slow or down; the reconciler will re-drive the task")
        }
    }
}

/// `{"server": …}`.
#[derive(serde::Serialize)]
pub(super) struct OneServer<'a> {
    server: views::ServerDetail<'a>,
}

/// Nova's `host_status` of every compute host, when the view shows it (2.16, admins): UP,
/// DOWN from the heartbeats, MAINTENANCE when the service is disabled.
pub(super) async fn host_status(
    state: &AppState,
    ctx: &RequestContext,
    version: ApiVersion,
) -> ApiResult<HashMap<String, &'static str>> {
    if !(ctx.is_admin() && version.at_least(16)) {
        return Ok(HashMap::new());
    }
    let now = nova_core::time::now_ms();
    Ok(nova_db::nodes::services(&state.db)
        .await?
        .into_iter()
        .filter(|s| s.binary == nova_core::model::COMPUTE_BINARY)
        .map(|s| {
            let status = if s.disabled {
                "MAINTENANCE"
            } else if s.is_up(now, state.service_down_ms) {
                "UP"
            } else {
                "DOWN"
            };
            (s.host, status)
        })
        .collect())
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Instance {id} could not be found."))
}

/// The instance with this id if the caller may see it: another project's server is a 404, as
/// in Nova, so that ids do not leak.
pub(crate) async fn visible(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<nova_core::model::Instance> {
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let instance = instances::get(&state.db, uuid)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !ctx.is_admin() && instance.project_id != ctx.project_id {
        return Err(not_found(id));
    }
    Ok(instance)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/servers")
            .route(web::post().to(create::create))
            .route(web::get().to(list::list)),
    )
    .service(web::resource("/servers/detail").route(web::get().to(list::detail)))
    .service(
        web::resource("/servers/{id}")
            .route(web::get().to(show::show))
            .route(web::put().to(update::update))
            .route(web::delete().to(actions::delete)),
    )
    .service(web::resource("/servers/{id}/ips").route(web::get().to(addresses::ips)))
    .service(web::resource("/servers/{id}/diagnostics").route(web::get().to(diagnostics::show)))
    .service(
        web::resource("/servers/{id}/ips/{network}")
            .route(web::get().to(addresses::ips_of_network)),
    )
    .service(web::resource("/servers/{id}/action").route(web::post().to(actions::action)))
    .service(
        web::resource("/servers/{id}/os-interface")
            .route(web::get().to(interfaces::list))
            .route(web::post().to(interfaces::attach)),
    )
    .service(
        web::resource("/servers/{id}/os-interface/{port_id}")
            .route(web::get().to(interfaces::show))
            .route(web::delete().to(interfaces::detach)),
    )
    .service(
        web::resource("/servers/{id}/os-security-groups")
            .route(web::get().to(security_groups::list)),
    )
    .service(
        web::resource("/servers/{id}/os-volume_attachments").route(web::get().to(volumes::list)),
    )
    .service(
        web::resource("/servers/{id}/os-volume_attachments/{volume}")
            .route(web::get().to(volumes::show)),
    )
    .service(
        web::resource("/servers/{id}/os-server-password")
            .route(web::get().to(password::show))
            .route(web::delete().to(password::clear)),
    )
    .configure(metadata::configure)
    .configure(tags::configure);
}

/// The server groups `instance` is in, shown from 2.71 (none read before).
pub(super) async fn server_groups_of(
    state: &AppState,
    version: crate::versions::ApiVersion,
    instance: &nova_core::model::Instance,
) -> ApiResult<Vec<String>> {
    if !version.at_least(71) {
        return Ok(Vec::new());
    }
    Ok(
        nova_db::server_groups::of_instance(&state.db, instance.uuid.0)
            .await?
            .iter()
            .map(|g| g.hyphenated().to_string())
            .collect(),
    )
}
