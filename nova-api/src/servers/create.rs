//! `POST /servers`: the request checked as Nova's schema checks it, its flavor, image, key
//! pair, networks and quota looked up, and the servers written with their build tasks in one
//! transaction, then published for the conductor.

use super::params::{
    access_ip, last_segment, parse_description, parse_hostname, parse_metadata, parse_name,
};
use super::{idempotency, publish_task};
use crate::versions::ApiVersion;
use crate::{views, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use base64::Engine;
use nova_core::model::{ChosenNetwork, NetworkRequest, SchedulerHints};
use nova_db::flavors;
use nova_db::instances::{self, NewInstance};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Nova's default for the number of servers one request may create (`max_count`).
pub(super) const MAX_COUNT: i64 = 100;

/// The properties of a server in Nova's create schema, with the microversions that know them
/// (from, and until inclusive): an unknown one, or one outside its range, is Nova's
/// "Additional properties are not allowed". What each one does here is in the README's table.
const PROPERTIES: &[(&str, u16, u16)] = &[
    ("name", 1, u16::MAX),
    ("imageRef", 1, u16::MAX),
    ("flavorRef", 1, u16::MAX),
    ("adminPass", 1, u16::MAX),
    ("metadata", 1, u16::MAX),
    ("networks", 1, u16::MAX),
    ("OS-DCF:diskConfig", 1, u16::MAX),
    ("accessIPv4", 1, u16::MAX),
    ("accessIPv6", 1, u16::MAX),
    ("personality", 1, 56),
    ("block_device_mapping", 1, u16::MAX),
    ("block_device_mapping_v2", 1, u16::MAX),
    ("config_drive", 1, u16::MAX),
    ("key_name", 1, u16::MAX),
    ("min_count", 1, u16::MAX),
    ("max_count", 1, u16::MAX),
    ("return_reservation_id", 1, u16::MAX),
    ("security_groups", 1, u16::MAX),
    ("user_data", 1, u16::MAX),
    ("availability_zone", 1, u16::MAX),
    ("description", 19, u16::MAX),
    ("tags", 52, u16::MAX),
    ("trusted_image_certificates", 63, u16::MAX),
    ("host", 74, u16::MAX),
    ("hypervisor_hostname", 74, u16::MAX),
    ("hostname", 90, u16::MAX),
];

/// Nova's `personality` (until 2.56): files to inject, each a path and base64 contents.
/// Checked as Nova checks them; this deployment injects no files (as Nova with file injection
/// off and no config drive), so they are not written anywhere.
pub(super) fn check_personality(v: &Value) -> ApiResult<usize> {
    let files = v
        .as_array()
        .ok_or_else(|| invalid("personality", v, &format!("{v} is not of type 'array'")))?;
    for f in files {
        let obj = f
            .as_object()
            .ok_or_else(|| invalid("personality", f, &format!("{f} is not of type 'object'")))?;
        body::only(obj, &["path", "contents"])?;
        let path = obj.get("path").and_then(Value::as_str);
        if !path.is_some_and(|p| (1..=255).contains(&p.chars().count())) {
            return Err(invalid("personality/path", f, "is not a valid path"));
        }
        let contents = obj
            .get("contents")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("personality/contents", f, "is not of type 'string'"))?;
        base64::engine::general_purpose::STANDARD
            .decode(contents)
            .map_err(|_| bad("Personality content for / cannot be decoded"))?;
    }
    Ok(files.len())
}

pub(super) fn parse_count(server: &Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
    let Some(v) = server.get(key) else {
        return Ok(None);
    };
    // Nova accepts an integer or a string of digits.
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 => Ok(Some(n)),
        Some(_) => Err(invalid(key, v, "is less than the minimum of 1")),
        None => Err(invalid(
            key,
            v,
            &format!("{v} is not of type 'integer', 'string'"),
        )),
    }
}

/// The image of a block device mapping that boots from an image onto local disk (what the
/// `openstack` CLI sends with `--image`). Volumes and other mappings need the block storage
/// work and are refused with a clear 400 until then.
pub(super) fn boot_image_of(bdms: &Value) -> ApiResult<Option<String>> {
    let list = bdms.as_array().ok_or_else(|| {
        invalid(
            "block_device_mapping_v2",
            bdms,
            &format!("{bdms} is not of type 'array'"),
        )
    })?;
    let mut image = None;
    for bdm in list {
        let source = bdm.get("source_type").and_then(Value::as_str);
        let destination = bdm
            .get("destination_type")
            .and_then(Value::as_str)
            .unwrap_or("local");
        let boot_index = bdm
            .get("boot_index")
            .and_then(|b| b.as_i64().or_else(|| b.as_str()?.parse().ok()));
        match (source, destination, boot_index) {
            (Some("image"), "local", Some(0)) => {
                let id = bdm
                    .get("uuid")
                    .and_then(Value::as_str)
                    .filter(|u| uuid::Uuid::parse_str(u).is_ok())
                    .ok_or_else(|| invalid("block_device_mapping_v2/uuid", bdm, "is not a 'uuid'"))?;
                image = Some(id.to_owned());
            }
            _ => {
                return Err(bad(
                    "Only a block device mapping that boots an image on local disk is supported by this deployment yet.",
                ))
            }
        }
    }
    Ok(image)
}

/// A validated create request.
pub(super) struct CreateRequest {
    scheduler_hints: SchedulerHints,
    name: String,
    image_ref: String,
    flavor_ref: String,
    metadata: BTreeMap<String, String>,
    user_data: Option<String>,
    availability_zone: Option<String>,
    /// The zone named a host or node (`zone:host`, `zone:host:node`, `zone::node`): Nova's
    /// forced host, for admins.
    forced_host: bool,
    description: Option<String>,
    key_name: Option<String>,
    tags: Vec<String>,
    hostname: Option<String>,
    networks: NetworkRequest,
    /// Networks chosen by uuid or port, in order (then they replace `networks`).
    network_ids: Vec<NicAsk>,
    count: i64,
    /// `min_count`: fewer servers than this is a refusal (quotas may lower `count` to it).
    min_count: i64,
    /// The administrator password asked for: returned as given (no driver here sets one).
    admin_pass: Option<String>,
    access_ip_v4: Option<String>,
    access_ip_v6: Option<String>,
    config_drive: bool,
    return_reservation_id: bool,
    trusted_image_certificates: Option<Vec<String>>,
    /// How many files `personality` named (counted against the injected-files quota).
    personality_files: usize,
    auto_disk_config: bool,
    /// The security groups asked for, by name or id.
    security_groups: Vec<String>,
}

/// One entry of a create's `networks` list: a network by uuid (with an address, perhaps), or
/// a port of the user's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NicAsk {
    pub network: Option<String>,
    pub port: Option<String>,
    pub fixed_ip: Option<std::net::IpAddr>,
}

/// A `networks` list, with Nova's checks (`_get_requested_networks`): objects with a uuid in
/// proper format or a port; a fixed IP a valid address, and not with a port. Device tags need
/// a driver that passes them to the guest, which none here does.
pub(super) fn parse_network_list(list: &[Value]) -> ApiResult<Vec<NicAsk>> {
    let mut asks = Vec::new();
    for entry in list {
        let object = entry.as_object().ok_or_else(|| {
            invalid(
                "networks",
                entry,
                &format!("{entry} is not of type 'object'"),
            )
        })?;
        for key in object.keys() {
            match key.as_str() {
                "uuid" | "port" | "fixed_ip" => {}
                "tag" => {
                    return Err(bad(
                        "'tag' in networks is not supported by this deployment: no driver \
                         here passes device tags to the guest.",
                    ))
                }
                other => return Err(body::unexpected(other)),
            }
        }
        let text = |key: &str| -> ApiResult<Option<&str>> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(other) => Err(invalid(
                    key,
                    other,
                    &format!("{other} is not of type 'string'"),
                )),
            }
        };
        let fixed_ip = match text("fixed_ip")? {
            None => None,
            Some(ip) => Some(
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| bad(format!("Invalid fixed IP address ({ip})")))?,
            ),
        };
        if let Some(port) = text("port")? {
            let Ok(parsed) = uuid::Uuid::parse_str(port) else {
                return Err(bad(format!(
                    "Bad networks format: port uuid is not in proper format ({port})"
                )));
            };
            if let Some(ip) = fixed_ip {
                return Err(bad(format!(
                    "Specified Fixed IP '{ip}' cannot be used with port '{port}': the two \
                     cannot be specified together."
                )));
            }
            asks.push(NicAsk {
                network: None,
                port: Some(parsed.hyphenated().to_string()),
                fixed_ip: None,
            });
            continue;
        }
        let Some(uuid) = text("uuid")? else {
            return Err(bad("Bad network format: missing 'uuid'"));
        };
        let Ok(parsed) = uuid::Uuid::parse_str(uuid) else {
            return Err(bad(format!(
                "Bad networks format: network uuid is not in proper format ({uuid})"
            )));
        };
        // Networks are stored by their hyphenated lower-case form.
        asks.push(NicAsk {
            network: Some(parsed.hyphenated().to_string()),
            port: None,
            fixed_ip,
        });
    }
    Ok(asks)
}

pub(super) fn chosen(n: nova_db::networks::Network) -> ChosenNetwork {
    ChosenNetwork {
        id: n.id,
        name: n.name,
        backend: n.backend,
        port: None,
        fixed_ip: None,
        security_groups: Vec::new(),
    }
}

/// What the server will be on. Networks chosen by uuid as the caller may use them: each one
/// theirs or shared (Nova's 400 for one the networking service does not show the caller); a
/// network may come twice (two NICs on it, as Nova allows), a port once.
/// For `auto`, as Nova: the one network the project may use, a 409 when there are several,
/// and (where Nova would allocate a network for the project) the hosts' own when there is none.
pub(super) async fn resolve_networks(
    state: &AppState,
    ctx: &RequestContext,
    asked: &NetworkRequest,
    ids: &[NicAsk],
) -> ApiResult<NetworkRequest> {
    use nova_db::networks;
    if ids.is_empty() {
        if *asked != NetworkRequest::Auto {
            return Ok(asked.clone());
        }
        // Two are enough to know whether there is one. Nova's `_get_available_networks`: the
        // project's own networks and shared ones (not every network an admin sees, nor the
        // external ones every project sees).
        let listing = nova_db::listing::Listing {
            table: &networks::TABLE,
            conds: vec![networks::usable_cond(&ctx.project_id)],
            tags: Default::default(),
            order: Vec::new(),
            after: None,
            limit: Some(2),
        };
        let mut usable = networks::page(&state.db, &listing).await?;
        return match usable.len() {
            0 => Ok(NetworkRequest::Auto),
            1 => {
                let network = usable.remove(0);
                check_external_attach(ctx, &network)?;
                Ok(NetworkRequest::Chosen(vec![chosen(network)]))
            }
            _ => Err(ApiError::Conflict(
                "More than one possible network found. Specify network ID(s) to select \
                 which one(s) to connect to."
                    .into(),
            )),
        };
    }
    // One port is one NIC: Nova's 400 for a port asked for twice, before any lookup.
    for (i, ask) in ids.iter().enumerate() {
        if let Some(port) = &ask.port {
            if ids[..i].iter().any(|a| a.port.as_ref() == Some(port)) {
                return Err(bad(format!(
                    "Port ID '{port}' was specified twice: you cannot attach a port multiple \
                     times."
                )));
            }
        }
    }
    let mut picked: Vec<ChosenNetwork> = Vec::with_capacity(ids.len());
    for ask in ids {
        let mut choice = match (&ask.port, &ask.network) {
            (Some(port), _) => port_choice(state, ctx, port).await?,
            (None, Some(id)) => {
                let network = networks::get_visible(&state.db, id, viewer(ctx))
                    .await?
                    .ok_or_else(|| bad(format!("Network {id} could not be found.")))?;
                check_external_attach(ctx, &network)?;
                chosen(network)
            }
            (None, None) => return Err(bad("Bad network format: missing 'uuid'")),
        };
        if let Some(ip) = ask.fixed_ip {
            check_fixed_ip(state, &choice.id, ip).await?;
            choice.fixed_ip = Some(ip.to_string());
        }
        picked.push(choice);
    }
    Ok(NetworkRequest::Chosen(picked))
}

/// A container joins each host network once (the engine connects a container to a network
/// once): two of `new` on one host network, or one that a NIC of `had` is on, are refused.
/// (VMs and bare metal take several NICs on one network, as Nova's drivers do.)
pub(super) fn once_per_host_network(new: &NetworkRequest, had: &[ChosenNetwork]) -> ApiResult<()> {
    let NetworkRequest::Chosen(new) = new else {
        return Ok(());
    };
    for (i, n) in new.iter().enumerate() {
        if let Some(same) = had.iter().chain(&new[..i]).find(|p| p.backend == n.backend) {
            return Err(bad(format!(
                "Networks {} and {} are the same network on the hosts ({}): a container is on \
                 each host network once.",
                same.id, n.id, n.backend
            )));
        }
    }
    Ok(())
}

/// How many of the servers asked for the project's port quota leaves room for (Nova's
/// `validate_networks`): each server needs a port on each chosen network it does not bring a
/// port for. Fewer than `min` is Nova's 403 PortLimitExceeded; fewer than `max` makes the
/// create make fewer servers, as Nova's does.
async fn ports_fit(
    state: &AppState,
    ctx: &RequestContext,
    networks: &NetworkRequest,
    min: i64,
    max: i64,
) -> ApiResult<i64> {
    let NetworkRequest::Chosen(chosen) = networks else {
        return Ok(max);
    };
    let per_server =
        i64::try_from(chosen.iter().filter(|n| n.port.is_none()).count()).unwrap_or(i64::MAX);
    if per_server == 0 {
        return Ok(max);
    }
    let (limit, used) = nova_db::ports::quota_and_use(&state.db, &ctx.project_id).await?;
    if limit < 0 {
        return Ok(max);
    }
    if used > limit {
        return Err(ApiError::Forbidden(format!(
            "The number of defined ports: {used} is over the limit: {limit}"
        )));
    }
    let fits = (limit - used) / per_server;
    if fits < min {
        return Err(ApiError::Forbidden(
            "Maximum number of ports exceeded".into(),
        ));
    }
    Ok(max.min(fits))
}

/// The security groups a create asked for, as the ids the ports made for it are to hold
/// (Nova's `_process_security_groups`, here before the build rather than in it): `default`
/// alone is no request (the project's default group is what a port gets anyway); otherwise
/// each name is looked up among the project's groups, a name match before an id match.
/// Nova's answers: unknown, 400; a name that two groups have, 409; groups on a network without
/// port security or without a subnet, 400 (`SecurityGroupCannotBeApplied`, which Nova raises
/// in the build).
async fn resolve_security_groups(
    state: &AppState,
    ctx: &RequestContext,
    asked: &[String],
    networks: &NetworkRequest,
) -> ApiResult<Vec<String>> {
    if asked.iter().all(|n| n == "default") {
        return Ok(Vec::new());
    }
    // The lookups and the networks' check at once (the create's latency counts).
    let made_on: Vec<&str> = match networks {
        NetworkRequest::Chosen(chosen) => chosen
            .iter()
            .filter(|c| c.port.is_none())
            .map(|c| c.id.as_str())
            .collect(),
        _ => Vec::new(),
    };
    let lookups = futures::future::try_join_all(asked.iter().map(|name| {
        nova_db::security_groups::find_by_name_or_id(&state.db, &ctx.project_id, name)
    }));
    let unfit = nova_db::networks::without_port_security_or_subnet(&state.db, &made_on);
    let (lookups, unfit) = futures::try_join!(lookups, unfit)?;
    let mut ids: Vec<String> = Vec::new();
    for (name, found) in asked.iter().zip(lookups) {
        let by_name: Vec<_> = found.iter().filter(|g| &g.name == name).collect();
        let id = match (by_name.as_slice(), found.as_slice()) {
            ([one], _) => one.id.clone(),
            ([], [one]) => one.id.clone(),
            ([], []) if name == "default" => {
                nova_db::security_groups::default_for(&state.db, &ctx.project_id)
                    .await?
                    .id
            }
            ([], []) => {
                return Err(bad(format!(
                    "Unable to find security_group with name or id '{name}'"
                )))
            }
            _ => {
                return Err(ApiError::Conflict(format!(
                    "Multiple security groups found matching '{name}'. Use an ID to be more \
                     specific."
                )))
            }
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if !unfit.is_empty() {
        return Err(bad(
            "Network requires port_security_enabled and subnet associated in order to \
             apply security groups.",
        ));
    }
    Ok(ids)
}

/// A user's port as a server's NIC, with Nova's checks (`_validate_requested_port_ids`):
/// visible to the caller (else 400), theirs unless they are an admin, not bound to another
/// device (409), and holding an address.
async fn port_choice(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<ChosenNetwork> {
    let not_found = || bad(format!("Port id {id} could not be found."));
    let port = nova_db::ports::get(&state.db, id)
        .await?
        .ok_or_else(not_found)?;
    if !ctx.is_admin() && port.project_id != ctx.project_id {
        return Err(not_found());
    }
    if !port.device_id.is_empty() {
        return Err(ApiError::Conflict(format!("Port {id} is still in use.")));
    }
    let ips = nova_db::ports::fixed_ips(&state.db, &[id]).await?;
    if ips.get(id).is_none_or(Vec::is_empty) {
        return Err(bad(format!(
            "Port {id} requires a FixedIP in order to be used."
        )));
    }
    let network = nova_db::networks::get(&state.db, &port.network_id)
        .await?
        .ok_or_else(|| bad(format!("Network {} could not be found.", port.network_id)))?;
    check_external_attach(ctx, &network)?;
    let mut choice = chosen(network);
    choice.port = Some(port.id);
    Ok(choice)
}

/// A fixed IP asked for on a network, with Nova's checks (`validate_networks`): the network
/// has a subnet, and no port holds the address; and, before the build rather than in it, the
/// address is one of a subnet's.
async fn check_fixed_ip(state: &AppState, network: &str, ip: std::net::IpAddr) -> ApiResult<()> {
    let subnets = nova_db::subnets::of_network(&state.db, network).await?;
    if subnets.is_empty() {
        return Err(bad(format!(
            "Network {network} requires a subnet in order to boot instances on."
        )));
    }
    let Some(subnet) = subnets.iter().find(|s| {
        s.net()
            .is_some_and(|n| nova_core::ipam::check_subnet_ip(&n, ip))
    }) else {
        return Err(bad(format!(
            "Invalid input for field/attribute fixed_ip. Value: {ip}. IP address {ip} is not \
             a valid IP for any of the subnets on network {network}."
        )));
    };
    if let Some(holder) = nova_db::ports::holder_of(&state.db, &subnet.id, &ip.to_string()).await? {
        return Err(bad(format!(
            "Fixed IP address {ip} is already in use on instance {}.",
            holder.device_id
        )));
    }
    Ok(())
}

/// Where a create's scheduler hints are (Nova's `os:scheduler_hints`, and the name of the
/// extension it came from, which Nova still accepts).
pub(super) const HINTS: &str = "os:scheduler_hints";
pub(super) const HINTS_OLD_NAME: &str = "OS-SCH-HNT:scheduler_hints";

/// Nova's scheduler hints. `same_host` and `different_host` (a server's uuid or a list of
/// them) are honoured by placement; `group` names a server group, of which this deployment has
/// none; Nova's other hints are for filters this scheduler does not have (a 400 rather than
/// ignored); hints no filter knows are ignored, as Nova ignores them (its schema allows any).
pub(super) fn parse_hints(root: &serde_json::Map<String, Value>) -> ApiResult<SchedulerHints> {
    let Some(hints_v) = root.get(HINTS).or_else(|| root.get(HINTS_OLD_NAME)) else {
        return Ok(SchedulerHints::default());
    };
    let hints = hints_v.as_object().ok_or_else(|| {
        invalid(
            HINTS,
            hints_v,
            &format!("{hints_v} is not of type 'object'"),
        )
    })?;
    let uuids = |key: &str, v: &Value| -> ApiResult<Vec<String>> {
        let list = match v {
            Value::String(_) => vec![v.clone()],
            Value::Array(items) => items.clone(),
            other => {
                return Err(invalid(
                    key,
                    other,
                    &format!("{other} is not valid under any of the given schemas"),
                ))
            }
        };
        list.iter()
            .map(|item| {
                item.as_str()
                    .and_then(|s| uuid::Uuid::parse_str(s).ok())
                    .map(|u| u.hyphenated().to_string())
                    .ok_or_else(|| invalid(key, item, &format!("{item} is not a 'uuid'")))
            })
            .collect()
    };
    let mut out = SchedulerHints::default();
    for (key, value) in hints {
        match key.as_str() {
            "same_host" => out.same_host = uuids(key, value)?,
            "different_host" => out.different_host = uuids(key, value)?,
            // Nova's schema: one uuid; the group is looked up at create (`check_group`).
            "group" => {
                out.group = Some(
                    value
                        .as_str()
                        .and_then(|s| uuid::Uuid::parse_str(s).ok())
                        .map(|u| u.hyphenated().to_string())
                        .ok_or_else(|| invalid(key, value, &format!("{value} is not a 'uuid'")))?,
                );
            }
            "query" | "target_cell" | "different_cell" | "build_near_host_ip" | "cidr" => {
                return Err(bad(format!(
                    "The scheduler hint '{key}' is not supported by this deployment."
                )))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Nova's `InstanceGroupNotFound`, which its create answers with 400.
fn group_not_found(group: &str) -> ApiError {
    bad(format!("Instance group {group} could not be found."))
}

/// The `group` hint names a server group of the caller's project (an admin's: any).
async fn check_group(state: &AppState, ctx: &RequestContext, group: Option<&str>) -> ApiResult<()> {
    let Some(group) = group else { return Ok(()) };
    let uuid = uuid::Uuid::parse_str(group).map_err(|_| group_not_found(group))?;
    match nova_db::server_groups::get(&state.db, uuid).await? {
        Some(g) if ctx.is_admin() || g.project_id == ctx.project_id => Ok(()),
        _ => Err(group_not_found(group)),
    }
}

pub(super) fn parse_create(body: &Value, version: ApiVersion) -> ApiResult<CreateRequest> {
    let root = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    body::only(root, &["server", HINTS, HINTS_OLD_NAME])?;
    let scheduler_hints = parse_hints(root)?;
    let server_v = root.get("server").ok_or_else(|| {
        bad(format!("Invalid input for field/attribute server. Value: {body}. 'server' is a required property"))
    })?;
    let server = server_v.as_object().ok_or_else(|| {
        invalid(
            "server",
            server_v,
            &format!("{server_v} is not of type 'object'"),
        )
    })?;
    // Properties later microversions added are unknown before them, and those they removed
    // after, as in Nova's schemas.
    for key in server.keys() {
        let known = PROPERTIES.iter().any(|(name, from, until)| {
            name == key && version.at_least(*from) && !version.at_least(until.saturating_add(1))
        });
        if !known {
            return Err(body::unexpected(key));
        }
    }
    // From 2.37 a server says what network it wants, if only "auto" or "none" (as Nova).
    let required: &[&str] = if version.at_least(37) {
        &["name", "flavorRef", "networks"]
    } else {
        &["name", "flavorRef"]
    };
    for &required in required {
        if !server.contains_key(required) {
            return Err(invalid(
                "server",
                server_v,
                &format!("'{required}' is a required property"),
            ));
        }
    }
    let name = parse_name(&server["name"])?;
    let flavor_v = &server["flavorRef"];
    let flavor_ref = match flavor_v {
        Value::String(s) if !s.is_empty() => last_segment(s).to_owned(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(invalid(
                "flavorRef",
                flavor_v,
                "is not a valid flavor reference",
            ))
        }
    };
    // "none", "auto" (an empty list too, as the openstack CLI sends it without --network, and
    // no `networks` at all before 2.37: the network the host's driver gives servers), or a list
    // of networks by uuid, looked up in the networking service once the body is valid.
    let (networks, network_ids) = match server.get("networks") {
        None => (NetworkRequest::Auto, Vec::new()),
        Some(Value::Array(list)) if list.is_empty() => (NetworkRequest::Auto, Vec::new()),
        Some(Value::Array(list)) => (NetworkRequest::Auto, parse_network_list(list)?),
        // "auto" and "none" came with 2.37; before, `networks` is a list (as Nova's schema).
        Some(n) if !version.at_least(37) => {
            return Err(invalid(
                "networks",
                n,
                &format!("{n} is not of type 'array'"),
            ))
        }
        Some(n) => match n.as_str().and_then(NetworkRequest::parse) {
            Some(request) => (request, Vec::new()),
            None => {
                return Err(invalid(
                    "networks",
                    n,
                    &format!("{n} is not valid under any of the given schemas"),
                ))
            }
        },
    };
    let boot_image = match server.get("block_device_mapping_v2") {
        None => None,
        Some(bdms) => boot_image_of(bdms)?,
    };
    // As Nova: without a block device mapping to boot from, an image is required.
    let image_ref = match (server.get("imageRef"), boot_image) {
        (Some(image_v), from_bdm) => {
            let id = image_v
                .as_str()
                .map(last_segment)
                .filter(|s| uuid::Uuid::parse_str(s).is_ok())
                .ok_or_else(|| invalid("imageRef", image_v, "is not a 'uuid'"))?
                .to_owned();
            if from_bdm.as_ref().is_some_and(|b| *b != id) {
                return Err(bad(
                    "imageRef and the boot block device name different images.",
                ));
            }
            id
        }
        (None, Some(id)) => id,
        (None, None) => return Err(bad("Missing imageRef attribute")),
    };
    let metadata = match server.get("metadata") {
        None => BTreeMap::new(),
        Some(v) => parse_metadata(v)?,
    };
    let user_data = match server.get("user_data") {
        None => None,
        Some(v) => parse_user_data(v)?,
    };
    let availability_zone = match server.get("availability_zone") {
        None => None,
        Some(v) => match v.as_str() {
            Some(s) if (1..=255).contains(&s.chars().count()) => Some(s.to_owned()),
            _ => {
                return Err(invalid(
                    "availability_zone",
                    v,
                    "is not a valid availability zone",
                ))
            }
        },
    };
    // Nova's `_handle_availability_zone`: `zone:host`, `zone:host:node` or `zone::node`.
    let mut forced = (None, None);
    let availability_zone = match availability_zone {
        Some(z) if z.contains(':') => {
            let parts: Vec<&str> = z.split(':').collect();
            let (zone, host, node) = match parts[..] {
                [zone, host] => (zone, host, ""),
                [zone, host, node] => (zone, host, node),
                _ => return Err(bad("Unable to parse availability_zone")),
            };
            forced = (
                (!host.is_empty()).then(|| host.to_owned()),
                (!node.is_empty()).then(|| node.to_owned()),
            );
            // As Nova: a forced host skips the zone's check and every scheduler filter, so
            // the zone is not kept as a placement constraint (the server shows its host's).
            let zone = (!zone.is_empty()).then(|| zone.to_owned());
            if forced.0.is_some() || forced.1.is_some() {
                None
            } else {
                zone
            }
        }
        other => other,
    };
    let auto_disk_config = match server.get("OS-DCF:diskConfig") {
        None => false,
        Some(v) => parse_disk_config(v)?,
    };
    // Nova's schema: a list of `{"name": …}` (a name or an id); checked against the
    // networking service's groups once the body is valid.
    let mut security_groups = Vec::new();
    if let Some(v) = server.get("security_groups") {
        let list = v
            .as_array()
            .ok_or_else(|| invalid("security_groups", v, &format!("{v} is not of type 'array'")))?;
        for g in list {
            match g
                .as_object()
                .and_then(|o| o.get("name"))
                .and_then(Value::as_str)
            {
                Some(name) if g.as_object().is_some_and(|o| o.len() == 1) => {
                    security_groups.push(name.to_owned())
                }
                _ => {
                    return Err(invalid(
                        "security_groups",
                        g,
                        &format!("{g} is not valid under any of the given schemas"),
                    ))
                }
            }
        }
    }
    let description = match server.get("description") {
        None => None,
        Some(v) => parse_description(v)?,
    };
    let key_name = match server.get("key_name") {
        None => None,
        Some(v) => parse_key_name(v)?,
    };
    let tags = match server.get("tags") {
        None => Vec::new(),
        Some(v) => super::tags::parse_tags(v)?,
    };
    let hostname = match server.get("hostname") {
        None => None,
        Some(v) => Some(parse_hostname(v, version)?),
    };
    let admin_pass = match server.get("adminPass") {
        None => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(v) => {
            return Err(invalid(
                "adminPass",
                v,
                &format!("{v} is not of type 'string'"),
            ))
        }
    };
    let access_ip_v4 = match server.get("accessIPv4") {
        None => None,
        Some(v) => Some(access_ip("accessIPv4", v)?),
    };
    let access_ip_v6 = match server.get("accessIPv6") {
        None => None,
        Some(v) => Some(access_ip("accessIPv6", v)?),
    };
    let config_drive = match server.get("config_drive") {
        None => false,
        Some(v) => body::boolean("config_drive", v)?,
    };
    let return_reservation_id = match server.get("return_reservation_id") {
        None => false,
        Some(v) => body::boolean("return_reservation_id", v)?,
    };
    let personality_files = match server.get("personality") {
        None => 0,
        Some(v) => check_personality(v)?,
    };
    // The legacy block device mapping: only an empty one boots as without (volumes need a
    // block storage service, which this deployment has not: Nova's answer without one).
    if let Some(v) = server.get("block_device_mapping") {
        match v.as_array() {
            Some(list) if list.is_empty() => {}
            Some(_) => {
                return Err(bad(
                    "Block Device Mapping is Invalid: there is no block storage service for its volumes.",
                ))
            }
            None => {
                return Err(invalid(
                    "block_device_mapping",
                    v,
                    &format!("{v} is not of type 'array'"),
                ))
            }
        }
    }
    let trusted_image_certificates = match server.get("trusted_image_certificates") {
        None => None,
        Some(v) => parse_trusted_certs(v)?,
    };
    let mut scheduler_hints = scheduler_hints;
    let forced_host = forced.0.is_some() || forced.1.is_some();
    if forced_host {
        scheduler_hints.host = forced.0;
        scheduler_hints.node = forced.1;
    }
    for (key, slot) in [
        ("host", &mut scheduler_hints.host),
        ("hypervisor_hostname", &mut scheduler_hints.node),
    ] {
        if let Some(v) = server.get(key) {
            match v.as_str() {
                Some(s) if (1..=255).contains(&s.chars().count()) => *slot = Some(s.to_owned()),
                _ => return Err(invalid(key, v, "is not a valid host name")),
            }
        }
    }
    let min = parse_count(server, "min_count")?.unwrap_or(1);
    let max = parse_count(server, "max_count")?.unwrap_or(min);
    if min > max {
        return Err(bad("min_count must be <= max_count"));
    }
    if max > MAX_COUNT {
        return Err(bad(format!("max_count must be <= {MAX_COUNT}")));
    }
    // Nova's MultiplePortsNotApplicable and InvalidFixedIpAndMaxCountRequest.
    if max > 1 && network_ids.iter().any(|n| n.port.is_some()) {
        return Err(bad(
            "Unable to launch multiple instances with a single configured port ID. Please \
             launch your instance one by one with different ports.",
        ));
    }
    if max > 1 && network_ids.iter().any(|n| n.fixed_ip.is_some()) {
        return Err(bad(
            "max_count cannot be greater than 1 if an fixed_ip is specified.",
        ));
    }
    if hostname.is_some() && max > 1 {
        // One hostname cannot name several servers (Nova refuses the same).
        return Err(bad(
            "Cannot set the hostname of more than one server: drop 'hostname' or create one.",
        ));
    }
    Ok(CreateRequest {
        name,
        image_ref,
        flavor_ref,
        metadata,
        user_data,
        availability_zone,
        forced_host,
        description,
        key_name,
        tags,
        hostname,
        networks,
        network_ids,
        count: max,
        min_count: min,
        scheduler_hints,
        admin_pass,
        access_ip_v4,
        access_ip_v6,
        config_drive,
        return_reservation_id,
        trusted_image_certificates,
        personality_files,
        auto_disk_config,
        security_groups,
    })
}

pub(super) async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:servers:create")?;
    let body = body::json(&raw)?;
    let mut request = parse_create(&body, ApiVersion::of(&req))?;
    let ttl = state.idempotency.ttl_ms;
    let keyed = idempotency::key_of(&req, &ctx, &body, &state.idempotency)?;
    if let Some(key) = &keyed {
        idempotency::prune_now_and_then(&state.db, ttl).await;
        if let Some(recorded) = nova_db::idempotency::lookup(&state.db, &key.record).await? {
            return replay(&req, &request, key, &recorded);
        }
    }
    if request.forced_host {
        NOVA.require_admin(&ctx, "os_compute_api:servers:create:forced_host")?;
    }
    check_requested_destination(&state, &ctx, &request.scheduler_hints, request.forced_host)
        .await?;
    check_availability_zone(&state, request.availability_zone.as_deref()).await?;
    check_group(&state, &ctx, request.scheduler_hints.group.as_deref()).await?;
    // The lookups do not depend on each other: they run together (each on its own pooled
    // connection), and their errors are reported in a fixed order.
    let flavor = async {
        match flavors::get(&state.db, &request.flavor_ref).await? {
            Some(f) if !f.disabled && crate::flavors::usable_by(&state, &ctx, &f).await? => {
                ApiResult::Ok(f)
            }
            _ => Err(bad(format!(
                "Flavor {} could not be found.",
                request.flavor_ref
            ))),
        }
    };
    let image = image_for_server(&state, &ctx, &request.image_ref);
    // As Nova: a key pair is the caller's own, and its public key is copied onto the server.
    let key_data = async {
        match &request.key_name {
            None => ApiResult::Ok(None),
            Some(name) => Ok(Some(
                nova_db::keypairs::get(&state.db, &ctx.user_id, name)
                    .await?
                    .ok_or_else(|| bad("Invalid key_name provided."))?
                    .public_key,
            )),
        }
    };
    let quota = crate::quotas::ProjectQuota::of(&state.db, &ctx.project_id);
    let networks = resolve_networks(&state, &ctx, &request.networks, &request.network_ids);
    let (flavor, image, key_data, quota, networks) =
        futures::join!(flavor, image, key_data, quota, networks);
    let flavor = flavor?;
    let node_type = flavor.node_type().map_err(bad)?;
    let image = image?;
    let (container, disk) = (
        image.container_format.as_deref().unwrap_or_default(),
        image.disk_format.as_deref().unwrap_or_default(),
    );
    if node_type == nova_core::model::NodeType::Baremetal {
        if flavor.baremetal_class().is_none() {
            return Err(bad(format!(
                "Flavor {} is for bare metal but asks for no machine: a bare-metal flavor names \
                 its machines' resource class as resources:CUSTOM_<CLASS>=1.",
                flavor.flavorid
            )));
        }
        if container == "bare" && disk != "iso" {
            return Err(bad(format!(
                "Image {} is a whole-disk image (disk_format {disk}): a bare-metal server boots \
                 an ISO (disk_format iso) through its BMC's virtual media here. Writing a \
                 whole-disk image to a machine's disk needs Ironic's agent ramdisk, which this \
                 service does not have.",
                image.id
            )));
        }
    }
    if !node_type.boots(container, disk) {
        return Err(bad(format!(
            "Image {} (container_format {container}, disk_format {disk}) cannot boot on a \
             {node_type} node.",
            image.id
        )));
    }
    image_fits_flavor(&image, &flavor)?;
    check_kernel_and_ramdisk(&state, &ctx, &image).await?;
    let key_data = key_data?;
    let mut networks = networks?;
    if node_type == nova_core::model::NodeType::Container {
        once_per_host_network(&networks, &[])?;
    }
    // Both at once (each is a round trip or two to the database); the groups' refusal first,
    // whichever finished first.
    let (groups, count) = futures::join!(
        resolve_security_groups(&state, &ctx, &request.security_groups, &networks),
        ports_fit(&state, &ctx, &networks, request.min_count, request.count)
    );
    let groups = groups?;
    request.count = count?;
    if let NetworkRequest::Chosen(chosen) = &mut networks {
        for c in chosen.iter_mut().filter(|c| c.port.is_none()) {
            c.security_groups = groups.clone();
        }
    }
    let quota = quota?;
    quota.check_metadata_items(request.metadata.len())?;
    quota.check_injected_files(request.personality_files)?;
    if let Err(refused) = quota.check_server_create(request.count, flavor.vcpus, flavor.memory_mb) {
        // The usage may be this very request's, made by a copy with its key that committed
        // since the lookup above.
        if let Some(key) = &keyed {
            if let Some(recorded) = nova_db::idempotency::lookup(&state.db, &key.record).await? {
                return replay(&req, &request, key, &recorded);
            }
        }
        return Err(refused);
    }
    tracing::debug!("create: flavor, image, quota and networks checked");
    let mut news = Vec::new();
    for n in 1..=request.count {
        // As Nova: several servers from one request are named name-1, name-2, …
        let name = if request.count > 1 {
            format!("{}-{n}", request.name)
        } else {
            request.name.clone()
        };
        let new = NewInstance {
            name,
            project_id: ctx.project_id.clone(),
            user_id: ctx.user_id.clone(),
            node_type,
            flavor: flavor.clone(),
            image_ref: request.image_ref.clone(),
            metadata: request.metadata.clone(),
            user_data: request.user_data.clone(),
            availability_zone: request.availability_zone.clone(),
            description: request.description.clone(),
            key_name: request.key_name.clone(),
            key_data: key_data.clone(),
            tags: request.tags.clone(),
            hostname: request.hostname.clone(),
            networks: networks.clone(),
            scheduler_hints: request.scheduler_hints.clone(),
            access_ip_v4: request.access_ip_v4.clone(),
            access_ip_v6: request.access_ip_v6.clone(),
            config_drive: request.config_drive,
            trusted_image_certificates: request.trusted_image_certificates.clone(),
            auto_disk_config: request.auto_disk_config,
        };
        news.push(new);
    }
    // The check above answers most requests early; this one, on the usage read again under
    // the project's lock, is the one concurrent creates cannot slip past (Nova rechecks after
    // creating instead, and deletes what went over).
    let written = instances::create_with_build_tasks(
        &state.db,
        &news,
        &ctx.request_id,
        keyed.as_ref().map(|k| &k.record),
        |u| {
            let quota = quota.with_server_usage(u);
            quota
                .check_server_create(request.count, flavor.vcpus, flavor.memory_mb)
                .map_err(CreateError::Api)?;
            match (&request.scheduler_hints.group, u.group_members) {
                (None, _) => Ok(()),
                // Deleted since it was looked up.
                (Some(group), None) => Err(CreateError::Api(group_not_found(group))),
                (Some(_), Some(members)) => quota
                    .check_group_members(members, request.count)
                    .map_err(CreateError::Api),
            }
        },
    )
    .await;
    let created = match (written, &keyed) {
        (Ok(instances::Created::Servers(created)), _) => created,
        // A request with the same key made its servers while this one waited its turn.
        (Ok(instances::Created::Replay(recorded)), Some(key)) => {
            return replay(&req, &request, key, &recorded);
        }
        (Ok(instances::Created::Replay(_)), None) => {
            return Err(ApiError::Internal("a replay without a key".into()))
        }
        // A request with the same key committed first (a backend that let both in): its
        // servers are this request's.
        (Err(CreateError::Db(e)), Some(key)) if e.is_unique_violation() => {
            let recorded = nova_db::idempotency::lookup(&state.db, &key.record)
                .await?
                .ok_or_else(|| ApiError::from(e))?;
            return replay(&req, &request, key, &recorded);
        }
        (Err(CreateError::Db(e)), _) => return Err(e.into()),
        (Err(CreateError::Api(e)), _) => return Err(e),
    };
    tracing::debug!("create: servers and their build tasks written");
    let mut first = None;
    for (instance, task) in created {
        publish_task(&state, task, instance.uuid, &ctx.request_id).await;
        tracing::info!(instance = %instance.uuid, "server accepted");
        first.get_or_insert(instance);
    }
    let instance = first.ok_or_else(|| ApiError::Internal("no server created".into()))?;
    let password = request.admin_pass.clone().unwrap_or_else(admin_pass);
    Ok(accepted(
        &req,
        &request,
        &instance.uuid.to_string(),
        Some(password),
        false,
    ))
}

/// The answer to a request whose idempotency key made servers before (409 for another body).
fn replay(
    req: &HttpRequest,
    request: &CreateRequest,
    key: &idempotency::Keyed,
    recorded: &nova_db::idempotency::Recorded,
) -> ApiResult<HttpResponse> {
    let first = idempotency::replayed(key, recorded)?;
    Ok(accepted(req, request, &first.to_string(), None, true))
}

/// Why writing a create's servers failed: the database (whose unique violation may be a
/// racing request with the same idempotency key), or the quota under the project's lock.
enum CreateError {
    Db(nova_db::DbError),
    Api(ApiError),
}

impl From<nova_db::DbError> for CreateError {
    fn from(e: nova_db::DbError) -> Self {
        CreateError::Db(e)
    }
}

/// The 202 of a create whose first server is `id`. A replay (an idempotency key seen before)
/// says so, and has no `adminPass`: a generated one is not kept, and Nova's schema lets the
/// member be absent (as with `enable_instance_password` off).
fn accepted(
    req: &HttpRequest,
    request: &CreateRequest,
    id: &str,
    admin_pass: Option<String>,
    replayed: bool,
) -> HttpResponse {
    let mut response = HttpResponse::Accepted();
    if replayed {
        response.insert_header((idempotency::REPLAYED, "true"));
    }
    if request.return_reservation_id {
        // As Nova: the request's reservation id instead of a server (the first server's, as
        // the servers' views show it).
        return response.json(json!({"reservation_id": format!("r-{}", &id[..8])}));
    }
    let url = PublicUrl::of(req);
    let links = views::links(&url, "servers", id);
    let location = links[0]["href"].as_str().unwrap_or_default().to_owned();
    let mut server = json!({
        "id": id,
        "links": links,
        "OS-DCF:diskConfig": if request.auto_disk_config { "AUTO" } else { "MANUAL" },
        // As Nova's create view: the groups asked for, or `default`.
        "security_groups": if request.security_groups.is_empty() {
            json!([{"name": "default"}])
        } else {
            request
                .security_groups
                .iter()
                .map(|name| json!({"name": name}))
                .collect::<Value>()
        },
    });
    // Replayed, a password the client chose is its own to see again.
    if let Some(password) = admin_pass.or_else(|| request.admin_pass.clone()) {
        server["adminPass"] = json!(password);
    }
    response
        .insert_header(("Location", location))
        .json(json!({ "server": server }))
}

/// Who the caller is, for the visibility of what projects share (images, networks).
fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    nova_db::Viewer {
        project: &ctx.project_id,
        admin: ctx.is_admin(),
    }
}

/// The image a server create names, checked as Nova checks it: visible to the caller (the
/// image service's rules) and active.
pub(super) async fn image_for_server(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<nova_db::images::Image> {
    let image = nova_db::images::get_visible(&state.db, id, viewer(ctx))
        .await?
        .ok_or_else(|| bad(format!("Image {id} could not be found.")))?;
    if image.status != "active" {
        return Err(bad(format!("Image {id} is not active.")));
    }
    Ok(image)
}

/// Nova's `_handle_kernel_and_ramdisk`: the kernel and ramdisk an image names in `kernel_id`
/// and `ramdisk_id` must be images the caller may see (a project must not boot another's
/// private image as its kernel); 400 "Can not find requested image" otherwise, as Nova's
/// `ImageNotFound`. `kernel_id` `nokernel` names none.
pub(super) async fn check_kernel_and_ramdisk(
    state: &AppState,
    ctx: &RequestContext,
    image: &nova_db::images::Image,
) -> ApiResult<()> {
    let boot = nova_core::model::DirectBoot::of_properties(&image.properties);
    for id in [boot.kernel_id, boot.ramdisk_id].into_iter().flatten() {
        if nova_db::images::get_visible(&state.db, &id, viewer(ctx))
            .await?
            .is_none()
        {
            return Err(bad("Can not find requested image"));
        }
    }
    Ok(())
}

/// 2.74's `host` and `hypervisor_hostname`: for admins (Nova's
/// `servers:create:requested_destination`), and they must name a compute host or node that
/// exists (Nova's `ComputeHostNotFound`, 400).
async fn check_requested_destination(
    state: &AppState,
    ctx: &RequestContext,
    hints: &SchedulerHints,
    forced: bool,
) -> ApiResult<()> {
    if hints.host.is_none() && hints.node.is_none() {
        return Ok(());
    }
    if !forced {
        NOVA.require_admin(ctx, "os_compute_api:servers:create:requested_destination")?;
    }
    let nodes = nova_db::nodes::nodes(&state.db).await?;
    if let Some(host) = &hints.host {
        if !nodes.iter().any(|n| n.host == *host) {
            return Err(bad(format!("Compute host {host} could not be found.")));
        }
    }
    if let Some(node) = &hints.node {
        if !nodes.iter().any(|n| n.inventory.name == *node) {
            return Err(bad(format!("Compute host {node} could not be found.")));
        }
    }
    Ok(())
}

/// Nova's `_check_external_network_attach`: a network that is external and not shared is
/// for admins' servers (403 ExternalNetworkAttachForbidden).
pub(super) fn check_external_attach(
    ctx: &RequestContext,
    network: &nova_db::networks::Network,
) -> ApiResult<()> {
    if network.router_external && !network.shared && !ctx.is_admin() {
        return Err(ApiError::Forbidden(format!(
            "It is not allowed to create an interface on external network {}",
            network.id
        )));
    }
    Ok(())
}

/// A requested zone must be one of the available compute zones (Nova's
/// `_validate_and_build_base_options`).
async fn check_availability_zone(state: &AppState, zone: Option<&str>) -> ApiResult<()> {
    let Some(zone) = zone else {
        return Ok(());
    };
    let zones = crate::os_availability_zone::compute_zones(state).await?;
    if zones.get(zone) != Some(&true) {
        return Err(bad("The requested availability zone is not available"));
    }
    Ok(())
}

/// Nova's checks of an image against the flavor (`_check_requested_image`): its `min_ram`
/// within the flavor's memory; its `min_disk` and its size within the flavor's root disk,
/// unless the root disk is 0 (no limit).
pub(super) fn image_fits_flavor(
    image: &nova_db::images::Image,
    flavor: &nova_core::model::Flavor,
) -> ApiResult<()> {
    if image.min_ram > flavor.memory_mb {
        return Err(bad("Flavor's memory is too small for requested image."));
    }
    const GIB: i64 = 1 << 30;
    if flavor.root_gb > 0 {
        let flavor_size = flavor.root_gb.saturating_mul(GIB);
        let min_disk = image.min_disk.saturating_mul(GIB);
        if min_disk > flavor_size {
            return Err(bad(format!(
                "Flavor's disk is too small for requested image. Flavor disk is {flavor_size} \
                 bytes, minimum size is {min_disk} bytes."
            )));
        }
        if let Some(size) = image.size.filter(|s| *s > flavor_size) {
            return Err(bad(format!(
                "Flavor's disk is too small for requested image. Flavor disk is {flavor_size} \
                 bytes, image is {size} bytes."
            )));
        }
    }
    Ok(())
}

/// Nova's `user_data`: null, or base64 of at most 65535 characters.
pub(super) fn parse_user_data(v: &Value) -> ApiResult<Option<String>> {
    if v.is_null() {
        return Ok(None);
    }
    let s = v
        .as_str()
        .ok_or_else(|| invalid("user_data", v, &format!("{v} is not of type 'string'")))?;
    if s.len() > 65535 {
        return Err(invalid("user_data", v, "is too long"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| bad("User data needs to be valid base 64."))?;
    Ok(Some(s.to_owned()))
}

/// `OS-DCF:diskConfig`: AUTO (true) or MANUAL (false).
pub(super) fn parse_disk_config(v: &Value) -> ApiResult<bool> {
    match v.as_str() {
        Some("AUTO") => Ok(true),
        Some("MANUAL") => Ok(false),
        _ => Err(invalid(
            "OS-DCF:diskConfig",
            v,
            "is not one of ['AUTO', 'MANUAL']",
        )),
    }
}

/// A key pair's name, or null for none.
pub(super) fn parse_key_name(v: &Value) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        _ => match v.as_str() {
            Some(s) if (1..=255).contains(&s.chars().count()) => Ok(Some(s.to_owned())),
            _ => Err(invalid("key_name", v, "is not a valid key pair name")),
        },
    }
}

/// 2.63's `trusted_image_certificates`: null, or 1 to 50 unique non-empty ids.
pub(super) fn parse_trusted_certs(v: &Value) -> ApiResult<Option<Vec<String>>> {
    match v {
        Value::Null => Ok(None),
        Value::Array(ids) => {
            let mut out = Vec::new();
            for id in ids {
                match id.as_str() {
                    Some(s) if !s.is_empty() && !out.iter().any(|o| o == s) => {
                        out.push(s.to_owned())
                    }
                    _ => {
                        return Err(invalid(
                            "trusted_image_certificates",
                            id,
                            "is not a unique, non-empty string",
                        ))
                    }
                }
            }
            if out.is_empty() || out.len() > 50 {
                return Err(invalid(
                    "trusted_image_certificates",
                    v,
                    "must hold 1 to 50 certificate ids",
                ));
            }
            Ok(Some(out))
        }
        _ => Err(invalid(
            "trusted_image_certificates",
            v,
            &format!("{v} is not of type 'array', 'null'"),
        )),
    }
}

/// A random administrator password, as Nova returns at create (12 characters).
pub(super) fn admin_pass() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requires_name_and_flavor_and_rejects_unknown_fields() {
        let ok = json!({"server": {"name": "a", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1"}});
        assert!(parse_create(&ok, ApiVersion(2, 1)).is_ok());
        let no_name = json!({"server": {"imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1"}});
        let e = parse_create(&no_name, ApiVersion(2, 1))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("'name' is a required property"), "{e}");
        let extra = json!({"server": {"name": "a", "flavorRef": "1", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "bogus": 1}});
        let e = parse_create(&extra, ApiVersion(2, 1))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("'bogus' was unexpected"), "{e}");
        let spaced = json!({"server": {"name": " a", "flavorRef": "1", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b"}});
        assert!(parse_create(&spaced, ApiVersion(2, 1)).is_err());
    }

    #[test]
    fn references_may_be_urls() {
        let r = json!({"server": {"name": "a", "flavorRef": "http://x/flavors/42",
            "imageRef": "http://x/images/70a599e0-31e7-49b7-b260-868f441e862b"}});
        let c = parse_create(&r, ApiVersion(2, 1))
            .ok()
            .map(|c| (c.flavor_ref, c.image_ref));
        assert_eq!(
            c,
            Some(("42".into(), "70a599e0-31e7-49b7-b260-868f441e862b".into()))
        );
    }
}
