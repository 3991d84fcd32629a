//! `/os-availability-zone`: the zones and, for admins, their hosts. This service has one zone,
//! Nova's default `nova`; it is available while one of its compute services is enabled and up
//! (Nova lists a zone whose services are all down or disabled as unavailable).

use crate::AppState;
use actix_web::{web, HttpResponse};
use api_toolkit::policy::NOVA;
use api_toolkit::ApiResult;
use api_toolkit::RequestContext;
use nova_core::model::COMPUTE_BINARY;
use nova_core::time::{iso8601_naive_micros, now_ms};
use nova_db::nodes;
use serde_json::{json, Map, Value};

pub const DEFAULT_ZONE: &str = "nova";

async fn list(_ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let now = now_ms();
    let available = nodes::services(&state.db)
        .await?
        .iter()
        .any(|s| s.binary == COMPUTE_BINARY && !s.disabled && s.is_up(now, state.service_down_ms));
    Ok(HttpResponse::Ok().json(json!({"availabilityZoneInfo": [{
        "zoneName": DEFAULT_ZONE,
        "zoneState": {"available": available},
        "hosts": null,
    }]})))
}

async fn detail(ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-availability-zone:detail")?;
    let now = now_ms();
    let mut hosts = Map::new();
    let mut available = false;
    for s in nodes::services(&state.db).await? {
        let up = s.is_up(now, state.service_down_ms);
        available |= s.binary == COMPUTE_BINARY && !s.disabled && up;
        let entry = hosts
            .entry(s.host.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[s.binary.as_str()] = json!({
            "available": up,
            "active": !s.disabled,
            "updated_at": s.last_seen_at.map(iso8601_naive_micros),
        });
    }
    Ok(HttpResponse::Ok().json(json!({"availabilityZoneInfo": [{
        "zoneName": DEFAULT_ZONE,
        "zoneState": {"available": available},
        "hosts": if hosts.is_empty() { Value::Null } else { Value::Object(hosts) },
    }]})))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-availability-zone").route(web::get().to(list)))
        .service(web::resource("/os-availability-zone/detail").route(web::get().to(detail)));
}
