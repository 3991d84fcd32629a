//! Ports: list, show, create, update and delete, with their MAC and addresses (the IPAM of
//! `nova_db::ports`), Neutron's attributes, visibility and policy.
//!
//! A port with port security (its network's default) holds security groups: those given, or
//! its project's default group when it has an address (ML2's port security extension); the
//! hosts enforce them (`nova_db::firewall`).

use crate::listing::{self, select, text_column, texts, Collection, CREATED_AT};
use crate::networks::{bool_of, denied, string_of};
use crate::subnets::refused;
use crate::NetworkState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ipam;
use nova_core::time::{iso8601_z, now_ms};
use nova_db::listing::{Arg, Cond};
use nova_db::networks::Network;
use nova_db::ports::{self as store, Addresses, FixedIp, IpRequest, Port};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Port {id} could not be found.")).named("PortNotFound")
}

/// Whether the caller owns the port's network (or is an admin): Neutron's "network owner"
/// rules, which guard MAC addresses, given addresses and `network:` owners.
fn owns_network(ctx: &RequestContext, network: &Network) -> bool {
    ctx.is_admin() || network.project_id == ctx.project_id
}

/// Neutron's visibility of ports: an admin, the port's project, or its network's owner.
fn visible_cond(ctx: &RequestContext) -> Cond {
    if ctx.is_admin() {
        return Cond::all(Vec::new());
    }
    Cond::any(vec![
        Cond::eq("project_id", Arg::Text(ctx.project_id.clone())),
        Cond::sql(
            "network_id IN (SELECT id FROM networks WHERE project_id = ?)",
            vec![Arg::Text(ctx.project_id.clone())],
        ),
    ])
}

/// The port if the caller may see it, or 404.
pub(crate) async fn find(state: &NetworkState, ctx: &RequestContext, id: &str) -> ApiResult<Port> {
    let port = store::get(&state.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if ctx.is_admin() || port.project_id == ctx.project_id {
        return Ok(port);
    }
    match nova_db::networks::get(&state.db, &port.network_id).await? {
        Some(n) if n.project_id == ctx.project_id => Ok(port),
        _ => Err(not_found(id)),
    }
}

/// A port the caller may change: its project's member, its network's owner, or an admin.
pub(crate) async fn find_own(
    state: &NetworkState,
    ctx: &RequestContext,
    id: &str,
    rule: &str,
) -> ApiResult<Port> {
    let port = find(state, ctx, id).await?;
    if !(ctx.is_admin() || ctx.can_write()) {
        return Err(denied(rule));
    }
    Ok(port)
}

/// Neutron's port view; the binding's details are for admins, as Neutron's policy has them.
pub(crate) fn view(
    ctx: &RequestContext,
    p: &Port,
    ips: &[FixedIp],
    groups: &[String],
) -> Map<String, Value> {
    let mut v = json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "network_id": p.network_id,
        "project_id": p.project_id,
        "tenant_id": p.project_id,
        "mac_address": p.mac_address,
        "admin_state_up": p.admin_state_up,
        "status": p.status,
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "fixed_ips": ips,
        "security_groups": groups,
        "port_security_enabled": p.port_security_enabled,
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "binding:vnic_type": "normal",
        "tags": p.tag_list(),
        "revision_number": p.revision_number,
        "created_at": iso8601_z(p.created_at),
        "updated_at": iso8601_z(p.updated_at),
    });
    let map = v.as_object_mut().expect("a JSON object");
    if ctx.is_admin() {
        map.insert("binding:host_id".into(), json!(p.host_id));
        map.insert("binding:profile".into(), json!({}));
        map.insert(
            "binding:vif_type".into(),
            json!(if p.host_id.is_empty() {
                "unbound"
            } else {
                "other"
            }),
        );
        map.insert("binding:vif_details".into(), json!({}));
    }
    std::mem::take(map)
}

const FILTERS: &[&str] = &[
    "id",
    "name",
    "description",
    "network_id",
    "project_id",
    "tenant_id",
    "mac_address",
    "admin_state_up",
    "status",
    "device_id",
    "device_owner",
    "fixed_ips",
    "security_groups",
    "binding:host_id",
    "port_security_enabled",
    "revision_number",
];

const COLLECTION: Collection = Collection {
    name: "ports",
    table: &store::TABLE,
    filters: FILTERS,
    booleans: &["admin_state_up", "port_security_enabled"],
    sort_keys: &[
        ("id", store::TABLE.id),
        ("name", text_column("name")),
        ("mac_address", text_column("mac_address")),
        ("network_id", text_column("network_id")),
        ("device_id", text_column("device_id")),
        ("created_at", CREATED_AT),
    ],
};

/// Neutron's `fixed_ips` filter: values `ip_address=…`, `subnet_id=…` and
/// `ip_address_substr=…`; a port matches when one of its addresses meets every kind given.
fn fixed_ips_cond(wanted: &[String]) -> Cond {
    let mut sql = String::from("EXISTS (SELECT 1 FROM ip_allocations a WHERE a.port_id = ports.id");
    let mut args = Vec::new();
    for key in ["ip_address", "subnet_id"] {
        let values: Vec<Arg> = wanted
            .iter()
            .filter_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(|v| Arg::Text(v.to_owned()))
            .collect();
        if !values.is_empty() {
            sql.push_str(&format!(
                " AND a.{key} IN ({})",
                vec!["?"; values.len()].join(", ")
            ));
            args.extend(values);
        }
    }
    for part in wanted
        .iter()
        .filter_map(|w| w.strip_prefix("ip_address_substr="))
    {
        sql.push_str(" AND a.ip_address LIKE ?");
        args.push(Arg::Text(format!("%{part}%")));
    }
    sql.push(')');
    Cond::sql(sql, args)
}

fn filter_cond(ctx: &RequestContext, key: &str, wanted: &[String]) -> Cond {
    match key {
        "id" | "name" | "description" | "network_id" | "project_id" | "mac_address" | "status"
        | "device_id" | "device_owner" => texts(key, wanted),
        "tenant_id" => texts("project_id", wanted),
        "binding:host_id" if ctx.is_admin() => texts("host_id", wanted),
        "admin_state_up" => listing::booleans(key, wanted),
        "revision_number" => listing::integers(key, wanted),
        "fixed_ips" => fixed_ips_cond(wanted),
        "port_security_enabled" => listing::booleans(key, wanted),
        // Ports holding any of the groups.
        "security_groups" => Cond::sql(
            format!(
                "EXISTS (SELECT 1 FROM port_security_groups b WHERE b.port_id = ports.id \
                 AND b.security_group_id IN ({}))",
                vec!["?"; wanted.len()].join(", ")
            ),
            wanted.iter().map(|w| Arg::Text(w.clone())).collect(),
        ),
        _ => Cond::never(),
    }
}

/// The views of `ports`, each with its addresses (one query for all of them).
async fn views(
    state: &NetworkState,
    ctx: &RequestContext,
    ports: &[Port],
    fields: &[String],
) -> ApiResult<Vec<Value>> {
    let ids: Vec<&str> = ports.iter().map(|p| p.id.as_str()).collect();
    let mut ips = store::fixed_ips(&state.db, &ids).await?;
    let mut groups = store::security_groups_of(&state.db, &ids).await?;
    Ok(ports
        .iter()
        .map(|p| {
            let own = ips.remove(&p.id).unwrap_or_default();
            let groups = groups.remove(&p.id).unwrap_or_default();
            select(view(ctx, p, &own, &groups), fields)
        })
        .collect())
}

/// `GET /v2.0/ports`.
pub(crate) async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
) -> ApiResult<HttpResponse> {
    let asked = listing::parse(&req, &COLLECTION)?;
    let conds = asked
        .filters
        .iter()
        .map(|(k, wanted)| filter_cond(&ctx, k, wanted))
        .collect();
    let (ports, next) = listing::fetch(
        &state.db,
        &req,
        &COLLECTION,
        &asked,
        visible_cond(&ctx),
        conds,
        |p: &Port| p.id.as_str(),
        not_found,
    )
    .await?;
    let views = views(&state, &ctx, &ports, &asked.fields).await?;
    Ok(HttpResponse::Ok().json(listing::body(&COLLECTION, views, next)))
}

pub(crate) async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let port = find(&state, &ctx, &id).await?;
    let mut v = views(&state, &ctx, &[port], &listing::fields_of(&req)).await?;
    Ok(HttpResponse::Ok().json(json!({"port": v.remove(0)})))
}

fn port_body(raw: &[u8]) -> ApiResult<Map<String, Value>> {
    let body = body::json(raw)?;
    match body.get("port") {
        Some(Value::Object(p)) => Ok(p.clone()),
        _ => Err(bad("Resource body required")),
    }
}

/// `fixed_ips` as given: each `{"subnet_id"}`, `{"ip_address"}` or both; no address twice.
fn fixed_ips_of(v: &Value) -> ApiResult<Vec<IpRequest>> {
    let list = v.as_array().ok_or_else(|| {
        bad(format!(
            "Invalid input for fixed_ips. Reason: Invalid data format for fixed IP: '{v}'."
        ))
    })?;
    let mut out: Vec<IpRequest> = Vec::new();
    for item in list {
        let bad_item = || {
            bad(format!(
                "Invalid input for fixed_ips. Reason: Invalid data format for fixed IP: '{item}'."
            ))
        };
        let o = item.as_object().ok_or_else(bad_item)?;
        let mut r = IpRequest::default();
        for (k, value) in o {
            match k.as_str() {
                "subnet_id" => r.subnet_id = Some(value.as_str().ok_or_else(bad_item)?.to_owned()),
                "ip_address" => {
                    let text = value.as_str().ok_or_else(bad_item)?;
                    let ip = text.parse::<IpAddr>().map_err(|_| {
                        bad(format!(
                            "Invalid input for fixed_ips. Reason: '{text}' is not a valid IP \
                             address."
                        ))
                    })?;
                    if out.iter().any(|o| o.ip_address == Some(ip)) {
                        return Err(bad(format!(
                            "Invalid input for fixed_ips. Reason: Duplicate IP address '{text}'."
                        )));
                    }
                    r.ip_address = Some(ip);
                }
                _ => return Err(bad_item()),
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Attributes that have one answer here (no extra options): accepted when the value is that
/// answer.
fn check_fixed(key: &str, value: &Value) -> ApiResult<bool> {
    let accepted = match key {
        "allowed_address_pairs" | "extra_dhcp_opts" => {
            value.as_array().is_some_and(Vec::is_empty) || value.is_null()
        }
        "binding:vnic_type" => value == "normal",
        "binding:profile" => value.as_object().is_some_and(Map::is_empty) || value.is_null(),
        _ => return Ok(false),
    };
    if accepted {
        Ok(true)
    } else {
        Err(bad(format!(
            "Invalid input for {key}: {value} is not supported by this deployment (ports here \
             have no address pairs, DHCP options or other VNIC types yet)."
        )))
    }
}

pub(crate) async fn create(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = port_body(&raw)?;
    let Some(network_v) = body.get("network_id") else {
        return Err(bad(
            "Failed to parse request. Required attribute 'network_id' not specified",
        ));
    };
    let network_id = string_of("network_id", network_v, 36)?;
    // An unknown network is a 404; another project's private one a 403, as Neutron's POST
    // (which hides nothing it refuses to create on).
    let network = nova_db::networks::get(&state.db, &network_id)
        .await?
        .ok_or_else(|| crate::networks::not_found(&network_id))?;
    let usable = ctx.is_admin() || network.shared || network.project_id == ctx.project_id;
    if !usable || !(ctx.is_admin() || ctx.can_write()) {
        return Err(denied("create_port"));
    }
    let now = now_ms();
    let mut port = Port {
        id: uuid::Uuid::new_v4().to_string(),
        network_id,
        project_id: ctx.project_id.clone(),
        name: String::new(),
        description: String::new(),
        mac_address: ipam::random_mac(uuid::Uuid::new_v4().as_u128()),
        admin_state_up: true,
        status: "DOWN".into(),
        device_id: String::new(),
        device_owner: String::new(),
        host_id: String::new(),
        compute_owned: false,
        tags: "[]".into(),
        revision_number: 0,
        created_at: now,
        updated_at: now,
        port_security_enabled: network.port_security_enabled,
    };
    let mut mac_given = false;
    let mut addresses = Addresses::Default;
    let mut groups: Option<Vec<String>> = None;
    let owner = owns_network(&ctx, &network);
    for (key, value) in &body {
        if check_fixed(key, value)? {
            continue;
        }
        match key.as_str() {
            "network_id" => {}
            "name" => port.name = string_of(key, value, 255)?,
            "description" => port.description = string_of(key, value, 255)?,
            "admin_state_up" => port.admin_state_up = bool_of(key, value)?,
            "device_id" => port.device_id = string_of(key, value, 255)?,
            "device_owner" => {
                port.device_owner = string_of(key, value, 255)?;
                if port.device_owner.starts_with("network:") && !owner {
                    return Err(denied("create_port:device_owner"));
                }
            }
            "mac_address" => {
                if !owner {
                    return Err(denied("create_port:mac_address"));
                }
                let text = value.as_str().unwrap_or_default();
                port.mac_address = ipam::normalize_mac(text).ok_or_else(|| {
                    bad(format!(
                        "Invalid input for mac_address. Reason: '{text}' is not a valid MAC \
                         address."
                    ))
                })?;
                mac_given = true;
            }
            "fixed_ips" => {
                let asked = fixed_ips_of(value)?;
                // Given addresses are the network owner's to choose (Neutron's
                // create_port:fixed_ips:ip_address); a subnet alone anyone's.
                if asked.iter().any(|r| r.ip_address.is_some()) && !owner {
                    return Err(denied("create_port:fixed_ips:ip_address"));
                }
                addresses = Addresses::Asked(asked);
            }
            "binding:host_id" => {
                if !ctx.is_admin() {
                    return Err(denied("create_port:binding:host_id"));
                }
                port.host_id = string_of(key, value, 255)?;
            }
            "project_id" | "tenant_id" => {
                let project = string_of(key, value, 255)?;
                if project != ctx.project_id && !ctx.is_admin() {
                    return Err(denied("create_port:tenant_id"));
                }
                port.project_id = project;
            }
            "port_security_enabled" => port.port_security_enabled = bool_of(key, value)?,
            "security_groups" => groups = Some(group_ids_of(value)?),
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    // ML2's port security (`_portsec_ext_port_create_processing`): groups need port
    // security; a port with it and no groups given gets its project's default group.
    let groups = match groups {
        Some(g) if !g.is_empty() && !port.port_security_enabled => return Err(security_needs_ip()),
        Some(g) => check_groups(&state, &ctx, &port.project_id, g).await?,
        None if port.port_security_enabled => {
            vec![
                nova_db::security_groups::default_for(&state.db, &port.project_id)
                    .await?
                    .id,
            ]
        }
        None => Vec::new(),
    };
    let options = store::CreateOptions {
        mac_given,
        addresses: &addresses,
        groups: &groups,
        inherit_security: false,
        server: None,
        reuse: None,
    };
    let ips = store::create(&state.db, &mut port, options)
        .await?
        .map_err(refused)?;
    Ok(HttpResponse::Created().json(json!({"port": view(&ctx, &port, &ips, &groups)})))
}

pub(crate) async fn update(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut port = find_own(&state, &ctx, &id, "update_port").await?;
    let body = port_body(&raw)?;
    let network = nova_db::networks::get(&state.db, &port.network_id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let owner = owns_network(&ctx, &network);
    let mut addresses = None;
    let mut groups: Option<Vec<String>> = None;
    for (key, value) in &body {
        if check_fixed(key, value)? {
            continue;
        }
        match key.as_str() {
            "name" => port.name = string_of(key, value, 255)?,
            "description" => port.description = string_of(key, value, 255)?,
            "admin_state_up" => port.admin_state_up = bool_of(key, value)?,
            "device_id" => port.device_id = string_of(key, value, 255)?,
            "device_owner" => {
                port.device_owner = string_of(key, value, 255)?;
                if port.device_owner.starts_with("network:") && !owner {
                    return Err(denied("update_port:device_owner"));
                }
            }
            "fixed_ips" => {
                let asked = fixed_ips_of(value)?;
                if asked.iter().any(|r| r.ip_address.is_some()) && !owner {
                    return Err(denied("update_port:fixed_ips:ip_address"));
                }
                in_use_by_server(&port)?;
                addresses = Some(Addresses::Asked(asked));
            }
            "binding:host_id" => {
                if !ctx.is_admin() {
                    return Err(denied("update_port:binding:host_id"));
                }
                port.host_id = value.as_str().unwrap_or_default().to_owned();
            }
            "mac_address" => {
                return Err(bad(
                    "Invalid input for mac_address: a port's MAC address is kept for its \
                     lifetime by this deployment.",
                ))
            }
            "port_security_enabled" => port.port_security_enabled = bool_of(key, value)?,
            "security_groups" => groups = Some(group_ids_of(value)?),
            "id" | "network_id" | "project_id" | "tenant_id" | "status" | "created_at"
            | "updated_at" | "revision_number" => {
                return Err(bad(format!("Cannot update read-only attribute {key}")))
            }
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    let held = store::security_groups_of(&state.db, &[port.id.as_str()])
        .await?
        .remove(&port.id)
        .unwrap_or_default();
    let groups = match groups {
        Some(g) => Some(check_groups(&state, &ctx, &port.project_id, g).await?),
        None => None,
    };
    match &groups {
        Some(g) if !g.is_empty() && !port.port_security_enabled => return Err(security_needs_ip()),
        // Neutron's: port security is turned off only on a port without groups.
        None if !port.port_security_enabled && !held.is_empty() => {
            return Err(ApiError::Conflict(
                "Port has security group associated. Cannot disable port security or ip \
                 address until security group is removed."
                    .into(),
            )
            .named("PortSecurityPortHasSecurityGroup"))
        }
        _ => {}
    }
    port.updated_at = now_ms();
    let ips = store::update(&state.db, &port, addresses.as_ref(), groups.as_deref())
        .await?
        .map_err(refused)?
        .ok_or_else(|| not_found(&id))?;
    port.revision_number += 1;
    let ips = if addresses.is_some() {
        ips
    } else {
        store::fixed_ips(&state.db, &[port.id.as_str()])
            .await?
            .remove(&port.id)
            .unwrap_or_default()
    };
    let groups = groups.unwrap_or(held);
    Ok(HttpResponse::Ok().json(json!({"port": view(&ctx, &port, &ips, &groups)})))
}

fn security_needs_ip() -> ApiError {
    ApiError::BadRequest(
        "Port security must be enabled and port must have an IP address in order to use \
         security groups."
            .into(),
    )
    .named("PortSecurityAndIPRequiredForSecurityGroups")
}

/// A port's `security_groups` as given: a list of ids, each once.
fn group_ids_of(value: &Value) -> ApiResult<Vec<String>> {
    let invalid = || {
        bad(format!(
            "Invalid input for security_groups. Reason: '{value}' is not a list of unique \
             strings."
        ))
    };
    let list = value.as_array().ok_or_else(invalid)?;
    let mut out: Vec<String> = Vec::new();
    for v in list {
        let id = v.as_str().ok_or_else(invalid)?;
        if out.iter().any(|o| o == id) {
            return Err(invalid());
        }
        out.push(id.to_owned());
    }
    Ok(out)
}

/// The groups a port is to hold, each one of the port's project (an admin's any project's):
/// Neutron's SecurityGroupNotFound for one that is not.
async fn check_groups(
    state: &NetworkState,
    ctx: &RequestContext,
    project: &str,
    ids: Vec<String>,
) -> ApiResult<Vec<String>> {
    for id in &ids {
        match nova_db::security_groups::get_group(&state.db, id).await? {
            Some(g) if g.project_id == project || ctx.is_admin() => {}
            _ => {
                return Err(
                    ApiError::NotFound(format!("Security group {id} does not exist"))
                        .named("SecurityGroupNotFound"),
                )
            }
        }
    }
    Ok(ids)
}

/// Neutron's PortInUse, for a port a server's NIC is: its host would keep using the port's
/// address after the port (or the address) is gone. Nova would then detach the NIC on
/// Neutron's event; here the server's `os-interface` detach does that, first.
fn in_use_by_server(port: &Port) -> ApiResult<()> {
    if port.device_owner.starts_with("compute:") && !port.device_id.is_empty() {
        return Err(ApiError::Conflict(format!(
            "Unable to complete operation on port {} for network {}. Port already has an \
             attached device {}.",
            port.id, port.network_id, port.device_id
        ))
        .named("PortInUse"));
    }
    Ok(())
}

pub(crate) async fn delete(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let port = find_own(&state, &ctx, &id, "delete_port").await?;
    in_use_by_server(&port)?;
    if !store::delete(&state.db, &id).await? {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}
