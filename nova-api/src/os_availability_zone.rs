//! `/os-availability-zone`: the zones and, for admins, their hosts. A compute host is in the
//! zone an aggregate's `availability_zone` names, or in Nova's default `nova`; the control
//! plane's services are in `internal` (Nova's `internal_service_availability_zone`), which
//! only the admin's detail lists. As Nova: a zone is available while one of its services is
//! enabled (up or down), one whose services are all disabled is listed as unavailable.

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

/// Every compute zone, with whether it is available: as Nova, a zone with an enabled compute
/// service is available (up or not), one whose services are all disabled is not.
pub async fn compute_zones(state: &AppState) -> ApiResult<BTreeMap<String, bool>> {
    let zones = host_zones(&state.db).await?;
    let mut out = BTreeMap::new();
    for s in nodes::services(&state.db).await? {
        if s.binary != COMPUTE_BINARY {
            continue;
        }
        *out.entry(zone_of(&zones, &s.host).to_owned())
            .or_insert(false) |= !s.disabled;
    }
    Ok(out)
}

fn zone_entry(name: &str, available: bool, hosts: Value) -> Value {
    json!({"zoneName": name, "zoneState": {"available": available}, "hosts": hosts})
}

/// Every service with its zone: compute hosts in theirs, the others in `internal`.
async fn services_by_zone(state: &AppState) -> ApiResult<Vec<(String, Service)>> {
    let zones = host_zones(&state.db).await?;
    Ok(nodes::services(&state.db)
        .await?
        .into_iter()
        .map(|s| {
            let zone = if s.binary == COMPUTE_BINARY {
                zone_of(&zones, &s.host).to_owned()
            } else {
                INTERNAL_ZONE.to_owned()
            };
            (zone, s)
        })
        .collect())
}

/// Nova's `get_availability_zones`: the zones of enabled services (available), then those
/// of only disabled ones (not available), each in name order.
fn split_zones(services: &[(String, Service)]) -> (Vec<String>, Vec<String>) {
    let available: std::collections::BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| !s.disabled)
        .map(|(z, _)| z.clone())
        .collect();
    let unavailable: std::collections::BTreeSet<String> = services
        .iter()
        .filter(|(z, s)| s.disabled && !available.contains(z))
        .map(|(z, _)| z.clone())
        .collect();
    (
        available.into_iter().collect(),
        unavailable.into_iter().collect(),
    )
}

async fn list(_ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let services = services_by_zone(&state).await?;
    let (available, unavailable) = split_zones(&services);
    // The internal zone is not one to boot in: Nova leaves it out here.
    let zones: Vec<Value> = available
        .iter()
        .map(|z| (z, true))
        .chain(unavailable.iter().map(|z| (z, false)))
        .filter(|(z, _)| z.as_str() != INTERNAL_ZONE)
        .map(|(z, up)| zone_entry(z, up, Value::Null))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "availabilityZoneInfo": zones })))
}

async fn detail(ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-availability-zone:detail")?;
    let now = now_ms();
    let services = services_by_zone(&state).await?;
    let (available, unavailable) = split_zones(&services);
    let mut out = Vec::new();
    // As Nova's verbose view: each available zone with its enabled services by host; the
    // unavailable ones without hosts.
    for zone in &available {
        let mut hosts = Map::new();
        for (_, s) in services.iter().filter(|(z, s)| z == zone && !s.disabled) {
            let entry = hosts
                .entry(s.host.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            entry[s.binary.as_str()] = json!({
                "available": s.is_up(now, state.service_down_ms),
                "active": !s.disabled,
                "updated_at": s.last_seen_at.map(iso8601_naive_micros),
            });
        }
        out.push(zone_entry(zone, true, Value::Object(hosts)));
    }
    for zone in &unavailable {
        out.push(zone_entry(zone, false, Value::Null));
    }
    Ok(HttpResponse::Ok().json(json!({ "availabilityZoneInfo": out })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-availability-zone").route(web::get().to(list)))
        .service(web::resource("/os-availability-zone/detail").route(web::get().to(detail)));
}
