//! `/os-services`: the compute services, whether they are up, and the admin's switches on them
//! (admin only): enable/disable with a reason, force down (2.11), delete. Before 2.53 a
//! service is named by host and binary on `PUT /os-services/{enable,disable,...}` and by its
//! integer id on delete; from 2.53 by its uuid on `PUT`/`DELETE /os-services/{uuid}`.

use crate::os_availability_zone::{host_zones, zone_of, INTERNAL_ZONE};
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::bad;
use api_toolkit::body;
use api_toolkit::body::invalid;
use api_toolkit::policy::NOVA;
use api_toolkit::RequestContext;
use api_toolkit::{ApiError, ApiResult};
use nova_core::model::{Service, COMPUTE_BINARY};
use nova_core::time::{iso8601_naive_micros, now_ms};
use nova_db::nodes::{self, ServiceChange, ServiceDeletion, ServiceKey};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// A service's zone: a compute host's availability zone, `internal` for the others.
pub(crate) fn zone<'a>(zones: &'a HashMap<String, String>, s: &Service) -> &'a str {
    if s.binary == COMPUTE_BINARY {
        zone_of(zones, &s.host)
    } else {
        INTERNAL_ZONE
    }
}

fn view(
    state: &AppState,
    version: ApiVersion,
    s: &Service,
    now: i64,
    zones: &HashMap<String, String>,
) -> Value {
    // Up/down from the last heartbeat, as Nova's DB servicegroup driver; the id is the
    // service's uuid from 2.53, `forced_down` is shown from 2.11.
    let mut v = json!({
        "id": if version.at_least(53) { json!(s.uuid) } else { json!(s.id) },
        "binary": s.binary,
        "host": s.host,
        "zone": zone(zones, s),
        "status": if s.disabled { "disabled" } else { "enabled" },
        "state": if s.is_up(now, state.service_down_ms) { "up" } else { "down" },
        "updated_at": s.last_seen_at.map(iso8601_naive_micros),
        "disabled_reason": s.disabled_reason,
    });
    if version.at_least(11) {
        v["forced_down"] = json!(s.forced_down);
    }
    v
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-services:list")?;
    let version = ApiVersion::of(&req);
    let q: std::collections::HashMap<String, String> =
        form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect();
    let now = now_ms();
    let zones = host_zones(&state.db).await?;
    let services: Vec<_> = nodes::services(&state.db)
        .await?
        .iter()
        // Nova's list filters.
        .filter(|s| q.get("host").is_none_or(|h| *h == s.host))
        .filter(|s| q.get("binary").is_none_or(|b| *b == s.binary))
        .map(|s| view(&state, version, s, now, &zones))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "services": services })))
}

fn object(body: &Value) -> ApiResult<&Map<String, Value>> {
    body.as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))
}

fn string_field(obj: &Map<String, Value>, key: &str, body: &Value) -> ApiResult<String> {
    let v = obj
        .get(key)
        .ok_or_else(|| invalid(key, body, &format!("'{key}' is a required property")))?;
    match v.as_str() {
        Some(s) if (1..=255).contains(&s.chars().count()) => Ok(s.to_owned()),
        _ => Err(invalid(key, v, "is not a string of 1 to 255 characters")),
    }
}

fn bool_field(obj: &Map<String, Value>, key: &str) -> ApiResult<Option<bool>> {
    match obj.get(key) {
        None => Ok(None),
        // Nova's boolean parameter type also takes the usual strings.
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("true" | "1" | "yes" | "on" | "y" | "t") => Ok(Some(true)),
            Some("false" | "0" | "no" | "off" | "n" | "f") => Ok(Some(false)),
            _ => Err(invalid(key, v, &format!("{v} is not of type 'boolean'"))),
        },
    }
}

/// The routes before 2.53: `PUT /os-services/{enable,disable,disable-log-reason,force-down}`
/// with the host and binary in the body; the answer echoes what changed.
async fn update_by_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    action: String,
    body: Value,
) -> ApiResult<HttpResponse> {
    let version = ApiVersion::of(&req);
    let obj = object(&body)?;
    let (allowed, change): (&[&str], _) = match action.as_str() {
        "enable" => (
            &["host", "binary"],
            ServiceChange {
                disabled: Some(false),
                ..Default::default()
            },
        ),
        "disable" => (
            &["host", "binary"],
            ServiceChange {
                disabled: Some(true),
                ..Default::default()
            },
        ),
        "disable-log-reason" => (
            &["host", "binary", "disabled_reason"],
            ServiceChange {
                disabled: Some(true),
                disabled_reason: Some(string_field(obj, "disabled_reason", &body)?),
                ..Default::default()
            },
        ),
        "force-down" if version.at_least(11) => {
            let forced = bool_field(obj, "forced_down")?.ok_or_else(|| {
                invalid("forced_down", &body, "'forced_down' is a required property")
            })?;
            (
                &["host", "binary", "forced_down"],
                ServiceChange {
                    forced_down: Some(forced),
                    ..Default::default()
                },
            )
        }
        other => return Err(ApiError::NotFound(format!("Unknown action {other}"))),
    };
    body::only(obj, allowed)?;
    let host = string_field(obj, "host", &body)?;
    let binary = string_field(obj, "binary", &body)?;
    let service = nodes::update_service(&state.db, ServiceKey::HostBinary(&host, &binary), &change)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("Could not find binary {binary} on host {host}."))
        })?;
    let mut out = json!({"host": service.host, "binary": service.binary});
    if let Some(forced) = change.forced_down {
        out["forced_down"] = json!(forced);
    } else {
        out["status"] = json!(if service.disabled {
            "disabled"
        } else {
            "enabled"
        });
        if change.disabled_reason.is_some() {
            out["disabled_reason"] = json!(service.disabled_reason);
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "service": out })))
}

/// `PUT /os-services/{uuid}` (2.53): status, reason and forced_down of a compute service.
async fn update_by_uuid(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: String,
    body: Value,
) -> ApiResult<HttpResponse> {
    let obj = object(&body)?;
    body::only(obj, &["status", "disabled_reason", "forced_down"])?;
    let uuid: uuid::Uuid = id.parse().map_err(|_| bad(format!("Invalid uuid {id}")))?;
    let disabled = match obj.get("status") {
        None => None,
        Some(v) => match v.as_str() {
            Some("enabled") => Some(false),
            Some("disabled") => Some(true),
            _ => {
                return Err(invalid(
                    "status",
                    v,
                    "is not one of ['enabled', 'disabled']",
                ))
            }
        },
    };
    let forced_down = bool_field(obj, "forced_down")?;
    let reason = match obj.get("disabled_reason") {
        None => None,
        Some(_) => Some(string_field(obj, "disabled_reason", &body)?),
    };
    // Nova's rules for this body.
    if reason.is_some() && disabled != Some(true) {
        return Err(bad(
            "Specifying 'disabled_reason' with status 'enabled' is invalid.",
        ));
    }
    if disabled.is_none() && forced_down.is_none() {
        return Err(bad(
            "At least one of 'status' or 'forced_down' must be specified in request body.",
        ));
    }
    let key = ServiceKey::Uuid(uuid);
    let found = nodes::service_by(&state.db, key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Service {id} could not be found.")))?;
    if found.binary != COMPUTE_BINARY {
        return Err(bad(format!(
            "Updating a {} service is not supported. Only nova-compute services can be updated.",
            found.binary
        )));
    }
    let change = ServiceChange {
        disabled,
        disabled_reason: reason,
        forced_down,
    };
    let service = nodes::update_service(&state.db, key, &change)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Service {id} could not be found.")))?;
    let version = ApiVersion::of(&req);
    let zones = host_zones(&state.db).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "service": view(&state, version, &service, now_ms(), &zones) })))
}

async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-services:update")?;
    let body = body::json(&raw)?;
    if ApiVersion::of(&req).at_least(53) {
        update_by_uuid(req, state, id.into_inner(), body).await
    } else {
        update_by_action(req, state, id.into_inner(), body).await
    }
}

async fn delete(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-services:delete")?;
    let not_found = || ApiError::NotFound(format!("Service {id} could not be found."));
    let key = if ApiVersion::of(&req).at_least(53) {
        ServiceKey::Uuid(id.parse().map_err(|_| bad(format!("Invalid uuid {id}")))?)
    } else {
        ServiceKey::Id(id.parse().map_err(|_| not_found())?)
    };
    match nodes::delete_service(&state.db, key).await? {
        ServiceDeletion::Deleted => Ok(HttpResponse::NoContent().finish()),
        ServiceDeletion::NotFound => Err(not_found()),
        ServiceDeletion::HostsInstances => Err(ApiError::Conflict(
            "Unable to delete compute service that is hosting instances. Migrate or delete the instances first."
                .into(),
        )),
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-services").route(web::get().to(list)))
        .service(
            web::resource("/os-services/{id}")
                .route(web::put().to(update))
                .route(web::delete().to(delete)),
        );
}
