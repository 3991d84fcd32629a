//! `/os-networks` and `/os-tenant-networks` (until 2.35, as Nova): the networking service's
//! networks as the compute API's deprecated proxies show them — read-only (Nova proxies them
//! to Neutron; creating or changing a network is Neutron's business there as here).

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_db::listing::Listing;
use nova_db::networks::{self, Network};
use serde_json::{json, Value};

/// Gone from 2.36, as in Nova.
fn removed_at_2_36(req: &HttpRequest) -> ApiResult<()> {
    if ApiVersion::of(req).at_least(36) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    Ok(())
}

fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    nova_db::Viewer {
        project: &ctx.project_id,
        admin: ctx.is_admin(),
    }
}

/// The networks the caller may see (Neutron's visibility), by creation.
async fn visible_networks(state: &AppState, ctx: &RequestContext) -> ApiResult<Vec<Network>> {
    let listing = Listing {
        table: &networks::TABLE,
        conds: vec![networks::visible_cond(viewer(ctx))],
        tags: Default::default(),
        order: vec![(nova_db::listing::CREATED_AT, nova_db::listing::Dir::Asc)],
        after: None,
        limit: None,
    };
    Ok(networks::page(&state.db, &listing).await?)
}

async fn find(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Network> {
    networks::get_visible(&state.db, id, viewer(ctx))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Network {id} could not be found.")))
}

/// Nova's network view for Neutron's networks: the id and the name as `label`, and the
/// nova-network fields it has no value for as null.
fn network_view(n: &Network) -> Value {
    let mut v = json!({"id": n.id, "label": n.name});
    for key in [
        "bridge",
        "bridge_interface",
        "broadcast",
        "cidr",
        "cidr_v6",
        "created_at",
        "deleted",
        "deleted_at",
        "dhcp_server",
        "dhcp_start",
        "dns1",
        "dns2",
        "enable_dhcp",
        "gateway",
        "gateway_v6",
        "host",
        "injected",
        "mtu",
        "multi_host",
        "netmask",
        "netmask_v6",
        "priority",
        "project_id",
        "rxtx_base",
        "share_address",
        "updated_at",
        "vlan",
        "vpn_private_address",
        "vpn_public_address",
        "vpn_public_port",
    ] {
        v[key] = Value::Null;
    }
    v
}

/// The tenant network view: id, label and cidr. A Neutron network has no cidr of its own, and
/// Nova's view prints the missing one with Python's `str(None)`: the string "None".
fn tenant_view(n: &Network) -> Value {
    json!({"id": n.id, "label": n.name, "cidr": "None"})
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    let all: Vec<Value> = visible_networks(&state, &ctx)
        .await?
        .iter()
        .map(network_view)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "networks": all })))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    Ok(
        HttpResponse::Ok()
            .json(json!({ "network": network_view(&find(&state, &ctx, &id).await?) })),
    )
}

async fn list_tenant(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    let all: Vec<Value> = visible_networks(&state, &ctx)
        .await?
        .iter()
        .map(tenant_view)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "networks": all })))
}

async fn show_tenant(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    Ok(HttpResponse::Ok().json(json!({ "network": tenant_view(&find(&state, &ctx, &id).await?) })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-networks").route(web::get().to(list)))
        .service(web::resource("/os-networks/{id}").route(web::get().to(show)))
        .service(web::resource("/os-tenant-networks").route(web::get().to(list_tenant)))
        .service(web::resource("/os-tenant-networks/{id}").route(web::get().to(show_tenant)));
}
