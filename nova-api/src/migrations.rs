//! `GET /os-migrations` and `/servers/{id}/migrations`: the record of servers moved between
//! hosts (resizes, cold and live migrations). Nothing here moves a server yet — migration
//! waits for the multi-host work and is refused by policy (see `servers::admin_actions`) —
//! so there are no migration records, and the lists are empty by fact, not by stub: the
//! queries are checked as Nova checks them (policy, parameters, a marker must exist).

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
    _state: web::Data<AppState>,
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
    // There are no migrations, so no marker names one.
    if let Some(m) = q.last("marker").filter(|_| v.at_least(59)) {
        return Err(bad(format!("Marker {m} could not be found.")));
    }
    Ok(HttpResponse::Ok().json(json!({ "migrations": [] })))
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
