//! The `resize`, `confirmResize` and `revertResize` actions (Nova's `_resize`,
//! `_confirm_resize`, `_revert_resize`): a server given another flavor of its node type on its
//! host, waiting in VERIFY_RESIZE until the user (or the conductor, after
//! `resize_confirm_window_s`) confirms it or reverts it.

use super::actions::{refused_state, requester};
use super::create::{image_fits_flavor, parse_disk_config};
use super::{not_found, publish_task, visible};
use crate::AppState;
use actix_web::HttpResponse;
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_core::model::{Flavor, VmState};
use nova_core::rpc::TaskKind;
use nova_db::migrations::{self, ResizeRefused};
use serde_json::Value;

/// The `resize` action: 202 once the resize is under way.
pub(super) async fn resize(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    let (flavor_ref, auto_disk_config) = parse(arg)?;
    NOVA.require_write(ctx, "os_compute_api:servers:resize")?;
    let instance = visible(state, ctx, id).await?;
    let uuid = instance.uuid;
    // What the checks need is read first; its refusals are told in Nova's order, after the
    // lock and the state (checked under the server's row lock, below).
    let flavor = async {
        match nova_db::flavors::get(&state.db, &flavor_ref).await? {
            Some(f) if !f.disabled && crate::flavors::usable_by(state, ctx, &f).await? => Ok(f),
            _ => Err(bad(format!("Flavor {flavor_ref} could not be found."))),
        }
    };
    let image = nova_db::images::get(&state.db, &instance.image_ref);
    let quota = crate::quotas::ProjectQuota::of(&state.db, &instance.project_id);
    let (flavor, image, quota) = futures::join!(flavor, image, quota);
    let (image, quota) = (image?, quota?);
    let who = requester(ctx);
    let project = super::actions::scope(ctx);
    let lock_override = ctx.is_admin();
    let begun = migrations::begin_resize(
        &state.db,
        uuid,
        project,
        lock_override,
        &who,
        auto_disk_config,
        |i| {
            // As Nova's Ironic driver, which cannot resize (501, as other actions its driver
            // lacks).
            if let Some(reason) = TaskKind::Resize.unsupported_on(i.node_type) {
                return Err(ApiError::NotImplemented(format!(
                    "The requested functionality is not supported: {reason}."
                )));
            }
            let new = flavor?;
            check_flavor(&i.flavor, &new, i.node_type)?;
            quota.check_upsize(
                new.vcpus - i.flavor.vcpus,
                new.memory_mb - i.flavor.memory_mb,
            )?;
            // As Nova's `_validate_flavor_image_nostatus` with the server's image (as it was
            // recorded: one deleted since is not checked).
            if let Some(image) = &image {
                image_fits_flavor(image, &new)?;
            }
            Ok(new)
        },
    )
    .await;
    let task = begun.map_err(|e| refused(e, id, "resize"))?;
    publish_task(state, task, uuid, &ctx.request_id).await;
    Ok(HttpResponse::Accepted().finish())
}

/// Nova's resize schema: `flavorRef` (a string or an integer), `OS-DCF:diskConfig`, nothing
/// else. The flavor, and whether the disk config is `AUTO`.
fn parse(arg: &Value) -> ApiResult<(String, bool)> {
    let obj = arg
        .as_object()
        .ok_or_else(|| invalid("resize", arg, &format!("{arg} is not of type 'object'")))?;
    body::only(obj, &["flavorRef", "OS-DCF:diskConfig"])?;
    let auto = match obj.get("OS-DCF:diskConfig") {
        Some(v) => parse_disk_config(v)?,
        None => false,
    };
    let flavor = match obj.get("flavorRef") {
        None => Err(invalid("resize", arg, "'flavorRef' is a required property")),
        Some(Value::String(s)) if s.is_empty() => Err(invalid(
            "flavorRef",
            &Value::String(s.clone()),
            "is too short",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(v) => Err(invalid(
            "flavorRef",
            v,
            &format!("{v} is not of type 'string', 'integer'"),
        )),
    }?;
    Ok((flavor, auto))
}

/// Nova's refusals of the new flavor: the same flavor, a zero root disk for a server that has
/// one; and, here, a flavor of another node type (its server would need another driver).
fn check_flavor(
    old: &Flavor,
    new: &Flavor,
    node_type: nova_core::model::NodeType,
) -> ApiResult<()> {
    if old.flavorid == new.flavorid {
        return Err(bad("When resizing, instances must change flavor!"));
    }
    let new_type = new.node_type().map_err(bad)?;
    if new_type != node_type {
        return Err(bad(format!(
            "Flavor {} is for {new_type} nodes: a server on a {node_type} node cannot be \
             resized to it.",
            new.flavorid
        )));
    }
    if new.root_gb == 0 && old.root_gb != 0 {
        return Err(bad(
            "Resize error: Resize to zero disk flavor is not allowed.",
        ));
    }
    Ok(())
}

/// The `confirmResize` (204) and `revertResize` (202) actions.
pub(super) async fn end(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
    confirm: bool,
) -> ApiResult<HttpResponse> {
    let action = if confirm {
        "confirmResize"
    } else {
        "revertResize"
    };
    // Nova's schemas take any value (clients send null or `{}`; a later microversion may
    // restrict it to null).
    let _ = arg;
    let policy = if confirm {
        "os_compute_api:servers:confirm_resize"
    } else {
        "os_compute_api:servers:revert_resize"
    };
    NOVA.require_write(ctx, policy)?;
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let who = requester(ctx);
    let project = super::actions::scope(ctx);
    let begun = migrations::begin_resize_end(
        &state.db,
        uuid,
        project,
        ctx.is_admin(),
        &who,
        confirm,
        None,
    )
    .await;
    let task = begun.map_err(|e| match e {
        ResizeRefused::State(e) => refused_state(e, id, action, &[VmState::Resized]),
        ResizeRefused::NotResized => bad("Instance has not been resized."),
        ResizeRefused::Check(never) => match never {},
    })?;
    publish_task(state, task, uuid, &ctx.request_id).await;
    Ok(if confirm {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::Accepted().finish()
    })
}

fn refused(e: ResizeRefused<ApiError>, id: &str, action: &str) -> ApiError {
    match e {
        ResizeRefused::State(e) => {
            refused_state(e, id, action, &[VmState::Active, VmState::Stopped])
        }
        ResizeRefused::NotResized => bad("Instance has not been resized."),
        ResizeRefused::Check(e) => e,
    }
}
