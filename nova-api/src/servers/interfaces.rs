//! `os-interface`: a server's ports (Nova's interface attachments), and attaching or detaching
//! one on a live server. The port is made (or the user's bound) here, the NIC plugged by the
//! server's host over a call, as Nova's attach_interface calls nova-compute; a failure leaves
//! the port as it was.

use super::create::{parse_network_list, resolve_networks, NicAsk};
use super::visible;
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::model::{Instance, NetworkRequest, VmState};
use nova_core::rpc::{CallReply, ComputeCommand};
use nova_db::ports::{self, Port};
use serde_json::{json, Value};

/// Nova's interface attachment view of a port; from 2.70 with its device `tag` (none here:
/// no driver passes device tags to the guest).
fn view(port: &Port, ips: Vec<ports::FixedIp>, version: ApiVersion) -> Value {
    let mut v = json!({
        "port_id": port.id,
        "net_id": port.network_id,
        "mac_addr": port.mac_address,
        "port_state": port.status,
        "fixed_ips": ips,
    });
    if version.at_least(70) {
        v["tag"] = Value::Null;
    }
    v
}

/// The views of a server's ports.
async fn views(state: &AppState, list: &[Port], version: ApiVersion) -> ApiResult<Vec<Value>> {
    let ids: Vec<&str> = list.iter().map(|p| p.id.as_str()).collect();
    let mut ips = ports::fixed_ips(&state.db, &ids).await?;
    Ok(list
        .iter()
        .map(|port| view(port, ips.remove(&port.id).unwrap_or_default(), version))
        .collect())
}

fn device(instance: &Instance) -> String {
    instance.uuid.0.to_string()
}

/// `GET /servers/{id}/os-interface`.
pub(super) async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = visible(&state, &ctx, &id).await?;
    let list = ports::of_device(&state.db, &device(&instance)).await?;
    let views = views(&state, &list, ApiVersion::of(&req)).await?;
    Ok(HttpResponse::Ok().json(json!({ "interfaceAttachments": views })))
}

/// The server's port `port_id`, or Nova's 404.
async fn attached(state: &AppState, instance: &Instance, port_id: &str) -> ApiResult<Port> {
    // Bound to it (a host set), not merely naming it as its device.
    match ports::get(&state.db, port_id).await? {
        Some(p) if p.device_id == device(instance) && !p.host_id.is_empty() => Ok(p),
        // Nova's words.
        _ => Err(ApiError::NotFound(format!(
            "Instance {} does not have a port with id {port_id}",
            instance.uuid
        ))),
    }
}

/// `GET /servers/{id}/os-interface/{port_id}`.
pub(super) async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, port_id) = path.into_inner();
    let instance = visible(&state, &ctx, &id).await?;
    let port = attached(&state, &instance, &port_id).await?;
    let mut v = views(&state, &[port], ApiVersion::of(&req)).await?;
    Ok(HttpResponse::Ok().json(json!({"interfaceAttachment": v.remove(0)})))
}

/// Nova's checks of a server an interface is attached to or detached from: not locked (for
/// others than admins), active, paused or stopped, with no task running.
fn check_state(ctx: &RequestContext, instance: &Instance, method: &str) -> ApiResult<()> {
    let id = instance.uuid;
    if instance.locked_by.is_some() && !ctx.is_admin() {
        return Err(ApiError::Conflict(format!("Instance {id} is locked")));
    }
    if let Some(t) = instance.task_state {
        return Err(ApiError::Conflict(format!(
            "Cannot '{method}' instance {id} while it is in task_state {t}"
        )));
    }
    if !matches!(
        instance.vm_state,
        VmState::Active | VmState::Paused | VmState::Stopped
    ) {
        return Err(ApiError::Conflict(format!(
            "Cannot '{method}' instance {id} while it is in vm_state {}",
            instance.vm_state
        )));
    }
    Ok(())
}

/// What an attach asks for, as Nova's schema and checks have it.
fn parse_attach(raw: &[u8]) -> ApiResult<Vec<NicAsk>> {
    let body = body::json(raw)?;
    let Some(attachment) = body.get("interfaceAttachment") else {
        // Nova's schema allows an empty body: a port on the network the project may use.
        return Ok(Vec::new());
    };
    let o = attachment
        .as_object()
        .ok_or_else(|| bad("Invalid input for field/attribute interfaceAttachment."))?;
    let net = o.get("net_id").filter(|v| !v.is_null());
    let port = o.get("port_id").filter(|v| !v.is_null());
    if net.is_some() && port.is_some() {
        return Err(bad("Must not input both network_id and port_id"));
    }
    let mut entry = serde_json::Map::new();
    if let Some(n) = net {
        entry.insert("uuid".into(), n.clone());
    }
    if let Some(p) = port {
        entry.insert("port".into(), p.clone());
    }
    for (key, value) in o {
        match key.as_str() {
            "net_id" | "port_id" => {}
            "fixed_ips" => {
                let ips = value.as_array().filter(|l| l.len() == 1).ok_or_else(|| {
                    bad(
                        "Invalid input for field/attribute fixed_ips: one address, as \
                         [{\"ip_address\": …}].",
                    )
                })?;
                if net.is_none() {
                    return Err(bad("Must input network_id when request IP address"));
                }
                let ip = ips[0].get("ip_address").cloned().unwrap_or(Value::Null);
                entry.insert("fixed_ip".into(), ip);
            }
            "tag" => {
                return Err(bad(
                    "'tag' is not supported by this deployment: no driver here passes device \
                     tags to the guest.",
                ))
            }
            other => return Err(body::unexpected(other)),
        }
    }
    if entry.is_empty() {
        return Ok(Vec::new());
    }
    parse_network_list(&[Value::Object(entry)])
}

/// `POST /servers/{id}/os-interface`.
pub(super) async fn attach(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:os-attach-interfaces:create")?;
    let asks = parse_attach(&raw)?;
    let instance = visible(&state, &ctx, &id).await?;
    check_state(&ctx, &instance, "attach_interface")?;
    let request = if asks.is_empty() {
        NetworkRequest::Auto
    } else {
        NetworkRequest::None
    };
    // Nova's attach answers a port or network it cannot find with 404, and an address in use
    // with 409 (where a server create answers 400 for both).
    if let Some(ask) = asks.first() {
        if let Some(port) = &ask.port {
            let visible = ports::get(&state.db, port)
                .await?
                .is_some_and(|p| ctx.is_admin() || p.project_id == ctx.project_id);
            if !visible {
                return Err(ApiError::NotFound(format!(
                    "Port {port} could not be found."
                )));
            }
        }
        if let Some(net) = &ask.network {
            let viewer = nova_db::Viewer {
                project: &ctx.project_id,
                admin: ctx.is_admin(),
            };
            let Some(network) = nova_db::networks::get_visible(&state.db, net, viewer).await?
            else {
                return Err(ApiError::NotFound(format!(
                    "Network {net} could not be found."
                )));
            };
            super::create::check_external_attach(&ctx, &network)?;
        }
    }
    let resolved = resolve_networks(&state, &ctx, &request, &asks)
        .await
        .map_err(|e| match e {
            ApiError::BadRequest(m) if m.starts_with("Fixed IP address") => ApiError::Conflict(m),
            other => other,
        })?;
    let NetworkRequest::Chosen(mut choice) = resolved else {
        return Err(bad(
            "No network is available to the project to attach an interface to.",
        ));
    };
    let mut new = choice.remove(0);
    let mut chosen = match &instance.networks {
        NetworkRequest::Chosen(c) => c.clone(),
        _ => Vec::new(),
    };
    if instance.node_type == nova_core::model::NodeType::Container {
        let asked = NetworkRequest::Chosen(vec![new.clone()]);
        super::create::once_per_host_network(&asked, &chosen)?;
    }
    // The port: the user's bound, or one made for the server.
    let host = instance
        .host
        .clone()
        .ok_or_else(|| ApiError::Conflict(format!("Instance {id} is not ready")))?;
    let dev = device(&instance);
    // Always a new port: the server may be on the network already (a second NIC on it).
    let nic_request = ports::NicRequest {
        for_build: false,
        ..ports::NicRequest::of(&new)
    };
    let made = match ports::allocate_for_instance(&state.db, &instance, Some(&host), &[nic_request])
        .await?
    {
        Ok(mut made) => made.remove(0),
        Err((_, refusal)) => {
            return Err(match refusal.kind {
                "IpAddressGenerationFailure" => ApiError::BadRequest(format!(
                    "No fixed IP addresses available for network: {}",
                    new.id
                )),
                "PortInUse" | "IpAddressAlreadyAllocated" => ApiError::Conflict(refusal.message),
                // Nova's PortLimitExceeded.
                "OverQuota" => ApiError::Forbidden("Maximum number of ports exceeded".into()),
                _ => ApiError::BadRequest(refusal.message),
            });
        }
    };
    // With its filter, in place before the NIC carries traffic.
    let nic = nova_db::firewall::nics_of(&state.db, std::slice::from_ref(&made))
        .await?
        .remove(0);
    let made = made.port;
    let command = ComputeCommand::AttachInterface {
        instance: instance.uuid,
        backend: new.backend.clone(),
        nic: nic.clone(),
    };
    let plugged = super::host_call::ask(&state, &ctx, &instance, "attach_interface", command).await;
    if let Err(e) = plugged.and_then(|r| match r {
        CallReply::Done => Ok(()),
        other => Err(ApiError::Internal(format!("attach reply: {other:?}"))),
    }) {
        // Nothing of the attach stays: the port made goes, the user's is unbound.
        ports::release_port(&state.db, &made).await?;
        return Err(e);
    }
    // The server is on it from now on: its networks (the port by id, so that a later build
    // of the server finds it) and addresses.
    new.port = Some(made.id.clone());
    new.fixed_ip = None;
    chosen.push(new);
    let networks = NetworkRequest::Chosen(chosen.clone());
    let addresses =
        ports::server_addresses(&state.db, &dev, &chosen, instance.addresses.clone()).await?;
    nova_db::instances::set_networks(&state.db, instance.uuid, &networks, &addresses).await?;
    let made = ports::get(&state.db, &made.id).await?.unwrap_or(made);
    let mut v = views(&state, &[made], ApiVersion::of(&req)).await?;
    Ok(HttpResponse::Ok().json(json!({"interfaceAttachment": v.remove(0)})))
}

/// `DELETE /servers/{id}/os-interface/{port_id}`: unplugged by the host, then the port goes
/// (if it was made for the server) or is unbound (the user's), as Nova does.
pub(super) async fn detach(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, port_id) = path.into_inner();
    NOVA.require_write(&ctx, "os_compute_api:os-attach-interfaces:delete")?;
    let instance = visible(&state, &ctx, &id).await?;
    check_state(&ctx, &instance, "detach_interface")?;
    let port = attached(&state, &instance, &port_id).await?;
    let mut chosen = match &instance.networks {
        NetworkRequest::Chosen(c) => c.clone(),
        _ => Vec::new(),
    };
    let network = nova_db::networks::get(&state.db, &port.network_id).await?;
    let backend = chosen
        .iter()
        .find(|c| c.id == port.network_id)
        .map(|c| c.backend.clone())
        .or_else(|| network.map(|n| n.backend))
        .unwrap_or_default();
    let nic = ports::nics(&state.db, std::slice::from_ref(&port))
        .await?
        .remove(0);
    let command = ComputeCommand::DetachInterface {
        instance: instance.uuid,
        backend,
        nic,
    };
    match super::host_call::ask(&state, &ctx, &instance, "detach_interface", command).await? {
        CallReply::Done => {}
        other => return Err(ApiError::Internal(format!("detach reply: {other:?}"))),
    }
    ports::release_port(&state.db, &port).await?;
    // The server's networks without this NIC (the one chosen with this port, else the one of
    // its network that named no port).
    let position = chosen
        .iter()
        .position(|c| c.port.as_deref() == Some(port.id.as_str()))
        .or_else(|| {
            chosen
                .iter()
                .position(|c| c.id == port.network_id && c.port.is_none())
        });
    if let Some(i) = position {
        chosen.remove(i);
    }
    let networks = if chosen.is_empty() {
        NetworkRequest::None
    } else {
        NetworkRequest::Chosen(chosen.clone())
    };
    let kept: Vec<_> = instance
        .addresses
        .iter()
        .filter(|a| a.mac.as_deref() != Some(port.mac_address.as_str()))
        .cloned()
        .collect();
    let addresses = ports::server_addresses(&state.db, &device(&instance), &chosen, kept).await?;
    nova_db::instances::set_networks(&state.db, instance.uuid, &networks, &addresses).await?;
    Ok(HttpResponse::Accepted().finish())
}
