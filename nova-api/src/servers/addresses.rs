//! `GET /servers/{id}/ips` and `/ips/{network}`.

use super::visible;
use crate::{views, AppState};
use actix_web::{web, HttpResponse};
use api_toolkit::{ApiError, ApiResult, RequestContext};
use serde_json::json;

/// `GET /servers/{id}/ips`: the server's addresses by network (`version` and `addr`, as
/// Nova's basic address view).
pub(super) async fn ips(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "addresses": views::addresses(&instance.addresses, false) })))
}

/// `GET /servers/{id}/ips/{network}`: the addresses on one network; Nova's 404 for a network
/// the server is not on.
pub(super) async fn ips_of_network(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, network) = path.into_inner();
    let instance = visible(&state, &ctx, &id).await?;
    let mut all = views::addresses(&instance.addresses, false);
    match all.remove(network.as_str()) {
        Some(on) => Ok(HttpResponse::Ok().json(json!({ network.as_str(): on }))),
        None => Err(ApiError::NotFound(
            "Instance is not a member of specified network".into(),
        )),
    }
}
