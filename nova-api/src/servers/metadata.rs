//! `/servers/{id}/metadata`: a server's metadata as a resource of its own (Nova's
//! server_metadata.py). Reads need only visibility; writes need a member, an unlocked server
//! (admins may override) in a state Nova allows, and stay within the `metadata_items` quota.

use super::params::parse_metadata;
use super::{not_found, visible};
use crate::AppState;
use actix_web::{web, HttpResponse};
use api_toolkit::bad;
use api_toolkit::body;
use api_toolkit::body::invalid;
use api_toolkit::policy::NOVA;
use api_toolkit::RequestContext;
use api_toolkit::{ApiError, ApiResult};
use nova_core::ids::InstanceUuid;
use nova_core::model::{Instance, VmState};
use nova_db::instances;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The vm states Nova's compute API accepts metadata changes in (and no task running).
const EDITABLE_IN: &[VmState] = &[
    VmState::Active,
    VmState::Paused,
    VmState::Suspended,
    VmState::Stopped,
];

fn item_not_found() -> ApiError {
    ApiError::NotFound("Metadata item was not found".into())
}

/// The one `key` of a body `{"<key>": {...}}`, as Nova's schemas require it.
fn wrapped<'a>(body: &'a Value, key: &str) -> ApiResult<&'a Value> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    body::only(obj, &[key])?;
    obj.get(key)
        .ok_or_else(|| invalid(key, body, &format!("'{key}' is a required property")))
}

/// Applies `change` to the server's metadata if the caller may change it now; the new
/// metadata is returned. The lock, state and quota checks run inside the same transaction as
/// the write.
async fn edit(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    action: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> ApiResult<()>,
) -> ApiResult<BTreeMap<String, String>> {
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let project = super::actions::scope(ctx);
    let limit = crate::quotas::limits_of(&state.db, &ctx.project_id).await?["metadata_items"];
    let edited = instances::modify(
        &state.db,
        uuid,
        project,
        instances::Record::No,
        |i: &mut Instance| {
            check_editable(ctx, i, action)?;
            change(&mut i.metadata)?;
            crate::quotas::check_metadata_items(limit, i.metadata.len())
        },
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(edited.metadata)
}

/// Nova's `check_instance_lock` and `check_instance_state` for metadata changes.
fn check_editable(ctx: &RequestContext, i: &Instance, action: &str) -> ApiResult<()> {
    if i.locked_by.is_some() && !ctx.is_admin() {
        return Err(ApiError::Conflict(format!("Instance {} is locked", i.uuid)));
    }
    if !EDITABLE_IN.contains(&i.vm_state) {
        return Err(ApiError::Conflict(format!(
            "Cannot '{action}' instance {} while it is in vm_state {}",
            i.uuid, i.vm_state
        )));
    }
    if let Some(task) = i.task_state {
        return Err(ApiError::Conflict(format!(
            "Cannot '{action}' instance {} while it is in task_state {task}",
            i.uuid
        )));
    }
    Ok(())
}

async fn index(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "metadata": instance.metadata })))
}

/// `POST`: merges the given items into the server's metadata (200, all of it).
async fn merge(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:server-metadata:create")?;
    let given = parse_metadata(wrapped(&body::json(&raw)?, "metadata")?)?;
    let all = edit(&state, &ctx, &id, "update metadata", |m| {
        m.extend(given);
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "metadata": all })))
}

/// `PUT`: replaces the server's metadata (200, the new metadata).
async fn replace(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:server-metadata:update_all")?;
    let given = parse_metadata(wrapped(&body::json(&raw)?, "metadata")?)?;
    let all = edit(&state, &ctx, &id, "update metadata", |m| {
        *m = given;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "metadata": all })))
}

async fn show_item(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, key) = path.into_inner();
    let instance = visible(&state, &ctx, &id).await?;
    let value = instance.metadata.get(&key).ok_or_else(item_not_found)?;
    Ok(HttpResponse::Ok().json(json!({ "meta": { key: value } })))
}

/// `PUT /metadata/{key}` with `{"meta": {"<key>": "<value>"}}`: sets one item (200).
async fn set_item(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:server-metadata:update")?;
    let (id, key) = path.into_inner();
    let body = body::json(&raw)?;
    let meta = wrapped(&body, "meta")?;
    let given = parse_metadata(meta)?;
    // Nova's messages for a body that does not name exactly the URL's key.
    if given.len() > 1 {
        return Err(bad("Request body contains too many items"));
    }
    let Some((k, value)) = given.into_iter().next() else {
        return Err(invalid("meta", meta, "{} does not have enough properties"));
    };
    if k != key {
        return Err(bad("Request body and URI mismatch"));
    }
    edit(&state, &ctx, &id, "update metadata", |m| {
        m.insert(k.clone(), value.clone());
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "meta": { key: value } })))
}

async fn delete_item(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:server-metadata:delete")?;
    let (id, key) = path.into_inner();
    edit(&state, &ctx, &id, "delete metadata", |m| {
        m.remove(&key).map(|_| ()).ok_or_else(item_not_found)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/servers/{id}/metadata")
            .route(web::get().to(index))
            .route(web::post().to(merge))
            .route(web::put().to(replace)),
    )
    .service(
        web::resource("/servers/{id}/metadata/{key}")
            .route(web::get().to(show_item))
            .route(web::put().to(set_item))
            .route(web::delete().to(delete_item)),
    );
}
