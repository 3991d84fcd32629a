//! Nodes: enrol (create), list, show, update (JSON patch) and delete, in Ironic's shapes.
//!
//! A node's `driver_info` is kept as given except the BMC password, which is sealed before it
//! is stored and shown as `******` (Ironic's mask); other secrets cannot be sealed, so keys that
//! name one are refused rather than stored in clear.

use crate::versions::IronicVersion;
use crate::BaremetalState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::IRONIC;
use api_toolkit::{bad, body, ApiError, ApiResult, RequestContext};
use nova_core::baremetal::{state, DELETABLE};
use nova_core::secret::{Secret, MASK};
use nova_core::time::{iso8601_z, now_ms};
use nova_db::baremetal::{self as store, Node};
use nova_db::listing::{self, Arg, Column, Cond, Dir, Kind, Listing};
use serde_json::{json, Map, Value};

/// The one hardware type served.
pub const DRIVER: &str = "redfish";

pub const PASSWORD_KEY: &str = "redfish_password";

/// The interfaces a `redfish` node has here: Ironic's names for what this service does (virtual
/// media boot, the ramdisk deploy) and `no-*`/`noop` for what it does not.
pub const INTERFACES: &[(&str, &str, u16)] = &[
    ("network_interface", "noop", 20),
    ("boot_interface", "redfish-virtual-media", 31),
    ("console_interface", "no-console", 31),
    ("deploy_interface", "ramdisk", 31),
    ("inspect_interface", "no-inspect", 31),
    ("management_interface", "redfish", 31),
    ("power_interface", "redfish", 31),
    ("raid_interface", "no-raid", 31),
    ("vendor_interface", "no-vendor", 31),
    ("storage_interface", "noop", 33),
    ("rescue_interface", "no-rescue", 38),
    ("bios_interface", "no-bios", 40),
];

pub(crate) fn not_found(ident: &str) -> ApiError {
    ApiError::NotFound(format!("Node {ident} could not be found."))
}

pub(crate) fn locked(node: &Node) -> ApiError {
    ApiError::Conflict(format!(
        "Node {} is locked by host {}, please retry after the current operation is completed.",
        node.uuid,
        node.conductor.as_deref().unwrap_or("(none)")
    ))
}

/// The node named by uuid or name, or Ironic's 404 (400 for what can be neither).
pub(crate) async fn find(state: &BaremetalState, ident: &str) -> ApiResult<Node> {
    if !valid_ident(ident) {
        return Err(bad(format!("Expected UUID or name for node: {ident}")));
    }
    store::find(&state.db, ident)
        .await?
        .ok_or_else(|| not_found(ident))
}

fn object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

/// The node's driver_info as shown: the password masked.
fn driver_info_view(node: &Node) -> Value {
    let mut info = object(&node.driver_info);
    if node.bmc_password.is_some() {
        info.insert(PASSWORD_KEY.into(), json!(MASK));
    }
    Value::Object(info)
}

fn links(base: &str, uuid: &str, sub: &str) -> Value {
    json!([
        {"href": format!("{base}/baremetal/v1/nodes/{uuid}{sub}"), "rel": "self"},
        {"href": format!("{base}/baremetal/nodes/{uuid}{sub}"), "rel": "bookmark"},
    ])
}

/// Every field of a node at the request's version (Ironic hides a field from requests older
/// than the version that brought it).
pub(crate) fn full_view(req: &HttpRequest, node: &Node) -> Map<String, Value> {
    let v = IronicVersion::of(req);
    let base = PublicUrl::of(req).0;
    let time = |t: Option<i64>| t.map(iso8601_z).map_or(Value::Null, Value::String);
    let mut m = json!({
        "uuid": node.uuid,
        "name": node.name,
        "driver": node.driver,
        "driver_info": driver_info_view(node),
        "driver_internal_info": {},
        "extra": Value::Object(object(&node.extra)),
        "properties": Value::Object(object(&node.properties)),
        "instance_uuid": node.instance_uuid,
        "instance_info": {},
        "power_state": node.power_state,
        "target_power_state": node.target_power_state,
        "provision_state": node.provision_state,
        "target_provision_state": node.target_provision_state,
        "provision_updated_at": time(node.provision_updated_at),
        "maintenance": node.maintenance,
        "maintenance_reason": node.maintenance_reason,
        "last_error": node.last_error,
        "reservation": node.operation.as_ref().and(node.conductor.clone()),
        "console_enabled": false,
        "chassis_uuid": null,
        "created_at": iso8601_z(node.created_at),
        "updated_at": time(node.updated_at),
        "links": links(&base, &node.uuid, ""),
        "ports": links(&base, &node.uuid, "/ports"),
        "states": links(&base, &node.uuid, "/states"),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let mut since = |minor: u16, key: &str, value: Value| {
        if v.at_least(minor) {
            m.insert(key.to_owned(), value);
        }
    };
    since(6, "inspection_started_at", Value::Null);
    since(6, "inspection_finished_at", Value::Null);
    since(
        7,
        "clean_step",
        node.clean_step
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| json!({})),
    );
    since(12, "raid_config", json!({}));
    since(12, "target_raid_config", json!({}));
    since(21, "resource_class", json!(node.resource_class));
    for (key, value, minor) in INTERFACES {
        since(*minor, key, json!(value));
    }
    since(24, "portgroups", links(&base, &node.uuid, "/portgroups"));
    since(32, "volume", links(&base, &node.uuid, "/volume"));
    since(37, "traits", json!([]));
    since(42, "fault", json!(node.fault));
    since(44, "deploy_step", json!({}));
    since(46, "conductor_group", json!(""));
    m
}

/// The fields a list shows without `detail` or `fields` (Ironic's node list).
const LIST_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "instance_uuid",
    "power_state",
    "provision_state",
    "maintenance",
    "links",
];

/// Only `fields` (and the links, which Ironic always adds), else everything.
fn select(mut view: Map<String, Value>, fields: Option<&[String]>) -> Value {
    if let Some(fields) = fields {
        view.retain(|k, _| k == "links" || fields.iter().any(|f| f == k));
    }
    Value::Object(view)
}

/// `fields=a,b`: each must be a field of a node at the request's version.
fn parse_fields(req: &HttpRequest, raw: &str) -> ApiResult<Vec<String>> {
    if !IronicVersion::of(req).at_least(8) {
        return Err(ApiError::NotAcceptable(
            "Request not acceptable. The minimal required API version should be 1.8".into(),
        ));
    }
    let known = full_view(req, &placeholder());
    let fields: Vec<String> = raw.split(',').map(|f| f.trim().to_owned()).collect();
    if let Some(bad_field) = fields.iter().find(|f| !known.contains_key(f.as_str())) {
        return Err(bad(format!("Field(s) \"{bad_field}\" are not valid")));
    }
    Ok(fields)
}

fn placeholder() -> Node {
    Node {
        uuid: String::new(),
        name: None,
        driver: DRIVER.into(),
        driver_info: "{}".into(),
        bmc_password: None,
        properties: "{}".into(),
        extra: "{}".into(),
        resource_class: None,
        description: None,
        provision_state: state::ENROLL.into(),
        target_provision_state: None,
        power_state: None,
        target_power_state: None,
        maintenance: false,
        maintenance_reason: None,
        fault: None,
        last_error: None,
        instance_uuid: None,
        conductor: None,
        operation: None,
        operation_kind: None,
        operation_deadline: None,
        clean_step: None,
        power_failures: 0,
        power_updated_at: None,
        created_at: 0,
        updated_at: None,
        provision_updated_at: None,
    }
}

/// The bare-metal agents that run `driver`'s machines, alive, fewest nodes first.
pub(crate) async fn driver_hosts(
    state: &BaremetalState,
    driver: &str,
) -> ApiResult<Vec<(String, i64)>> {
    let down_ms =
        i64::try_from(state.settings.agent_down_time_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    Ok(nova_db::nodes::node_driver_hosts(&state.db, driver, now_ms() - down_ms).await?)
}

/// Ironic's logical name: RFC 3986's unreserved characters.
/// Ironic's logical name: RFC 3986's unreserved characters, and not a uuid (a uuid names a
/// node by its uuid only).
fn valid_name(name: &str) -> bool {
    uuid::Uuid::parse_str(name).is_err() && valid_ident(name)
}

/// What a node may be named by in a path: a uuid or a logical name.
fn valid_ident(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
}

fn text(field: &str, v: &Value, max: usize) -> ApiResult<String> {
    match v.as_str() {
        Some(s) if s.len() <= max => Ok(s.to_owned()),
        Some(_) => Err(bad(format!(
            "Invalid input for field/attribute {field}. Value: '{v}'. Value should have a \
             maximum character requirement of {max}"
        ))),
        None => Err(bad(format!(
            "Invalid input for field/attribute {field}. Value: '{v}'. Wrong type. Expected \
             'str', got '{}'",
            json_type(v)
        ))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn object_field(field: &str, v: &Value) -> ApiResult<Map<String, Value>> {
    v.as_object().cloned().ok_or_else(|| {
        bad(format!(
            "Invalid input for field/attribute {field}. Value: '{v}'. Wrong type. Expected \
             'dict', got '{}'",
            json_type(v)
        ))
    })
}

/// A password a request gave: `None` when it named none, `Some(None)` when it removed it.
type PasswordChange = Option<Option<Secret>>;

/// Checks a driver_info and takes its password out: what to store, and the password.
fn split_driver_info(
    uuid: &str,
    mut info: Map<String, Value>,
) -> ApiResult<(Map<String, Value>, PasswordChange)> {
    let password = match info.remove(PASSWORD_KEY) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(Secret::new(s))),
        // The CLI reads `redfish_password=123456` as JSON: a number, which Ironic keeps.
        Some(Value::Number(n)) => Some(Some(Secret::new(n.to_string()))),
        Some(other) => {
            return Err(bad(format!(
                "Invalid input for driver_info/{PASSWORD_KEY}: a string is expected, not {}",
                json_type(&other)
            )))
        }
    };
    // A user name the CLI read as a number is a name all the same.
    if let Some(Value::Number(n)) = info.get("redfish_username") {
        let name = n.to_string();
        info.insert("redfish_username".into(), Value::String(name));
    }
    for (k, v) in &info {
        let lower = k.to_ascii_lowercase();
        if ["password", "secret", "token", "_key"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return Err(bad(format!(
                "driver_info/{k} would be stored in clear: only {PASSWORD_KEY} is kept secret \
                 by this service"
            )));
        }
        match k.as_str() {
            "redfish_address" => {
                let address = text("driver_info/redfish_address", v, 255)?;
                if !valid_address(&address) {
                    // Not repeated when it may hold credentials (`user:password@host`).
                    let shown = if address.contains('@') {
                        "(an address with credentials in it)"
                    } else {
                        address.as_str()
                    };
                    return Err(bad(format!(
                        "Invalid Redfish address {shown} set in driver_info/redfish_address \
                         on node {uuid}: a BMC is named http(s)://host[:port], or by its host"
                    )));
                }
            }
            "redfish_system_id" | "redfish_username" => {
                text(&format!("driver_info/{k}"), v, 255)?;
            }
            "redfish_verify_ca" => {
                nova_core::baremetal::verify_ca(v).ok_or_else(|| {
                    bad(format!(
                        "Invalid value {v} set in driver_info/redfish_verify_ca on node {uuid}. \
                         The value should be a Boolean or the path to a file/directory, not \
                         \"{v}\""
                    ))
                })?;
            }
            _ => {}
        }
    }
    Ok((info, password))
}

/// `http://host[:port]`, `https://…`, or a bare host (https), as the Redfish driver takes it:
/// no credentials, no path.
fn valid_address(a: &str) -> bool {
    let rest = a
        .strip_prefix("https://")
        .or_else(|| a.strip_prefix("http://"))
        .unwrap_or(a);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    !host.is_empty()
        && path.is_empty()
        && !a.contains(char::is_whitespace)
        && !host.contains('@')
        && (a.starts_with("http://") || a.starts_with("https://") || !a.contains("://"))
}

/// An `*_interface` field at create or update: only the one this service runs.
fn check_interface(key: &str, v: &Value) -> ApiResult<()> {
    let ours = INTERFACES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, v, _)| *v);
    match (ours, v.as_str()) {
        (Some(ours), Some(given)) if given == ours => Ok(()),
        (Some(_), _) => Err(bad(format!(
            "Could not find the following interface in the 'ironic.hardware.interfaces.{}' \
             entrypoint: {}. Valid interfaces are {}.",
            key.trim_end_matches("_interface"),
            v.as_str().unwrap_or(&v.to_string()),
            ours.unwrap_or_default()
        ))),
        (None, _) => Err(unknown_attribute(key)),
    }
}

fn unknown_attribute(key: &str) -> ApiError {
    bad(format!(
        "Schema error for node: Additional properties are not allowed ('{key}' was unexpected)"
    ))
}

/// `POST /v1/nodes`: enrols a machine in `enroll`, on the bare-metal agent that runs fewest.
pub(crate) async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:create")?;
    let version = IronicVersion::of(&req);
    let body = body::json(&raw)?;
    let body = body
        .as_object()
        .ok_or_else(|| bad("Invalid input: a node is a JSON object"))?;
    let uuid = match body.get("uuid") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(v) => {
            let s = text("uuid", v, 36)?;
            uuid::Uuid::parse_str(&s)
                .map_err(|_| bad(format!("Expected a UUID but received {s}.")))?
                .hyphenated()
                .to_string()
        }
    };
    let mut node = placeholder();
    node.uuid = uuid.clone();
    let mut password = None;
    let mut driver = None;
    for (k, v) in body {
        match k.as_str() {
            "uuid" => {}
            "driver" => driver = Some(text("driver", v, 255)?),
            "name" if v.is_null() => {}
            "name" if version.at_least(5) => {
                let name = text("name", v, 255)?;
                if !valid_name(&name) {
                    return Err(bad(format!(
                        "Cannot create node with invalid name '{name}'"
                    )));
                }
                node.name = Some(name);
            }
            "driver_info" => {
                let (info, pw) = split_driver_info(&uuid, object_field(k, v)?)?;
                node.driver_info = Value::Object(info).to_string();
                password = pw.flatten();
            }
            "properties" => node.properties = Value::Object(object_field(k, v)?).to_string(),
            "extra" => node.extra = Value::Object(object_field(k, v)?).to_string(),
            "resource_class" if version.at_least(21) => {
                node.resource_class = (!v.is_null()).then(|| text(k, v, 80)).transpose()?;
            }
            key if key.ends_with("_interface")
                && INTERFACES
                    .iter()
                    .any(|(i, _, minor)| *i == key && version.at_least(*minor)) =>
            {
                if !v.is_null() {
                    check_interface(key, v)?;
                }
            }
            "conductor_group" if version.at_least(46) => {
                if v.as_str() != Some("") && !v.is_null() {
                    return Err(bad(
                        "Conductor groups are not served here: conductor_group must be empty",
                    ));
                }
            }
            other => {
                return Err(bad(format!(
                    "Schema error for node: Additional properties are not allowed ('{other}' \
                     was unexpected)"
                )))
            }
        }
    }
    let Some(driver) = driver else {
        return Err(bad(
            "Schema error for node: 'driver' is a required property",
        ));
    };
    // Ironic's answer for a driver no conductor runs (here: any but redfish, or redfish with
    // no bare-metal agent up).
    let host = if driver == DRIVER {
        driver_hosts(&state, DRIVER).await?.into_iter().next()
    } else {
        None
    };
    let Some((host, _)) = host else {
        return Err(bad(format!(
            "No valid host was found. Reason: No conductor service registered which supports \
             driver {driver} for conductor group \"\". Ensure the driver is valid and enabled."
        )));
    };
    node.driver = driver;
    node.conductor = Some(host);
    node.bmc_password = password.map(|p| state.key.seal(&p, &uuid).0);
    let now = now_ms();
    node.created_at = now;
    // Ironic enrols in `enroll` from 1.11 (this service's minimum).
    node.provision_state = state::ENROLL.into();
    if !store::insert(&state.db, &node).await? {
        return Err(match (&node.name, store::get(&state.db, &uuid).await?) {
            (_, Some(_)) => ApiError::Conflict(format!("A node with UUID {uuid} already exists.")),
            (Some(name), None) => {
                ApiError::Conflict(format!("A node with name {name} already exists."))
            }
            (None, None) => ApiError::Conflict("The node already exists.".into()),
        });
    }
    // One hypervisor per machine, on its agent's host, as Nova shows Ironic's nodes.
    store::sync_compute_node(&state.db, &uuid).await?;
    tracing::info!(node = %uuid, host = ?node.conductor, "node enrolled");
    let base = PublicUrl::of(&req).0;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{base}/baremetal/v1/nodes/{uuid}")))
        .json(Value::Object(full_view(&req, &node))))
}

pub(crate) async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:get")?;
    let node = find(&state, &ident).await?;
    let mut fields = None;
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match &*k {
            "fields" => fields = Some(parse_fields(&req, &v)?),
            other => return Err(bad(format!("Unknown argument: \"{other}\""))),
        }
    }
    Ok(HttpResponse::Ok().json(select(full_view(&req, &node), fields.as_deref())))
}

pub(crate) async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
) -> ApiResult<HttpResponse> {
    list_nodes(req, ctx, state, false).await
}

pub(crate) async fn list_detail(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
) -> ApiResult<HttpResponse> {
    list_nodes(req, ctx, state, true).await
}

/// Ironic's largest page (`api.max_limit`).
const MAX_LIMIT: i64 = 1000;

fn sort_column(key: &str) -> Option<Column> {
    let text = |expr| Column {
        expr,
        kind: Kind::Text,
    };
    Some(match key {
        "created_at" | "id" => store::CREATED_AT,
        "updated_at" => Column {
            expr: "COALESCE(updated_at, 0)",
            kind: Kind::Int,
        },
        "uuid" => store::TABLE.id,
        "name" => text("COALESCE(name, '')"),
        "provision_state" => text("provision_state"),
        "power_state" => text("COALESCE(power_state, '')"),
        "driver" => text("driver"),
        "resource_class" => text("COALESCE(resource_class, '')"),
        "instance_uuid" => text("COALESCE(instance_uuid, '')"),
        "maintenance" => Column {
            expr: "maintenance",
            kind: Kind::Bool,
        },
        _ => return None,
    })
}

fn boolean_arg(name: &str, v: &str) -> ApiResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
        _ => Err(bad(format!(
            "Invalid {name}: Unrecognized value '{v}', acceptable values are: '0', '1', 'f', \
             'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
        ))),
    }
}

/// Every provision state Ironic has (a filter naming another is refused).
const PROVISION_STATES: &[&str] = &[
    "enroll",
    "verifying",
    "manageable",
    "inspecting",
    "inspect wait",
    "inspect failed",
    "cleaning",
    "clean wait",
    "clean hold",
    "clean failed",
    "available",
    "deploying",
    "wait call-back",
    "deploy hold",
    "deploy failed",
    "active",
    "deleting",
    "error",
    "rebuild",
    "adopting",
    "adopt failed",
    "rescuing",
    "rescue wait",
    "rescue failed",
    "rescue",
    "unrescuing",
    "unrescue failed",
    "servicing",
    "service wait",
    "service hold",
    "service failed",
];

/// `GET /v1/nodes[/detail]`: filters, one sort key, `limit`/`marker` paging with a `next`
/// link, `fields` or `detail`. One statement ([`nova_db::listing`]).
async fn list_nodes(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    mut detail: bool,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:list")?;
    let version = IronicVersion::of(&req);
    let mut conds = Vec::new();
    let (mut limit, mut marker, mut sort_key, mut descending, mut fields) =
        (MAX_LIMIT, None, None, false, None);
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "limit" => {
                limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|l| *l >= 0)
                    .ok_or_else(|| bad(format!("Limit must be positive: {v}")))?;
                if limit == 0 || limit > MAX_LIMIT {
                    limit = MAX_LIMIT;
                }
            }
            "marker" => marker = Some(v),
            "sort_key" => {
                sort_key = Some(sort_column(&v).ok_or_else(|| {
                    bad(format!(
                        "The sort_key value \"{v}\" is an invalid field for sorting"
                    ))
                })?)
            }
            "sort_dir" => match v.as_str() {
                "asc" => descending = false,
                "desc" => descending = true,
                _ => {
                    return Err(bad(format!(
                        "Invalid sort direction: {v}. Acceptable values are 'asc' or 'desc'"
                    )))
                }
            },
            "fields" if req.path().contains("/detail") => {
                return Err(bad("Unexpected arguments: fields"))
            }
            "fields" => fields = Some(parse_fields(&req, &v)?),
            "detail" if version.at_least(43) => detail = boolean_arg("detail", &v)?,
            "associated" => conds.push(if boolean_arg("associated", &v)? {
                Cond::sql("instance_uuid IS NOT NULL", Vec::new())
            } else {
                Cond::sql("instance_uuid IS NULL", Vec::new())
            }),
            "maintenance" => conds.push(Cond::eq(
                "maintenance",
                Arg::Bool(boolean_arg("maintenance", &v)?),
            )),
            "instance_uuid" => conds.push(Cond::eq("instance_uuid", Arg::Text(v))),
            "provision_state" if version.at_least(9) => {
                if !PROVISION_STATES.contains(&v.as_str()) {
                    return Err(bad(format!("Provision state \"{v}\" is not valid")));
                }
                conds.push(Cond::eq("provision_state", Arg::Text(v)))
            }
            "driver" if version.at_least(16) => conds.push(Cond::eq("driver", Arg::Text(v))),
            "resource_class" if version.at_least(21) => {
                conds.push(Cond::eq("resource_class", Arg::Text(v)))
            }
            "fault" if version.at_least(42) => conds.push(Cond::eq("fault", Arg::Text(v))),
            // Every node is in the one (empty) conductor group.
            "conductor_group" if version.at_least(46) => {
                if !v.is_empty() {
                    conds.push(Cond::never());
                }
            }
            other => return Err(bad(format!("Unknown argument: \"{other}\""))),
        }
    }
    if detail && fields.is_some() {
        return Err(bad(
            "Can not specify ?detail=True and fields in the same request.",
        ));
    }
    let dir = if descending { Dir::Desc } else { Dir::Asc };
    let order = vec![(sort_key.unwrap_or(store::CREATED_AT), dir)];
    let mut listing = Listing {
        table: &store::TABLE,
        conds,
        tags: Default::default(),
        order,
        after: None,
        limit: Some(limit),
    };
    if let Some(marker) = &marker {
        if uuid::Uuid::parse_str(marker).is_err() {
            return Err(bad(format!("Expected UUID for marker: {marker}")));
        }
        let order = listing.total_order();
        listing.after = Some(
            listing::marker(
                &state.db,
                &store::TABLE,
                Arg::Text(marker.clone()),
                Vec::new(),
                &order,
            )
            .await?
            .ok_or_else(|| not_found(marker))?,
        );
    }
    let nodes = store::page(&state.db, &listing).await?;
    let list_fields: Vec<String> = LIST_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    let shown = if detail {
        None
    } else {
        Some(fields.as_deref().unwrap_or(&list_fields))
    };
    let mut body = json!({
        "nodes": nodes.iter().map(|n| select(full_view(&req, n), shown)).collect::<Vec<_>>(),
    });
    // A full page may have more after it (Ironic links the next one then).
    if let Some(last) = nodes.last().filter(|_| nodes.len() as i64 == limit) {
        let path = if req.path().ends_with("/detail") {
            "/baremetal/v1/nodes/detail"
        } else {
            "/baremetal/v1/nodes"
        };
        let href =
            api_toolkit::links::next_page(&req, path, &["marker"], &[("marker", &last.uuid)]);
        body["next"] = json!(href);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// What a PATCH may change here (Ironic's list, less what this service does not keep).
const UPDATABLE: &[&str] = &[
    "bios_interface",
    "boot_interface",
    "console_interface",
    "deploy_interface",
    "driver",
    "driver_info",
    "extra",
    "inspect_interface",
    "management_interface",
    "name",
    "network_interface",
    "power_interface",
    "properties",
    "raid_interface",
    "rescue_interface",
    "resource_class",
    "storage_interface",
    "vendor_interface",
];

/// One JSON-patch operation on a node.
fn apply_patch(
    node: &mut Node,
    op: &Map<String, Value>,
    password: &mut PasswordChange,
    version: IronicVersion,
) -> ApiResult<()> {
    let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid patch: every operation needs a path"))?;
    let value = op.get("value");
    if !matches!(kind, "add" | "replace" | "remove") {
        return Err(bad(format!(
            "Schema error for patch: '{kind}' is not one of ['add', 'replace', 'remove']"
        )));
    }
    if kind != "remove" && value.is_none() {
        return Err(bad(format!("Invalid patch: '{path}' needs a value")));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    // A key's `/` and `~` are escaped in a JSON pointer (RFC 6901).
    let key_owned = segments
        .get(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"));
    let (top, key) = (segments[0], key_owned.as_deref());
    let set_map = |text: &mut String, key: Option<&str>| -> ApiResult<()> {
        let mut m = object(text);
        match (key, kind) {
            (None, "remove") => m.clear(),
            (None, _) => m = object_field(top, value.unwrap_or(&Value::Null))?,
            (Some(k), "remove") => {
                if m.remove(k).is_none() {
                    return Err(bad(format!(
                        "Couldn't apply patch '{{'op': 'remove', 'path': '{path}'}}'. Reason: \
                         can't remove a non-existent object '{k}'"
                    )));
                }
            }
            (Some(k), "replace") if !m.contains_key(k) => {
                return Err(bad(format!(
                    "Couldn't apply patch '{{'op': 'replace', 'path': '{path}'}}'. Reason: \
                     can't replace a non-existent object '{k}'"
                )));
            }
            (Some(k), _) => {
                m.insert(k.to_owned(), value.cloned().unwrap_or(Value::Null));
            }
        }
        *text = Value::Object(m).to_string();
        Ok(())
    };
    match top {
        "name" if key.is_none() => {
            node.name = match value {
                Some(v) if kind != "remove" && !v.is_null() => {
                    let name = text("name", v, 255)?;
                    if !valid_name(&name) {
                        return Err(bad(format!(
                            "Node {} can not be updated with invalid name '{name}'",
                            node.uuid
                        )));
                    }
                    Some(name)
                }
                _ => None,
            }
        }
        "driver" if key.is_none() => {
            let driver = value.map(|v| text("driver", v, 255)).transpose()?;
            if driver.as_deref() != Some(DRIVER) {
                return Err(bad(format!(
                    "Could not find the following driver(s) or hardware type(s): {}.",
                    driver.unwrap_or_default()
                )));
            }
        }
        "driver_info" => {
            if key == Some(PASSWORD_KEY) {
                if kind == "remove" && node.bmc_password.is_none() {
                    return Err(bad(format!(
                        "Couldn't apply patch '{{'op': 'remove', 'path': '{path}'}}'. Reason: \
                         can't remove a non-existent object '{PASSWORD_KEY}'"
                    )));
                }
                *password = Some(match (kind, value) {
                    ("remove", _) | (_, Some(Value::Null)) => None,
                    (_, Some(Value::String(s))) => Some(Secret::new(s.clone())),
                    _ => return Err(bad(format!("driver_info/{PASSWORD_KEY} must be a string"))),
                });
                return Ok(());
            }
            let mut info = String::from(&node.driver_info);
            set_map(&mut info, key)?;
            let (clean, pw) = split_driver_info(&node.uuid, object(&info))?;
            if key.is_none() {
                *password = Some(pw.flatten());
            }
            node.driver_info = Value::Object(clean).to_string();
        }
        "properties" => set_map(&mut node.properties, key)?,
        "extra" => set_map(&mut node.extra, key)?,
        "resource_class" if key.is_none() && version.at_least(21) => {
            node.resource_class = match value {
                Some(v) if kind != "remove" && !v.is_null() => Some(text("resource_class", v, 80)?),
                _ => None,
            };
        }
        interface
            if key.is_none()
                && INTERFACES
                    .iter()
                    .any(|(i, _, minor)| *i == interface && version.at_least(*minor)) =>
        {
            if kind != "remove" {
                check_interface(interface, value.unwrap_or(&Value::Null))?;
            }
        }
        "uuid"
        | "id"
        | "provision_state"
        | "target_provision_state"
        | "power_state"
        | "target_power_state"
        | "last_error"
        | "reservation"
        | "created_at"
        | "updated_at"
        | "provision_updated_at"
        | "maintenance_reason"
        | "clean_step"
        | "fault"
        | "driver_internal_info"
        | "conductor_group"
        | "instance_uuid"
        | "instance_info"
        | "maintenance"
        | "console_enabled"
        | "chassis_uuid" => {
            return Err(bad(format!(
                "Cannot patch /{top}. Only the following can be updated: {}",
                UPDATABLE.join(", ")
            )))
        }
        _ => {
            return Err(bad(format!(
                "Cannot patch {path}. Only the following can be updated: {}",
                UPDATABLE.join(", ")
            )))
        }
    }
    Ok(())
}

/// `PATCH /v1/nodes/{node}`: a JSON patch of the fields an admin may change; refused while an
/// operation runs on the node (Ironic's NodeLocked).
pub(crate) async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:update")?;
    let mut node = find(&state, &ident).await?;
    if node.operation.is_some() {
        return Err(locked(&node));
    }
    let patch = body::json(&raw)?;
    let ops = patch.as_array().ok_or_else(|| {
        bad(format!(
            "Schema error for patch: {patch} is not of type 'array'"
        ))
    })?;
    let version = IronicVersion::of(&req);
    let mut password = None;
    let class_before = node.resource_class.clone();
    for op in ops {
        let op = op
            .as_object()
            .ok_or_else(|| bad("Invalid patch: each operation is an object"))?;
        apply_patch(&mut node, op, &mut password, version)?;
    }
    // Ironic's rule (its conductor's update_node): a class once set changes only while no
    // server can hold the machine; 409 (InvalidState) with Ironic's words.
    if class_before.is_some()
        && node.resource_class != class_before
        && !nova_core::baremetal::CLASS_CHANGEABLE.contains(&node.provision_state.as_str())
    {
        return Err(ApiError::Conflict(format!(
            "Node {} can not have resource_class updated unless it is in one of allowed ({}) \
             states.",
            node.uuid,
            nova_core::baremetal::CLASS_CHANGEABLE.join(", ")
        )));
    }
    if let Some(pw) = password {
        node.bmc_password = pw.map(|p| state.key.seal(&p, &node.uuid).0);
    }
    node.updated_at = Some(now_ms());
    match store::update_fields(&state.db, &node).await? {
        store::Updated::Yes => {}
        store::Updated::Locked => return Err(locked(&node)),
        store::Updated::NameTaken => {
            return Err(ApiError::Conflict(format!(
                "A node with name {} already exists.",
                node.name.as_deref().unwrap_or_default()
            )))
        }
        store::Updated::Missing => return Err(not_found(&ident)),
    }
    // Its capacity may have changed (properties).
    store::sync_compute_node(&state.db, &node.uuid).await?;
    let node = find(&state, &node.uuid).await?;
    Ok(HttpResponse::Ok().json(Value::Object(full_view(&req, &node))))
}

/// `DELETE /v1/nodes/{node}`: only a node with no instance, in a state Ironic deletes.
pub(crate) async fn delete(
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:delete")?;
    let node = find(&state, &ident).await?;
    if let Some(instance) = &node.instance_uuid {
        return Err(ApiError::Conflict(format!(
            "Node {} is associated with instance {instance}.",
            node.uuid
        )));
    }
    match store::delete(&state.db, &node.uuid, DELETABLE).await? {
        store::Deleted::Yes => {
            store::sync_compute_node(&state.db, &node.uuid).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        store::Deleted::Missing => Err(not_found(&ident)),
        store::Deleted::Locked => Err(locked(&node)),
        store::Deleted::WrongState => Err(ApiError::Conflict(format!(
            "Can not delete node \"{}\" while it is in provision state \"{}\". Valid provision \
             states to perform deletion are: \"('manageable', 'enroll', 'adopt failed', \
             'available')\", or set the node into maintenance mode",
            node.uuid, node.provision_state
        ))),
    }
}
