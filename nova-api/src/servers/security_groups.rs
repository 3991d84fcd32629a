//! A server's security groups, which are its ports' (Nova's `ServerSecurityGroupController` and
//! `SecurityGroupActionController` over `nova/network/security_group_api.py`):
//! `GET /servers/{id}/os-security-groups`, and the `addSecurityGroup` / `removeSecurityGroup`
//! actions, which change every port of the server. The hosts' packet filters follow (the
//! conductor pushes them when the firewall generation moves).

use super::visible;
use crate::{AppState, NOVA};
use actix_web::{web, HttpResponse};
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_db::security_groups::Group;
use nova_db::{ports, security_groups};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `GET /servers/{id}/os-security-groups`: one entry per port per group, as Nova lists them,
/// sorted by project and name.
pub(super) async fn list(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = visible(&state, &ctx, &id).await?;
    let device = instance.uuid.to_string();
    let bound = ports::of_device(&state.db, &device).await?;
    let ids: Vec<&str> = bound.iter().map(|p| p.id.as_str()).collect();
    let held = ports::security_groups_of(&state.db, &ids).await?;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for g in held.values().flatten() {
        if !groups.contains_key(g) {
            if let Some(found) = security_groups::get_group(&state.db, g).await? {
                groups.insert(g.clone(), found);
            }
        }
    }
    // One entry per port per group, as Nova lists them.
    let listed: Vec<Group> = bound
        .iter()
        .flat_map(|port| held.get(&port.id).into_iter().flatten())
        .filter_map(|gid| groups.get(gid).cloned())
        .collect();
    let shown = crate::os_security_groups::group_views(&state.db, &ctx, &listed).await?;
    let mut views: Vec<(String, String, Value)> = listed
        .iter()
        .zip(shown)
        .map(|(g, v)| (g.project_id.clone(), g.name.clone(), v))
        .collect();
    views.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let list: Vec<Value> = views.into_iter().map(|(_, _, v)| v).collect();
    Ok(HttpResponse::Ok().json(json!({ "security_groups": list })))
}

/// The group an action names (Nova's `_parse`), found among the caller's project's groups.
async fn named_group(state: &AppState, ctx: &RequestContext, arg: &Value) -> ApiResult<Group> {
    let obj = arg
        .as_object()
        .ok_or_else(|| bad("Missing parameter dict"))?;
    let name = match obj.get("name") {
        None => return Err(bad("Security group not specified")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad("Security group name cannot be empty")),
    };
    if name.trim().is_empty() {
        return Err(bad("Security group name cannot be empty"));
    }
    let found = security_groups::find_by_name_or_id(&state.db, &ctx.project_id, name).await?;
    let by_name: Vec<&Group> = found.iter().filter(|g| g.name == name).collect();
    match (by_name.as_slice(), found.as_slice()) {
        ([one], _) => Ok((*one).clone()),
        ([], [one]) => Ok(one.clone()),
        ([], []) if name == "default" => {
            Ok(security_groups::default_for(&state.db, &ctx.project_id).await?)
        }
        ([], []) => Err(ApiError::NotFound(format!(
            "Security group {name} is not found for project {}",
            ctx.project_id
        ))),
        _ => Err(ApiError::Conflict(format!(
            "Multiple security groups found matching '{name}'. Use an ID to be more specific."
        ))),
    }
}

/// `addSecurityGroup` (`true`) or `removeSecurityGroup`: 202, as Nova.
pub(super) async fn action(
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
    add: bool,
) -> ApiResult<HttpResponse> {
    let rule = if add {
        "os_compute_api:os-security-groups:add"
    } else {
        "os_compute_api:os-security-groups:remove"
    };
    NOVA.require_write(ctx, rule)?;
    let group = named_group(state, ctx, arg).await?;
    let instance = visible(state, ctx, id).await?;
    let device = instance.uuid.to_string();
    let bound = ports::of_device(&state.db, &device).await?;
    if bound.is_empty() {
        return Err(ApiError::NotFound(format!(
            "instance_id {device} could not be found as device id on any ports"
        )));
    }
    if add {
        // Nova's `_has_security_group_requirements`: port security and an address; ports
        // before the one refused keep the group, as in Nova.
        let ids: Vec<&str> = bound.iter().map(|p| p.id.as_str()).collect();
        let addresses = ports::fixed_ips(&state.db, &ids).await?;
        for port in &bound {
            if !port.port_security_enabled || !addresses.contains_key(&port.id) {
                return Err(bad(
                    "Network requires port_security_enabled and subnet associated in order to \
                     apply security groups.",
                ));
            }
            ports::add_security_group(&state.db, &port.id, &group.id).await?;
        }
    } else {
        let mut any = false;
        for port in &bound {
            any |= ports::remove_security_group(&state.db, &port.id, &group.id).await?;
        }
        if !any {
            return Err(ApiError::NotFound(format!(
                "Security group {} not associated with the instance {device}",
                group.name
            )));
        }
    }
    Ok(HttpResponse::Accepted().finish())
}
