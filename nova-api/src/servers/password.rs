//! `/servers/{id}/os-server-password`: the encrypted password a guest posts to the metadata
//! service. There is no metadata service here, so no guest ever posts one: the password is
//! empty, and clearing it is accepted (Nova's answers for a server without one).

use super::visible;
use crate::AppState;
use actix_web::{web, HttpResponse};
use api_toolkit::policy::NOVA;
use api_toolkit::{ApiResult, RequestContext};
use serde_json::json;

pub(super) async fn show(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "password": "" })))
}

pub(super) async fn clear(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:os-server-password:clear")?;
    visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
