//! `/os-availability-zone`: the zones and, for admins, their hosts. A compute host is in the
//! zone an aggregate's `availability_zone` names, or in Nova's default `nova`; the control
//! plane's services are in `internal` (Nova's `internal_service_availability_zone`), which
//! only the admin's detail lists. A zone is available while one of its compute services is
//! enabled and up; one whose services are all down or disabled is listed as unavailable.

use crate::AppState;
use actix_web::{web, HttpResponse};
use api_toolkit::policy::NOVA;
use api_toolkit::ApiResult;
use api_toolkit::RequestContext;
use nova_core::model::{Service, COMPUTE_BINARY};
use nova_core::time::{iso8601_naive_micros, now_ms};
use nova_db::{aggregates, nodes, Db};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

pub use nova_db::aggregates::{zone_of, DEFAULT_ZONE};
/// Nova's `internal_service_availability_zone`.
pub const INTERNAL_ZONE: &str = "internal";

/// Each host's zone, for [`zone_of`].
pub async fn host_zones(db: &Db) -> nova_db::DbResult<HashMap<String, String>> {
    aggregates::host_zones(db).await
}

/// Every compute zone, with whether it is available (has an enabled compute service that is
/// up), in name order.
pub async fn compute_zones(state: &AppState) -> ApiResult<BTreeMap<String, bool>> {
    let now = now_ms();
    let zones = host_zones(&state.db).await?;
    let mut out = BTreeMap::new();
    for s in nodes::services(&state.db).await? {
        if s.binary != COMPUTE_BINARY {
            continue;
        }
        let up = !s.disabled && s.is_up(now, state.service_down_ms);
        *out.entry(zone_of(&zones, &s.host).to_owned())
            .or_insert(false) |= up;
    }
    Ok(out)
}

fn zone_entry(name: &str, available: bool, hosts: Value) -> Value {
    json!({"zoneName": name, "zoneState": {"available": available}, "hosts": hosts})
}

async fn list(_ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let zones: Vec<Value> = compute_zones(&state)
        .await?
        .into_iter()
        .map(|(name, available)| zone_entry(&name, available, Value::Null))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "availabilityZoneInfo": zones })))
}

fn service_entry(s: &Service, now: i64, down_ms: i64) -> Value {
    json!({
        "available": s.is_up(now, down_ms),
        "active": !s.disabled,
        "updated_at": s.last_seen_at.map(iso8601_naive_micros),
    })
}

async fn detail(ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-availability-zone:detail")?;
    let now = now_ms();
    let zones = host_zones(&state.db).await?;
    let available = compute_zones(&state).await?;
    // zone → host → binary → state.
    let mut by_zone: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for s in nodes::services(&state.db).await? {
        let zone = if s.binary == COMPUTE_BINARY {
            zone_of(&zones, &s.host)
        } else {
            INTERNAL_ZONE
        };
        let hosts = by_zone.entry(zone.to_owned()).or_default();
        let entry = hosts
            .entry(s.host.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[s.binary.as_str()] = service_entry(&s, now, state.service_down_ms);
    }
    // As Nova: the internal zone first, then the compute zones.
    let internal = by_zone.remove(INTERNAL_ZONE);
    let mut out = Vec::new();
    if let Some(hosts) = internal {
        out.push(zone_entry(INTERNAL_ZONE, true, Value::Object(hosts)));
    }
    for (zone, hosts) in by_zone {
        let up = available.get(&zone).copied().unwrap_or(false);
        out.push(zone_entry(&zone, up, Value::Object(hosts)));
    }
    Ok(HttpResponse::Ok().json(json!({ "availabilityZoneInfo": out })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-availability-zone").route(web::get().to(list)))
        .service(web::resource("/os-availability-zone/detail").route(web::get().to(detail)));
}
