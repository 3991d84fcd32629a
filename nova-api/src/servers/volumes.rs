//! `/servers/{id}/os-volume_attachments`: there is no block storage service here, so a server
//! has no volumes attached; the listing is empty and any one attachment is not found, as Nova
//! answers for a server without volumes (Horizon reads the list on every instance page).

use super::visible;
use crate::AppState;
use actix_web::{web, HttpResponse};
use api_toolkit::{ApiError, ApiResult, RequestContext};
use serde_json::json;

pub(super) async fn list(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "volumeAttachments": [] })))
}

pub(super) async fn show(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, volume) = path.into_inner();
    visible(&state, &ctx, &id).await?;
    Err(ApiError::NotFound(format!(
        "Instance {id} is not attached to volume {volume}."
    )))
}
