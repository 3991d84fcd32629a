//! `POST /os-server-external-events` (the `service` role or an admin, Nova's
//! `service_or_admin`): other services
//! telling the compute service that something happened to a server. Each event is answered
//! as Nova answers it — 200 for a server on a host, 404 for an unknown server, 422 for one
//! not on a host yet, 400 for a missing required tag — and the whole with 207 when any failed.
//!
//! No accepted event changes anything here: addresses come from the driver (there is no
//! separate network service to report `network-*` changes), there are no volumes
//! (`volume-*`), accelerators or Ironic (`power-update`). Nova's compute manager does nothing
//! more for these when nobody waits for them.

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_db::instances;
use serde_json::{json, Value};

/// The event names of each microversion (Nova's schema enums).
fn names(v: ApiVersion) -> Vec<&'static str> {
    let mut names = vec![
        "network-changed",
        "network-vif-plugged",
        "network-vif-unplugged",
        "network-vif-deleted",
    ];
    for (minor, name) in [
        (51, "volume-extended"),
        (76, "power-update"),
        (82, "accelerator-request-bound"),
        (93, "volume-reimaged"),
    ] {
        if v.at_least(minor) {
            names.push(name);
        }
    }
    names
}

/// Events that mean nothing without a tag (Nova's `TAG_REQUIRED`).
const TAG_REQUIRED: &[&str] = &[
    "volume-extended",
    "power-update",
    "accelerator-request-bound",
];

const STATUSES: &[&str] = &["failed", "completed", "in-progress"];

/// Checks one event against Nova's schema.
fn check_event(event: &Value, names: &[&str]) -> ApiResult<()> {
    let obj = event
        .as_object()
        .ok_or_else(|| invalid("events", event, "is not of type 'object'"))?;
    body::only(obj, &["name", "server_uuid", "status", "tag"])?;
    match obj.get("name") {
        Some(Value::String(n)) if names.contains(&n.as_str()) => {}
        Some(other) => return Err(invalid("name", other, &format!("is not one of {names:?}"))),
        None => return Err(invalid("events", event, "'name' is a required property")),
    }
    match obj.get("server_uuid") {
        Some(Value::String(u)) if u.parse::<uuid::Uuid>().is_ok() => {}
        Some(other) => return Err(invalid("server_uuid", other, "is not a 'uuid'")),
        None => {
            return Err(invalid(
                "events",
                event,
                "'server_uuid' is a required property",
            ))
        }
    }
    if let Some(s) = obj.get("status") {
        if !s.as_str().is_some_and(|s| STATUSES.contains(&s)) {
            return Err(invalid("status", s, &format!("is not one of {STATUSES:?}")));
        }
    }
    if let Some(t) = obj.get("tag") {
        if t.as_str().is_none_or(|t| t.chars().count() > 255) {
            return Err(invalid(
                "tag",
                t,
                "is not a string of at most 255 characters",
            ));
        }
    }
    Ok(())
}

async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = body::json(&raw)?;
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", &body, "is not of type 'object'"))?;
    body::only(obj, &["events"])?;
    let events = match obj.get("events") {
        Some(Value::Array(e)) if !e.is_empty() => e,
        Some(other) => return Err(invalid("events", other, "is not a non-empty array")),
        None => return Err(invalid("body", &body, "'events' is a required property")),
    };
    let names = names(ApiVersion::of(&req));
    for e in events {
        check_event(e, &names)?;
    }
    if !(ctx.has_role("service") || ctx.is_admin()) {
        return Err(NOVA.denied("os_compute_api:os-server-external-events:create"));
    }
    let mut answered = Vec::with_capacity(events.len());
    let mut all_ok = true;
    for event in events {
        let mut out = event.clone();
        let name = event["name"].as_str().unwrap_or_default();
        // The schema checked the uuid's form.
        let uuid = event["server_uuid"]
            .as_str()
            .unwrap_or_default()
            .parse::<InstanceUuid>();
        let instance = match uuid {
            Ok(uuid) => instances::get(&state.db, uuid).await?,
            Err(_) => None,
        };
        let (status, code) = match instance {
            Some(i) => {
                if TAG_REQUIRED.contains(&name) && event.get("tag").is_none() {
                    ("failed", 400)
                } else if i.host.is_some() {
                    ("completed", 200)
                } else {
                    ("failed", 422)
                }
            }
            _ => ("failed", 404),
        };
        all_ok &= code == 200;
        out["status"] = json!(status);
        out["code"] = json!(code);
        answered.push(out);
    }
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(HttpResponse::build(status).json(json!({ "events": answered })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-server-external-events").route(web::post().to(create)));
}
