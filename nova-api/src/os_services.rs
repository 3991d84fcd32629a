//! `/os-services`: the compute services and whether they are up (admin only). Enabling,
//! disabling, forcing down and deleting come with the Compute API issue.

use crate::error::ApiResult;
use crate::policy::require_admin;
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use keystone_auth::RequestContext;
use nova_core::db::nodes;
use nova_core::time::{iso8601_naive_micros, now_ms};
use serde_json::json;

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    require_admin(&ctx, "os_compute_api:os-services:list")?;
    let version = ApiVersion::of(&req);
    let now = now_ms();
    let services: Vec<_> = nodes::services(&state.db)
        .await?
        .iter()
        .map(|s| {
            // Up/down from the last heartbeat, as Nova's DB servicegroup driver; the id is the
            // service's uuid from 2.53, `forced_down` is shown from 2.11.
            let mut v = json!({
                "id": if version.at_least(53) { json!(s.uuid) } else { json!(s.id) },
                "binary": s.binary,
                "host": s.host,
                "zone": "nova",
                "status": if s.disabled { "disabled" } else { "enabled" },
                "state": if s.is_up(now, state.service_down_ms) { "up" } else { "down" },
                "updated_at": s.last_seen_at.map(iso8601_naive_micros),
                "disabled_reason": s.disabled_reason,
            });
            if version.at_least(11) {
                v["forced_down"] = json!(s.forced_down);
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "services": services })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/os-services", web::get().to(list));
}
