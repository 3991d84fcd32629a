//! `/flavors`: list, detail, show. (Create, delete and extra specs come with the Compute API
//! issue.)

use crate::error::{ApiError, ApiResult};
use crate::links::PublicUrl;
use crate::views;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use keystone_auth::RequestContext;
use nova_core::db::flavors;
use serde_json::json;

/// `GET /flavors` (summaries) and `/flavors/detail`: public, enabled flavors.
async fn listing(
    req: HttpRequest,
    state: web::Data<AppState>,
    view: fn(&PublicUrl, &nova_core::model::Flavor) -> serde_json::Value,
) -> ApiResult<HttpResponse> {
    let url = PublicUrl::of(&req);
    let all = flavors::list(&state.db).await?;
    let items: Vec<_> = all.iter().map(|f| view(&url, f)).collect();
    Ok(HttpResponse::Ok().json(json!({ "flavors": items })))
}

async fn list(
    req: HttpRequest,
    _ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(req, state, views::flavor_summary).await
}

async fn detail(
    req: HttpRequest,
    _ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(req, state, views::flavor_detail).await
}

async fn show(
    req: HttpRequest,
    _ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let flavor = flavors::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Flavor {id} could not be found.")))?;
    Ok(HttpResponse::Ok()
        .json(json!({ "flavor": views::flavor_detail(&PublicUrl::of(&req), &flavor) })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/flavors", web::get().to(list))
        .route("/flavors/detail", web::get().to(detail))
        .route("/flavors/{id}", web::get().to(show));
}
