//! `/os-hypervisors` (admin): the compute nodes as Nova shows them, by microversion — integer
//! ids below 2.53 and uuids from it, `cpu_info` a string below 2.28 and an object from it,
//! the capacity fields until 2.87 (and `/statistics` with them), `uptime` from 2.88, and the
//! servers of a node from 2.53 when asked for (`with_servers`; always in a single
//! hypervisor from 2.75).

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::policy::NOVA;
use api_toolkit::RequestContext;
use api_toolkit::{ApiError, ApiResult};
use nova_core::model::{ComputeNode, Instance, Service, COMPUTE_BINARY};
use nova_core::time::now_ms;
use nova_db::{instances, nodes};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A node with what the views need of its service and servers.
struct Hypervisor {
    node: ComputeNode,
    service: Option<Service>,
    servers: Vec<(String, String)>,
    /// Servers on the node (`running_vms`) and those with a task under way (`current_workload`).
    load: (i64, i64),
}

/// Every node, with its service and (when wanted) its servers.
async fn hypervisors(state: &AppState, with_servers: bool) -> ApiResult<Vec<Hypervisor>> {
    let services: HashMap<String, Service> = nodes::services(&state.db)
        .await?
        .into_iter()
        .filter(|s| s.binary == COMPUTE_BINARY)
        .map(|s| (s.host.clone(), s))
        .collect();
    // Every live server counts (running_vms, current_workload).
    let all: Vec<Instance> = instances::list(&state.db, None, i64::MAX).await?;
    let mut by_node: HashMap<(String, String), Vec<&Instance>> = HashMap::new();
    for i in &all {
        if let (Some(h), Some(n)) = (&i.host, &i.node) {
            by_node.entry((h.clone(), n.clone())).or_default().push(i);
        }
    }
    let mut out: Vec<Hypervisor> = nodes::nodes(&state.db)
        .await?
        .into_iter()
        .map(|node| {
            let key = (node.host.clone(), node.inventory.name.clone());
            let on_node = by_node.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let busy = on_node.iter().filter(|i| i.task_state.is_some()).count();
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            Hypervisor {
                load: (count(on_node.len()), count(busy)),
                service: services.get(&node.host).cloned(),
                servers: if with_servers {
                    on_node
                        .iter()
                        .map(|i| (i.uuid.to_string(), format!("instance-{}", i.uuid)))
                        .collect()
                } else {
                    Vec::new()
                },
                node,
            }
        })
        .collect();
    out.sort_by_key(|h| h.node.api_id);
    Ok(out)
}

fn id_of(h: &Hypervisor, v: ApiVersion) -> Value {
    if v.at_least(53) {
        json!(h.node.inventory.uuid.0.to_string())
    } else {
        json!(h.node.api_id)
    }
}

fn state_and_status(h: &Hypervisor, down_after_ms: i64) -> (&'static str, &'static str) {
    let up = h
        .service
        .as_ref()
        .is_some_and(|s| s.is_up(now_ms(), down_after_ms));
    let disabled = h.service.as_ref().is_some_and(|s| s.disabled);
    (
        if up { "up" } else { "down" },
        if disabled { "disabled" } else { "enabled" },
    )
}

fn summary(h: &Hypervisor, v: ApiVersion, down_after_ms: i64) -> Value {
    let (state, status) = state_and_status(h, down_after_ms);
    json!({
        "id": id_of(h, v),
        "hypervisor_hostname": h.node.inventory.name,
        "state": state,
        "status": status,
    })
}

fn detail(h: &Hypervisor, v: ApiVersion, down_after_ms: i64) -> Value {
    let mut out = summary(h, v, down_after_ms);
    let inv = &h.node.inventory;
    let service = h.service.as_ref();
    out["hypervisor_type"] = json!(inv.hypervisor_type);
    // As the driver reported it, in Nova's integer encoding (0: unknown).
    out["hypervisor_version"] = json!(inv.hypervisor_version);
    out["host_ip"] = json!(service
        .and_then(|s| s.host_ip.clone())
        .unwrap_or_else(|| "127.0.0.1".into()));
    out["service"] = json!({
        "host": h.node.host,
        "id": match service {
            Some(s) if v.at_least(53) => json!(s.uuid),
            Some(s) => json!(s.id),
            None => Value::Null,
        },
        "disabled_reason": service.and_then(|s| s.disabled_reason.clone()),
    });
    if v.at_least(88) {
        // Only the libvirt and z/VM drivers report an uptime in Nova; the others say null.
        out["uptime"] = Value::Null;
    } else {
        let (total, used) = (&inv.total, &h.node.used);
        out["cpu_info"] = if v.at_least(28) { json!({}) } else { json!("") };
        out["vcpus"] = json!(total.vcpus);
        out["vcpus_used"] = json!(used.vcpus);
        out["memory_mb"] = json!(total.memory_mb);
        out["memory_mb_used"] = json!(used.memory_mb);
        out["free_ram_mb"] = json!(total.memory_mb - used.memory_mb);
        out["local_gb"] = json!(total.disk_gb);
        out["local_gb_used"] = json!(used.disk_gb);
        out["free_disk_gb"] = json!(total.disk_gb - used.disk_gb);
        out["disk_available_least"] = json!(total.disk_gb - used.disk_gb);
        out["running_vms"] = json!(h.load.0);
        out["current_workload"] = json!(h.load.1);
    }
    out
}

fn add_servers(out: &mut Value, h: &Hypervisor) {
    out["servers"] = h
        .servers
        .iter()
        .map(|(uuid, name)| json!({"uuid": uuid, "name": name}))
        .collect();
}

#[derive(serde::Deserialize)]
struct Query {
    with_servers: Option<String>,
}

/// `with_servers` as Nova reads a boolean query parameter; `None` when absent.
fn with_servers(req: &HttpRequest, v: ApiVersion) -> ApiResult<Option<bool>> {
    if !v.at_least(53) {
        return Ok(None);
    }
    let q = web::Query::<Query>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("Invalid query: {e}")))?;
    match q
        .with_servers
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => Ok(None),
        Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some("0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Invalid input for query parameters with_servers. Value: {other}."
        ))),
    }
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-hypervisors:list")?;
    let v = ApiVersion::of(&req);
    let servers = with_servers(&req, v)?.unwrap_or(false);
    let items: Vec<Value> = hypervisors(&state, servers)
        .await?
        .iter()
        .map(|h| {
            let mut out = summary(h, v, state.service_down_ms);
            if servers {
                add_servers(&mut out, h);
            }
            out
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "hypervisors": items })))
}

async fn list_detail(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-hypervisors:list-detail")?;
    let v = ApiVersion::of(&req);
    let servers = with_servers(&req, v)?.unwrap_or(false);
    let items: Vec<Value> = hypervisors(&state, servers)
        .await?
        .iter()
        .map(|h| {
            let mut out = detail(h, v, state.service_down_ms);
            if servers {
                add_servers(&mut out, h);
            }
            out
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "hypervisors": items })))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-hypervisors:show")?;
    let v = ApiVersion::of(&req);
    let id = id.into_inner();
    let not_found = || ApiError::NotFound(format!("Hypervisor with ID {id} could not be found."));
    if v.at_least(53) && uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::BadRequest(format!("Invalid uuid {id}")));
    }
    // From 2.75 a single hypervisor lists its servers unless told not to.
    let servers = match with_servers(&req, v)? {
        Some(w) => w,
        None => v.at_least(75),
    };
    let all = hypervisors(&state, servers).await?;
    let h = all
        .iter()
        .find(|h| id_of(h, v).to_string().trim_matches('"') == id)
        .ok_or_else(not_found)?;
    let mut out = detail(h, v, state.service_down_ms);
    if servers && (v.at_least(75) || !h.servers.is_empty()) {
        add_servers(&mut out, h);
    }
    Ok(HttpResponse::Ok().json(json!({ "hypervisor": out })))
}

/// `GET /os-hypervisors/statistics`: sums over every node (gone from 2.88, as in Nova).
async fn statistics(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-hypervisors:statistics")?;
    if ApiVersion::of(&req).at_least(88) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    let all = hypervisors(&state, false).await?;
    let sum = |f: &dyn Fn(&Hypervisor) -> i64| all.iter().map(f).sum::<i64>();
    let (running, busy) = (sum(&|h| h.load.0), sum(&|h| h.load.1));
    Ok(HttpResponse::Ok().json(json!({"hypervisor_statistics": {
        "count": all.len(),
        "vcpus": sum(&|h| h.node.inventory.total.vcpus),
        "vcpus_used": sum(&|h| h.node.used.vcpus),
        "memory_mb": sum(&|h| h.node.inventory.total.memory_mb),
        "memory_mb_used": sum(&|h| h.node.used.memory_mb),
        "free_ram_mb": sum(&|h| h.node.inventory.total.memory_mb - h.node.used.memory_mb),
        "local_gb": sum(&|h| h.node.inventory.total.disk_gb),
        "local_gb_used": sum(&|h| h.node.used.disk_gb),
        "free_disk_gb": sum(&|h| h.node.inventory.total.disk_gb - h.node.used.disk_gb),
        "disk_available_least": sum(&|h| h.node.inventory.total.disk_gb - h.node.used.disk_gb),
        "running_vms": running,
        "current_workload": busy,
    }})))
}

/// The hypervisors whose host name contains `pattern` (Nova's search, a `LIKE %pattern%`);
/// Nova's 404 when none does.
async fn matching(
    state: &AppState,
    pattern: &str,
    with_servers: bool,
) -> ApiResult<Vec<Hypervisor>> {
    let found: Vec<Hypervisor> = hypervisors(state, with_servers)
        .await?
        .into_iter()
        .filter(|h| h.node.inventory.name.contains(pattern))
        .collect();
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "No hypervisor matching '{pattern}' could be found."
        )));
    }
    Ok(found)
}

/// The routes 2.53 removed (`/search`, `/servers`, and `/uptime` from 2.88): Nova's 404 at
/// those versions, as for a path that does not exist.
fn removed_at(v: ApiVersion, minor: u16) -> ApiResult<()> {
    if v.at_least(minor) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    Ok(())
}

/// `GET /os-hypervisors/{pattern}/search` (below 2.53).
async fn search(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    pattern: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    removed_at(v, 53)?;
    NOVA.require_admin(&ctx, "os_compute_api:os-hypervisors:search")?;
    let items: Vec<Value> = matching(&state, &pattern, false)
        .await?
        .iter()
        .map(|h| summary(h, v, state.service_down_ms))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "hypervisors": items })))
}

/// `GET /os-hypervisors/{pattern}/servers` (below 2.53): each match with its servers.
async fn servers(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    pattern: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    removed_at(v, 53)?;
    NOVA.require_admin(&ctx, "os_compute_api:os-hypervisors:servers")?;
    let items: Vec<Value> = matching(&state, &pattern, true)
        .await?
        .iter()
        .map(|h| {
            let mut out = summary(h, v, state.service_down_ms);
            // As Nova: the key only when the hypervisor has servers.
            if !h.servers.is_empty() {
                add_servers(&mut out, h);
            }
            out
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "hypervisors": items })))
}

/// How long the hypervisor's host waits for an uptime question.
const UPTIME_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /os-hypervisors/{id}/uptime` (until 2.87): asked of the host's agent over the bus, as
/// Nova asks nova-compute.
async fn uptime(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    removed_at(v, 88)?;
    NOVA.require_admin(&ctx, "os_compute_api:os-hypervisors:uptime")?;
    let id = id.into_inner();
    let not_found = || ApiError::NotFound(format!("Hypervisor with ID {id} could not be found."));
    if v.at_least(53) && uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::BadRequest(format!("Invalid uuid {id}")));
    }
    let all = hypervisors(&state, false).await?;
    let h = all
        .iter()
        .find(|h| id_of(h, v).to_string().trim_matches('"') == id)
        .ok_or_else(not_found)?;
    let host = &h.node.host;
    let call = nova_core::rpc::Envelope::new(
        Some(ctx.request_id.clone()),
        nova_core::rpc::ComputeCommand::HostUptime,
    );
    let answer = match state
        .bus
        .call(
            &state.queues.compute(host),
            call.encode(),
            UPTIME_CALL_TIMEOUT,
        )
        .await
    {
        Ok(bytes) => bytes,
        Err(nova_core::bus::BusError::Timeout(_)) => {
            return Err(ApiError::Unavailable(format!(
                "The compute host {host} did not answer in time; try again later."
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let uptime = match serde_json::from_slice::<nova_core::rpc::CallReply>(&answer) {
        Ok(nova_core::rpc::CallReply::Uptime { uptime }) => uptime,
        Ok(other) => return Err(ApiError::Internal(format!("uptime of {host}: {other:?}"))),
        Err(e) => return Err(ApiError::Internal(format!("unreadable uptime reply: {e}"))),
    };
    let (state_, status) = state_and_status(h, state.service_down_ms);
    Ok(HttpResponse::Ok().json(json!({"hypervisor": {
        "id": id_of(h, v),
        "hypervisor_hostname": h.node.inventory.name,
        "state": state_,
        "status": status,
        "uptime": uptime,
    }})))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-hypervisors").route(web::get().to(list)))
        .service(web::resource("/os-hypervisors/detail").route(web::get().to(list_detail)))
        .service(web::resource("/os-hypervisors/statistics").route(web::get().to(statistics)))
        .service(web::resource("/os-hypervisors/{id}").route(web::get().to(show)))
        .service(web::resource("/os-hypervisors/{id}/uptime").route(web::get().to(uptime)))
        .service(web::resource("/os-hypervisors/{pattern}/search").route(web::get().to(search)))
        .service(web::resource("/os-hypervisors/{pattern}/servers").route(web::get().to(servers)));
}
