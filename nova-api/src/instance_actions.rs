//! `/servers/{id}/os-instance-actions`: what was done to a server and how it went (Nova's
//! instance_actions.py). Actions newest first; from 2.21 a deleted server's actions stay
//! readable; 2.51 shows events to the server's owner (before: admins only), 2.58 adds
//! `updated_at` and `limit`/`marker`/`changes-since` paging, 2.62 the event's `hostId` (and
//! `host` for admins), 2.66 `changes-before`, 2.84 the event's `details`.

use crate::servers::not_found;
use crate::versions::ApiVersion;
use crate::views::host_id_of;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::bad;
use api_toolkit::links::PublicUrl;
use api_toolkit::RequestContext;
use api_toolkit::{ApiError, ApiResult};
use nova_core::ids::InstanceUuid;
use nova_core::model::Instance;
use nova_core::time::{iso8601_naive_micros, parse_iso8601};
use nova_db::actions::{self, Action};
use nova_db::instances;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The server, deleted or not from 2.21 (as Nova), if the caller may see it.
async fn server_of(
    state: &AppState,
    ctx: &RequestContext,
    version: ApiVersion,
    id: &str,
) -> ApiResult<Instance> {
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let instance = if version.at_least(21) {
        instances::get_any(&state.db, uuid).await?
    } else {
        instances::get(&state.db, uuid).await?
    };
    instance
        .filter(|i| ctx.is_admin() || i.project_id == ctx.project_id)
        .ok_or_else(|| not_found(id))
}

/// When an action last changed: its finish, else its start (Nova's `updated_at`).
fn updated_at(a: &Action) -> i64 {
    a.events
        .iter()
        .filter_map(|e| e.finish_time)
        .chain(a.finish_time)
        .max()
        .unwrap_or(a.start_time)
}

fn action_view(version: ApiVersion, uuid: &str, a: &Action) -> Value {
    let mut v = json!({
        "action": a.action,
        "instance_uuid": uuid,
        "message": a.message,
        "project_id": a.project_id,
        "request_id": a.request_id,
        "start_time": iso8601_naive_micros(a.start_time),
        "user_id": a.user_id,
    });
    if version.at_least(58) {
        v["updated_at"] = json!(iso8601_naive_micros(updated_at(a)));
    }
    v
}

async fn index(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let version = ApiVersion::of(&req);
    let instance = server_of(&state, &ctx, version, &id).await?;
    let uuid = instance.uuid.to_string();
    let mut all = actions::list(&state.db, instance.uuid).await?;
    all.reverse(); // newest first, as Nova
    if !version.at_least(58) {
        let items: Vec<_> = all.iter().map(|a| action_view(version, &uuid, a)).collect();
        return Ok(HttpResponse::Ok().json(json!({ "instanceActions": items })));
    }
    let q: HashMap<String, String> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let time = |key: &str| -> ApiResult<Option<i64>> {
        match q.get(key) {
            None => Ok(None),
            Some(t) => parse_iso8601(t).map(Some).ok_or_else(|| {
                bad(format!(
                    "Invalid input for query parameters {key}. Value: {t}."
                ))
            }),
        }
    };
    let since = time("changes-since")?;
    let before = if version.at_least(66) {
        time("changes-before")?
    } else {
        None
    };
    if let (Some(s), Some(b)) = (since, before) {
        if s > b {
            return Err(bad(
                "The value of changes-since must be less than or equal to changes-before.",
            ));
        }
    }
    all.retain(|a| {
        let u = updated_at(a);
        since.is_none_or(|s| u >= s) && before.is_none_or(|b| u <= b)
    });
    if let Some(marker) = q.get("marker") {
        let at = all
            .iter()
            .position(|a| a.request_id == *marker)
            .ok_or_else(|| bad(format!("Marker {marker} could not be found.")))?;
        all.drain(..=at);
    }
    let limit = match q.get("limit") {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(bad(format!(
                    "Invalid input for query parameters limit. Value: {l}."
                )))
            }
        },
    };
    let mut body = json!({});
    if let Some(n) = limit {
        if all.len() > n {
            all.truncate(n);
        }
        // As Nova: a full page links to the next one.
        if n > 0 && all.len() == n {
            if let Some(last) = all.last() {
                let base = PublicUrl::of(&req).0;
                body["links"] = json!([{
                    "rel": "next",
                    "href": format!(
                        "{base}/v2.1/servers/{uuid}/os-instance-actions?limit={n}&marker={}",
                        last.request_id
                    ),
                }]);
            }
        }
    }
    let items: Vec<_> = all.iter().map(|a| action_view(version, &uuid, a)).collect();
    body["instanceActions"] = json!(items);
    Ok(HttpResponse::Ok().json(body))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, request_id) = path.into_inner();
    let version = ApiVersion::of(&req);
    let instance = server_of(&state, &ctx, version, &id).await?;
    let uuid = instance.uuid.to_string();
    let action = actions::list(&state.db, instance.uuid)
        .await?
        .into_iter()
        .rfind(|a| a.request_id == request_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Action for request_id {request_id} on instance {uuid} not found"
            ))
        })?;
    let mut v = action_view(version, &uuid, &action);
    let admin = ctx.is_admin();
    if admin || version.at_least(51) {
        let events: Vec<Value> = action
            .events
            .iter()
            .rev()
            .map(|e| {
                let mut ev = json!({
                    "event": e.event,
                    "start_time": iso8601_naive_micros(e.start_time),
                    "finish_time": e.finish_time.map(iso8601_naive_micros),
                    "result": e.result,
                });
                if admin {
                    // Nova's traceback: the failure in full (a driver's or an engine's words),
                    // for admins only; else what a project reads.
                    ev["traceback"] = json!(e.traceback.as_ref().or(e.details.as_ref()));
                }
                if version.at_least(62) {
                    ev["hostId"] = json!(host_id_of(&instance.project_id, e.host.as_deref()));
                    if admin {
                        ev["host"] = json!(e.host.as_deref().unwrap_or(""));
                    }
                }
                if version.at_least(84) {
                    ev["details"] = json!(e.details);
                }
                ev
            })
            .collect();
        v["events"] = json!(events);
    }
    Ok(HttpResponse::Ok().json(json!({ "instanceAction": v })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/servers/{id}/os-instance-actions").route(web::get().to(index)))
        .service(
            web::resource("/servers/{id}/os-instance-actions/{request_id}")
                .route(web::get().to(show)),
        );
}
