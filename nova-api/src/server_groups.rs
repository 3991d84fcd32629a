//! `/os-server-groups`: server groups, whose policy (affinity, anti-affinity and their soft
//! kinds; from 2.64 with the anti-affinity rule `max_server_per_host`) placement follows for the
//! servers created into them with the `group` scheduler hint. As Nova's `ServerGroupController`:
//! the view by microversion (`policies` and an empty `metadata` before 2.64, `policy` and
//! `rules` from it, `project_id` and `user_id` from 2.13), live members only, the
//! `server_groups` quota at create, `all_projects` for admins, `limit` and `offset`; another
//! project's group is not found (404) but for admins.

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_db::server_groups::{self as store, NewServerGroup, Policy, ServerGroup};
use serde_json::{json, Map, Value};

/// Nova's `api.max_limit`.
const MAX_LIMIT: i64 = 1000;

fn view(g: &ServerGroup, v: ApiVersion) -> Value {
    let mut out = json!({
        "id": g.uuid,
        "name": g.name,
        "members": g.members,
    });
    if v.at_least(64) {
        out["policy"] = json!(g.policy.as_str());
        out["rules"] = match g.max_server_per_host {
            Some(max) => json!({ "max_server_per_host": max }),
            None => json!({}),
        };
    } else {
        out["policies"] = json!([g.policy.as_str()]);
        out["metadata"] = json!({});
    }
    if v.at_least(13) {
        out["project_id"] = json!(g.project_id);
        out["user_id"] = json!(g.user_id);
    }
    out
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Instance group {id} could not be found."))
}

/// The group, or Nova's 404: also for another project's group unless the caller is an admin
/// (Nova's group query is scoped to the caller's project for a non-admin).
async fn find(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<ServerGroup> {
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| not_found(id))?;
    store::get(&state.db, uuid)
        .await?
        .filter(|g| ctx.is_admin() || g.project_id == ctx.project_id)
        .ok_or_else(|| not_found(id))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    // From 2.102 a show takes no query parameters.
    if v.at_least(102) {
        if let Some((key, _)) = query_pairs(&req).first() {
            return Err(body::unexpected(key));
        }
    }
    let group = find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "server_group": view(&group, v) })))
}

async fn delete(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let group = find(&state, &ctx, &id).await?;
    NOVA.require_write(&ctx, "os_compute_api:os-server-groups:delete")?;
    if !store::delete(&state.db, group.uuid).await? {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}

fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// A query parameter of Nova's `non_negative_integer`, the last given.
fn non_negative(pairs: &[(String, String)], key: &str) -> ApiResult<Option<i64>> {
    match pairs.iter().rev().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, s)) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                bad(format!(
                    "Invalid input for query parameters {key}. Value: {s}. '{s}' does not match '^[0-9]*$'"
                ))
            }),
    }
}

async fn index(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    let pairs = query_pairs(&req);
    // From 2.75 unknown query parameters are refused.
    if v.at_least(75) {
        if let Some((key, _)) = pairs
            .iter()
            .find(|(k, _)| !matches!(k.as_str(), "all_projects" | "limit" | "offset"))
        {
            return Err(body::unexpected(key));
        }
    }
    // As Nova's `limited`: none or 0 is the most.
    let limit = match non_negative(&pairs, "limit")? {
        None | Some(0) => MAX_LIMIT,
        Some(n) => n.min(MAX_LIMIT),
    };
    let offset = non_negative(&pairs, "offset")?.unwrap_or(0);
    // As Nova: `all_projects` is an admin's; anyone else gets their own project's groups.
    let all = ctx.is_admin() && pairs.iter().any(|(k, _)| k == "all_projects");
    let project = (!all).then_some(ctx.project_id.as_str());
    let groups = store::list(&state.db, project, offset, limit).await?;
    let items: Vec<Value> = groups.iter().map(|g| view(g, v)).collect();
    Ok(HttpResponse::Ok().json(json!({ "server_groups": items })))
}

/// The policy of a create's body at `v`: `policies` (a list of one) before 2.64, `policy`
/// from it; soft policies from 2.15.
fn policy_of(group: &Map<String, Value>, v: ApiVersion) -> ApiResult<Policy> {
    let allowed: &[&str] = if v.at_least(15) {
        &[
            "anti-affinity",
            "affinity",
            "soft-anti-affinity",
            "soft-affinity",
        ]
    } else {
        &["anti-affinity", "affinity"]
    };
    let one_of = |field: &str, value: &Value| -> ApiResult<Policy> {
        value
            .as_str()
            .filter(|s| allowed.contains(s))
            .and_then(Policy::parse)
            .ok_or_else(|| invalid(field, value, &format!("{value} is not one of {allowed:?}")))
    };
    if v.at_least(64) {
        let value = group.get("policy").ok_or_else(|| {
            invalid(
                "server_group",
                &Value::Object(group.clone()),
                "'policy' is a required property",
            )
        })?;
        return one_of("policy", value);
    }
    let value = group.get("policies").ok_or_else(|| {
        invalid(
            "server_group",
            &Value::Object(group.clone()),
            "'policies' is a required property",
        )
    })?;
    match value.as_array().map(Vec::as_slice) {
        Some([one]) => one_of("policies", one),
        Some([]) => Err(invalid("policies", value, "[] is too short")),
        Some(_) => Err(invalid("policies", value, &format!("{value} is too long"))),
        None => Err(invalid(
            "policies",
            value,
            &format!("{value} is not of type 'array'"),
        )),
    }
}

/// 2.64's `rules`: `max_server_per_host`, a positive integer (or a string of one), and nothing
/// else.
fn max_server_per_host(group: &Map<String, Value>) -> ApiResult<Option<i64>> {
    let Some(rules) = group.get("rules") else {
        return Ok(None);
    };
    let obj = rules
        .as_object()
        .ok_or_else(|| invalid("rules", rules, &format!("{rules} is not of type 'object'")))?;
    body::only(obj, &["max_server_per_host"])?;
    let Some(max) = obj.get("max_server_per_host") else {
        return Ok(None);
    };
    // Nova's `positive_integer`: an integer, or a string of digits only.
    let n = match max {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().ok()
        }
        _ => None,
    };
    match n {
        // (Stored as Nova stores it, a 32-bit integer.)
        Some(n) if n > i64::from(i32::MAX) => Err(invalid(
            "max_server_per_host",
            max,
            &format!("is greater than the maximum of {}", i32::MAX),
        )),
        Some(n) if n >= 1 => Ok(Some(n)),
        Some(_) => Err(invalid(
            "max_server_per_host",
            max,
            "is less than the minimum of 1",
        )),
        None => Err(invalid(
            "max_server_per_host",
            max,
            "is not a positive integer",
        )),
    }
}

async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:os-server-groups:create")?;
    let v = ApiVersion::of(&req);
    let body = body::json(&raw)?;
    let top = body
        .as_object()
        .ok_or_else(|| invalid("body", &body, "is not of type 'object'"))?;
    body::only(top, &["server_group"])?;
    let group_v = top
        .get("server_group")
        .ok_or_else(|| invalid("body", &body, "'server_group' is a required property"))?;
    let group = group_v
        .as_object()
        .ok_or_else(|| invalid("server_group", group_v, "is not of type 'object'"))?;
    let allowed: &[&str] = if v.at_least(64) {
        &["name", "policy", "rules"]
    } else {
        &["name", "policies"]
    };
    body::only(group, allowed)?;
    let name_v = group
        .get("name")
        .ok_or_else(|| invalid("server_group", group_v, "'name' is a required property"))?;
    let name = body::nova_name("name", name_v)?;
    let policy = policy_of(group, v)?;
    let max = max_server_per_host(group)?;
    if max.is_some() && policy != Policy::AntiAffinity {
        return Err(bad("Only anti-affinity policy supports rules."));
    }
    let limit = crate::quotas::limits_of(&state.db, &ctx.project_id).await?["server_groups"];
    let new = NewServerGroup {
        name: &name,
        project_id: &ctx.project_id,
        user_id: &ctx.user_id,
        policy,
        max_server_per_host: max,
    };
    let created = store::create_within_quota(&state.db, &new, limit)
        .await?
        .ok_or_else(|| ApiError::Forbidden("Quota exceeded, too many server groups.".into()))?;
    Ok(HttpResponse::Ok().json(json!({ "server_group": view(&created, v) })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/os-server-groups")
            .route(web::get().to(index))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/os-server-groups/{id}")
            .route(web::get().to(show))
            .route(web::delete().to(delete)),
    );
}
