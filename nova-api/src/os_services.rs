//! `/os-services`: the compute services and whether they are up (admin only). Enabling,
//! disabling, forcing down and deleting come with the Compute API issue.

use crate::error::ApiResult;
use crate::policy::require_admin;
use crate::AppState;
use actix_web::{web, HttpResponse};
use keystone_auth::RequestContext;
use nova_core::db::nodes;
use nova_core::time::{iso8601_naive_micros, now_ms};
use serde_json::json;

async fn list(ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    require_admin(&ctx, "os_compute_api:os-services:list")?;
    let now = now_ms();
    let services: Vec<_> = nodes::services(&state.db)
        .await?
        .iter()
        .map(|s| {
            // Nova's 2.1 view: up/down from the last heartbeat, as its DB servicegroup driver.
            json!({
                "id": s.id,
                "binary": s.binary,
                "host": s.host,
                "zone": "nova",
                "status": if s.disabled { "disabled" } else { "enabled" },
                "state": if s.is_up(now, state.service_down_ms) { "up" } else { "down" },
                "updated_at": s.last_seen_at.map(iso8601_naive_micros),
                "disabled_reason": s.disabled_reason,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "services": services })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/os-services", web::get().to(list));
}
