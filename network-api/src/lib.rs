//! The networking service's networks (a Neutron v2.0 subset) under `/network`: what a server
//! create may choose by id (`networks: [{"uuid": …}]`), and what clients look a network up in
//! by name (`openstack server create --network NAME` asks here before it asks for a server).
//!
//! A network is a name for a network the compute hosts provide (a provider network, in
//! Neutron's terms): `provider:physical_network` names it on the hosts (for Docker, an engine
//! network), and it defaults to the network's name. There are no subnets, ports or routers:
//! addresses come from the host's network when a server starts. Because a network must exist
//! on the hosts, creating one is for admins, as Neutron's policy has it for provider networks.
//!
//! Quotas (`/v2.0/quotas`) limit the networks of a project, which `openstack quota show` reads
//! from every networking service in the catalog.
//!
//! Errors leave in Neutron's body (`{"NeutronError": {"type", "message", "detail"}}`), with
//! Neutron's exception names ([`ApiError::named`]).

use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::links::{next_page, PublicUrl};
use api_toolkit::listing::{NextLink, Query};
use api_toolkit::policy::NEUTRON;
use api_toolkit::{bad, ApiError, ApiResult, FaultFormat, RequestContext};
use nova_core::time::{iso8601_z, now_ms};
use nova_db::listing::{self, Arg, Column, Cond, Dir, Kind, Listing};
use nova_db::networks::{self as store, Network};
use nova_db::quotas;
use nova_db::Db;
use serde_json::{json, Map, Value};

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Network {id} could not be found.")).named("NetworkNotFound")
}

fn denied(rule: &str) -> ApiError {
    NEUTRON.denied(rule)
}

/// Who the caller is, for Neutron's visibility of networks.
fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    nova_db::Viewer {
        project: &ctx.project_id,
        admin: ctx.is_admin(),
    }
}

/// The network if the caller may see it, or 404.
async fn find(state: &NetworkState, ctx: &RequestContext, id: &str) -> ApiResult<Network> {
    store::get_visible(&state.db, id, viewer(ctx))
        .await?
        .ok_or_else(|| not_found(id))
}

/// Neutron's network view with the extensions served here: provider attributes (for admins,
/// as Neutron shows them), external-net and the standard attributes' timestamps and
/// description.
fn view(ctx: &RequestContext, n: &Network) -> Map<String, Value> {
    let mut v = json!({
        "id": n.id,
        "name": n.name,
        "description": n.description,
        "project_id": n.project_id,
        "tenant_id": n.project_id,
        "status": "ACTIVE",
        "admin_state_up": n.admin_state_up,
        "shared": n.shared,
        "subnets": [],
        "tags": n.tag_list(),
        "router:external": false,
        // Docker's networks do not filter spoofed traffic: no port security here.
        "port_security_enabled": false,
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

/// Only the `fields` asked for, when any were (Neutron's field selection).
fn select(mut view: Map<String, Value>, fields: &[String]) -> Value {
    if !fields.is_empty() {
        view.retain(|k, _| fields.iter().any(|f| f == k));
    }
    Value::Object(view)
}

/// Query parameters that are not filters.
const PAGING: &[&str] = &[
    "fields",
    "limit",
    "marker",
    "page_reverse",
    "sort_key",
    "sort_dir",
];
/// Attributes a list may be filtered by (Neutron rejects the others).
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

/// Boolean filters, whose values Neutron converts (and refuses when they are not booleans).
const BOOLEAN_FILTERS: &[&str] = &[
    "admin_state_up",
    "shared",
    "router:external",
    "port_security_enabled",
];

/// A filter's value as a boolean, as Neutron converts them (`true`/`false` in any case, 1/0).
fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// The condition of a filter (an attribute and the values it may have), as Neutron compares
/// the attribute the caller's view of a network shows: attributes this service holds one
/// value of match that value or nothing, and provider attributes, which only admins see,
/// match nothing for others.
fn filter_cond(ctx: &RequestContext, key: &str, wanted: &[String]) -> Cond {
    let texts = || wanted.iter().cloned().map(Arg::Text).collect();
    let booleans = || {
        wanted
            .iter()
            .filter_map(|w| boolean(w))
            .map(Arg::Bool)
            .collect()
    };
    let constant = |holds: bool| {
        if holds {
            Cond::all(Vec::new())
        } else {
            Cond::never()
        }
    };
    match key {
        "id" | "name" | "description" | "project_id" => Cond::any_of(key, texts()),
        "tenant_id" => Cond::any_of("project_id", texts()),
        "admin_state_up" | "shared" => Cond::any_of(key, booleans()),
        "status" => constant(wanted.iter().any(|w| w == "ACTIVE")),
        "router:external" | "port_security_enabled" => {
            constant(wanted.iter().any(|w| boolean(w) == Some(false)))
        }
        "provider:network_type" => constant(ctx.is_admin() && wanted.iter().any(|w| w == "flat")),
        "provider:physical_network" if ctx.is_admin() => Cond::any_of("backend", texts()),
        _ => Cond::never(),
    }
}

/// The keys networks sort by.
fn sort_column(key: &str) -> Column {
    match key {
        "name" => Column {
            expr: "name",
            kind: Kind::Text,
        },
        "created_at" => CREATED_AT,
        "updated_at" => Column {
            expr: "updated_at",
            kind: Kind::Int,
        },
        _ => store::TABLE.id,
    }
}

const CREATED_AT: Column = Column {
    expr: "created_at",
    kind: Kind::Int,
};

/// `GET /v2.0/networks`: the networks the caller may see, filtered by Neutron's attributes
/// and tags, sorted by one key, paged by `limit` and `marker` (without a limit, every
/// network, as Neutron's default), each with the `fields` asked for. One statement
/// ([`nova_db::listing`]).
async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
) -> ApiResult<HttpResponse> {
    let q = Query::of(&req);
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    let mut fields = Vec::new();
    let (mut limit, mut marker, mut sort_key, mut descending) = (None, None, None, false);
    let mut sort_dirs = 0;
    for (k, v) in q.pairs() {
        if BOOLEAN_FILTERS.contains(&k) && boolean(v).is_none() {
            return Err(bad(format!(
                "Invalid input for operation: '{v}' cannot be converted to boolean."
            )));
        }
        match k {
            // Neutron drops empty values.
            "fields" if v.is_empty() => {}
            "fields" => fields.push(v.to_owned()),
            "limit" => {
                limit = Some(v.parse::<u64>().map_err(|_| {
                    bad(format!(
                        "Bad limit request: Limit must be an integer 0 or greater and not '{v}'."
                    ))
                })?)
            }
            "marker" => marker = Some(v.to_owned()),
            "sort_key" => {
                if !matches!(v, "id" | "name" | "created_at" | "updated_at") {
                    return Err(bad(format!("['{v}'] is invalid attribute for sort_keys")));
                }
                sort_key = Some(v.to_owned());
            }
            "sort_dir" => match v {
                "asc" | "desc" => {
                    descending = v == "desc";
                    sort_dirs += 1;
                }
                _ => {
                    return Err(bad(format!(
                        "{v} is invalid value for sort_dirs, valid value is 'asc' and 'desc'"
                    )))
                }
            },
            "page_reverse" | "tags" | "tags-any" | "not-tags" | "not-tags-any" => {}
            key if FILTERS.contains(&key) => match filters.iter_mut().find(|(f, _)| f == k) {
                Some((_, values)) => values.push(v.to_owned()),
                None => filters.push((k.to_owned(), vec![v.to_owned()])),
            },
            key if PAGING.contains(&key) => {}
            key => return Err(bad(format!("['{key}'] is invalid attribute for filtering"))),
        }
    }
    if sort_dirs != usize::from(sort_key.is_some()) {
        return Err(bad("The number of sort_keys and sort_dirs must be same"));
    }
    let visible = vec![store::visible_cond(viewer(&ctx))];
    let mut conds = visible.clone();
    conds.extend(
        filters
            .iter()
            .map(|(k, wanted)| filter_cond(&ctx, k, wanted)),
    );
    // By the key asked for, then by creation, in one direction (Neutron's default: creation).
    let dir = if descending { Dir::Desc } else { Dir::Asc };
    let mut order = Vec::new();
    if let Some(key) = &sort_key {
        order.push((sort_column(key), dir));
    }
    if !order.iter().any(|(c, _)| *c == CREATED_AT) {
        order.push((CREATED_AT, dir));
    }
    // As Neutron: a limit of 0 is none, and a marker only means something with a limit.
    let limit = limit
        .filter(|l| *l > 0)
        .map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let rule = NextLink::WhenMore;
    let mut listing = Listing {
        table: &store::TABLE,
        conds,
        tags: q.tag_filter(),
        order,
        after: None,
        limit: limit.map(|l| rule.ask(l)),
    };
    if let Some(marker) = marker.filter(|_| limit.is_some()) {
        let order = listing.total_order();
        listing.after = Some(
            listing::marker(
                &state.db,
                &store::TABLE,
                Arg::Text(marker.clone()),
                visible,
                &order,
            )
            .await?
            .ok_or_else(|| not_found(&marker))?,
        );
    }
    let networks = store::page(&state.db, &listing).await?;
    let page = match limit {
        Some(limit) => rule.page(networks, limit),
        None => api_toolkit::listing::Page {
            rows: networks,
            next: false,
        },
    };
    let mut body = json!({
        "networks": page.rows.iter().map(|n| select(view(&ctx, n), &fields)).collect::<Vec<_>>(),
    });
    if let Some(last) = page.rows.last().filter(|_| page.next) {
        // The same query, with the page's last network as the marker (as Neutron).
        let href = next_page(
            &req,
            "/network/v2.0/networks",
            &["marker", "page_reverse"],
            &[("marker", &last.id)],
        );
        body["networks_links"] = json!([{"rel": "next", "href": href}]);
    }
    Ok(HttpResponse::Ok().json(body))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let fields: Vec<String> = form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == "fields")
        .map(|(_, v)| v.into_owned())
        .collect();
    let network = find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"network": select(view(&ctx, &network), &fields)})))
}

/// The `network` object of a create or update body.
fn network_body(raw: &[u8]) -> ApiResult<Map<String, Value>> {
    let body = body::json(raw)?;
    match body.get("network") {
        Some(Value::Object(n)) => Ok(n.clone()),
        _ => Err(bad("Resource body required")),
    }
}

fn string_of(key: &str, v: &Value, max: usize) -> ApiResult<String> {
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

fn bool_of(key: &str, v: &Value) -> ApiResult<bool> {
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
fn apply_common(n: &mut Network, key: &str, value: &Value) -> ApiResult<bool> {
    match key {
        "name" => n.name = string_of(key, value, 255)?,
        "description" => n.description = string_of(key, value, 255)?,
        "admin_state_up" => n.admin_state_up = bool_of(key, value)?,
        "shared" => n.shared = bool_of(key, value)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// What a create may ask of the attributes this service has one answer to: accepted when the
/// value is that answer, refused otherwise rather than silently ignored.
fn check_fixed(key: &str, value: &Value) -> ApiResult<bool> {
    let accepted = match key {
        "provider:network_type" => value.is_null() || value == "flat",
        "provider:segmentation_id" => value.is_null(),
        "router:external" | "is_default" => value == &Value::Bool(false) || value == "false",
        "port_security_enabled" => value == &Value::Bool(false) || value == "false",
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

/// Neutron's default limit of networks per project (`quota_network`).
const DEFAULT_NETWORK_QUOTA: i64 = 100;
/// The resource's name in the quota table and in Neutron's quota bodies.
const NETWORK: &str = "network";

async fn network_limit(state: &NetworkState, project: &str) -> ApiResult<i64> {
    Ok(quotas::limits(&state.db, project)
        .await?
        .get(NETWORK)
        .copied()
        .unwrap_or(DEFAULT_NETWORK_QUOTA))
}

/// Neutron's policy for reading a quota: an admin, or the project's own.
fn may_read_quota(ctx: &RequestContext, project: &str) -> ApiResult<()> {
    if ctx.is_admin() || ctx.project_id == project {
        Ok(())
    } else {
        Err(denied("get_quota"))
    }
}

/// `GET /v2.0/quotas`: the projects with a limit of their own (admins).
async fn list_quotas(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
) -> ApiResult<HttpResponse> {
    if !ctx.is_admin() {
        return Err(denied("get_quota"));
    }
    let quotas: Vec<Value> = quotas::projects_with(&state.db, NETWORK)
        .await?
        .into_iter()
        .map(|(project, limit)| json!({"network": limit, "project_id": project, "tenant_id": project}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "quotas": quotas })))
}

/// `GET /v2.0/quotas/{project}`: the limits of the resources this service has: networks.
async fn show_quota(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    let limit = network_limit(&state, &project).await?;
    Ok(HttpResponse::Ok().json(json!({"quota": {NETWORK: limit}})))
}

async fn default_quota(ctx: RequestContext, project: web::Path<String>) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    Ok(HttpResponse::Ok().json(json!({"quota": {NETWORK: DEFAULT_NETWORK_QUOTA}})))
}

/// `GET /v2.0/quotas/{project}/details.json`: limit, use and reservations (none here).
async fn quota_details(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    let limit = network_limit(&state, &project).await?;
    let used = quotas::network_count(&state.db, &project).await?;
    Ok(HttpResponse::Ok().json(json!({"quota": {
        NETWORK: {"limit": limit, "used": used, "reserved": 0},
    }})))
}

async fn update_quota(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    if !ctx.is_admin() {
        return Err(denied("update_quota"));
    }
    let body = body::json(&raw)?;
    let quota = body
        .get("quota")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("Resource body required"))?;
    let mut limits = std::collections::BTreeMap::new();
    let force = quota
        .get("force")
        .is_some_and(|f| f == &Value::Bool(true) || f == "true" || f == "True");
    for (key, value) in quota {
        match key.as_str() {
            NETWORK => {
                let limit = value
                    .as_i64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                    .filter(|l| *l >= -1)
                    .ok_or_else(|| {
                        bad(format!("Invalid input for network. Reason: '{value}' is not an integer of -1 or more."))
                    })?;
                limits.insert(NETWORK.to_owned(), limit);
            }
            // As Neutron since 2025.1: a limit under what the project uses is refused unless
            // forced (`check_limit` is the older spelling of not forcing).
            "force" | "check_limit" => {}
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    if let Some(&limit) = limits.get(NETWORK).filter(|l| **l >= 0 && !force) {
        let used = quotas::network_count(&state.db, &project).await?;
        if limit < used {
            return Err(bad(format!(
                "Quota limit {limit} for network must be greater than or equal to already \
                 used {used}"
            )));
        }
    }
    quotas::set(&state.db, &project, &limits).await?;
    let limit = network_limit(&state, &project).await?;
    Ok(HttpResponse::Ok().json(json!({"quota": {NETWORK: limit}})))
}

async fn reset_quota(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    if !ctx.is_admin() {
        return Err(denied("delete_quota"));
    }
    quotas::reset(&state.db, &project, &[NETWORK]).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn create(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    if !ctx.is_admin() {
        return Err(denied("create_network"));
    }
    let body = network_body(&raw)?;
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
    // Without a physical network, the hosts' network of the same name.
    network.backend = match backend {
        Some(b) if !b.is_empty() => b,
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
    Ok(HttpResponse::Created().json(json!({"network": view(&ctx, &network)})))
}

async fn update(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut network = find_own(&state, &ctx, &id, "update_network").await?;
    let body = network_body(&raw)?;
    for (key, value) in &body {
        if key == "shared" && !ctx.is_admin() {
            return Err(denied("update_network:shared"));
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
    Ok(HttpResponse::Ok().json(json!({"network": view(&ctx, &network)})))
}

async fn delete(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    find_own(&state, &ctx, &id, "delete_network").await?;
    match store::delete_unless_in_use(&state.db, &id).await? {
        store::Deleted::Yes => Ok(HttpResponse::NoContent().finish()),
        store::Deleted::Missing => Err(not_found(&id)),
        store::Deleted::InUse => Err(ApiError::Conflict(format!(
            "Unable to complete operation on network {id}. There are one or more ports \
                 still in use on the network."
        ))
        .named("NetworkInUse")),
    }
}

/// A network the caller may change (its project's, or any for admins): 404 if invisible,
/// 403 if visible but not theirs.
async fn find_own(
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

/// Neutron's limit on a tag's length.
const MAX_TAG_LEN: usize = 255;

fn check_tag(tag: &str) -> ApiResult<()> {
    if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN || tag.contains(',') {
        return Err(bad(format!(
            "Invalid input for operation: '{tag}' is not a valid tag (1 to {MAX_TAG_LEN} \
             characters, no comma)."
        )));
    }
    Ok(())
}

async fn write_tags(state: &NetworkState, mut network: Network, tags: &[String]) -> ApiResult<()> {
    network.tags = serde_json::to_string(tags).map_err(|e| ApiError::Internal(e.to_string()))?;
    network.updated_at = now_ms();
    if !store::update(&state.db, &network).await? {
        return Err(not_found(&network.id));
    }
    Ok(())
}

/// `GET /v2.0/networks/{id}/tags`.
async fn list_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let network = find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"tags": network.tag_list()})))
}

/// `GET /v2.0/networks/{id}/tags/{tag}`: 204 when the network has it.
async fn show_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    let network = find(&state, &ctx, &id).await?;
    if network.tag_list().contains(&tag) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(tag_not_found(&tag, &id))
    }
}

fn tag_not_found(tag: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("Tag {tag} could not be found for network {id}."))
        .named("TagNotFound")
}

/// `PUT /v2.0/networks/{id}/tags`: replaces them all.
async fn replace_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let network = find_own(&state, &ctx, &id, "update_networks_tags").await?;
    let body = body::json(&raw)?;
    let tags = body
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid input for operation: a list of tags is required."))?;
    let mut list: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.as_str().ok_or_else(|| {
            bad(format!(
                "Invalid input for operation: '{tag}' is not a string."
            ))
        })?;
        check_tag(tag)?;
        if !list.iter().any(|t| t == tag) {
            list.push(tag.to_owned());
        }
    }
    write_tags(&state, network, &list).await?;
    Ok(HttpResponse::Ok().json(json!({ "tags": list })))
}

/// `PUT /v2.0/networks/{id}/tags/{tag}`: adds one (201).
async fn add_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    check_tag(&tag)?;
    let network = find_own(&state, &ctx, &id, "update_networks_tags").await?;
    let mut tags = network.tag_list();
    if !tags.contains(&tag) {
        tags.push(tag);
        write_tags(&state, network, &tags).await?;
    }
    Ok(HttpResponse::Created().finish())
}

/// `DELETE /v2.0/networks/{id}/tags`: removes them all.
async fn remove_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let network = find_own(&state, &ctx, &id, "delete_networks_tags").await?;
    write_tags(&state, network, &[]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v2.0/networks/{id}/tags/{tag}`.
async fn remove_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    let network = find_own(&state, &ctx, &id, "delete_networks_tags").await?;
    let mut tags = network.tag_list();
    let before = tags.len();
    tags.retain(|t| *t != tag);
    if tags.len() == before {
        return Err(tag_not_found(&tag, &id));
    }
    write_tags(&state, network, &tags).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The extensions whose attributes the views above carry (Neutron's aliases).
async fn extensions() -> HttpResponse {
    let ext = |alias: &str, name: &str, description: &str| {
        json!({"alias": alias, "name": name, "description": description,
               "updated": "2013-01-01T10:00:00-00:00", "links": []})
    };
    HttpResponse::Ok().json(json!({"extensions": [
        ext("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
        ext("external-net", "Neutron external network", "Adds external network attribute to network resource."),
        ext("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
        ext("quotas", "Quota management support", "Expose functions for quotas management per project"),
        ext("quota_details", "Quota details extension", "Expose functions for quotas usage statistics per project"),
        ext("standard-attr-tag", "Tag support for resources with standard attribute: network", "Enables to set tag on resources with standard attribute."),
        ext("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ]}))
}

/// Neutron's version document at the service's root.
async fn versions(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    HttpResponse::Ok().json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{base}/network/v2.0/")}],
    }]}))
}

/// The resources of v2.0, as Neutron lists them at `/v2.0/`.
async fn resources(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    HttpResponse::Ok().json(json!({"resources": [{
        "name": "network",
        "collection": "networks",
        "links": [{"rel": "self", "href": format!("{base}/network/v2.0/networks")}],
    }]}))
}

/// What the networking handlers share.
pub struct NetworkState {
    pub db: Db,
}

/// The networking API, to serve ([`api_toolkit::server::serve`]).
pub struct NetworkApi {
    state: web::Data<NetworkState>,
}

impl NetworkApi {
    pub fn new(db: Db) -> Self {
        Self {
            state: web::Data::new(NetworkState { db }),
        }
    }
}

impl api_toolkit::Service for NetworkApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        routes(cfg);
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/network")
            .wrap(FaultFormat::Neutron.errors())
            .route("", web::get().to(versions))
            .route("/", web::get().to(versions))
            .route("/v2.0", web::get().to(resources))
            .route("/v2.0/", web::get().to(resources))
            .route("/v2.0/extensions", web::get().to(extensions))
            .route("/v2.0/networks", web::get().to(list))
            .route("/v2.0/networks", web::post().to(create))
            .route("/v2.0/networks/{id}", web::get().to(show))
            .route("/v2.0/networks/{id}", web::put().to(update))
            .route("/v2.0/networks/{id}", web::delete().to(delete))
            .route("/v2.0/networks/{id}/tags", web::get().to(list_tags))
            .route("/v2.0/networks/{id}/tags", web::put().to(replace_tags))
            .route("/v2.0/networks/{id}/tags", web::delete().to(remove_tags))
            .route("/v2.0/networks/{id}/tags/{tag}", web::get().to(show_tag))
            .route("/v2.0/networks/{id}/tags/{tag}", web::put().to(add_tag))
            .route(
                "/v2.0/networks/{id}/tags/{tag}",
                web::delete().to(remove_tag),
            )
            .route("/v2.0/quotas", web::get().to(list_quotas))
            .route("/v2.0/quotas/{project}", web::get().to(show_quota))
            .route("/v2.0/quotas/{project}", web::put().to(update_quota))
            .route("/v2.0/quotas/{project}", web::delete().to(reset_quota))
            .route(
                "/v2.0/quotas/{project}/default",
                web::get().to(default_quota),
            )
            .route(
                "/v2.0/quotas/{project}/details",
                web::get().to(quota_details),
            )
            .route(
                "/v2.0/quotas/{project}/details.json",
                web::get().to(quota_details),
            ),
    );
}
