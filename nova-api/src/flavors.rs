//! `/flavors`: list, detail, show. (Create, delete and extra specs come with the Compute API
//! issue.)

use crate::error::{ApiError, ApiResult};
use crate::links::PublicUrl;
use crate::policy::require_admin;
use crate::versions::ApiVersion;
use crate::views;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use keystone_auth::RequestContext;
use nova_core::db::flavors;
use nova_core::model::Flavor;
use serde_json::{json, Value};

/// `GET /flavors` (summaries) and `/flavors/detail`: public, enabled flavors.
async fn listing(
    req: HttpRequest,
    state: web::Data<AppState>,
    view: fn(&PublicUrl, ApiVersion, &nova_core::model::Flavor) -> serde_json::Value,
) -> ApiResult<HttpResponse> {
    let url = PublicUrl::of(&req);
    let version = ApiVersion::of(&req);
    let all = flavors::list(&state.db).await?;
    let items: Vec<_> = all.iter().map(|f| view(&url, version, f)).collect();
    Ok(HttpResponse::Ok().json(json!({ "flavors": items })))
}

async fn list(
    req: HttpRequest,
    _ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(req, state, views::flavor_summary).await
}

async fn detail(
    req: HttpRequest,
    _ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(req, state, views::flavor_detail).await
}

async fn show(
    req: HttpRequest,
    _ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let flavor = flavors::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Flavor {id} could not be found.")))?;
    Ok(HttpResponse::Ok()
        .json(json!({ "flavor": views::flavor_detail(&PublicUrl::of(&req), ApiVersion::of(&req), &flavor) })))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
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
    require_admin(&ctx, "os_compute_api:os-flavor-manage:create")?;
    let body = crate::body::json(&raw)?;
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
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.chars().count() <= 65535 => Some(d.clone()),
        Some(other) => {
            return Err(bad(format!(
                "Invalid input for field/attribute description. Value: {other}. is not a string of at most 65535 characters"
            )))
        }
    };
    let name = f["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 255)
        .ok_or_else(|| {
            bad("Invalid input for field/attribute name. The name must be 1 to 255 characters.")
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
            v.as_bool()
                .ok_or_else(|| bad("os-flavor-access:is_public must be a boolean"))
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
    if flavors::list(&state.db)
        .await?
        .iter()
        .any(|x| x.name == flavor.name)
    {
        return Err(ApiError::Conflict(format!(
            "Flavor with name {} already exists.",
            flavor.name
        )));
    }
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
    require_admin(&ctx, "os_compute_api:os-flavor-manage:delete")?;
    if !flavors::delete(&state.db, &id).await? {
        return Err(ApiError::NotFound(format!(
            "Flavor {id} could not be found."
        )));
    }
    Ok(HttpResponse::Accepted().finish())
}

async fn show_extra_specs(
    _ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let flavor = flavors::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Flavor {id} could not be found.")))?;
    Ok(HttpResponse::Ok().json(json!({ "extra_specs": flavor.extra_specs })))
}

/// `POST /flavors/{id}/os-extra_specs` (admin). `node:type` must name a known node type.
async fn set_extra_specs(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&ctx, "os_compute_api:os-flavor-extra-specs:create")?;
    let body = crate::body::json(&raw)?;
    let specs = body.get("extra_specs").and_then(Value::as_object).ok_or_else(|| bad("Invalid input for field/attribute extra_specs. 'extra_specs' is a required property"))?;
    let mut parsed = std::collections::BTreeMap::new();
    for (k, v) in specs {
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
        if k == nova_core::model::NODE_TYPE_EXTRA_SPEC
            && nova_core::model::NodeType::parse(&v).is_none()
        {
            return Err(bad(format!(
                "Invalid extra spec {k}={v}: the node type must be vm, container or baremetal."
            )));
        }
        parsed.insert(k.clone(), v);
    }
    if !flavors::set_extra_specs(&state.db, &id, &parsed).await? {
        return Err(ApiError::NotFound(format!(
            "Flavor {id} could not be found."
        )));
    }
    Ok(HttpResponse::Ok().json(json!({ "extra_specs": parsed })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/flavors", web::get().to(list))
        .route("/flavors", web::post().to(create))
        .route("/flavors/detail", web::get().to(detail))
        .route("/flavors/{id}", web::get().to(show))
        .route("/flavors/{id}", web::delete().to(delete))
        .route(
            "/flavors/{id}/os-extra_specs",
            web::get().to(show_extra_specs),
        )
        .route(
            "/flavors/{id}/os-extra_specs",
            web::post().to(set_extra_specs),
        );
}
