//! Quotas (`/v2.0/quotas`): the network limit of a project, which `openstack quota show` reads
//! from every networking service in the catalog.

use crate::networks::denied;
use crate::NetworkState;
use actix_web::{web, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiResult, RequestContext};
use nova_db::quotas;
use serde_json::{json, Value};

/// Neutron's default limit of networks per project (`quota_network`).
pub(crate) const DEFAULT_NETWORK_QUOTA: i64 = 100;
/// The resource's name in the quota table and in Neutron's quota bodies.
pub(crate) const NETWORK: &str = "network";

pub(crate) async fn network_limit(state: &NetworkState, project: &str) -> ApiResult<i64> {
    Ok(quotas::limits(&state.db, project)
        .await?
        .get(NETWORK)
        .copied()
        .unwrap_or(DEFAULT_NETWORK_QUOTA))
}

/// Neutron's policy for reading a quota: an admin, or the project's own.
pub(crate) fn may_read_quota(ctx: &RequestContext, project: &str) -> ApiResult<()> {
    if ctx.is_admin() || ctx.project_id == project {
        Ok(())
    } else {
        Err(denied("get_quota"))
    }
}

/// `GET /v2.0/quotas`: the projects with a limit of their own (admins).
pub(crate) async fn list_quotas(
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
pub(crate) async fn show_quota(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    let limit = network_limit(&state, &project).await?;
    Ok(HttpResponse::Ok().json(json!({"quota": {NETWORK: limit}})))
}

pub(crate) async fn default_quota(
    ctx: RequestContext,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read_quota(&ctx, &project)?;
    Ok(HttpResponse::Ok().json(json!({"quota": {NETWORK: DEFAULT_NETWORK_QUOTA}})))
}

/// `GET /v2.0/quotas/{project}/details.json`: limit, use and reservations (none here).
pub(crate) async fn quota_details(
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

pub(crate) async fn reset_quota(
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
