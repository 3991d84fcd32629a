//! `DELETE /servers/{id}` and `POST /servers/{id}/action`: the state-changing actions, each a
//! task (stop, start, reboot, pause, unpause, suspend and resume sent to the server's host
//! itself, delete to the conductor); lock and unlock; and the console output, asked of the
//! server's host.

use super::{not_found, submit, visible};
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_core::model::{LockedBy, TaskState, VmState};
use nova_core::rpc::{CallReply, ComputeCommand, TaskKind};
use nova_db::actions::Requester;
use nova_db::instances::{self, TransitionError, TransitionRule};
use serde_json::{json, Value};

/// Who asks, as the server's instance actions record them.
pub(super) fn requester(ctx: &RequestContext) -> Requester<'_> {
    Requester {
        request_id: &ctx.request_id,
        project_id: &ctx.project_id,
        user_id: &ctx.user_id,
    }
}

/// The project a request is held to: a member's own; an admin reaches every server.
pub(super) fn scope(ctx: &RequestContext) -> Option<&str> {
    (!ctx.is_admin()).then_some(ctx.project_id.as_str())
}

/// Records `kind` as the server's task if its vm state, task and lock allow (an admin passes
/// a lock), under its row; the task is not published yet (the caller may write more first).
pub(super) async fn begin_task(
    state: &AppState,
    ctx: &RequestContext,
    uuid: InstanceUuid,
    rule: TransitionRule,
    kind: TaskKind,
) -> Result<instances::Begun, TransitionError> {
    let who = requester(ctx);
    instances::begin_action(
        &state.db,
        uuid,
        scope(ctx),
        ctx.is_admin(),
        rule,
        kind,
        &who,
    )
    .await
}

/// Whether `rule` would let the action start now: the server in one of its vm states, no task
/// running and, when the action heeds locks (`locks`), not locked but for an admin.
pub(super) fn could_begin(
    rule: TransitionRule,
    instance: &nova_core::model::Instance,
    ctx: &RequestContext,
    locks: bool,
) -> bool {
    rule.from_vm_states.contains(&instance.vm_state)
        && instance.task_state.is_none()
        && (!locks || instance.locked_by.is_none() || ctx.is_admin())
}

/// What the server's node type cannot do is refused before anything changes, as Nova's API
/// answers a driver's NotImplementedError (501) — only when the action could otherwise begin,
/// as Nova's driver is reached only then (a server in the wrong state gets the 409).
pub(super) fn refuse_unsupported(
    kind: &TaskKind,
    instance: &nova_core::model::Instance,
    could: bool,
) -> ApiResult<()> {
    match kind.unsupported_on(instance.node_type).filter(|_| could) {
        Some(reason) => Err(ApiError::NotImplemented(format!(
            "The requested functionality is not supported: {reason}."
        ))),
        None => Ok(()),
    }
}

/// Starts an action (delete included) if the server is in a state that allows it.
pub(super) async fn begin(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    action: &str,
    rule: TransitionRule,
    kind: TaskKind,
) -> ApiResult<()> {
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    match begin_task(state, ctx, uuid, rule, kind).await {
        Ok(task) => {
            submit(state, task, uuid, &ctx.request_id).await;
            Ok(())
        }
        // As Nova's `_delete`: a server already being deleted takes a second delete as done
        // ("Instance is already in deleting state, ignoring this request").
        Err(TransitionError::Conflict {
            task_state: Some(TaskState::Deleting),
            ..
        }) if kind == TaskKind::Delete => Ok(()),
        Err(e) => Err(refused_state(e, id, action, rule.from_vm_states)),
    }
}

/// Nova's answers for a server that is not there (404), locked (InstanceIsLocked), or in the
/// wrong state (InstanceInvalidState / InstanceInvalidTaskState), for an action allowed from
/// the vm states `from`.
pub(super) fn refused_state(
    e: TransitionError,
    id: &str,
    action: &str,
    from: &[VmState],
) -> ApiError {
    match e {
        TransitionError::NotFound => not_found(id),
        TransitionError::Locked => ApiError::Conflict(format!("Instance {id} is locked")),
        TransitionError::NotReady => ApiError::Conflict(format!("Instance {id} is not ready")),
        TransitionError::Unsupported(reason) => ApiError::NotImplemented(format!(
            "The requested functionality is not supported: {reason}."
        )),
        TransitionError::Conflict {
            vm_state,
            task_state: Some(t),
        } if from.contains(&vm_state) => ApiError::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in task_state {t}"
        )),
        TransitionError::Conflict { vm_state, .. } => ApiError::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in vm_state {vm_state}"
        )),
        TransitionError::Db(e) => e.into(),
    }
}

pub(super) const ALL_LIVE_STATES: &[VmState] = &[
    VmState::Building,
    VmState::Active,
    VmState::Stopped,
    VmState::Paused,
    VmState::Suspended,
    VmState::Rescued,
    VmState::Resized,
    VmState::SoftDeleted,
    VmState::Error,
    VmState::Shelved,
    VmState::ShelvedOffloaded,
];

pub(super) async fn delete(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:servers:delete")?;
    delete_server(&ctx, &state, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Starts deleting a server, from whatever state it is in; deferred when
/// `api.reclaim_instance_interval_s` is set (Nova's soft delete): the server powered off and
/// SOFT_DELETED, deleted by the conductor once the interval has passed unless restored first.
/// As Nova's, only an idle server that has run and has a host is soft-deleted; any other (one
/// building, one with a task running) is deleted now. Unlike Nova's, so is one in ERROR (its
/// guest may be gone: a power-off could only fail) or SOFT_DELETED already (Nova starts its
/// time again), RESIZED (Nova confirms the resize first), or rescued and shelved ones.
pub(super) async fn delete_server(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
) -> ApiResult<()> {
    if state.reclaim_ms > 0 {
        let instance = super::visible(state, ctx, id).await?;
        if instance.launched_at.is_some() && instance.host.is_some() {
            let rule = TransitionRule {
                from_vm_states: &[
                    VmState::Active,
                    VmState::Stopped,
                    VmState::Paused,
                    VmState::Suspended,
                ],
                task_state: TaskState::SoftDeleting,
            };
            let kind = TaskKind::SoftDelete {
                reclaim_at: nova_core::time::now_ms() + state.reclaim_ms,
            };
            match begin_task(state, ctx, instance.uuid, rule, kind).await {
                Ok(task) => {
                    submit(state, task, instance.uuid, &ctx.request_id).await;
                    return Ok(());
                }
                // Nova's InstanceInvalidState from soft_delete: deleted now instead.
                Err(TransitionError::Conflict { .. }) => {}
                Err(e) => return Err(refused_state(e, id, "delete", rule.from_vm_states)),
            }
        }
    }
    hard_delete(ctx, state, id).await
}

/// Starts deleting a server now, from whatever state it is in (DELETE without a reclaim
/// interval, and `forceDelete`).
pub(super) async fn hard_delete(ctx: &RequestContext, state: &AppState, id: &str) -> ApiResult<()> {
    let rule = TransitionRule {
        from_vm_states: ALL_LIVE_STATES,
        task_state: TaskState::Deleting,
    };
    begin(state, ctx, id, "delete", rule, TaskKind::Delete).await?;
    // As Nova's delete of a shelved server: its shelved image goes too (data and record).
    if let Ok(uuid) = id.parse::<InstanceUuid>() {
        if let Some(image) = instances::shelved_image(&state.db, uuid).await? {
            if let Err(e) =
                image_api::delete_image(&state.db, state.image_data.as_ref(), &image).await
            {
                tracing::warn!(%image, error = ?e, "shelved image not deleted");
            }
        }
    }
    Ok(())
}

/// The `lock` action: the owner's lock, or an admin's that only an admin undoes; from 2.73
/// with a reason. Recorded as an instance action, as Nova does.
pub(super) async fn lock(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<()> {
    NOVA.require_write(ctx, "os_compute_api:os-lock-server:lock")?;
    let reason = match arg {
        v if no_argument(v) => None,
        Value::Object(o) if ApiVersion::of(req).at_least(73) => {
            body::only(o, &["locked_reason"])?;
            match o.get("locked_reason") {
                None => None,
                Some(r) => match r.as_str() {
                    Some(s) if s.chars().count() <= 255 => Some(s.to_owned()),
                    _ => return Err(invalid("locked_reason", r, "is not a valid reason")),
                },
            }
        }
        other => return Err(invalid("lock", other, "None is the only accepted value")),
    };
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let project = scope(ctx);
    let who = requester(ctx);
    instances::modify(
        &state.db,
        uuid,
        project,
        instances::Record::IfChanged("lock", &who),
        |i| {
            let owner = i.project_id == ctx.project_id;
            // As Nova: an owner's second lock changes nothing; an admin's lock replaces it.
            if i.locked_by.is_some() && owner {
                return Ok::<(), ApiError>(());
            }
            i.locked_by = Some(if owner {
                LockedBy::Owner
            } else {
                LockedBy::Admin
            });
            i.locked_reason = reason;
            Ok(())
        },
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(())
}

/// The `unlock` action: an admin's lock needs an admin (`unlock_override`).
pub(super) async fn unlock(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<()> {
    NOVA.require_write(ctx, "os_compute_api:os-lock-server:unlock")?;
    if !no_argument(arg) {
        return Err(invalid("unlock", arg, "None is the only accepted value"));
    }
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let project = scope(ctx);
    let who = requester(ctx);
    instances::modify(&state.db, uuid, project, instances::Record::Always("unlock", &who), |i| {
        let expected = if i.project_id == ctx.project_id {
            LockedBy::Owner
        } else {
            LockedBy::Admin
        };
        if i.locked_by.is_some_and(|by| by != expected) && !ctx.is_admin() {
            return Err(ApiError::Forbidden(
                "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be performed."
                    .into(),
            ));
        }
        i.locked_by = None;
        i.locked_reason = None;
        Ok(())
    })
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(())
}

/// Nova's `length` of `os-getConsoleOutput`: an integer (or a string of one) from -1, where -1
/// or none means the whole log.
pub(super) fn parse_console_length(arg: &Value) -> ApiResult<Option<usize>> {
    let obj = match arg {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        other => {
            return Err(invalid(
                "os-getConsoleOutput",
                other,
                &format!("{other} is not of type 'object'"),
            ))
        }
    };
    body::only(obj, &["length"])?;
    let Some(v) = obj.get("length") else {
        return Ok(None);
    };
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(_) => Err(invalid("length", v, "is less than the minimum of -1")),
        None => Err(invalid("length", v, "does not match '^-?[0-9]+$'")),
    }
}

/// The `os-getConsoleOutput` action: the log comes from the server's host, asked over the
/// bus and answered directly (request/reply), as Nova's RPC call to nova-compute.
pub(super) async fn console_output(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<String> {
    NOVA.require_write(ctx, "os_compute_api:os-console-output")?;
    let length = parse_console_length(arg)?;
    let instance = visible(state, ctx, id).await?;
    // Nova's get_console_output refuses a server being deleted.
    if instance.task_state == Some(TaskState::Deleting) {
        return Err(ApiError::Conflict(format!(
            "Cannot 'get_console_output' instance {id} while it is in task_state deleting"
        )));
    }
    let command = ComputeCommand::ConsoleOutput {
        instance: instance.uuid,
        length,
    };
    match super::host_call::ask(state, ctx, &instance, "get_console_output", command).await {
        // As Nova: ASCII control characters other than tab and newline are removed.
        Ok(CallReply::ConsoleOutput { output }) => Ok(output
            .chars()
            .filter(|c| !matches!(c, '\x00'..='\x08' | '\x0B'..='\x1F'))
            .collect()),
        // Nova's answer when the guest has no console log.
        Err(ApiError::NotFound(_)) => Err(ApiError::NotFound(
            "Guest does not have a console available.".into(),
        )),
        Ok(other) => Err(ApiError::Internal(format!("console reply: {other:?}"))),
        Err(e) => Err(e),
    }
}

pub(super) async fn action(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = body::json(&raw)?;
    let obj = body
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| bad("The action body must be an object with exactly one action."))?;
    let (name, arg) = obj.iter().next().ok_or_else(|| bad("No action given."))?;
    match name.as_str() {
        "lock" => {
            lock(&req, &ctx, &state, &id, arg).await?;
            return Ok(HttpResponse::Accepted().finish());
        }
        "unlock" => {
            unlock(&ctx, &state, &id, arg).await?;
            return Ok(HttpResponse::Accepted().finish());
        }
        "os-getConsoleOutput" => {
            let output = console_output(&ctx, &state, &id, arg).await?;
            return Ok(HttpResponse::Ok().json(json!({ "output": output })));
        }
        "rebuild" => return super::rebuild::rebuild(&req, &ctx, &state, &id, arg).await,
        "resize" => return super::resize::resize(&ctx, &state, &id, arg).await,
        "createImage" => return super::snapshot::create_image(&req, &ctx, &state, &id, arg).await,
        "createBackup" => {
            return super::snapshot::create_backup(&req, &ctx, &state, &id, arg).await
        }
        "shelve" => return super::shelve::shelve(&ctx, &state, &id, arg).await,
        "shelveOffload" => return super::shelve::shelve_offload(&ctx, &state, &id, arg).await,
        "unshelve" => return super::shelve::unshelve(&req, &ctx, &state, &id, arg).await,
        "rescue" => return super::rescue::rescue(&ctx, &state, &id, arg).await,
        "changePassword" => {
            super::admin_password::change_password(&ctx, &state, &id, arg).await?;
            return Ok(HttpResponse::Accepted().finish());
        }
        "unrescue" => return super::rescue::unrescue(&ctx, &state, &id).await,
        "confirmResize" => return super::resize::end(&ctx, &state, &id, arg, true).await,
        "revertResize" => return super::resize::end(&ctx, &state, &id, arg, false).await,
        "addSecurityGroup" | "removeSecurityGroup" => {
            let add = name == "addSecurityGroup";
            return super::security_groups::action(&ctx, &state, &id, arg, add).await;
        }
        _ => {}
    }
    if let Some(done) = super::admin_actions::handle(&ctx, &state, &id, name, arg).await? {
        return Ok(done);
    }
    let (action, policy, rule, kind) = match name.as_str() {
        "os-stop" => (
            "stop",
            "os_compute_api:servers:stop",
            TransitionRule {
                from_vm_states: &[VmState::Active, VmState::Error],
                task_state: TaskState::PoweringOff,
            },
            TaskKind::Stop,
        ),
        "os-start" => (
            "start",
            "os_compute_api:servers:start",
            TransitionRule {
                from_vm_states: &[VmState::Stopped],
                task_state: TaskState::PoweringOn,
            },
            TaskKind::Start,
        ),
        "reboot" => {
            let kind = arg
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase)
                .filter(|t| t == "SOFT" || t == "HARD")
                .ok_or_else(|| {
                    invalid(
                        "type",
                        arg.get("type").unwrap_or(&Value::Null),
                        "is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']",
                    )
                })?;
            if kind == "HARD" {
                (
                    "reboot",
                    "os_compute_api:servers:reboot",
                    // Nova's ALLOW_HARD_REBOOT: a paused or suspended guest boots afresh.
                    TransitionRule {
                        from_vm_states: &[
                            VmState::Active,
                            VmState::Stopped,
                            VmState::Paused,
                            VmState::Suspended,
                            VmState::Error,
                        ],
                        task_state: TaskState::RebootingHard,
                    },
                    TaskKind::Reboot { hard: true },
                )
            } else {
                (
                    "reboot",
                    "os_compute_api:servers:reboot",
                    TransitionRule {
                        from_vm_states: &[VmState::Active],
                        task_state: TaskState::Rebooting,
                    },
                    TaskKind::Reboot { hard: false },
                )
            }
        }
        // Nova's pause_server and suspend_server: from these vm states only, to PAUSED or
        // SUSPENDED and back to ACTIVE.
        "pause" => (
            "pause",
            "os_compute_api:os-pause-server:pause",
            TransitionRule {
                from_vm_states: &[VmState::Active],
                task_state: TaskState::Pausing,
            },
            TaskKind::Pause,
        ),
        "unpause" => (
            "unpause",
            "os_compute_api:os-pause-server:unpause",
            TransitionRule {
                from_vm_states: &[VmState::Paused],
                task_state: TaskState::Unpausing,
            },
            TaskKind::Unpause,
        ),
        "suspend" => (
            "suspend",
            "os_compute_api:os-suspend-server:suspend",
            TransitionRule {
                from_vm_states: &[VmState::Active],
                task_state: TaskState::Suspending,
            },
            TaskKind::Suspend,
        ),
        "resume" => (
            "resume",
            "os_compute_api:os-suspend-server:resume",
            TransitionRule {
                from_vm_states: &[VmState::Suspended],
                task_state: TaskState::Resuming,
            },
            TaskKind::Resume,
        ),
        other => return Err(bad(format!("There is no such action: {other}"))),
    };
    NOVA.require_write(&ctx, policy)?;
    // Nova's schemas take anything as the argument of pause, unpause, suspend and resume
    // (`{}`: a later microversion may restrict it); os-stop and os-start take none.
    if matches!(name.as_str(), "os-stop" | "os-start") && !no_argument(arg) {
        return Err(invalid(name, arg, "None is the only accepted value"));
    }
    // (What the node type cannot do, pause or suspend, is refused by the transition.)
    begin(&state, &ctx, &id, action, rule, kind).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// An action that takes no argument: Nova takes `null` and, as clients send it, an empty
/// object (`{"os-stop": {}}`).
pub(super) fn no_argument(arg: &Value) -> bool {
    arg.is_null() || arg.as_object().is_some_and(serde_json::Map::is_empty)
}
