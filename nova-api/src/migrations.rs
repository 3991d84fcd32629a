//! `GET /os-migrations` and `/servers/{id}/migrations`: the record of servers moved or
//! resized. Resizes (on the server's own host) are recorded; cold and live migration wait for
//! the multi-host work and are refused by policy (see `servers::admin_actions`), so the
//! server's live-migration list is empty by fact.

use crate::servers::visible as visible_server;
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::listing::Query;
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use serde_json::json;

/// The parameters of each microversion's query schema (additional ones are refused from
/// 2.59, as its schema forbids them).
fn allowed(v: ApiVersion) -> Vec<&'static str> {
    let mut keys = vec![
        "hidden",
        "host",
        "instance_uuid",
        "source_compute",
        "status",
        "migration_type",
    ];
    if v.at_least(59) {
        keys.extend(["limit", "marker", "changes-since"]);
    }
    if v.at_least(66) {
        keys.push("changes-before");
    }
    if v.at_least(80) {
        keys.extend(["user_id", "project_id"]);
    }
    keys
}

async fn index(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    let q = Query::of(&req);
    // Nova's query schema first (400), then its policy (403).
    if v.at_least(59) {
        let keys = allowed(v);
        if let Some((k, _)) = q.pairs().find(|(k, _)| !keys.contains(k)) {
            return Err(bad(format!(
                "Invalid input for query parameters {k}. Additional properties are not allowed"
            )));
        }
        if let Some(l) = q.last("limit") {
            if l.parse::<u64>().is_err() {
                return Err(bad(format!(
                    "Invalid input for query parameters limit. Value: {l}."
                )));
            }
        }
        let mut times = Vec::new();
        for key in ["changes-since", "changes-before"] {
            if let Some(t) = q.last(key) {
                let at = nova_core::time::parse_iso8601(t).ok_or_else(|| {
                    bad(format!(
                        "Invalid input for query parameters {key}. Value: {t}."
                    ))
                })?;
                times.push(at);
            }
        }
        if let [since, before] = times[..] {
            if before < since {
                return Err(bad(
                    "The value of changes-since must be less than or equal to changes-before.",
                ));
            }
        }
    }
    // Nova's index: a project's manager for their own project, admins for any.
    if !(ctx.is_admin() || ctx.has_role("manager")) {
        return Err(NOVA.denied("os_compute_api:os-migrations:index"));
    }
    let own = q.last("project_id") == Some(ctx.project_id.as_str());
    if !own && !ctx.is_admin() {
        return Err(NOVA.denied("os_compute_api:os-migrations:index:all_projects"));
    }
    // A project's manager sees their own project's only, at every microversion (the
    // `project_id` filter exists from 2.80; below, the check above passed on it alone).
    let project = if ctx.is_admin() {
        q.last("project_id").filter(|_| v.at_least(80))
    } else {
        Some(ctx.project_id.as_str())
    };
    let mut found = nova_db::migrations::list(&state.db, project).await?;
    let wanted = |key: &str| q.last(key);
    found.retain(|m| {
        let same = |key: &str, value: Option<&str>| wanted(key).is_none_or(|w| value == Some(w));
        let uuid = m.instance.0.to_string();
        same("instance_uuid", Some(&uuid))
            && same("source_compute", m.source_compute.as_deref())
            && same("status", Some(&m.status))
            && same("migration_type", Some(&m.migration_type))
            && (!v.at_least(80) || same("user_id", Some(&m.user_id)))
            && wanted("host").is_none_or(|h| {
                m.source_compute.as_deref() == Some(h) || m.dest_compute.as_deref() == Some(h)
            })
    });
    if v.at_least(59) {
        let since = q
            .last("changes-since")
            .and_then(nova_core::time::parse_iso8601);
        let before = q
            .last("changes-before")
            .and_then(nova_core::time::parse_iso8601);
        found.retain(|m| {
            since.is_none_or(|t| m.updated_at >= t) && before.is_none_or(|t| m.updated_at <= t)
        });
        if let Some(marker) = q.last("marker") {
            let at = found
                .iter()
                .position(|m| m.uuid.to_string() == marker)
                .ok_or_else(|| bad(format!("Marker {marker} could not be found.")))?;
            found.drain(..=at);
        }
        if let Some(limit) = q.last("limit").and_then(|l| l.parse::<usize>().ok()) {
            found.truncate(limit);
        }
    }
    let ids = nova_db::flavors::db_ids(&state.db).await?;
    let mut views: Vec<_> = found.iter().map(|m| view(m, v, &ids)).collect();
    // Nova's `os_compute_api:os-migrations:index:host` (admins): others see no hosts.
    if !ctx.is_admin() {
        for view in &mut views {
            for key in [
                "source_node",
                "source_compute",
                "dest_node",
                "dest_compute",
                "dest_host",
            ] {
                view[key] = serde_json::Value::Null;
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "migrations": views })))
}

/// Nova's view of a migration at a microversion.
fn view(
    m: &nova_db::migrations::Migration,
    v: ApiVersion,
    ids: &std::collections::HashMap<String, i64>,
) -> serde_json::Value {
    use nova_core::time::iso8601_naive_micros as at;
    let mut o = json!({
        "id": m.id,
        "status": m.status,
        "instance_uuid": m.instance.0.to_string(),
        "source_node": m.source_node,
        "source_compute": m.source_compute,
        "dest_node": m.dest_node,
        "dest_compute": m.dest_compute,
        // The destination's address: a resize stays on its host (Nova's is its my_ip; not
        // kept with the record here).
        "dest_host": null,
        // A deleted flavor has no id any more.
        "old_instance_type_id": ids.get(&m.old_flavor.flavorid),
        "new_instance_type_id": ids.get(&m.new_flavor.flavorid),
        "created_at": at(m.created_at),
        "updated_at": at(m.updated_at),
    });
    if v.at_least(23) {
        o["migration_type"] = json!(m.migration_type);
    }
    if v.at_least(59) {
        o["uuid"] = json!(m.uuid.to_string());
    }
    if v.at_least(80) {
        o["user_id"] = json!(m.user_id);
        o["project_id"] = json!(m.project_id);
    }
    o
}

/// `GET /servers/{id}/migrations` (2.23+): the server's live migrations in progress.
async fn server_index(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    if !ApiVersion::of(&req).at_least(23) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    visible_server(&state, &ctx, &id).await?;
    // Nova's PROJECT_MANAGER_OR_ADMIN (the lookup above keeps a manager to their project).
    if !(ctx.is_admin() || ctx.has_role("manager")) {
        return Err(NOVA.denied("os_compute_api:servers:migrations:index"));
    }
    Ok(HttpResponse::Ok().json(json!({ "migrations": [] })))
}

async fn server_show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    if !ApiVersion::of(&req).at_least(23) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    let (id, migration) = path.into_inner();
    visible_server(&state, &ctx, &id).await?;
    if !(ctx.is_admin() || ctx.has_role("manager")) {
        return Err(NOVA.denied("os_compute_api:servers:migrations:show"));
    }
    Err(ApiError::NotFound(format!(
        "In-progress live migration {migration} is not found for server {id}."
    )))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-migrations").route(web::get().to(index)))
        .service(web::resource("/servers/{id}/migrations").route(web::get().to(server_index)))
        .service(
            web::resource("/servers/{id}/migrations/{migration}").route(web::get().to(server_show)),
        );
}
