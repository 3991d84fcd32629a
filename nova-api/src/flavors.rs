//! `/flavors`: list, detail, show; create, update (description, 2.55) and delete for admins;
//! extra specs; flavor access (private flavors shared with projects). A private flavor is
//! visible to admins and to the projects it is shared with, as in Nova.

use crate::versions::ApiVersion;
use crate::views;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::{next_page, PublicUrl};
use api_toolkit::listing::{NextLink, Query};
use api_toolkit::policy::NOVA;
use api_toolkit::RequestContext;
use api_toolkit::{bad, ApiError, ApiResult};
use nova_core::model::Flavor;
use nova_db::flavors;
use nova_db::listing::{Arg, Cond, Dir, Listing};
use serde_json::{json, Value};

fn flavor_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Flavor {id} could not be found."))
}

/// Whether the caller may see and use a flavor: public ones, and private ones for admins and
/// the projects they are shared with (Nova's flavor query for non-admins).
pub async fn usable_by(state: &AppState, ctx: &RequestContext, f: &Flavor) -> ApiResult<bool> {
    Ok(f.is_public
        || ctx.is_admin()
        || flavors::access_of(&state.db, &f.flavorid)
            .await?
            .contains(&ctx.project_id))
}

/// The flavor with this id if the caller may see it.
pub async fn visible(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Flavor> {
    match flavors::get(&state.db, id).await? {
        Some(f) if usable_by(state, ctx, &f).await? => Ok(f),
        _ => Err(flavor_not_found(id)),
    }
}

/// `GET /flavors` (summaries) and `/flavors/detail`, as Nova chooses: a member sees enabled
/// public flavors and the private ones shared with their project; an admin chooses with
/// `is_public` (default: public ones and those shared with the admin's project; `none`: all).
/// Filtered by `minRam` and `minDisk`, sorted by `sort_key`/`sort_dir` (default: flavor id,
/// ascending), paged by `limit` (at most 1,000) and `marker`; one statement
/// ([`nova_db::listing`]).
async fn listing(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    view: fn(&PublicUrl, ApiVersion, &nova_core::model::Flavor) -> serde_json::Value,
    path: &str,
) -> ApiResult<HttpResponse> {
    let url = PublicUrl::of(&req);
    let version = ApiVersion::of(&req);
    let q = Query::of(&req);
    let is_public = if ctx.is_admin() {
        match q.last("is_public").map(str::to_ascii_lowercase).as_deref() {
            None => Some(true),
            Some("none") => None,
            Some("true" | "t" | "1" | "yes" | "y" | "on") => Some(true),
            Some("false" | "f" | "0" | "no" | "n" | "off") => Some(false),
            Some(other) => return Err(bad(format!("Invalid is_public filter [{other}]"))),
        }
    } else {
        Some(true)
    };
    let mut conds = flavors::visible_cond(&ctx.project_id, ctx.is_admin(), is_public);
    let marker_conds = conds.clone();
    for (param, column) in [("minRam", "memory_mb"), ("minDisk", "root_gb")] {
        if let Some(v) = q.last(param) {
            let n = v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                bad(format!(
                    "Invalid input for query parameters {param}. Value: {v}."
                ))
            })?;
            conds.push(Cond::at_least(column, Arg::Int(n)));
        }
    }
    let limit = match q.last("limit") {
        None => MAX_LIMIT,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                bad(format!(
                    "Invalid input for query parameters limit. Value: {s}."
                ))
            })?
            .min(MAX_LIMIT),
    };
    let key = q.last("sort_key").unwrap_or("flavorid");
    let column = flavors::sort_column(key).ok_or_else(|| {
        bad(format!(
            "Invalid input for query parameters sort_key. Value: {key}."
        ))
    })?;
    let dir = match q.last("sort_dir").unwrap_or("asc") {
        "asc" => Dir::Asc,
        "desc" => Dir::Desc,
        other => {
            return Err(bad(format!(
                "Invalid input for query parameters sort_dir. Value: {other}."
            )))
        }
    };
    let rule = NextLink::WhenFull;
    let mut listing = Listing {
        table: &flavors::TABLE,
        conds,
        tags: Default::default(),
        order: vec![(column, dir)],
        after: None,
        limit: Some(rule.ask(limit)),
    };
    if let Some(marker) = q.last("marker") {
        let order = listing.total_order();
        listing.after = Some(
            nova_db::listing::marker(
                &state.db,
                &flavors::TABLE,
                Arg::Text(marker.to_owned()),
                marker_conds,
                &order,
            )
            .await?
            .ok_or_else(|| bad(format!("marker [{marker}] not found")))?,
        );
    }
    let page = rule.page(flavors::page(&state.db, &listing).await?, limit);
    let items: Vec<_> = page.rows.iter().map(|f| view(&url, version, f)).collect();
    let mut body = json!({ "flavors": items });
    if let Some(last) = page.rows.last().filter(|_| page.next) {
        let href = next_page(
            &req,
            &format!("/v2.1/{path}"),
            &["marker"],
            &[("marker", &last.flavorid)],
        );
        body["flavors_links"] = json!([{"rel": "next", "href": href}]);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// Nova's `max_limit`.
const MAX_LIMIT: i64 = 1000;

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(req, ctx, state, views::flavor_summary, "flavors").await
}

async fn detail(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(req, ctx, state, views::flavor_detail, "flavors/detail").await
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let flavor = visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "flavor": views::flavor_detail(&PublicUrl::of(&req), ApiVersion::of(&req), &flavor) })))
}

/// `PUT /flavors/{id}` (2.55, admin): only the description changes.
async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let version = ApiVersion::of(&req);
    if !version.at_least(55) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    NOVA.require_admin(&ctx, "os_compute_api:os-flavor-manage:update")?;
    let body = api_toolkit::body::json(&raw)?;
    let f = body
        .get("flavor")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad("Invalid input for field/attribute flavor. 'flavor' is a required property")
        })?;
    if let Some(extra) = f.keys().find(|k| k.as_str() != "description") {
        return Err(bad(format!(
            "Invalid input for field/attribute flavor. Additional properties are not allowed ('{extra}' was unexpected)"
        )));
    }
    let description =
        match f.get("description") {
            None => return Err(bad(
                "Invalid input for field/attribute flavor. 'description' is a required property",
            )),
            Some(v) => parse_description(v)?,
        };
    if !flavors::set_description(&state.db, &id, description.as_deref()).await? {
        return Err(flavor_not_found(&id));
    }
    let flavor = flavors::get(&state.db, &id)
        .await?
        .ok_or_else(|| flavor_not_found(&id))?;
    Ok(HttpResponse::Ok()
        .json(json!({ "flavor": views::flavor_detail(&PublicUrl::of(&req), version, &flavor) })))
}

fn parse_description(v: &Value) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(d) if d.chars().count() <= 65535 => Ok(Some(d.clone())),
        other => Err(bad(format!(
            "Invalid input for field/attribute description. Value: {other}. is not a string of at most 65535 characters"
        ))),
    }
}

/// A non-negative integer field of the create body, as Nova's flavor schema wants it.
fn count(body: &Value, key: &str, min: i64, default: Option<i64>) -> ApiResult<i64> {
    match body.get(key) {
        None if default.is_some() => Ok(default.unwrap_or_default()),
        None => Err(bad(format!(
            "Invalid input for field/attribute flavor. '{key}' is a required property"
        ))),
        // Nova accepts integers and strings of digits.
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
            match n {
                Some(n) if n >= min && n <= i64::from(i32::MAX) => Ok(n),
                _ => Err(bad(format!("Invalid input for field/attribute {key}. Value: {v}. must be an integer between {min} and {}", i32::MAX))),
            }
        }
    }
}

/// What a flavor create may carry (`description` from 2.55), as Nova's schema.
const CREATE_KEYS: &[&str] = &[
    "name",
    "id",
    "ram",
    "vcpus",
    "disk",
    "OS-FLV-EXT-DATA:ephemeral",
    "swap",
    "rxtx_factor",
    "os-flavor-access:is_public",
];

/// `POST /flavors` (admin).
async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-flavor-manage:create")?;
    let body = api_toolkit::body::json(&raw)?;
    let f = body
        .get("flavor")
        .filter(|f| f.is_object())
        .ok_or_else(|| {
            bad("Invalid input for field/attribute flavor. 'flavor' is a required property")
        })?;
    let version = ApiVersion::of(&req);
    if let Some(key) = f
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .find(|k| {
            let allowed = CREATE_KEYS.contains(&k.as_str())
                || (k.as_str() == "description" && version.at_least(55));
            !allowed
        })
    {
        return Err(bad(format!(
            "Invalid input for field/attribute flavor. Additional properties are not allowed ('{key}' was unexpected)"
        )));
    }
    let description = match f.get("description") {
        None => None,
        Some(v) => parse_description(v)?,
    };
    let name = f["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| {
            !n.is_empty()
                && n.chars().count() <= 255
                && n.chars().all(api_toolkit::body::is_printable)
        })
        .ok_or_else(|| {
            bad("Invalid input for field/attribute name. The name must be 1 to 255 printable characters.")
        })?;
    let flavorid = match f.get("id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(bad(format!(
                "Invalid input for field/attribute id. Value: {other}."
            )))
        }
    };
    let rxtx = match f.get("rxtx_factor") {
        None => 1.0,
        Some(v) => v
            .as_f64()
            .filter(|x| *x > 0.0)
            .ok_or_else(|| bad("rxtx_factor must be a positive number"))?,
    };
    let flavor = Flavor {
        flavorid,
        name: name.to_owned(),
        memory_mb: count(f, "ram", 1, None)?,
        vcpus: count(f, "vcpus", 1, None)?,
        root_gb: count(f, "disk", 0, None)?,
        ephemeral_gb: count(f, "OS-FLV-EXT-DATA:ephemeral", 0, Some(0))?,
        swap: match f.get("swap") {
            Some(Value::String(s)) if s.is_empty() => 0,
            _ => count(f, "swap", 0, Some(0))?,
        },
        rxtx_factor: rxtx,
        is_public: f.get("os-flavor-access:is_public").map_or(Ok(true), |v| {
            api_toolkit::body::boolean("os-flavor-access:is_public", v)
        })?,
        disabled: false,
        description,
        extra_specs: Default::default(),
    };
    if flavors::get(&state.db, &flavor.flavorid).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "Flavor with ID {} already exists.",
            flavor.flavorid
        )));
    }
    if flavors::list_all(&state.db)
        .await?
        .iter()
        .any(|x| x.name == flavor.name)
    {
        return Err(ApiError::Conflict(format!(
            "Flavor with name {} already exists.",
            flavor.name
        )));
    }
    // As Nova (bug 1209101): a private flavor starts shared with no project, not even its
    // creator's; admins see and use it anyway.
    flavors::create(&state.db, &flavor).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "flavor": views::flavor_detail(&PublicUrl::of(&req), ApiVersion::of(&req), &flavor) })))
}

/// `DELETE /flavors/{id}` (admin); servers keep their snapshot of it.
async fn delete(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-flavor-manage:delete")?;
    if !flavors::delete(&state.db, &id).await? {
        return Err(ApiError::NotFound(format!(
            "Flavor {id} could not be found."
        )));
    }
    Ok(HttpResponse::Accepted().finish())
}

async fn show_extra_specs(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let flavor = visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "extra_specs": flavor.extra_specs })))
}

fn spec_not_found(id: &str, key: &str) -> ApiError {
    ApiError::NotFound(format!("Flavor {id} has no extra specs with key {key}."))
}

async fn show_extra_spec(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, key) = path.into_inner();
    let flavor = visible(&state, &ctx, &id).await?;
    let value = flavor
        .extra_specs
        .get(&key)
        .ok_or_else(|| spec_not_found(&id, &key))?;
    Ok(HttpResponse::Ok().json(json!({ key: value })))
}

/// `PUT /flavors/{id}/os-extra_specs/{key}` with `{"<key>": "<value>"}` (admin).
async fn set_extra_spec(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-flavor-extra-specs:update")?;
    let (id, key) = path.into_inner();
    let body = api_toolkit::body::json(&raw)?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    if obj.len() != 1 {
        return Err(bad("Request body contains too many items"));
    }
    let Some(raw_value) = obj.get(&key) else {
        return Err(bad("Request body and URI mismatch"));
    };
    let value = spec_value(&key, raw_value)?;
    let specs = std::collections::BTreeMap::from([(key.clone(), value.clone())]);
    if !flavors::set_extra_specs(&state.db, &id, &specs).await? {
        return Err(flavor_not_found(&id));
    }
    Ok(HttpResponse::Ok().json(json!({ key: value })))
}

async fn delete_extra_spec(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-flavor-extra-specs:delete")?;
    let (id, key) = path.into_inner();
    flavors::get(&state.db, &id)
        .await?
        .ok_or_else(|| flavor_not_found(&id))?;
    if !flavors::delete_extra_spec(&state.db, &id, &key).await? {
        return Err(spec_not_found(&id, &key));
    }
    Ok(HttpResponse::Ok().finish())
}

/// An extra spec's value: Nova takes strings, numbers and booleans and stores strings; the
/// node type must name one this service knows.
fn spec_value(k: &str, v: &Value) -> ApiResult<String> {
    let v = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(bad(format!(
                "Invalid input for field/attribute extra_specs/{k}. Value: {other}."
            )))
        }
    };
    // Nova's schema: keys of 1 to 255 letters, digits and `-_:. /`, values up to 255.
    let key_ok = (1..=255).contains(&k.chars().count())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:. /".contains(c));
    if !key_ok {
        return Err(bad(format!(
            "Invalid input for field/attribute extra_specs. Value: {k}. '{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. /]{{1,255}}$'"
        )));
    }
    if v.chars().count() > 255 {
        return Err(bad(format!(
            "Invalid input for field/attribute extra_specs/{k}. Value: {v}. '{v}' is too long"
        )));
    }
    if k == nova_core::model::NODE_TYPE_EXTRA_SPEC
        && nova_core::model::NodeType::parse(&v).is_none()
    {
        return Err(bad(format!(
            "Invalid extra spec {k}={v}: the node type must be vm, container or baremetal."
        )));
    }
    Ok(v)
}

fn access_view(flavorid: &str, projects: &[String]) -> Value {
    let list: Vec<Value> = projects
        .iter()
        .map(|p| json!({"flavor_id": flavorid, "tenant_id": p}))
        .collect();
    json!({ "flavor_access": list })
}

/// `GET /flavors/{id}/os-flavor-access` (admin): the projects a private flavor is shared with.
async fn list_access(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-flavor-access")?;
    let flavor = flavors::get(&state.db, &id)
        .await?
        .ok_or_else(|| flavor_not_found(&id))?;
    if flavor.is_public {
        return Err(ApiError::NotFound(
            "Access list not available for public flavors.".into(),
        ));
    }
    let projects = flavors::access_of(&state.db, &id).await?;
    Ok(HttpResponse::Ok().json(access_view(&id, &projects)))
}

/// `POST /flavors/{id}/action`: `addTenantAccess` / `removeTenantAccess` (admin).
async fn flavor_action(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = api_toolkit::body::json(&raw)?;
    let (name, arg) = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
        .ok_or_else(|| bad("The action body must be an object with exactly one action."))?;
    let add = match name.as_str() {
        "addTenantAccess" => true,
        "removeTenantAccess" => false,
        other => return Err(bad(format!("There is no such action: {other}"))),
    };
    let rule = if add {
        "os_compute_api:os-flavor-access:add_tenant_access"
    } else {
        "os_compute_api:os-flavor-access:remove_tenant_access"
    };
    NOVA.require_admin(&ctx, rule)?;
    let tenant = arg
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("tenant"))
        .and_then(Value::as_str)
        .filter(|t| (1..=255).contains(&t.chars().count()))
        .ok_or_else(|| {
            bad(format!(
                "Invalid input for field/attribute {name}. Value: {arg}. 'tenant' is a required property"
            ))
        })?;
    let flavor = flavors::get(&state.db, &id)
        .await?
        .ok_or_else(|| flavor_not_found(&id))?;
    if add {
        state.check_project(tenant).await?;
    }
    if add && flavor.is_public {
        return Err(ApiError::Conflict(
            "Can not add access to a public flavor.".into(),
        ));
    }
    if add {
        if !flavors::add_access(&state.db, &id, tenant).await? {
            return Err(ApiError::Conflict(format!(
                "Flavor access already exists for flavor {id} and project {tenant} combination."
            )));
        }
    } else if !flavors::remove_access(&state.db, &id, tenant).await? {
        return Err(ApiError::NotFound(format!(
            "Flavor access not found for {id} / {tenant} combination."
        )));
    }
    let projects = flavors::access_of(&state.db, &id).await?;
    Ok(HttpResponse::Ok().json(access_view(&id, &projects)))
}

/// `POST /flavors/{id}/os-extra_specs` (admin). `node:type` must name a known node type.
async fn set_extra_specs(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-flavor-extra-specs:create")?;
    let body = api_toolkit::body::json(&raw)?;
    let specs = body.get("extra_specs").and_then(Value::as_object).ok_or_else(|| bad("Invalid input for field/attribute extra_specs. 'extra_specs' is a required property"))?;
    let mut parsed = std::collections::BTreeMap::new();
    for (k, v) in specs {
        parsed.insert(k.clone(), spec_value(k, v)?);
    }
    if !flavors::set_extra_specs(&state.db, &id, &parsed).await? {
        return Err(ApiError::NotFound(format!(
            "Flavor {id} could not be found."
        )));
    }
    Ok(HttpResponse::Ok().json(json!({ "extra_specs": parsed })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/flavors")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(web::resource("/flavors/detail").route(web::get().to(detail)))
    .service(
        web::resource("/flavors/{id}")
            .route(web::get().to(show))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/flavors/{id}/action").route(web::post().to(flavor_action)))
    .service(web::resource("/flavors/{id}/os-flavor-access").route(web::get().to(list_access)))
    .service(
        web::resource("/flavors/{id}/os-extra_specs/{key}")
            .route(web::get().to(show_extra_spec))
            .route(web::put().to(set_extra_spec))
            .route(web::delete().to(delete_extra_spec)),
    )
    .service(
        web::resource("/flavors/{id}/os-extra_specs")
            .route(web::get().to(show_extra_specs))
            .route(web::post().to(set_extra_specs)),
    );
}
