//! `/os-hosts` (admin, until 2.42, as Nova): every service's host, and a compute host's
//! resources — its totals, what its servers use now, and per project. Enabling, maintenance
//! and power actions on a host are checked as Nova checks them and then answered as Nova's
//! libvirt driver answers them: 501, not supported (os-services disables a host).

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::listing::Query;
use api_toolkit::policy::NOVA;
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_core::model::COMPUTE_BINARY;
use nova_db::{instances, nodes};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Gone from 2.43: Nova's 404, as for a path that does not exist.
fn removed_at_2_43(req: &HttpRequest) -> ApiResult<()> {
    if ApiVersion::of(req).at_least(43) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    Ok(())
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    removed_at_2_43(&req)?;
    NOVA.require_admin(&ctx, "os_compute_api:os-hosts:list")?;
    let zone = Query::of(&req).last("zone").map(str::to_owned);
    let zones = crate::os_availability_zone::host_zones(&state.db).await?;
    let hosts: Vec<Value> = nodes::services(&state.db)
        .await?
        .iter()
        .filter_map(|s| {
            // Compute hosts in their availability zone, the control plane in `internal`.
            let service = s.binary.strip_prefix("nova-").unwrap_or(&s.binary);
            let z = crate::os_services::zone(&zones, s);
            // As Nova: an empty zone filters nothing.
            let wanted = zone.as_deref().is_none_or(|w| w.is_empty() || w == z);
            wanted.then(|| json!({"host_name": s.host, "service": service, "zone": z}))
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "hosts": hosts })))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    host: web::Path<String>,
) -> ApiResult<HttpResponse> {
    removed_at_2_43(&req)?;
    NOVA.require_admin(&ctx, "os_compute_api:os-hosts:show")?;
    let on_host: Vec<_> = nodes::nodes(&state.db)
        .await?
        .into_iter()
        .filter(|n| n.host == *host)
        .collect();
    if on_host.is_empty() {
        return Err(ApiError::NotFound(format!(
            "Compute host {host} could not be found."
        )));
    }
    let resource = |project: &str, cpu: i64, memory_mb: i64, disk_gb: i64| {
        json!({"resource": {"host": *host, "project": project, "cpu": cpu,
                            "memory_mb": memory_mb, "disk_gb": disk_gb}})
    };
    let sum =
        |f: &dyn Fn(&nova_core::model::ComputeNode) -> i64| on_host.iter().map(f).sum::<i64>();
    let total = (
        sum(&|n| n.inventory.total.vcpus),
        sum(&|n| n.inventory.total.memory_mb),
        sum(&|n| n.inventory.total.disk_gb),
    );
    let used = (
        sum(&|n| n.used.vcpus),
        sum(&|n| n.used.memory_mb),
        sum(&|n| n.used.disk_gb),
    );
    let mut by_project: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for i in instances::on_host(&state.db, &host).await? {
        let e = by_project.entry(i.project_id.clone()).or_default();
        e.0 += i.flavor.vcpus;
        e.1 += i.flavor.memory_mb;
        e.2 += i.flavor.root_gb + i.flavor.ephemeral_gb;
    }
    let mut resources = vec![
        resource("(total)", total.0, total.1, total.2),
        resource("(used_now)", used.0, used.1, used.2),
        // Nothing here claims more than it uses: the most is what is used.
        resource("(used_max)", used.0, used.1, used.2),
    ];
    for (project, (cpu, mem, disk)) in by_project {
        resources.push(resource(&project, cpu, mem, disk));
    }
    Ok(HttpResponse::Ok().json(json!({ "host": resources })))
}

/// The host must be a compute host (Nova's HostNotFound, 404).
async fn compute_host(state: &AppState, host: &str) -> ApiResult<()> {
    let known = nodes::service(&state.db, host, COMPUTE_BINARY)
        .await?
        .is_some();
    if !known {
        return Err(ApiError::NotFound(format!(
            "Compute host {host} could not be found."
        )));
    }
    Ok(())
}

fn not_supported() -> ApiError {
    ApiError::NotImplemented("The requested functionality is not supported.".into())
}

/// `PUT /os-hosts/{host}`: Nova's schema (`status` and/or `maintenance_mode`, each
/// enable/disable), then the host, then the driver's answer.
async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    host: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    removed_at_2_43(&req)?;
    let body = body::json(&raw)?;
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", &body, "is not of type 'object'"))?;
    body::only(obj, &["status", "maintenance_mode"])?;
    const SPELLINGS: &[&str] = &[
        "enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE",
    ];
    for key in ["status", "maintenance_mode"] {
        if let Some(v) = obj.get(key) {
            if !v.as_str().is_some_and(|s| SPELLINGS.contains(&s)) {
                return Err(invalid(key, v, &format!("{v} is not one of {SPELLINGS:?}")));
            }
        }
    }
    if !obj.contains_key("status") && !obj.contains_key("maintenance_mode") {
        return Err(invalid(
            "body",
            &body,
            "is not valid under any of the given schemas",
        ));
    }
    NOVA.require_admin(&ctx, "os_compute_api:os-hosts:update")?;
    compute_host(&state, &host).await?;
    Err(not_supported())
}

/// `GET /os-hosts/{host}/{startup,shutdown,reboot}`.
async fn power_action(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    removed_at_2_43(&req)?;
    let (host, action) = path.into_inner();
    let rule = match action.as_str() {
        "startup" => "os_compute_api:os-hosts:start",
        "shutdown" => "os_compute_api:os-hosts:shutdown",
        "reboot" => "os_compute_api:os-hosts:reboot",
        _ => {
            return Err(ApiError::NotFound(
                "The resource could not be found.".into(),
            ))
        }
    };
    NOVA.require_admin(&ctx, rule)?;
    compute_host(&state, &host).await?;
    Err(not_supported())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-hosts").route(web::get().to(list)))
        .service(
            web::resource("/os-hosts/{host}")
                .route(web::get().to(show))
                .route(web::put().to(update)),
        )
        .service(web::resource("/os-hosts/{host}/{action}").route(web::get().to(power_action)));
}
