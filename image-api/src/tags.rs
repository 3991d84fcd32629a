//! Image tags (`PUT`/`DELETE /v2/images/{id}/tags/{tag}`).

use crate::images::find_own;
use crate::ImageState;
use actix_web::{web, HttpResponse};
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_db::images as store;

pub(crate) async fn add_tag(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    let image = find_own(&state, &ctx, &id).await?;
    let full = state.tag_quota >= 0
        && i64::try_from(image.tags.len()).unwrap_or(i64::MAX) >= state.tag_quota;
    if !image.tags.contains(&tag) && full {
        return Err(ApiError::PayloadTooLarge(format!(
            "Maximum number of tags exceeded: {}",
            state.tag_quota
        )));
    }
    store::add_tag(&state.db, &id, &tag).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(crate) async fn remove_tag(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    find_own(&state, &ctx, &id).await?;
    if !store::remove_tag(&state.db, &id, &tag).await? {
        return Err(ApiError::NotFound(format!("Tag {tag} not found")));
    }
    Ok(HttpResponse::NoContent().finish())
}
