//! Networks: list (Neutron's filters, tags, sorting and paging, in SQL), show, create,
//! update and delete, with Neutron's visibility and policy.

use crate::listing::{self, boolean, select, text_column, Collection, CREATED_AT};
use crate::quotas::network_limit;
use crate::NetworkState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::policy::NEUTRON;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::{iso8601_z, now_ms};
use nova_db::listing::{Arg, Column, Cond, Kind};
use nova_db::networks::{self as store, Network};
use serde_json::{json, Map, Value};

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Network {id} could not be found.")).named("NetworkNotFound")
}

pub(crate) fn denied(rule: &str) -> ApiError {
    NEUTRON.denied(rule)
}

/// Who the caller is, for Neutron's visibility of networks.
pub(crate) fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    nova_db::Viewer {
        project: &ctx.project_id,
        admin: ctx.is_admin(),
    }
}

/// The network if the caller may see it, or 404.
pub(crate) async fn find(
    state: &NetworkState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Network> {
    store::get_visible(&state.db, id, viewer(ctx))
        .await?
        .ok_or_else(|| not_found(id))
}

/// Neutron's network view with the extensions served here: provider attributes (for admins,
/// as Neutron shows them), external-net and the standard attributes' timestamps and
/// description.
pub(crate) fn view(ctx: &RequestContext, n: &Network, subnets: &[String]) -> Map<String, Value> {
    let mut v = json!({
        "id": n.id,
        "name": n.name,
        "description": n.description,
        "project_id": n.project_id,
        "tenant_id": n.project_id,
        "status": "ACTIVE",
        "admin_state_up": n.admin_state_up,
        "shared": n.shared,
        "subnets": subnets,
        "tags": n.tag_list(),
        "router:external": n.router_external,
        "port_security_enabled": n.port_security_enabled,
        "created_at": iso8601_z(n.created_at),
        "updated_at": iso8601_z(n.updated_at),
    });
    let map = v.as_object_mut().expect("a JSON object");
    if ctx.is_admin() {
        map.insert("provider:network_type".into(), json!("flat"));
        map.insert("provider:physical_network".into(), json!(n.backend));
        map.insert("provider:segmentation_id".into(), Value::Null);
    }
    std::mem::take(map)
}

/// Attributes networks may be filtered by (Neutron refuses the others).
const FILTERS: &[&str] = &[
    "id",
    "name",
    "description",
    "project_id",
    "tenant_id",
    "status",
    "admin_state_up",
    "shared",
    "router:external",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "port_security_enabled",
];

pub(crate) const COLLECTION: Collection = Collection {
    name: "networks",
    table: &store::TABLE,
    filters: FILTERS,
    booleans: &[
        "admin_state_up",
        "shared",
        "router:external",
        "port_security_enabled",
    ],
    sort_keys: &[
        ("id", store::TABLE.id),
        ("name", text_column("name")),
        ("created_at", CREATED_AT),
        (
            "updated_at",
            Column {
                expr: "updated_at",
                kind: Kind::Int,
            },
        ),
    ],
};

/// The condition of a filter (an attribute and the values it may have), as Neutron compares
/// the attribute the caller's view of a network shows: attributes this service holds one
/// value of match that value or nothing, and provider attributes, which only admins see,
/// match nothing for others.
pub(crate) fn filter_cond(ctx: &RequestContext, key: &str, wanted: &[String]) -> Cond {
    let texts = || wanted.iter().cloned().map(Arg::Text).collect();
    let booleans = || {
        wanted
            .iter()
            .filter_map(|w| boolean(w))
            .map(Arg::Bool)
            .collect()
    };
    match key {
        "id" | "name" | "description" | "project_id" => Cond::any_of(key, texts()),
        "tenant_id" => Cond::any_of("project_id", texts()),
        "admin_state_up" | "shared" | "port_security_enabled" => Cond::any_of(key, booleans()),
        "router:external" => Cond::any_of("router_external", booleans()),
        "status" => listing::constant(wanted.iter().any(|w| w == "ACTIVE")),
        "provider:network_type" => {
            listing::constant(ctx.is_admin() && wanted.iter().any(|w| w == "flat"))
        }
        "provider:physical_network" if ctx.is_admin() => Cond::any_of("backend", texts()),
        _ => Cond::never(),
    }
}

/// `GET /v2.0/networks`: the networks the caller may see, filtered by Neutron's attributes
/// and tags, sorted by one key, paged by `limit` and `marker` (without a limit, every
/// network, as Neutron's default), each with the `fields` asked for and its subnets' ids.
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
    let visible = store::visible_cond(viewer(&ctx));
    let (networks, next) = listing::fetch(
        &state.db,
        &req,
        &COLLECTION,
        &asked,
        visible,
        conds,
        |n: &Network| n.id.as_str(),
        not_found,
    )
    .await?;
    let ids: Vec<&str> = networks.iter().map(|n| n.id.as_str()).collect();
    let mut subnets = nova_db::subnets::ids_by_network(&state.db, &ids).await?;
    let views = networks
        .iter()
        .map(|n| {
            let subnets = subnets.remove(&n.id).unwrap_or_default();
            select(view(&ctx, n, &subnets), &asked.fields)
        })
        .collect();
    Ok(HttpResponse::Ok().json(listing::body(&COLLECTION, views, next)))
}

pub(crate) async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let network = find(&state, &ctx, &id).await?;
    let subnets = subnet_ids(&state, &network.id).await?;
    Ok(HttpResponse::Ok().json(
        json!({"network": select(view(&ctx, &network, &subnets), &listing::fields_of(&req))}),
    ))
}

/// The `network` object of a create or update body.
pub(crate) fn network_body(raw: &[u8]) -> ApiResult<Map<String, Value>> {
    let body = body::json(raw)?;
    match body.get("network") {
        Some(Value::Object(n)) => Ok(n.clone()),
        _ => Err(bad("Resource body required")),
    }
}

pub(crate) fn string_of(key: &str, v: &Value, max: usize) -> ApiResult<String> {
    match v.as_str() {
        Some(s) if s.chars().count() <= max => Ok(s.to_owned()),
        Some(s) => Err(bad(format!(
            "Invalid input for {key}. Reason: '{s}' exceeds maximum length of {max}."
        ))),
        None => Err(bad(format!(
            "Invalid input for {key}. Reason: '{v}' is not a valid string."
        ))),
    }
}

pub(crate) fn bool_of(key: &str, v: &Value) -> ApiResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(bad(format!(
            "Invalid input for {key}. Reason: '{other}' cannot be converted to boolean."
        ))),
    }
}

/// Applies the attributes both create and update may set; `false` for a key it does not know.
pub(crate) fn apply_common(n: &mut Network, key: &str, value: &Value) -> ApiResult<bool> {
    match key {
        "name" => n.name = string_of(key, value, 255)?,
        "description" => n.description = string_of(key, value, 255)?,
        "admin_state_up" => n.admin_state_up = bool_of(key, value)?,
        "shared" => n.shared = bool_of(key, value)?,
        // Neutron's external-net: an external network (what routers' gateways and floating IPs
        // would use; neither is served here), seen by every project.
        "router:external" => n.router_external = bool_of(key, value)?,
        // What its new ports take when they do not say (Neutron's port-security extension).
        "port_security_enabled" => n.port_security_enabled = bool_of(key, value)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// What a create may ask of the attributes this service has one answer to: accepted when the
/// value is that answer, refused otherwise rather than silently ignored.
pub(crate) fn check_fixed(key: &str, value: &Value) -> ApiResult<bool> {
    let accepted = match key {
        "provider:network_type" => value.is_null() || value == "flat",
        "provider:segmentation_id" => value.is_null(),
        "is_default" => value == &Value::Bool(false) || value == "false",
        "availability_zone_hints" => value.as_array().is_some_and(Vec::is_empty),
        _ => return Ok(false),
    };
    if accepted {
        Ok(true)
    } else {
        Err(bad(format!(
            "Invalid input for {key}: {value} is not supported by this deployment; networks \
             here are flat provider networks of the compute hosts."
        )))
    }
}

pub(crate) async fn create(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    // Neutron's: a project's member makes its own networks; what only admins may set is
    // refused when set to anything but its default (its `create_network:<attribute>` rules).
    if !(ctx.is_admin() || ctx.can_write()) {
        return Err(denied("create_network"));
    }
    let body = network_body(&raw)?;
    if !ctx.is_admin() {
        for (key, value) in &body {
            let set = match key.as_str() {
                // (A value that is no boolean is refused with 400 below.)
                "shared" | "router:external" | "is_default" => bool_of(key, value).unwrap_or(false),
                "provider:physical_network"
                | "provider:network_type"
                | "provider:segmentation_id" => !value.is_null(),
                "project_id" | "tenant_id" => value.as_str() != Some(ctx.project_id.as_str()),
                _ => false,
            };
            if set {
                let rule = if key.ends_with("_id") {
                    "create_network".to_owned()
                } else {
                    format!("create_network:{key}")
                };
                return Err(denied(&rule));
            }
        }
    }
    let now = now_ms();
    let mut network = Network {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        description: String::new(),
        project_id: ctx.project_id.clone(),
        shared: false,
        admin_state_up: true,
        backend: String::new(),
        tags: "[]".into(),
        created_at: now,
        updated_at: now,
        port_security_enabled: true,
        router_external: false,
    };
    let mut backend = None;
    for (key, value) in &body {
        if apply_common(&mut network, key, value)? || check_fixed(key, value)? {
            continue;
        }
        match key.as_str() {
            "project_id" | "tenant_id" => network.project_id = string_of(key, value, 255)?,
            "provider:physical_network" if !value.is_null() => {
                backend = Some(string_of(key, value, 64)?)
            }
            "provider:physical_network" => {}
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    // Without a physical network, the hosts' network of the same name (an admin's); a
    // project's own network, one of its own, which the drivers make on a host when a port of
    // it first lands there (never a host network a member names).
    network.backend = match backend {
        Some(b) if !b.is_empty() => b,
        _ if !ctx.is_admin() => format!("p-{}", &network.id.replace('-', "")[..12]),
        _ if !network.name.is_empty() => network.name.clone(),
        _ => {
            return Err(bad(
                "A network needs a name or provider:physical_network: the network the \
                 compute hosts know it by.",
            ))
        }
    };
    // Docker's modes that are not networks: the host's own stack, none, another container's.
    if matches!(network.backend.as_str(), "host" | "none")
        || network.backend.starts_with("container:")
    {
        return Err(bad(format!(
            "Invalid input for provider:physical_network: '{}' is not a network of the \
             hosts.",
            network.backend
        )));
    }
    // The project's network quota (Neutron counts it for admins' creates too).
    let limit = network_limit(&state, &network.project_id).await?;
    if !store::create_within_quota(&state.db, &network, limit).await? {
        return Err(
            ApiError::Conflict("Quota exceeded for resources: ['network'].".into())
                .named("OverQuota"),
        );
    }
    Ok(HttpResponse::Created().json(json!({"network": view(&ctx, &network, &[])})))
}

pub(crate) async fn update(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut network = find_own(&state, &ctx, &id, "update_network").await?;
    let body = network_body(&raw)?;
    for (key, value) in &body {
        if matches!(key.as_str(), "shared" | "router:external") && !ctx.is_admin() {
            return Err(denied(&format!("update_network:{key}")));
        }
        if apply_common(&mut network, key, value)? || check_fixed(key, value)? {
            continue;
        }
        return Err(bad(match key.as_str() {
            "id"
            | "project_id"
            | "tenant_id"
            | "status"
            | "subnets"
            | "created_at"
            | "updated_at"
            | "provider:physical_network" => {
                format!("Cannot update read-only attribute {key}")
            }
            other => format!("Unrecognized attribute(s) '{other}'"),
        }));
    }
    network.updated_at = now_ms();
    if !store::update(&state.db, &network).await? {
        return Err(not_found(&id));
    }
    let subnets = subnet_ids(&state, &network.id).await?;
    Ok(HttpResponse::Ok().json(json!({"network": view(&ctx, &network, &subnets)})))
}

pub(crate) async fn delete(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    find_own(&state, &ctx, &id, "delete_network").await?;
    match store::delete_unless_in_use(&state.db, &id).await? {
        store::Deleted::Yes => Ok(HttpResponse::NoContent().finish()),
        store::Deleted::Missing => Err(not_found(&id)),
        store::Deleted::InUse(ports) => Err(ApiError::Conflict(if ports.is_empty() {
            format!(
                "Unable to complete operation on network {id}. There are one or more ports \
                 still in use on the network."
            )
        } else {
            format!(
                "Unable to complete operation on network {id}. There are one or more ports \
                 still in use on the network, id for these ports is: {}.",
                ports.join(",")
            )
        })
        .named("NetworkInUse")),
    }
}

/// The ids of a network's subnets, oldest first.
pub(crate) async fn subnet_ids(state: &NetworkState, network: &str) -> ApiResult<Vec<String>> {
    Ok(nova_db::subnets::ids_by_network(&state.db, &[network])
        .await?
        .remove(network)
        .unwrap_or_default())
}

/// A network the caller may change (its project's, or any for admins): 404 if invisible,
/// 403 if visible but not theirs.
pub(crate) async fn find_own(
    state: &NetworkState,
    ctx: &RequestContext,
    id: &str,
    rule: &str,
) -> ApiResult<Network> {
    let network = find(state, ctx, id).await?;
    if !(ctx.is_admin() || (network.project_id == ctx.project_id && ctx.can_write())) {
        return Err(denied(rule));
    }
    Ok(network)
}
