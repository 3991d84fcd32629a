//! `/servers`: create, list, detail, show, delete, and the `os-stop`, `os-start` and `reboot`
//! actions. Each write is one transaction that also records the task; the task is published
//! after the commit, and a lost publish is re-driven by the conductor's reconciler, so a
//! 202 always means the request will be carried out.

use crate::error::{ApiError, ApiResult};
use crate::links::PublicUrl;
use crate::policy::require_write;
use crate::versions::ApiVersion;
use crate::{body, views, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use keystone_auth::RequestContext;
use nova_db::actions::Requester;
use nova_db::flavors;
use nova_db::instances::{self, NewInstance, TransitionError, TransitionRule};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::model::{
    ChosenNetwork, LockedBy, NetworkRequest, SchedulerHints, TaskState, VmState,
};
use nova_core::rpc::{CallReply, ComputeCommand, Envelope, TaskKind, TaskSubmitted};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Nova's `max_limit`: the most servers one page returns.
const MAX_LIMIT: i64 = 1000;
/// Nova's default for the number of servers one request may create (`max_count`).
const MAX_COUNT: i64 = 100;

/// Server properties Nova's 2.1 schema knows that this deployment cannot honour yet; they get a
/// clear 400 instead of being ignored.
const NOT_YET_SUPPORTED: &[&str] = &[
    "block_device_mapping",
    "personality",
    "config_drive",
    "adminPass",
    "accessIPv4",
    "accessIPv6",
    "return_reservation_id",
];
const KNOWN: &[&str] = &[
    "name",
    "imageRef",
    "block_device_mapping_v2",
    "networks",
    "flavorRef",
    "metadata",
    "user_data",
    "availability_zone",
    "min_count",
    "max_count",
    "OS-DCF:diskConfig",
    "security_groups",
    "key_name",
];

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

pub(crate) fn invalid(field: &str, value: &Value, why: &str) -> ApiError {
    bad(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}

/// A server name as Nova's `name` format wants it: 1–255 characters, no leading or trailing
/// whitespace.
fn parse_name(v: &Value) -> ApiResult<String> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid("name", v, &format!("{v} is not of type 'string'")))?;
    let len = s.chars().count();
    if len == 0 {
        return Err(invalid("name", v, "'' is too short"));
    }
    if len > 255 {
        return Err(invalid("name", v, "is too long"));
    }
    if s.trim() != s {
        return Err(invalid(
            "name",
            v,
            "Leading/trailing whitespace is not allowed",
        ));
    }
    Ok(s.to_owned())
}

/// A server description (2.19): `null` or up to 255 printable characters (Nova's
/// `description` parameter type).
fn parse_description(v: &Value) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            if s.chars().count() > 255 {
                return Err(invalid("description", v, "is too long"));
            }
            if s.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(invalid(
                    "description",
                    v,
                    "Invalid characters in the description",
                ));
            }
            Ok(Some(s.clone()))
        }
        _ => Err(invalid(
            "description",
            v,
            &format!("{v} is not of type 'string', 'null'"),
        )),
    }
}

/// Nova's hostname parameter (2.90): one DNS label of letters, digits and hyphens that neither
/// starts nor ends with a hyphen, 2 to 63 characters; from 2.94 a fully qualified name of such
/// labels (up to 255 characters).
fn parse_hostname(v: &Value, version: ApiVersion) -> ApiResult<String> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid("hostname", v, &format!("{v} is not of type 'string'")))?;
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = if version.at_least(94) {
        (1..=255).contains(&s.len()) && s.split('.').all(label_ok)
    } else {
        s.len() >= 2 && label_ok(s)
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err(invalid("hostname", v, "is not a valid hostname"))
    }
}

/// A reference is an id or a URL ending in one (Nova takes the last path segment).
fn last_segment(s: &str) -> &str {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s)
}

pub(crate) fn parse_metadata(v: &Value) -> ApiResult<BTreeMap<String, String>> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("metadata", v, &format!("{v} is not of type 'object'")))?;
    let mut out = BTreeMap::new();
    for (k, val) in obj {
        let key_ok = (1..=255).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
        if !key_ok {
            return Err(invalid(
                "metadata",
                v,
                &format!("'{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
            ));
        }
        let s = val.as_str().ok_or_else(|| {
            invalid(
                &format!("metadata/{k}"),
                val,
                &format!("{val} is not of type 'string'"),
            )
        })?;
        if s.chars().count() > 255 {
            return Err(invalid(&format!("metadata/{k}"), val, "is too long"));
        }
        out.insert(k.clone(), s.to_owned());
    }
    Ok(out)
}

fn parse_count(server: &Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
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
fn boot_image_of(bdms: &Value) -> ApiResult<Option<String>> {
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
struct CreateRequest {
    scheduler_hints: SchedulerHints,
    name: String,
    image_ref: String,
    flavor_ref: String,
    metadata: BTreeMap<String, String>,
    user_data: Option<String>,
    availability_zone: Option<String>,
    description: Option<String>,
    key_name: Option<String>,
    tags: Vec<String>,
    hostname: Option<String>,
    networks: NetworkRequest,
    /// Networks chosen by uuid, in order (then they replace `networks`).
    network_ids: Vec<String>,
    count: i64,
}

/// The uuids of a `networks` list (Nova's checks: objects with a uuid in proper format; ports,
/// fixed IPs and device tags need a networking service with ports, which this one has not).
fn parse_network_list(list: &[Value]) -> ApiResult<Vec<String>> {
    let mut ids = Vec::new();
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
                "uuid" => {}
                "port" if object[key].is_null() => {}
                "port" | "fixed_ip" | "tag" => {
                    return Err(bad(format!(
                        "'{key}' in networks is not supported by this deployment: it has \
                         networks but no ports; choose networks by uuid."
                    )))
                }
                other => return Err(body::unexpected(other)),
            }
        }
        let uuid = match object.get("uuid") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(invalid(
                    "uuid",
                    other,
                    &format!("{other} is not of type 'string'"),
                ))
            }
            None => return Err(bad("Bad network format: missing 'uuid'")),
        };
        let Ok(parsed) = uuid::Uuid::parse_str(uuid) else {
            return Err(bad(format!(
                "Bad networks format: network uuid is not in proper format ({uuid})"
            )));
        };
        // Networks are stored by their hyphenated lower-case form.
        ids.push(parsed.hyphenated().to_string());
    }
    Ok(ids)
}

fn chosen(n: nova_db::networks::Network) -> ChosenNetwork {
    ChosenNetwork {
        id: n.id,
        name: n.name,
        backend: n.backend,
    }
}

/// What the server will be on. Networks chosen by uuid as the caller may use them: each one
/// theirs or shared (Nova's 400 for one the networking service does not show the caller), and
/// no two the same network on the hosts (a container has one interface per host network).
/// For `auto`, as Nova: the one network the project may use, a 409 when there are several,
/// and (where Nova would allocate a network for the project) the hosts' own when there is none.
async fn resolve_networks(
    state: &AppState,
    ctx: &RequestContext,
    asked: &NetworkRequest,
    ids: &[String],
) -> ApiResult<NetworkRequest> {
    use nova_db::networks;
    if ids.is_empty() {
        if *asked != NetworkRequest::Auto {
            return Ok(asked.clone());
        }
        let mut usable: Vec<_> = networks::list(&state.db)
            .await?
            .into_iter()
            .filter(|n| crate::networks::visible(ctx, n))
            .collect();
        return match usable.len() {
            0 => Ok(NetworkRequest::Auto),
            1 => Ok(NetworkRequest::Chosen(vec![chosen(usable.remove(0))])),
            _ => Err(ApiError::Conflict(
                "More than one possible network found. Specify network ID(s) to select \
                 which one(s) to connect to."
                    .into(),
            )),
        };
    }
    let mut picked: Vec<ChosenNetwork> = Vec::with_capacity(ids.len());
    for id in ids {
        let network = networks::get(&state.db, id)
            .await?
            .filter(|n| crate::networks::visible(ctx, n))
            .ok_or_else(|| bad(format!("Network {id} could not be found.")))?;
        if let Some(same) = picked.iter().find(|p| p.backend == network.backend) {
            return Err(bad(format!(
                "Networks {} and {id} are the same network on the hosts ({}): a server is on \
                 each host network once.",
                same.id, network.backend
            )));
        }
        picked.push(chosen(network));
    }
    Ok(NetworkRequest::Chosen(picked))
}

/// Where a create's scheduler hints are (Nova's `os:scheduler_hints`, and the name of the
/// extension it came from, which Nova still accepts).
const HINTS: &str = "os:scheduler_hints";
const HINTS_OLD_NAME: &str = "OS-SCH-HNT:scheduler_hints";

/// Nova's scheduler hints. `same_host` and `different_host` (a server's uuid or a list of
/// them) are honoured by placement; `group` names a server group, of which this deployment has
/// none; Nova's other hints are for filters this scheduler does not have (a 400 rather than
/// ignored); hints no filter knows are ignored, as Nova ignores them (its schema allows any).
fn parse_hints(root: &serde_json::Map<String, Value>) -> ApiResult<SchedulerHints> {
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
            "group" => {
                return Err(bad(
                    "Server groups are not supported by this deployment yet.",
                ))
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

fn parse_create(body: &Value, version: ApiVersion) -> ApiResult<CreateRequest> {
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
    // Properties later microversions added are unknown before them, as in Nova's schemas.
    let known_from = |key: &str| match key {
        "description" => 19,
        "tags" => 52,
        "hostname" => 90,
        _ => 1,
    };
    for key in server.keys() {
        if !version.at_least(known_from(key)) {
            return Err(body::unexpected(key));
        }
        if matches!(key.as_str(), "description" | "tags" | "hostname") {
            continue;
        }
        if NOT_YET_SUPPORTED.contains(&key.as_str()) {
            return Err(bad(format!(
                "'{key}' is not supported by this deployment yet."
            )));
        }
        if !KNOWN.contains(&key.as_str()) {
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
        None | Some(Value::Null) => None,
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| invalid("user_data", v, &format!("{v} is not of type 'string'")))?;
            if s.len() > 65535 {
                return Err(invalid("user_data", v, "is too long"));
            }
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| bad("User data needs to be valid base 64."))?;
            Some(s.to_owned())
        }
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
    if let Some(v) = server.get("OS-DCF:diskConfig") {
        if !matches!(v.as_str(), Some("AUTO" | "MANUAL")) {
            return Err(invalid(
                "OS-DCF:diskConfig",
                v,
                "is not one of ['AUTO', 'MANUAL']",
            ));
        }
    }
    if let Some(v) = server.get("security_groups") {
        let only_default = v.as_array().is_some_and(|groups| {
            groups
                .iter()
                .all(|g| g.get("name").and_then(Value::as_str) == Some("default"))
        });
        if !only_default {
            return Err(bad(
                "Only the 'default' security group is supported by this deployment yet.",
            ));
        }
    }
    let description = match server.get("description") {
        None => None,
        Some(v) => parse_description(v)?,
    };
    let key_name = match server.get("key_name") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str() {
            Some(s) if (1..=255).contains(&s.chars().count()) => Some(s.to_owned()),
            _ => return Err(invalid("key_name", v, "is not a valid key pair name")),
        },
    };
    let tags = match server.get("tags") {
        None => Vec::new(),
        Some(v) => crate::server_tags::parse_tags(v)?,
    };
    let hostname = match server.get("hostname") {
        None => None,
        Some(v) => Some(parse_hostname(v, version)?),
    };
    let min = parse_count(server, "min_count")?.unwrap_or(1);
    let max = parse_count(server, "max_count")?.unwrap_or(min);
    if min > max {
        return Err(bad("min_count must be <= max_count"));
    }
    if max > MAX_COUNT {
        return Err(bad(format!("max_count must be <= {MAX_COUNT}")));
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
        description,
        key_name,
        tags,
        hostname,
        networks,
        network_ids,
        count: max,
        scheduler_hints,
    })
}

/// How long a request waits for the broker to take its task. The task row is committed
/// already: if the broker is down, the conductor's reconciler re-drives the task later, so the
/// client need not wait for the broker to come back.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn publish_task(state: &AppState, task_id: TaskId, instance: InstanceUuid, request_id: &str) {
    let env = Envelope::new(
        Some(request_id.to_owned()),
        TaskSubmitted { task_id, instance },
    );
    let queue = state.queues.conductor_tasks();
    let publish = state.bus.publish(&queue, env.encode());
    match tokio::time::timeout(PUBLISH_WAIT, publish).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, %instance, "task not published; the reconciler will re-drive it")
        }
        Err(_) => {
            tracing::warn!(%instance, "broker slow or down; the reconciler will re-drive the task")
        }
    }
}

async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_write(&ctx, "os_compute_api:servers:create")?;
    let body = body::json(&raw)?;
    let request = parse_create(&body, ApiVersion::of(&req))?;
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
    let image = crate::images::for_server(&state, &ctx, &request.image_ref);
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
    crate::images::fits(node_type, &image?).map_err(bad)?;
    let key_data = key_data?;
    let networks = networks?;
    let quota = quota?;
    quota.check_metadata_items(request.metadata.len())?;
    quota.check_server_create(request.count, flavor.vcpus, flavor.memory_mb)?;
    tracing::debug!("create: flavor, image, quota and networks checked");
    let url = PublicUrl::of(&req);
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
        };
        news.push(new);
    }
    // The check above answers most requests early; this one, on the usage read again under
    // the project's lock, is the one concurrent creates cannot slip past (Nova rechecks after
    // creating instead, and deletes what went over).
    let created = instances::create_with_build_tasks(&state.db, &news, &ctx.request_id, |u| {
        quota.with_server_usage(u).check_server_create(
            request.count,
            flavor.vcpus,
            flavor.memory_mb,
        )
    })
    .await?;
    tracing::debug!("create: servers and their build tasks written");
    let mut first = None;
    for (instance, task) in created {
        publish_task(&state, task, instance.uuid, &ctx.request_id).await;
        tracing::info!(instance = %instance.uuid, "server accepted");
        first.get_or_insert(instance);
    }
    let instance = first.ok_or_else(|| ApiError::Internal("no server created".into()))?;
    let id = instance.uuid.to_string();
    let links = url.links("servers", &id);
    let location = links[0]["href"].as_str().unwrap_or_default().to_owned();
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", location))
        .json(json!({
            "server": {
                "id": id,
                "links": links,
                "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": "default"}],
                "adminPass": admin_pass(),
            }
        })))
}

/// A random administrator password, as Nova returns at create (12 characters).
fn admin_pass() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 12)
}

/// One page of a server listing, and the marker of the next page when there may be one.
struct Page {
    servers: Vec<nova_core::model::Instance>,
    next: Option<String>,
    limit: i64,
}

/// `GET /servers` and `/servers/detail` with Nova's filters: `name` (a regular expression,
/// matched anywhere), `status`, `image`, `flavor`, `changes-since`, and for admins `host` and
/// `all_tenants`; `limit` (at most 1,000) and `marker` paging, newest first. Filters Nova
/// reserves for admins are ignored for others, as Nova does; unknown ones too.
async fn list_instances(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
) -> ApiResult<Page> {
    let mut q: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        q.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    let one = |k: &str| q.get(k).and_then(|v| v.last()).map(String::as_str);
    let limit = match one("limit") {
        None => MAX_LIMIT,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => n.min(MAX_LIMIT),
            _ => return Err(bad("limit param must be an integer")),
        },
    };
    // As Nova: `all_tenants` without a value means true, and it is for admins only (403).
    let all = match one("all_tenants") {
        None => false,
        Some(v) => !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        ),
    };
    if all && !ctx.is_admin() {
        return Err(ApiError::Forbidden(
            "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed."
                .into(),
        ));
    }
    let project = if all {
        None
    } else {
        Some(ctx.project_id.as_str())
    };
    let changes_since = match one("changes-since") {
        None => None,
        Some(t) => Some(nova_core::time::parse_iso8601(t).ok_or_else(|| {
            bad(format!(
                "Invalid input for query parameters changes-since. Value: {t}."
            ))
        })?),
    };
    let name = match one("name") {
        None => None,
        Some(n) => Some(regex::Regex::new(n).map_err(|_| {
            bad(format!(
                "Invalid input for query parameters name. Value: {n}."
            ))
        })?),
    };
    let statuses: Option<Vec<String>> = q
        .get("status")
        .map(|v| v.iter().map(|s| s.to_ascii_uppercase()).collect());
    let flavor = one("flavor").map(|f| f.rsplit('/').next().unwrap_or(f).to_owned());
    let image = one("image").map(|i| i.rsplit('/').next().unwrap_or(i).to_owned());
    let host = one("host").filter(|_| ctx.is_admin());
    let after = match one("marker") {
        None => None,
        Some(m) => {
            // As Nova (read_deleted='yes'): a marker deleted since the last page still marks
            // the place.
            let found = match m.parse::<InstanceUuid>().ok() {
                Some(u) => instances::get_any(&state.db, u).await?,
                None => None,
            };
            let found = found
                .filter(|i| ctx.is_admin() || i.project_id == ctx.project_id)
                .ok_or_else(|| bad(format!("marker [{m}] not found")))?;
            Some(found)
        }
    };
    let sort = sort_params(&q, ctx)?;
    // Tag filters (2.26), each a comma-separated list: all of `tags`, any of `tags-any`, not
    // all of `not-tags`, none of `not-tags-any` (Nova's semantics).
    let tag_list = |key: &str| -> Option<Vec<String>> {
        if !ApiVersion::of(req).at_least(26) {
            return None;
        }
        one(key).map(|v| v.split(',').map(str::to_owned).collect())
    };
    let (tags_all, tags_any) = (tag_list("tags"), tag_list("tags-any"));
    let (not_tags, not_tags_any) = (tag_list("not-tags"), tag_list("not-tags-any"));
    let keep = |i: &nova_core::model::Instance| {
        let has = |t: &String| i.tags.contains(t);
        tags_all.as_ref().is_none_or(|ts| ts.iter().all(has))
            && tags_any.as_ref().is_none_or(|ts| ts.iter().any(has))
            && not_tags.as_ref().is_none_or(|ts| !ts.iter().all(has))
            && not_tags_any.as_ref().is_none_or(|ts| !ts.iter().any(has))
            && name.as_ref().is_none_or(|r| r.is_match(&i.name))
            && statuses.as_ref().is_none_or(|s| {
                s.iter()
                    .any(|s| s == nova_core::model::api_status(i.vm_state, i.task_state))
            })
            && flavor.as_ref().is_none_or(|f| *f == i.flavor.flavorid)
    };
    // The database pages; filters it cannot apply are applied here, reading on page by page
    // until the page is full or the servers run out.
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let chunk = instances::list_page(
            &state.db,
            &instances::ListQuery {
                project,
                host,
                image_ref: image.as_deref(),
                changes_since,
                sort: sort.clone(),
                after: cursor,
                limit: limit.max(1),
            },
        )
        .await?;
        let exhausted = i64::try_from(chunk.len()).unwrap_or(i64::MAX) < limit.max(1);
        cursor = chunk.last().cloned();
        for i in chunk {
            if i64::try_from(out.len()).unwrap_or(i64::MAX) < limit && keep(&i) {
                out.push(i);
            }
        }
        if exhausted || i64::try_from(out.len()).unwrap_or(i64::MAX) >= limit {
            break;
        }
    }
    // As Nova: a full page gets a link to the next one (which may turn out empty).
    let next = (limit > 0 && i64::try_from(out.len()).unwrap_or(0) == limit)
        .then(|| out.last().map(|i| i.uuid.to_string()))
        .flatten();
    Ok(Page {
        servers: out,
        next,
        limit,
    })
}

/// Sort keys Nova accepts that this service holds no value for (every server has the same
/// one), so sorting by them changes nothing; and keys Nova ignores silently.
const SORT_KEYS_WITHOUT_EFFECT: &[&str] = &[
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "config_drive",
    "instance_type_id",
    "kernel_id",
    "launch_index",
    "progress",
    "ramdisk_id",
    "root_device_name",
    // Nova's SERVER_LIST_IGNORE_SORT_KEY.
    "architecture",
    "cell_name",
    "cleaned",
    "default_ephemeral_device",
    "default_swap_device",
    "deleted",
    "deleted_at",
    "disable_terminate",
    "ephemeral_gb",
    "ephemeral_key_uuid",
    "id",
    "key_data",
    "launched_on",
    "locked",
    "memory_mb",
    "os_type",
    "reservation_id",
    "root_gb",
    "shutdown_terminate",
    "user_data",
    "vcpus",
    "vm_mode",
];

/// `sort_key`/`sort_dir` pairs as Nova reads them (nova.api.openstack.common.get_sort_params):
/// the n-th direction goes with the n-th key; a key without one gets the first direction given
/// (descending when none). Sorting by `host` or `node` is for admins (403).
fn sort_params(
    q: &HashMap<String, Vec<String>>,
    ctx: &RequestContext,
) -> ApiResult<Vec<(instances::SortKey, instances::SortDir)>> {
    let keys = q.get("sort_key").cloned().unwrap_or_default();
    let dirs = q.get("sort_dir").cloned().unwrap_or_default();
    let mut parsed_dirs = Vec::with_capacity(dirs.len());
    for d in &dirs {
        parsed_dirs.push(match d.as_str() {
            "asc" => instances::SortDir::Asc,
            "desc" => instances::SortDir::Desc,
            other => {
                return Err(bad(format!(
                    "Invalid input for query parameters sort_dir. Value: {other}. '{other}' is not one of ['asc', 'desc']"
                )))
            }
        });
    }
    let default = parsed_dirs
        .first()
        .copied()
        .unwrap_or(instances::SortDir::Desc);
    let mut sort = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        if (key == "host" || key == "node") && !ctx.is_admin() {
            return Err(ApiError::Forbidden(format!(
                "Only administrators can sort servers by {key}"
            )));
        }
        let dir = parsed_dirs.get(n).copied().unwrap_or(default);
        match instances::SortKey::parse(key) {
            Some(k) => sort.push((k, dir)),
            None if SORT_KEYS_WITHOUT_EFFECT.contains(&key.as_str()) => {}
            None => {
                return Err(bad(format!(
                    "Invalid input for query parameters sort_key. Value: {key}."
                )))
            }
        }
    }
    if sort.is_empty() && !parsed_dirs.is_empty() {
        // Directions without keys apply to Nova's default key.
        sort.push((instances::SortKey::CreatedAt, default));
    }
    Ok(sort)
}

/// `servers_links` for a full page: the same query with `marker` set to the page's last.
fn next_link(req: &HttpRequest, page: &Page, path: &str) -> Option<Value> {
    let marker = page.next.as_ref()?;
    let base = PublicUrl::of(req).0;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k != "marker" && k != "limit" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("limit", &page.limit.to_string());
    query.append_pair("marker", marker);
    Some(json!([{"rel": "next", "href": format!("{base}/v2.1/{path}?{}", query.finish())}]))
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let url = PublicUrl::of(&req);
    let page = list_instances(&req, &ctx, &state).await?;
    let items: Vec<_> = page
        .servers
        .iter()
        .map(|i| views::server_summary(&url, i))
        .collect();
    let body = ServerList {
        servers: items,
        servers_links: next_link(&req, &page, "servers"),
    };
    Ok(HttpResponse::Ok().json(&body))
}

/// A listing's body, serialised as it is (no JSON tree in between).
#[derive(serde::Serialize)]
struct ServerList<T> {
    servers: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    servers_links: Option<Value>,
}

/// `{"server": …}`.
#[derive(serde::Serialize)]
struct OneServer<'a> {
    server: views::ServerDetail<'a>,
}

async fn detail(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let url = PublicUrl::of(&req);
    let version = ApiVersion::of(&req);
    let page = list_instances(&req, &ctx, &state).await?;
    let host_status = host_status(&state, &ctx, version).await?;
    let viewer = views::ServerViewer {
        url: &url,
        ctx: &ctx,
        version,
        host_status: &host_status,
        kind: views::ViewKind::List,
    };
    let items: Vec<_> = page
        .servers
        .iter()
        .map(|i| views::server_detail(&viewer, i))
        .collect();
    let body = ServerList {
        servers: items,
        servers_links: next_link(&req, &page, "servers/detail"),
    };
    Ok(HttpResponse::Ok().json(&body))
}

/// Nova's `host_status` of every compute host, when the view shows it (2.16, admins): UP,
/// DOWN from the heartbeats, MAINTENANCE when the service is disabled.
async fn host_status(
    state: &AppState,
    ctx: &RequestContext,
    version: ApiVersion,
) -> ApiResult<HashMap<String, &'static str>> {
    if !(ctx.is_admin() && version.at_least(16)) {
        return Ok(HashMap::new());
    }
    let now = nova_core::time::now_ms();
    Ok(nova_db::nodes::services(&state.db)
        .await?
        .into_iter()
        .filter(|s| s.binary == nova_core::model::COMPUTE_BINARY)
        .map(|s| {
            let status = if s.disabled {
                "MAINTENANCE"
            } else if s.is_up(now, state.service_down_ms) {
                "UP"
            } else {
                "DOWN"
            };
            (s.host, status)
        })
        .collect())
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Instance {id} could not be found."))
}

/// The instance with this id if the caller may see it: another project's server is a 404, as
/// in Nova, so that ids do not leak.
pub(crate) async fn visible(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<nova_core::model::Instance> {
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let instance = instances::get(&state.db, uuid)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !ctx.is_admin() && instance.project_id != ctx.project_id {
        return Err(not_found(id));
    }
    Ok(instance)
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = visible(&state, &ctx, &id).await?;
    let url = PublicUrl::of(&req);
    let version = ApiVersion::of(&req);
    let host_status = host_status(&state, &ctx, version).await?;
    let viewer = views::ServerViewer {
        url: &url,
        ctx: &ctx,
        version,
        host_status: &host_status,
        kind: views::ViewKind::Show,
    };
    Ok(HttpResponse::Ok().json(&OneServer {
        server: views::server_detail(&viewer, &instance),
    }))
}

/// Starts an action (delete included) if the server is in a state that allows it.
async fn begin(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    action: &str,
    rule: TransitionRule,
    kind: TaskKind,
) -> ApiResult<()> {
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let project = if ctx.is_admin() {
        None
    } else {
        Some(ctx.project_id.as_str())
    };
    let who = Requester {
        request_id: &ctx.request_id,
        project_id: &ctx.project_id,
        user_id: &ctx.user_id,
    };
    match instances::begin_action(&state.db, uuid, project, ctx.is_admin(), rule, kind, &who).await
    {
        Ok(task) => {
            publish_task(state, task, uuid, &ctx.request_id).await;
            Ok(())
        }
        Err(TransitionError::NotFound) => Err(not_found(id)),
        // Nova's InstanceIsLocked.
        Err(TransitionError::Locked) => Err(ApiError::Conflict(format!("Instance {id} is locked"))),
        // Nova's message for InstanceInvalidState / InstanceInvalidTaskState.
        Err(TransitionError::Conflict {
            vm_state,
            task_state: Some(t),
        }) if rule.from_vm_states.contains(&vm_state) => Err(ApiError::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in task_state {t}"
        ))),
        Err(TransitionError::Conflict { vm_state, .. }) => Err(ApiError::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in vm_state {vm_state}"
        ))),
        Err(TransitionError::Db(e)) => Err(e.into()),
    }
}

const ALL_LIVE_STATES: &[VmState] = &[
    VmState::Building,
    VmState::Active,
    VmState::Stopped,
    VmState::Paused,
    VmState::Suspended,
    VmState::Rescued,
    VmState::Resized,
    VmState::SoftDeleted,
    VmState::Error,
    VmState::Shelved,
    VmState::ShelvedOffloaded,
];

async fn delete(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_write(&ctx, "os_compute_api:servers:delete")?;
    let rule = TransitionRule {
        from_vm_states: ALL_LIVE_STATES,
        task_state: TaskState::Deleting,
    };
    begin(&state, &ctx, &id, "delete", rule, TaskKind::Delete).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /servers/{id}`: renames the server and (2.19) changes its description. Nova answers
/// with its basic server view.
async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_write(&ctx, "os_compute_api:servers:update")?;
    let version = ApiVersion::of(&req);
    let body = body::json(&raw)?;
    let root = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    body::only(root, &["server"])?;
    let server_v = root
        .get("server")
        .ok_or_else(|| invalid("server", &body, "'server' is a required property"))?;
    let server = server_v.as_object().ok_or_else(|| {
        invalid(
            "server",
            server_v,
            &format!("{server_v} is not of type 'object'"),
        )
    })?;
    let mut name = None;
    let mut description = None;
    let mut hostname = None;
    for (key, v) in server {
        match key.as_str() {
            "name" => name = Some(parse_name(v)?),
            "description" if version.at_least(19) => description = Some(parse_description(v)?),
            "hostname" if version.at_least(90) => hostname = Some(parse_hostname(v, version)?),
            // Accepted by Nova's schema; this deployment has no access IPs and one disk
            // config, so the values are checked and otherwise have no effect.
            "OS-DCF:diskConfig" if matches!(v.as_str(), Some("AUTO" | "MANUAL")) => {}
            "OS-DCF:diskConfig" => {
                return Err(invalid(key, v, "is not one of ['AUTO', 'MANUAL']"));
            }
            "accessIPv4" | "accessIPv6" => {
                return Err(bad(format!(
                    "'{key}' is not supported by this deployment yet."
                )));
            }
            other => return Err(body::unexpected(other)),
        }
    }
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(&id))?;
    let project = (!ctx.is_admin()).then_some(ctx.project_id.as_str());
    let instance = instances::modify(&state.db, uuid, project, instances::Record::No, |i| {
        if let Some(name) = name {
            i.name = name;
        }
        if let Some(description) = description {
            i.description = description;
        }
        if let Some(hostname) = hostname {
            i.hostname = hostname;
        }
        Ok::<(), ApiError>(())
    })
    .await?
    .ok_or_else(|| not_found(&id))?;
    let url = PublicUrl::of(&req);
    // As Nova: from 2.75 the update answers with every attribute GET shows.
    let kind = if version.at_least(75) {
        views::ViewKind::Show
    } else {
        views::ViewKind::Update
    };
    let host_status = host_status(&state, &ctx, version).await?;
    let viewer = views::ServerViewer {
        url: &url,
        ctx: &ctx,
        version,
        host_status: &host_status,
        kind,
    };
    Ok(HttpResponse::Ok().json(&OneServer {
        server: views::server_detail(&viewer, &instance),
    }))
}

/// The `lock` action: the owner's lock, or an admin's that only an admin undoes; from 2.73
/// with a reason. Recorded as an instance action, as Nova does.
async fn lock(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<()> {
    require_write(ctx, "os_compute_api:os-lock-server:lock")?;
    let reason = match arg {
        Value::Null => None,
        Value::Object(o) if ApiVersion::of(req).at_least(73) => {
            body::only(o, &["locked_reason"])?;
            match o.get("locked_reason") {
                None => None,
                Some(r) => match r.as_str() {
                    Some(s) if s.chars().count() <= 255 => Some(s.to_owned()),
                    _ => return Err(invalid("locked_reason", r, "is not a valid reason")),
                },
            }
        }
        other => return Err(invalid("lock", other, "None is the only accepted value")),
    };
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let project = (!ctx.is_admin()).then_some(ctx.project_id.as_str());
    let who = Requester {
        request_id: &ctx.request_id,
        project_id: &ctx.project_id,
        user_id: &ctx.user_id,
    };
    instances::modify(
        &state.db,
        uuid,
        project,
        instances::Record::IfChanged("lock", &who),
        |i| {
            let owner = i.project_id == ctx.project_id;
            // As Nova: an owner's second lock changes nothing; an admin's lock replaces it.
            if i.locked_by.is_some() && owner {
                return Ok::<(), ApiError>(());
            }
            i.locked_by = Some(if owner {
                LockedBy::Owner
            } else {
                LockedBy::Admin
            });
            i.locked_reason = reason;
            Ok(())
        },
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(())
}

/// The `unlock` action: an admin's lock needs an admin (`unlock_override`).
async fn unlock(ctx: &RequestContext, state: &AppState, id: &str, arg: &Value) -> ApiResult<()> {
    require_write(ctx, "os_compute_api:os-lock-server:unlock")?;
    if !arg.is_null() {
        return Err(invalid("unlock", arg, "None is the only accepted value"));
    }
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let project = (!ctx.is_admin()).then_some(ctx.project_id.as_str());
    let who = Requester {
        request_id: &ctx.request_id,
        project_id: &ctx.project_id,
        user_id: &ctx.user_id,
    };
    instances::modify(&state.db, uuid, project, instances::Record::Always("unlock", &who), |i| {
        let expected = if i.project_id == ctx.project_id {
            LockedBy::Owner
        } else {
            LockedBy::Admin
        };
        if i.locked_by.is_some_and(|by| by != expected) && !ctx.is_admin() {
            return Err(ApiError::Forbidden(
                "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be performed."
                    .into(),
            ));
        }
        i.locked_by = None;
        i.locked_reason = None;
        Ok(())
    })
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(())
}

/// How long the API waits for a compute host to send a console log.
const CONSOLE_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Nova's `length` of `os-getConsoleOutput`: an integer (or a string of one) from -1, where -1
/// or none means the whole log.
fn parse_console_length(arg: &Value) -> ApiResult<Option<usize>> {
    let obj = match arg {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        other => {
            return Err(invalid(
                "os-getConsoleOutput",
                other,
                &format!("{other} is not of type 'object'"),
            ))
        }
    };
    body::only(obj, &["length"])?;
    let Some(v) = obj.get("length") else {
        return Ok(None);
    };
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(_) => Err(invalid("length", v, "is less than the minimum of -1")),
        None => Err(invalid("length", v, "does not match '^-?[0-9]+$'")),
    }
}

/// The `os-getConsoleOutput` action: the log comes from the server's host, asked over the
/// bus and answered directly (request/reply), as Nova's RPC call to nova-compute.
async fn console_output(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<String> {
    require_write(ctx, "os_compute_api:os-console-output")?;
    let length = parse_console_length(arg)?;
    let instance = visible(state, ctx, id).await?;
    if instance.task_state == Some(TaskState::Deleting) {
        return Err(ApiError::Conflict(format!(
            "Cannot 'get_console_output' instance {id} while it is in task_state deleting"
        )));
    }
    // Nova's check_instance_host: no host yet, no console.
    let host = instance
        .host
        .as_deref()
        .ok_or_else(|| ApiError::Conflict(format!("Instance {id} is not ready")))?;
    let call = Envelope::new(
        Some(ctx.request_id.clone()),
        ComputeCommand::ConsoleOutput {
            instance: instance.uuid,
            length,
        },
    );
    let queue = state.queues.compute(host);
    let answer = match state
        .bus
        .call(&queue, call.encode(), CONSOLE_CALL_TIMEOUT)
        .await
    {
        Ok(bytes) => bytes,
        Err(nova_core::bus::BusError::Timeout(_)) => {
            return Err(ApiError::Unavailable(format!(
                "The compute host {host} did not send the console output in time; try again later."
            )))
        }
        Err(e) => return Err(e.into()),
    };
    match serde_json::from_slice::<CallReply>(&answer) {
        // As Nova: ASCII control characters other than tab and newline are removed.
        Ok(CallReply::ConsoleOutput { output }) => Ok(output
            .chars()
            .filter(|c| !matches!(c, '\x00'..='\x08' | '\x0B'..='\x1F'))
            .collect()),
        Ok(CallReply::NotFound) => Err(ApiError::NotFound(
            "Guest does not have a console available.".into(),
        )),
        Ok(CallReply::NotSupported { message }) => Err(ApiError::NotImplemented(message)),
        Ok(CallReply::Failed { message }) => Err(ApiError::Internal(format!(
            "console output of {id} on {host}: {message}"
        ))),
        Err(e) => Err(ApiError::Internal(format!("unreadable console reply: {e}"))),
    }
}

/// `GET /servers/{id}/ips`: the server's addresses by network (`version` and `addr`, as
/// Nova's basic address view).
async fn ips(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "addresses": views::addresses(&instance.addresses, false) })))
}

/// `GET /servers/{id}/ips/{network}`: the addresses on one network; Nova's 404 for a network
/// the server is not on.
async fn ips_of_network(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, network) = path.into_inner();
    let instance = visible(&state, &ctx, &id).await?;
    let mut all = views::addresses(&instance.addresses, false);
    match all.remove(network.as_str()) {
        Some(on) => Ok(HttpResponse::Ok().json(json!({ network.as_str(): on }))),
        None => Err(ApiError::NotFound(
            "Instance is not a member of specified network".into(),
        )),
    }
}

async fn action(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = body::json(&raw)?;
    let obj = body
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| bad("The action body must be an object with exactly one action."))?;
    let (name, arg) = obj.iter().next().ok_or_else(|| bad("No action given."))?;
    match name.as_str() {
        "lock" => {
            lock(&req, &ctx, &state, &id, arg).await?;
            return Ok(HttpResponse::Accepted().finish());
        }
        "unlock" => {
            unlock(&ctx, &state, &id, arg).await?;
            return Ok(HttpResponse::Accepted().finish());
        }
        "os-getConsoleOutput" => {
            let output = console_output(&ctx, &state, &id, arg).await?;
            return Ok(HttpResponse::Ok().json(json!({ "output": output })));
        }
        _ => {}
    }
    let (action, rule, kind) = match name.as_str() {
        "os-stop" => (
            "stop",
            TransitionRule {
                from_vm_states: &[VmState::Active, VmState::Error],
                task_state: TaskState::PoweringOff,
            },
            TaskKind::Stop,
        ),
        "os-start" => (
            "start",
            TransitionRule {
                from_vm_states: &[VmState::Stopped],
                task_state: TaskState::PoweringOn,
            },
            TaskKind::Start,
        ),
        "reboot" => {
            let kind = arg
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase)
                .filter(|t| t == "SOFT" || t == "HARD")
                .ok_or_else(|| {
                    invalid(
                        "type",
                        arg.get("type").unwrap_or(&Value::Null),
                        "is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']",
                    )
                })?;
            if kind == "HARD" {
                (
                    "reboot",
                    TransitionRule {
                        from_vm_states: &[VmState::Active, VmState::Stopped, VmState::Error],
                        task_state: TaskState::RebootingHard,
                    },
                    TaskKind::Reboot { hard: true },
                )
            } else {
                (
                    "reboot",
                    TransitionRule {
                        from_vm_states: &[VmState::Active],
                        task_state: TaskState::Rebooting,
                    },
                    TaskKind::Reboot { hard: false },
                )
            }
        }
        other => return Err(bad(format!("There is no such action: {other}"))),
    };
    require_write(&ctx, &format!("os_compute_api:servers:{action}"))?;
    if matches!(name.as_str(), "os-stop" | "os-start") && !arg.is_null() {
        return Err(invalid(name, arg, "None is the only accepted value"));
    }
    begin(&state, &ctx, &id, action, rule, kind).await?;
    Ok(HttpResponse::Accepted().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/servers", web::post().to(create))
        .route("/servers", web::get().to(list))
        .route("/servers/detail", web::get().to(detail))
        .route("/servers/{id}", web::get().to(show))
        .route("/servers/{id}", web::put().to(update))
        .route("/servers/{id}/ips", web::get().to(ips))
        .route("/servers/{id}/ips/{network}", web::get().to(ips_of_network))
        .route("/servers/{id}", web::delete().to(delete))
        .route("/servers/{id}/action", web::post().to(action));
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
