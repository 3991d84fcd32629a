//! Image members: the projects a shared image is offered to, and their answers.

use crate::images::{find, may_modify};
use crate::ImageState;
use actix_web::{web, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::iso8601_z;
use nova_db::images::{self as store, Image};
use serde_json::{json, Value};

pub(crate) fn member_view(m: &store::Member) -> Value {
    json!({
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.status,
        "created_at": iso8601_z(m.created_at),
        "updated_at": iso8601_z(m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

/// The image of a members request: visible to the caller, and shared (Glance: only shared
/// images have members, 403).
pub(crate) async fn shared_image(
    state: &ImageState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Image> {
    let image = find(state, ctx, id).await?;
    if image.visibility != "shared" {
        return Err(ApiError::Forbidden(
            "Only shared images have members.".into(),
        ));
    }
    Ok(image)
}

pub(crate) fn member_not_found(id: &str, member: &str) -> ApiError {
    ApiError::NotFound(format!("{member} is not a member of image {id}."))
}

/// `GET /v2/images/{id}/members`: all of them for the owner, its own membership for a member.
pub(crate) async fn list_members(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let image = shared_image(&state, &ctx, &id).await?;
    let owner = ctx.is_admin() || image.owner == ctx.project_id;
    let members: Vec<Value> = store::members(&state.db, &id)
        .await?
        .iter()
        .filter(|m| owner || m.member_id == ctx.project_id)
        .map(member_view)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"members": members, "schema": "/v2/schemas/members"})))
}

/// `POST /v2/images/{id}/members` with `{"member": "<project>"}`: the owner offers the image.
pub(crate) async fn add_member(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let image = shared_image(&state, &ctx, &id).await?;
    if !may_modify(&ctx, &image) {
        return Err(ApiError::Forbidden(
            "You are not permitted to create image members for the image.".into(),
        ));
    }
    let body = body::json(&raw)?;
    let member = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("member"))
        .and_then(Value::as_str)
        .filter(|m| (1..=255).contains(&m.chars().count()))
        .ok_or_else(|| bad("Member to be added not specified"))?;
    let members = store::members(&state.db, &id).await?;
    let full = state.member_quota >= 0
        && i64::try_from(members.len()).unwrap_or(i64::MAX) >= state.member_quota;
    if !members.iter().any(|m| m.member_id == member) && full {
        return Err(ApiError::PayloadTooLarge(format!(
            "Maximum number of image members exceeded: {}",
            state.member_quota
        )));
    }
    let created = store::add_member(&state.db, &id, member)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!("Member {member} is duplicated for image {id}"))
        })?;
    Ok(HttpResponse::Ok().json(member_view(&created)))
}

/// The owner sees every member, a member only itself.
pub(crate) async fn show_member(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, member) = path.into_inner();
    let image = shared_image(&state, &ctx, &id).await?;
    let owner = ctx.is_admin() || image.owner == ctx.project_id;
    if !owner && member != ctx.project_id {
        return Err(member_not_found(&id, &member));
    }
    let m = store::member(&state.db, &id, &member)
        .await?
        .ok_or_else(|| member_not_found(&id, &member))?;
    Ok(HttpResponse::Ok().json(member_view(&m)))
}

/// `PUT …/members/{member}` with `{"status": …}`: only the member itself answers.
pub(crate) async fn answer_member(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (id, member) = path.into_inner();
    shared_image(&state, &ctx, &id).await?;
    let body = body::json(&raw)?;
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| matches!(*s, "pending" | "accepted" | "rejected"))
        .ok_or_else(|| bad("Invalid status: it must be pending, accepted or rejected."))?;
    if member != ctx.project_id || !ctx.can_write() {
        return Err(ApiError::Forbidden(
            "You are not permitted to modify 'status' on this image member.".into(),
        ));
    }
    let m = store::set_member_status(&state.db, &id, &member, status)
        .await?
        .ok_or_else(|| member_not_found(&id, &member))?;
    Ok(HttpResponse::Ok().json(member_view(&m)))
}

/// `DELETE …/members/{member}`: the owner withdraws the offer.
pub(crate) async fn remove_member(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, member) = path.into_inner();
    let image = shared_image(&state, &ctx, &id).await?;
    if !may_modify(&ctx, &image) {
        return Err(ApiError::Forbidden(
            "You are not permitted to delete image members for the image.".into(),
        ));
    }
    if !store::delete_member(&state.db, &id, &member).await? {
        return Err(member_not_found(&id, &member));
    }
    Ok(HttpResponse::NoContent().finish())
}
