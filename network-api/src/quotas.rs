//! Quotas (`/v2.0/quotas`): a project's limits of networks, subnets, ports, security groups
//! and their rules, which
//! `openstack quota show` reads from every networking service in the catalog, and Horizon's
//! Overview from `details`.

use crate::networks::denied;
use crate::NetworkState;
use actix_web::{web, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiResult, RequestContext};
use nova_db::quotas;
use serde_json::{json, Map, Value};

/// The resource's name in the quota table and in Neutron's quota bodies.
pub(crate) const NETWORK: &str = "network";
pub(crate) const SUBNET: &str = "subnet";
pub(crate) const PORT: &str = "port";
pub(crate) const SECURITY_GROUP: &str = "security_group";
pub(crate) const SECURITY_GROUP_RULE: &str = "security_group_rule";

/// The resources with quotas here, with Neutron's default limits (neutron/conf/quota.py).
const RESOURCES: &[(&str, i64)] = &[
    (NETWORK, 100),
    (SUBNET, 100),
    (PORT, nova_db::ports::DEFAULT_PORT_QUOTA),
    (
        SECURITY_GROUP,
        nova_db::security_groups::DEFAULT_GROUP_QUOTA,
    ),
    (
        SECURITY_GROUP_RULE,
        nova_db::security_groups::DEFAULT_RULE_QUOTA,
    ),
];

fn default_of(resource: &str) -> i64 {
    RESOURCES
        .iter()
        .find(|(r, _)| *r == resource)
        .map_or(-1, |(_, d)| *d)
}

/// A project's limit of one resource (negative: none).
pub(crate) async fn limit_of(
    state: &NetworkState,
    project: &str,
    resource: &str,
) -> ApiResult<i64> {
    Ok(quotas::limits(&state.db, project)
        .await?
        .get(resource)
        .copied()
        .unwrap_or_else(|| default_of(resource)))
}

pub(crate) async fn network_limit(state: &NetworkState, project: &str) -> ApiResult<i64> {
    limit_of(state, project, NETWORK).await
}

/// Every resource's limit for a project.
async fn all_limits(state: &NetworkState, project: &str) -> ApiResult<Map<String, Value>> {
    let set = quotas::limits(&state.db, project).await?;
    Ok(RESOURCES
        .iter()
        .map(|(r, d)| ((*r).to_owned(), json!(set.get(*r).copied().unwrap_or(*d))))
        .collect())
}

/// What a project uses of a resource.
async fn used(state: &NetworkState, project: &str, resource: &str) -> ApiResult<i64> {
    Ok(match resource {
        NETWORK => quotas::network_count(&state.db, project).await?,
        SUBNET => nova_db::subnets::count(&state.db, project).await?,
        PORT => nova_db::ports::count(&state.db, project).await?,
        SECURITY_GROUP => {
            nova_db::security_groups::counts(&state.db, project)
                .await?
                .0
        }
        _ => {
            nova_db::security_groups::counts(&state.db, project)
                .await?
                .1
        }
    })
}

/// Neutron's policy for reading a quota: an admin, or the project's own.
pub(crate) fn may_read_quota(ctx: &RequestContext, project: &str) -> ApiResult<()> {
    if ctx.is_admin() || ctx.project_id == project {
        Ok(())
    } else {
        Err(denied("get_quota"))
    }
}

/// `GET /v2.0/quotas`: the projects with a limit of their own (admins), each with all limits.
pub(crate) async fn list_quotas(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
) -> ApiResult<HttpResponse> {
    if !ctx.is_admin() {
        return Err(denied("get_quota"));
    }
    let mut projects = std::collections::BTreeSet::new();
    for (resource, _) in RESOURCES {
        for (project, _) in quotas::projects_with(&state.db, resource).await? {
            projects.insert(project);
        }
    }
    let mut list = Vec::new();
    for project in projects {
        let mut q = all_limits(&state, &project).await?;
        q.insert("project_id".into(), json!(project));
        q.insert("tenant_id".into(), json!(project));
        list.push(Value::Object(q));
    }
    Ok(HttpResponse::Ok().json(json!({ "quotas": list })))
}

/// `GET /v2.0/quotas/{project}`: the limits of the resources this service has.
pub(crate) async fn show_quota(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    Ok(HttpResponse::Ok().json(json!({"quota": all_limits(&state, &project).await?})))
}

pub(crate) async fn default_quota(
    ctx: RequestContext,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    let defaults: Map<String, Value> = RESOURCES
        .iter()
        .map(|(r, d)| ((*r).to_owned(), json!(d)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "quota": defaults })))
}

/// `GET /v2.0/quotas/{project}/details.json`: limit, use and reservations (none here).
pub(crate) async fn quota_details(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    let limits = all_limits(&state, &project).await?;
    let mut details = Map::new();
    for (resource, limit) in limits {
        let used = used(&state, &project, &resource).await?;
        details.insert(
            resource,
            json!({"limit": limit, "used": used, "reserved": 0}),
        );
    }
    Ok(HttpResponse::Ok().json(json!({ "quota": details })))
}

pub(crate) async fn update_quota(
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
            // As Neutron since 2025.1: a limit under what the project uses is refused unless
            // forced (`check_limit` is the older spelling of not forcing).
            "force" | "check_limit" => {}
            resource if RESOURCES.iter().any(|(r, _)| *r == resource) => {
                let limit = value
                    .as_i64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                    .filter(|l| *l >= -1)
                    .ok_or_else(|| {
                        bad(format!("Invalid input for {resource}. Reason: '{value}' is not an integer of -1 or more."))
                    })?;
                limits.insert(resource.to_owned(), limit);
            }
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    if !force {
        for (resource, &limit) in limits.iter().filter(|(_, l)| **l >= 0) {
            let used = used(&state, &project, resource).await?;
            if limit < used {
                return Err(bad(format!(
                    "Quota limit {limit} for {resource} must be greater than or equal to \
                     already used {used}"
                )));
            }
        }
    }
    quotas::set(&state.db, &project, &limits).await?;
    Ok(HttpResponse::Ok().json(json!({"quota": all_limits(&state, &project).await?})))
}

pub(crate) async fn reset_quota(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    if !ctx.is_admin() {
        return Err(denied("delete_quota"));
    }
    let resources: Vec<&str> = RESOURCES.iter().map(|(r, _)| *r).collect();
    quotas::reset(&state.db, &project, &resources).await?;
    Ok(HttpResponse::NoContent().finish())
}
