//! Subnets: list, show, create, update and delete, with Neutron's attributes, validation,
//! visibility and policy. The address arithmetic is `nova_core::ipam`; the writes that depend
//! on a network's other subnets and ports are `nova_db::subnets`.

use crate::listing::{self, select, text_column, texts, Collection, CREATED_AT};
use crate::networks::{bool_of, denied, find as find_network, string_of};
use crate::quotas::{limit_of, SUBNET};
use crate::NetworkState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ipam::{self, IpNet, Pool, Refusal};
use nova_core::time::{iso8601_z, now_ms};
use nova_db::listing::{Arg, Column, Cond, Kind};
use nova_db::subnets::{self as store, Created, Deleted, Subnet};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Subnet {id} could not be found.")).named("SubnetNotFound")
}

/// Neutron's 400 for an attribute's value (an HTTPBadRequest from its validators).
pub(crate) fn invalid(attr: &str, reason: impl std::fmt::Display) -> ApiError {
    bad(format!("Invalid input for {attr}. Reason: {reason}."))
}

/// Neutron's InvalidInput.
pub(crate) fn invalid_input(message: impl std::fmt::Display) -> ApiError {
    bad(format!("Invalid input for operation: {message}.")).named("InvalidInput")
}

/// An IPAM refusal as Neutron answers it.
pub(crate) fn refused(r: Refusal) -> ApiError {
    let e = if r.conflict {
        ApiError::Conflict(r.message)
    } else if r.kind.ends_with("NotFound") {
        ApiError::NotFound(r.message)
    } else {
        ApiError::BadRequest(r.message)
    };
    e.named(r.kind)
}

/// Neutron's visibility of a subnet: an admin, its project, or anyone who may use its network
/// because it is shared.
pub(crate) fn visible_cond(ctx: &RequestContext) -> Cond {
    if ctx.is_admin() {
        return Cond::all(Vec::new());
    }
    Cond::any(vec![
        Cond::eq("project_id", Arg::Text(ctx.project_id.clone())),
        Cond::sql(
            "network_id IN (SELECT id FROM networks WHERE shared = ?)",
            vec![Arg::Bool(true)],
        ),
    ])
}

/// The subnet if the caller may see it, or 404.
pub(crate) async fn find(
    state: &NetworkState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Subnet> {
    let subnet = store::get(&state.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if ctx.is_admin() || subnet.project_id == ctx.project_id {
        return Ok(subnet);
    }
    // Its network's visibility decides (a shared network's subnets are everyone's to see).
    match find_network(state, ctx, &subnet.network_id).await {
        Ok(n) if n.shared => Ok(subnet),
        _ => Err(not_found(id)),
    }
}

/// Neutron's subnet view.
pub(crate) fn view(ctx: &RequestContext, s: &Subnet) -> Map<String, Value> {
    let json_list = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(json!([]));
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "network_id": s.network_id,
        "project_id": s.project_id,
        "tenant_id": s.project_id,
        "ip_version": s.ip_version,
        "cidr": s.cidr,
        "gateway_ip": s.gateway_ip,
        "allocation_pools": json_list(&s.allocation_pools),
        "dns_nameservers": json_list(&s.dns_nameservers),
        "host_routes": json_list(&s.host_routes),
        "enable_dhcp": s.enable_dhcp,
        "ipv6_ra_mode": s.ipv6_ra_mode,
        "ipv6_address_mode": s.ipv6_address_mode,
        "subnetpool_id": null,
        "service_types": [],
        "tags": s.tag_list(),
        "revision_number": s.revision_number,
        "created_at": iso8601_z(s.created_at),
        "updated_at": iso8601_z(s.updated_at),
    });
    let map = v.as_object_mut().expect("a JSON object");
    // Admin-only in Neutron's policy (get_subnet:segment_id).
    if ctx.is_admin() {
        map.insert("segment_id".into(), Value::Null);
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
    "ip_version",
    "cidr",
    "gateway_ip",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "segment_id",
    "shared",
    "revision_number",
];

const COLLECTION: Collection = Collection {
    name: "subnets",
    table: &store::TABLE,
    filters: FILTERS,
    booleans: &["enable_dhcp", "shared"],
    sort_keys: &[
        ("id", store::TABLE.id),
        ("name", text_column("name")),
        ("cidr", text_column("cidr")),
        ("network_id", text_column("network_id")),
        (
            "ip_version",
            Column {
                expr: "ip_version",
                kind: Kind::Int,
            },
        ),
        ("created_at", CREATED_AT),
    ],
};

fn filter_cond(key: &str, wanted: &[String]) -> Cond {
    match key {
        "id" | "name" | "description" | "network_id" | "project_id" | "cidr" => texts(key, wanted),
        "tenant_id" => texts("project_id", wanted),
        "gateway_ip" => texts("gateway_ip", wanted),
        "ipv6_ra_mode" | "ipv6_address_mode" => texts(key, wanted),
        "ip_version" | "revision_number" => listing::integers(key, wanted),
        "enable_dhcp" => listing::booleans(key, wanted),
        "shared" => {
            let shared: Vec<Arg> = wanted
                .iter()
                .filter_map(|w| listing::boolean(w))
                .map(Arg::Bool)
                .collect();
            let marks = vec!["?"; shared.len()].join(", ");
            if shared.is_empty() {
                return Cond::never();
            }
            Cond::sql(
                format!("network_id IN (SELECT id FROM networks WHERE shared IN ({marks}))"),
                shared,
            )
        }
        // Never set here: matches only the empty filter Neutron's empty-string filtering means.
        "subnetpool_id" | "segment_id" => listing::constant(wanted.iter().any(String::is_empty)),
        _ => Cond::never(),
    }
}

/// `GET /v2.0/subnets`.
pub(crate) async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
) -> ApiResult<HttpResponse> {
    let asked = listing::parse(&req, &COLLECTION)?;
    let conds = asked
        .filters
        .iter()
        .map(|(k, wanted)| filter_cond(k, wanted))
        .collect();
    let (subnets, next) = listing::fetch(
        &state.db,
        &req,
        &COLLECTION,
        &asked,
        visible_cond(&ctx),
        conds,
        |s: &Subnet| s.id.as_str(),
        not_found,
    )
    .await?;
    let views = subnets
        .iter()
        .map(|s| select(view(&ctx, s), &asked.fields))
        .collect();
    Ok(HttpResponse::Ok().json(listing::body(&COLLECTION, views, next)))
}

pub(crate) async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let subnet = find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"subnet": select(view(&ctx, &subnet), &listing::fields_of(&req))})))
}

fn subnet_body(raw: &[u8]) -> ApiResult<Map<String, Value>> {
    let body = body::json(raw)?;
    match body.get("subnet") {
        Some(Value::Object(s)) => Ok(s.clone()),
        _ => Err(bad("Resource body required")),
    }
}

fn ip_of(attr: &str, v: &Value) -> ApiResult<IpAddr> {
    v.as_str()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            invalid(
                attr,
                format!(
                    "'{}' is not a valid IP address",
                    v.as_str().unwrap_or(&v.to_string())
                ),
            )
        })
}

/// `allocation_pools` as given: a list of `{"start", "end"}`.
fn pools_of(v: &Value) -> ApiResult<Vec<Pool>> {
    let list = v.as_array().ok_or_else(|| {
        invalid(
            "allocation_pools",
            format!("Invalid data format for IP pool: '{v}'"),
        )
    })?;
    list.iter()
        .map(|p| {
            let bad_format = || {
                invalid(
                    "allocation_pools",
                    format!("Invalid data format for IP pool: '{p}'"),
                )
            };
            let o = p.as_object().ok_or_else(bad_format)?;
            if o.len() != 2 {
                return Err(bad_format());
            }
            let ip = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<IpAddr>().ok())
            };
            match (ip("start"), ip("end")) {
                (Some(start), Some(end)) => Ok(Pool { start, end }),
                _ => Err(
                    ApiError::BadRequest(format!("The allocation pool {p} is not valid."))
                        .named("InvalidAllocationPool"),
                ),
            }
        })
        .collect()
}

/// Neutron's limits on name servers and routes (`max_dns_nameservers`,
/// `max_subnet_host_routes`).
const MAX_DNS: usize = 5;
const MAX_ROUTES: usize = 20;

fn nameservers_of(v: &Value, version: u8) -> ApiResult<String> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid("dns_nameservers", format!("'{v}' is not a list")))?;
    let mut seen: Vec<IpAddr> = Vec::new();
    for n in list {
        let text = n.as_str().unwrap_or_default();
        let ip = text.parse::<IpAddr>().map_err(|_| {
            invalid(
                "dns_nameservers",
                format!("'{text}' is not a valid nameserver. '{text}' is not a valid IP address"),
            )
        })?;
        if seen.contains(&ip) {
            return Err(invalid(
                "dns_nameservers",
                format!("Duplicate nameserver '{text}'"),
            ));
        }
        if ipam::version_of(ip) != version {
            return Err(invalid_input(format!(
                "dns_nameserver '{ip}' does not match the ip_version '{version}'"
            )));
        }
        seen.push(ip);
    }
    if seen.len() > MAX_DNS {
        return Err(ApiError::BadRequest(format!(
            "Unable to complete operation for new subnet. The number of DNS nameservers \
             exceeds the limit {MAX_DNS}."
        ))
        .named("DNSNameServersExhausted"));
    }
    let texts: Vec<String> = seen.iter().map(ToString::to_string).collect();
    Ok(json!(texts).to_string())
}

fn routes_of(v: &Value, version: u8) -> ApiResult<String> {
    let list = v.as_array().ok_or_else(|| {
        invalid(
            "host_routes",
            format!("Invalid data format for hostroute: '{v}'"),
        )
    })?;
    let mut out = Vec::new();
    for r in list {
        let bad_route = || {
            invalid(
                "host_routes",
                format!("Invalid data format for hostroute: '{r}'"),
            )
        };
        let o = r.as_object().ok_or_else(bad_route)?;
        let destination = o
            .get("destination")
            .and_then(Value::as_str)
            .and_then(ipam::parse_cidr)
            .ok_or_else(bad_route)?;
        let nexthop = o
            .get("nexthop")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IpAddr>().ok())
            .ok_or_else(bad_route)?;
        if ipam::version_of(destination.network()) != version
            || ipam::version_of(nexthop) != version
        {
            return Err(invalid_input(format!(
                "host_route '{r}' does not match the ip_version '{version}'"
            )));
        }
        out.push(json!({"destination": destination.to_string(), "nexthop": nexthop.to_string()}));
    }
    if out.len() > MAX_ROUTES {
        return Err(ApiError::BadRequest(format!(
            "Unable to complete operation for new subnet. The number of host routes exceeds \
             the limit {MAX_ROUTES}."
        ))
        .named("HostRoutesExhausted"));
    }
    Ok(Value::Array(out).to_string())
}

/// The gateway as given: an address, or null for none.
fn gateway_of(v: &Value) -> ApiResult<Option<IpAddr>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        other => ip_of("gateway_ip", other).map(Some),
    }
}

/// Neutron's checks of a gateway on a subnet (_validate_subnet): its family, and for IPv4 not
/// the network or broadcast address. One outside the CIDR is accepted (on-link), as Neutron.
fn check_gateway(net: &IpNet, gateway: IpAddr) -> ApiResult<()> {
    let version = ipam::version_of(net.network());
    if ipam::version_of(gateway) != version {
        return Err(invalid_input(format!(
            "gateway_ip '{gateway}' does not match the ip_version '{version}'"
        )));
    }
    if net.contains(&gateway)
        && net.prefix_len() < 31
        && matches!(net, IpNet::V4(_))
        && (gateway == net.network() || gateway == net.broadcast())
    {
        return Err(invalid_input("Gateway is not valid on subnet"));
    }
    Ok(())
}

const IPV6_MODES: &[&str] = &["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

fn mode_of(attr: &str, v: &Value) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if IPV6_MODES.contains(&s.as_str()) => Ok(Some(s.clone())),
        other => Err(invalid(
            attr,
            format!(
                "'{}' is not in {IPV6_MODES:?}",
                other.as_str().unwrap_or(&other.to_string())
            ),
        )),
    }
}

/// Attributes of Neutron's subnets that this service has one answer to: accepted when the
/// value is that answer, refused otherwise rather than silently dropped.
fn check_fixed(key: &str, value: &Value) -> ApiResult<bool> {
    let accepted = match key {
        "subnetpool_id" | "segment_id" => value.is_null(),
        "use_default_subnetpool" | "dns_publish_fixed_ip" => {
            value == &Value::Bool(false) || value == "false"
        }
        "service_types" => value.as_array().is_some_and(Vec::is_empty),
        _ => return Ok(false),
    };
    if accepted {
        Ok(true)
    } else {
        Err(bad(format!(
            "Invalid input for {key}: {value} is not supported by this deployment (no subnet \
             pools, segments, service types or DNS integration)."
        )))
    }
}

pub(crate) async fn create(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = subnet_body(&raw)?;
    for required in ["network_id", "ip_version", "cidr"] {
        if !body.contains_key(required) {
            return Err(bad(format!(
                "Failed to parse request. Required attribute '{required}' not specified"
            )));
        }
    }
    let version: u8 = match &body["ip_version"] {
        Value::Number(n) if n.as_u64() == Some(4) => 4,
        Value::Number(n) if n.as_u64() == Some(6) => 6,
        Value::String(s) if s == "4" => 4,
        Value::String(s) if s == "6" => 6,
        other => return Err(invalid("ip_version", format!("{other} is not in [4, 6]"))),
    };
    let cidr_text = body["cidr"].as_str().unwrap_or_default();
    let net = ipam::parse_cidr(cidr_text).ok_or_else(|| {
        invalid(
            "cidr",
            format!(
                "'{}' is not a valid IP subnet",
                body["cidr"].as_str().unwrap_or(&body["cidr"].to_string())
            ),
        )
    })?;
    if net.prefix_len() == 0 {
        return Err(invalid_input("0 is not allowed as CIDR prefix length"));
    }
    if ipam::version_of(net.network()) != version {
        return Err(invalid_input(format!(
            "cidr '{net}' does not match the ip_version '{version}'"
        )));
    }
    if matches!(net, IpNet::V6(_)) && net.network() == IpAddr::from([0u16; 8]) {
        return Err(invalid_input("IPv6 subnet '::' is not supported"));
    }
    let network_id = string_of("network_id", &body["network_id"], 36)?;
    let now = now_ms();
    let mut subnet = Subnet {
        id: uuid::Uuid::new_v4().to_string(),
        network_id,
        project_id: ctx.project_id.clone(),
        name: String::new(),
        description: String::new(),
        ip_version: i64::from(version),
        cidr: net.to_string(),
        gateway_ip: None,
        allocation_pools: "[]".into(),
        dns_nameservers: "[]".into(),
        host_routes: "[]".into(),
        enable_dhcp: true,
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        tags: "[]".into(),
        revision_number: 0,
        created_at: now,
        updated_at: now,
    };
    let mut gateway = Some(ipam::default_gateway(&net));
    let mut pools = None;
    for (key, value) in &body {
        if check_fixed(key, value)? {
            continue;
        }
        match key.as_str() {
            "network_id" | "ip_version" | "cidr" => {}
            "name" => subnet.name = string_of(key, value, 255)?,
            "description" => subnet.description = string_of(key, value, 255)?,
            "enable_dhcp" => subnet.enable_dhcp = bool_of(key, value)?,
            "gateway_ip" => gateway = gateway_of(value)?,
            "allocation_pools" => pools = Some(pools_of(value)?),
            "dns_nameservers" => subnet.dns_nameservers = nameservers_of(value, version)?,
            "host_routes" => subnet.host_routes = routes_of(value, version)?,
            "ipv6_ra_mode" => subnet.ipv6_ra_mode = mode_of(key, value)?,
            "ipv6_address_mode" => subnet.ipv6_address_mode = mode_of(key, value)?,
            "project_id" | "tenant_id" => {
                let project = string_of(key, value, 255)?;
                if project != ctx.project_id && !ctx.is_admin() {
                    return Err(denied("create_subnet:tenant_id"));
                }
                subnet.project_id = project;
            }
            "prefixlen" => {
                return Err(ApiError::BadRequest(
                    "cidr and prefixlen must not be supplied together".into(),
                )
                .named("BadRequest"))
            }
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    check_ipv6_modes(&subnet, &net)?;
    if subnet.enable_dhcp {
        check_dhcp_cidr(&net)?;
    }
    if let Some(g) = gateway {
        check_gateway(&net, g)?;
    }
    let pools = match pools {
        Some(p) => {
            ipam::validate_pools(&net, &p, gateway).map_err(refused)?;
            p
        }
        None => ipam::default_pools(&net, gateway),
    };
    subnet.gateway_ip = gateway.map(|g| g.to_string());
    subnet.allocation_pools = Subnet::pools_column(&pools);
    // Neutron: the network must be visible (404), and the caller its owner or an admin (403;
    // networks here are admins' provider networks, so members add no subnets to them).
    let network = find_network(&state, &ctx, &subnet.network_id).await?;
    if !(ctx.is_admin() || (network.project_id == ctx.project_id && ctx.can_write())) {
        return Err(denied("create_subnet"));
    }
    let limit = limit_of(&state, &subnet.project_id, SUBNET).await?;
    match store::create(&state.db, &subnet, limit).await? {
        Created::Yes => {}
        Created::OverQuota => {
            return Err(
                ApiError::Conflict("Quota exceeded for resources: ['subnet'].".into())
                    .named("OverQuota"),
            )
        }
        Created::NetworkGone => return Err(crate::networks::not_found(&subnet.network_id)),
        Created::Overlaps(_) => {
            return Err(invalid_input(format!(
                "Requested subnet with cidr: {net} for network: {} overlaps with another \
                 subnet",
                subnet.network_id
            )))
        }
    }
    Ok(HttpResponse::Created().json(json!({"subnet": view(&ctx, &subnet)})))
}

/// Neutron's IPv6 mode rules. Of the address modes, only the stateful one (addresses from the
/// pools, which this service hands out) is served: SLAAC and stateless DHCPv6 derive addresses
/// from the MAC (EUI-64), which this IPAM does not compute.
fn check_ipv6_modes(s: &Subnet, net: &IpNet) -> ApiResult<()> {
    let (ra, addr) = (s.ipv6_ra_mode.as_deref(), s.ipv6_address_mode.as_deref());
    if matches!(net, IpNet::V4(_)) {
        if ra.is_some() {
            return Err(invalid_input(
                "ipv6_ra_mode is not valid when ip_version is 4",
            ));
        }
        if addr.is_some() {
            return Err(invalid_input(
                "ipv6_address_mode is not valid when ip_version is 4",
            ));
        }
        return Ok(());
    }
    if (ra.is_some() || addr.is_some()) && !s.enable_dhcp {
        return Err(invalid_input(
            "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False",
        ));
    }
    if let (Some(a), Some(b)) = (ra, addr) {
        if a != b {
            return Err(invalid_input(format!(
                "ipv6_ra_mode set to '{a}' with ipv6_address_mode set to '{b}' is not valid. \
                 If both attributes are set, they must be the same value"
            )));
        }
    }
    if let Some(auto) = [addr, ra]
        .into_iter()
        .flatten()
        .find(|m| *m != "dhcpv6-stateful")
    {
        return Err(bad(format!(
            "Invalid input for ipv6 modes: '{auto}' is not supported by this deployment; IPv6 \
             subnets here are stateful (dhcpv6-stateful, or no mode): addresses come from the \
             allocation pools."
        )));
    }
    Ok(())
}

/// Neutron's checks of a CIDR that DHCP serves.
fn check_dhcp_cidr(net: &IpNet) -> ApiResult<()> {
    let too_small = match net {
        IpNet::V4(_) => net.prefix_len() > 30,
        IpNet::V6(_) => net.prefix_len() > 126,
    };
    if too_small {
        return Err(invalid_input(
            "Subnet has a prefix length that is incompatible with DHCP service enabled",
        ));
    }
    let first = net.network();
    if first.is_multicast() {
        return Err(invalid_input(
            "Multicast IP subnet is not supported if enable_dhcp is True",
        ));
    }
    if first.is_loopback() {
        return Err(invalid_input(
            "Loopback IP subnet is not supported if enable_dhcp is True",
        ));
    }
    if first == IpAddr::from([0u8, 0, 0, 0]) {
        return Err(invalid_input(
            "First IP '0.0.0.0' of network is not supported if enable_dhcp is True",
        ));
    }
    Ok(())
}

/// A subnet the caller may change: an admin, or its project's member (Neutron's
/// ADMIN_OR_PROJECT_MEMBER); invisible ones are 404, visible others' 403.
async fn find_own(
    state: &NetworkState,
    ctx: &RequestContext,
    id: &str,
    rule: &str,
) -> ApiResult<Subnet> {
    let subnet = find(state, ctx, id).await?;
    if !(ctx.is_admin() || (subnet.project_id == ctx.project_id && ctx.can_write())) {
        return Err(denied(rule));
    }
    Ok(subnet)
}

pub(crate) async fn update(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut subnet = find_own(&state, &ctx, &id, "update_subnet").await?;
    let body = subnet_body(&raw)?;
    let net = subnet
        .net()
        .ok_or_else(|| ApiError::Internal(format!("subnet {id} has no valid cidr")))?;
    let version = ipam::version_of(net.network());
    let mut gateway: Option<IpAddr> = subnet.gateway_ip.as_deref().and_then(|g| g.parse().ok());
    let mut pools = subnet.pools();
    let mut pools_given = false;
    for (key, value) in &body {
        match key.as_str() {
            "name" => subnet.name = string_of(key, value, 255)?,
            "description" => subnet.description = string_of(key, value, 255)?,
            "enable_dhcp" => subnet.enable_dhcp = bool_of(key, value)?,
            "gateway_ip" => gateway = gateway_of(value)?,
            "allocation_pools" => {
                pools = pools_of(value)?;
                pools_given = true;
            }
            "dns_nameservers" => subnet.dns_nameservers = nameservers_of(value, version)?,
            "host_routes" => subnet.host_routes = routes_of(value, version)?,
            "service_types" | "segment_id" | "dns_publish_fixed_ip" => {
                check_fixed(key, value)?;
            }
            "id" | "network_id" | "project_id" | "tenant_id" | "ip_version" | "cidr"
            | "ipv6_ra_mode" | "ipv6_address_mode" | "subnetpool_id" | "created_at"
            | "updated_at" | "revision_number" => {
                return Err(bad(format!("Cannot update read-only attribute {key}")))
            }
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    if subnet.enable_dhcp {
        check_dhcp_cidr(&net)?;
    }
    if let Some(g) = gateway {
        check_gateway(&net, g)?;
    }
    // As Neutron: the pools (new or kept) must still be valid with the gateway; addresses
    // already given outside new pools stay with their ports.
    if pools_given || gateway.map(|g| g.to_string()) != subnet.gateway_ip {
        ipam::validate_pools(&net, &pools, gateway).map_err(refused)?;
    }
    subnet.gateway_ip = gateway.map(|g| g.to_string());
    subnet.allocation_pools = Subnet::pools_column(&pools);
    subnet.updated_at = now_ms();
    if !store::update(&state.db, &subnet).await? {
        return Err(not_found(&id));
    }
    subnet.revision_number += 1;
    Ok(HttpResponse::Ok().json(json!({"subnet": view(&ctx, &subnet)})))
}

pub(crate) async fn delete(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    find_own(&state, &ctx, &id, "delete_subnet").await?;
    match store::delete_unless_in_use(&state.db, &id).await? {
        Deleted::Yes => Ok(HttpResponse::NoContent().finish()),
        Deleted::Missing => Err(not_found(&id)),
        Deleted::InUse => Err(ApiError::Conflict(format!(
            "Unable to complete operation on subnet {id}: One or more ports have an IP \
             allocation from this subnet."
        ))
        .named("SubnetInUse")),
    }
}

/// Whether the caller may read the subnet (for tags); the subnet itself.
pub(crate) async fn find_for_tags(
    state: &NetworkState,
    ctx: &RequestContext,
    id: &str,
    write: bool,
) -> ApiResult<Subnet> {
    if write {
        find_own(state, ctx, id, "update_subnets_tags").await
    } else {
        find(state, ctx, id).await
    }
}
