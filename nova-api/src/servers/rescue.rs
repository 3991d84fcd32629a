//! The `rescue` and `unrescue` actions (Nova's os-rescue): the guest shut down and booted from
//! a rescue image — the one asked for, or the server's own — with its own disk attached beside
//! it (RESCUE), and back to its own disk, running (ACTIVE). As Nova, the rescue answers 200
//! with the rescue's admin password (`enable_instance_password` on, Nova's default); as for a
//! create, the password is the client's to see, not put into the guest.

use super::actions::{begin, begin_task, could_begin, refuse_unsupported, refused_state};
use super::{submit, visible};
use crate::AppState;
use actix_web::HttpResponse;
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::model::{TaskState, VmState};
use nova_core::rpc::TaskKind;
use nova_db::instances::TransitionRule;
use serde_json::{json, Value};

/// Nova's rescue: from these vm states, not locked, with no task running.
const RESCUE: TransitionRule = TransitionRule {
    from_vm_states: &[VmState::Active, VmState::Stopped, VmState::Error],
    task_state: TaskState::Rescuing,
};

const UNRESCUE: TransitionRule = TransitionRule {
    from_vm_states: &[VmState::Rescued],
    task_state: TaskState::Unrescuing,
};

/// What a rescue asks for: its admin password and rescue image, each optional.
struct RescueRequest {
    admin_pass: Option<String>,
    image: Option<uuid::Uuid>,
}

/// Nova's schema: `null`, or an object with an `adminPass` string and a `rescue_image_ref`
/// uuid, nothing else.
fn parse(arg: &Value) -> ApiResult<RescueRequest> {
    let mut request = RescueRequest {
        admin_pass: None,
        image: None,
    };
    if arg.is_null() {
        return Ok(request);
    }
    let obj = arg.as_object().ok_or_else(|| {
        invalid(
            "rescue",
            arg,
            &format!("{arg} is not of type 'object', 'null'"),
        )
    })?;
    body::only(obj, &["adminPass", "rescue_image_ref"])?;
    if let Some(v) = obj.get("adminPass") {
        let pass = v
            .as_str()
            .ok_or_else(|| invalid("adminPass", v, &format!("{v} is not of type 'string'")))?;
        request.admin_pass = Some(pass.to_owned());
    }
    if let Some(v) = obj.get("rescue_image_ref") {
        let image = v
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .ok_or_else(|| invalid("rescue_image_ref", v, &format!("{v} is not a 'uuid'")))?;
        request.image = Some(image);
    }
    Ok(request)
}

pub(super) async fn rescue(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    let request = parse(arg)?;
    NOVA.require_write(ctx, "os_compute_api:os-rescue")?;
    let instance = visible(state, ctx, id).await?;
    let kind = TaskKind::Rescue {
        image: request.image,
    };
    // The checks below are Nova's, after its state and lock checks: a server that cannot be
    // rescued now gets the 409 from the transition.
    if could_begin(RESCUE, &instance, ctx, true) {
        refuse_unsupported(&kind, &instance, true)?;
        check_rescue_image(state, ctx, &instance, request.image).await?;
    }
    let task = begin_task(state, ctx, instance.uuid, RESCUE, kind)
        .await
        .map_err(|e| refused_state(e, id, "rescue", RESCUE.from_vm_states))?;
    submit(state, task, instance.uuid, &ctx.request_id).await;
    // (Nova answers 200, not 202, "for backwards compatibility".)
    let password = request.admin_pass.unwrap_or_else(super::create::admin_pass);
    Ok(HttpResponse::Ok().json(json!({ "adminPass": password })))
}

/// The image a rescue boots, as Nova's `rescue` checks it: one asked for must be one the
/// caller may see (Nova's 400 UnsupportedRescueImage otherwise), with its kernel and ramdisk;
/// without one, the server's own (which Nova reads from the server's record, whoever may see
/// the image now). Either must be active — there must be data to boot — and (ours) of a kind
/// the server's node type boots. A server that boots from no image (a volume's) cannot be
/// rescued from its own.
async fn check_rescue_image(
    state: &AppState,
    ctx: &RequestContext,
    instance: &nova_core::model::Instance,
    asked: Option<uuid::Uuid>,
) -> ApiResult<()> {
    let id = match asked {
        Some(image) => image.to_string(),
        None if instance.image_ref.is_empty() => {
            return Err(bad(format!(
                "Instance {} cannot be rescued: Cannot rescue a volume-backed instance",
                instance.uuid
            )))
        }
        None => instance.image_ref.clone(),
    };
    let unsupported = || bad(format!("Requested rescue image '{id}' is not supported"));
    let image = match asked {
        Some(_) => {
            let image = super::create::image_for_server(state, ctx, &id)
                .await
                .map_err(|e| match e {
                    ApiError::BadRequest(_) => unsupported(),
                    other => other,
                })?;
            super::create::check_kernel_and_ramdisk(state, ctx, &image).await?;
            image
        }
        None => nova_db::images::get(&state.db, &id)
            .await?
            .filter(|i| i.status == "active")
            .ok_or_else(unsupported)?,
    };
    let (container, disk) = (
        image.container_format.as_deref().unwrap_or_default(),
        image.disk_format.as_deref().unwrap_or_default(),
    );
    if !instance.node_type.boots(container, disk) {
        return Err(unsupported());
    }
    // A stable device rescue the image asks for must be one the guest can take (Nova's
    // InstanceNotRescuable, a 400).
    let properties: serde_json::Map<String, Value> =
        serde_json::from_str(&image.properties).unwrap_or_default();
    nova_core::rpc::StableRescue::of_properties(&properties).map_err(|reason| {
        bad(format!(
            "Instance {} cannot be rescued: {reason}",
            instance.uuid
        ))
    })?;
    Ok(())
}

/// `unrescue`: Nova's schema takes anything as its argument.
pub(super) async fn unrescue(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(ctx, "os_compute_api:os-unrescue")?;
    begin(state, ctx, id, "unrescue", UNRESCUE, TaskKind::Unrescue).await?;
    Ok(HttpResponse::Accepted().finish())
}
