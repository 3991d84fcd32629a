//! `GET /servers/{id}/diagnostics` (admin): what the server's driver can read about it, asked
//! of its host. Until 2.47 in the driver's own keys (here libvirt's legacy names); from 2.48
//! in Nova's common format, which only Nova's kinds of driver can fill (`driver` is an enum):
//! for the others (containers) it is 501, as Nova answers a driver that cannot tell.

use super::visible;
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::policy::NOVA;
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_core::model::{Diagnostics, PowerState};
use nova_core::rpc::{CallReply, ComputeCommand};
use serde_json::{json, Map, Value};

/// Nova's `power_state.STATE_MAP` names, as the diagnostics show them.
fn state_name(p: PowerState) -> &'static str {
    match p {
        PowerState::NoState => "pending",
        PowerState::Running => "running",
        PowerState::Paused => "paused",
        PowerState::Shutdown => "shutdown",
        PowerState::Crashed => "crashed",
        PowerState::Suspended => "suspended",
    }
}

/// 2.48's format (Nova's `instance_diagnostics` view).
fn common_view(d: &Diagnostics, driver: &str, config_drive: bool) -> Value {
    json!({
        "state": d.power_state.map(state_name),
        "driver": driver,
        "hypervisor": d.hypervisor,
        "hypervisor_os": d.hypervisor_os,
        "uptime": d.uptime_s,
        "config_drive": config_drive,
        "num_cpus": d.cpus.len(),
        "num_nics": d.nics.len(),
        "num_disks": d.disks.len(),
        "memory_details": {"maximum": d.memory_max_mb, "used": d.memory_used_mb},
        "cpu_details": d.cpus.iter().map(|c| json!({
            "id": c.id, "time": c.time_ns, "utilisation": c.utilisation,
        })).collect::<Vec<_>>(),
        "nic_details": d.nics.iter().map(|n| json!({
            "mac_address": n.mac_address,
            "rx_octets": n.rx_octets, "rx_errors": n.rx_errors, "rx_drop": n.rx_drop,
            "rx_packets": n.rx_packets, "rx_rate": null,
            "tx_octets": n.tx_octets, "tx_errors": n.tx_errors, "tx_drop": n.tx_drop,
            "tx_packets": n.tx_packets, "tx_rate": null,
        })).collect::<Vec<_>>(),
        "disk_details": d.disks.iter().map(|k| json!({
            "read_bytes": k.read_bytes, "read_requests": k.read_requests,
            "write_bytes": k.write_bytes, "write_requests": k.write_requests,
            "errors_count": k.errors_count,
        })).collect::<Vec<_>>(),
    })
}

/// Before 2.48: a flat map in the names Nova's libvirt driver used (`cpu0_time`, `memory`
/// in KiB, `vda_read`, `eth0_rx`, …), the counters a driver could not read left out.
fn legacy_view(d: &Diagnostics) -> Value {
    let mut m = Map::new();
    let mut put = |k: String, v: Option<i64>| {
        if let Some(v) = v {
            m.insert(k, json!(v));
        }
    };
    for (n, c) in d.cpus.iter().enumerate() {
        put(format!("cpu{}_time", c.id.unwrap_or(n as i64)), c.time_ns);
    }
    put("memory".into(), d.memory_max_mb.map(|mb| mb * 1024));
    put("memory-rss".into(), d.memory_used_mb.map(|mb| mb * 1024));
    for k in &d.disks {
        put(format!("{}_read", k.name), k.read_bytes);
        put(format!("{}_read_req", k.name), k.read_requests);
        put(format!("{}_write", k.name), k.write_bytes);
        put(format!("{}_write_req", k.name), k.write_requests);
        put(format!("{}_errors", k.name), k.errors_count);
    }
    for n in &d.nics {
        put(format!("{}_rx", n.name), n.rx_octets);
        put(format!("{}_rx_drop", n.name), n.rx_drop);
        put(format!("{}_rx_errors", n.name), n.rx_errors);
        put(format!("{}_rx_packets", n.name), n.rx_packets);
        put(format!("{}_tx", n.name), n.tx_octets);
        put(format!("{}_tx_drop", n.name), n.tx_drop);
        put(format!("{}_tx_errors", n.name), n.tx_errors);
        put(format!("{}_tx_packets", n.name), n.tx_packets);
    }
    Value::Object(m)
}

pub(super) async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    // As Nova: the server is looked up first (404), then the policy (403).
    let instance = visible(&state, &ctx, &id).await?;
    NOVA.require_admin(&ctx, "os_compute_api:os-server-diagnostics")?;
    let command = ComputeCommand::Diagnostics {
        instance: instance.uuid,
    };
    let d = match super::host_call::ask(&state, &ctx, &instance, "get_diagnostics", command).await?
    {
        CallReply::Diagnostics { diagnostics } => diagnostics,
        other => return Err(ApiError::Internal(format!("diagnostics reply: {other:?}"))),
    };
    // As Nova's compute manager: only a running guest is asked.
    let power = d.power_state.unwrap_or(PowerState::NoState);
    if power != PowerState::Running {
        return Err(ApiError::Conflict(format!(
            "Cannot 'get_diagnostics' instance {id} while it is in power state {}",
            state_name(power)
        )));
    }
    if !ApiVersion::of(&req).at_least(48) {
        return Ok(HttpResponse::Ok().json(legacy_view(&d)));
    }
    let Some(driver) = d.driver.as_deref() else {
        return Err(ApiError::NotImplemented(format!(
            "Unable to get diagnostics in the 2.48 format: the {} driver is not one of the \
             hypervisor drivers that format names; ask with microversion 2.47 or earlier.",
            d.hypervisor.as_deref().unwrap_or("host's")
        )));
    };
    Ok(HttpResponse::Ok().json(common_view(&d, driver, instance.config_drive)))
}
