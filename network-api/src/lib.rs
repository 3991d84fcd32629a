//! The networking service (a Neutron v2.0 subset) under `/network`: networks, their subnets
//! and ports, tags and quotas.
//!
//! A network is a name for a network the compute hosts provide (a provider network, in
//! Neutron's terms): `provider:physical_network` names it on the hosts (for Docker, an engine
//! network), and it defaults to the network's name. Because a network must exist on the
//! hosts, creating one is for admins, as Neutron's policy has it for provider networks.
//! Subnets give a network its address ranges; ports hold a MAC and addresses from them, handed
//! out by this service (IPAM: `nova_core::ipam`, `nova_db::ports`). There are no routers,
//! floating IPs or subnet pools: their paths answer Neutron's 404 for an unknown resource.
//!
//! Quotas (`/v2.0/quotas`) limit a project's networks, subnets and ports; `openstack quota
//! show` reads them from every networking service in the catalog.
//!
//! The handlers: [`networks`], [`subnets`], [`ports`], [`tags`], [`quotas`], with the list
//! queries of [`listing`]; discovery and the routes here.
//!
//! Errors leave in Neutron's body (`{"NeutronError": {"type", "message", "detail"}}`), with
//! Neutron's exception names ([`ApiError::named`]).

mod bulk;
mod listing;
mod networks;
mod ports;
mod quotas;
mod security_groups;
mod subnets;
mod tags;

use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::{ApiError, ApiResult, FaultFormat, RequestContext};
use nova_db::Db;
use serde_json::{json, Value};

/// What the networking handlers share.
pub struct NetworkState {
    pub db: Db,
}

/// The networking API, to serve ([`api_toolkit::server::serve`]).
pub struct NetworkApi {
    state: web::Data<NetworkState>,
}

impl NetworkApi {
    pub fn new(db: Db) -> Self {
        Self {
            state: web::Data::new(NetworkState { db }),
        }
    }
}

impl api_toolkit::Service for NetworkApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        routes(cfg);
    }
}

/// The extensions whose attributes and resources are served here, with Neutron's aliases,
/// names, descriptions and dates. Those of features that do not exist (routers, floating IPs,
/// DNS integration, availability zones…) are not listed: clients such as Horizon and Nova
/// call more when they see them. Security groups are served and enforced by the hosts, and
/// ports and networks have port security.
fn extension_list() -> Vec<Value> {
    let ext = |alias: &str, name: &str, description: &str, updated: &str| {
        json!({"alias": alias, "name": name, "description": description,
               "updated": updated, "links": []})
    };
    vec![
        ext("provider", "Provider Network", "Expose mapping of virtual networks to physical networks", "2012-09-07T10:00:00-00:00"),
        ext("external-net", "Neutron external network", "Adds external network attribute to network resource.", "2013-01-14T10:00:00-00:00"),
        ext("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes", "2016-02-10T10:00:00-00:00"),
        ext("quotas", "Quota management support", "Expose functions for quotas management per project", "2012-07-29T10:00:00-00:00"),
        ext("quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project", "2017-02-10T10:00:00-00:00"),
        ext("standard-attr-tag", "Tag support for resources with standard attribute: network, subnet, port", "Enables to set tag on resources with standard attribute.", "2017-01-01T00:00:00-00:00"),
        ext("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.", "2016-09-12T10:00:00-00:00"),
        ext("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources.", "2016-04-11T10:00:00-00:00"),
        ext("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled.", "2016-09-09T09:09:09-09:09"),
        ext("binding", "Port Binding", "Expose port bindings of a virtual port to external application", "2014-02-03T10:00:00-00:00"),
        ext("sorting", "Sorting support", "Extension that indicates that sorting is enabled.", "2016-06-12T00:00:00-00:00"),
        ext("pagination", "Pagination support", "Extension that indicates that pagination is enabled.", "2016-06-12T00:00:00-00:00"),
        ext("filter-validation", "Filter parameters validation", "Provides validation on filter parameters.", "2018-07-04T10:00:00-00:00"),
        ext("ip-substring-filtering", "IP address substring filtering", "Provides IP address substring filtering when listing ports", "2017-11-28T09:00:00-00:00"),
        ext("empty-string-filtering", "Empty String Filtering Extension", "Allow filtering by attributes with empty string value", "2018-05-01T10:00:00-00:00"),
        ext("security-group", "security-group", "The security groups extension.", "2012-10-05T10:00:00-00:00"),
        ext("port-security", "Port Security", "Provides port security", "2012-07-23T10:00:00-00:00"),
        ext("stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not", "2019-11-26T09:00:00-00:00"),
        ext("security-groups-normalized-cidr", "Normalized CIDR field for security group rules", "Add new field with normalized remote_ip_prefix cidr in SG rule", "2020-07-28T10:00:00-00:00"),
        ext("security-groups-rules-belongs-to-default-sg", "Security group rule belongs to the project's default security group", "Flag to determine if the security group rule belongs to the project's default security group", "2023-05-23T10:00:00-00:00"),
    ]
}

async fn extensions() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "extensions": extension_list() }))
}

/// `GET /v2.0/extensions/{alias}`: one of them, or Neutron's 404.
async fn extension(alias: web::Path<String>) -> ApiResult<HttpResponse> {
    extension_list()
        .into_iter()
        .find(|e| e["alias"] == json!(alias.as_str()))
        .map(|e| HttpResponse::Ok().json(json!({ "extension": e })))
        .ok_or_else(|| {
            ApiError::named(
                ApiError::NotFound(format!("Extension with alias {alias} does not exist")),
                "ExtensionNotFound",
            )
        })
}

/// `GET /v2.0/agents`: Neutron's agents (DHCP, L3, Open vSwitch…) do not exist here, since each
/// compute driver wires its own networks, so the list is empty for every caller. The `agent`
/// extension is not advertised: there is nothing to manage.
async fn agents() -> HttpResponse {
    HttpResponse::Ok().json(json!({"agents": []}))
}

/// Neutron's version document at the service's root.
async fn versions(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    HttpResponse::Ok().json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{base}/network/v2.0/")}],
    }]}))
}

/// The resources of v2.0, as Neutron lists them at `/v2.0/` (less subnet pools, which do
/// not exist here).
async fn resources(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    let list: Vec<Value> = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
    ]
    .iter()
    .map(|(name, collection)| {
        json!({"name": name, "collection": collection, "links": [
                {"rel": "self", "href": format!("{base}/network/v2.0/{collection}")}]})
    })
    .collect();
    HttpResponse::Ok().json(json!({ "resources": list }))
}

/// Neutron's answer for a resource that does not exist here (routers, floating IPs…: their
/// service plugins are not loaded), whatever the method.
/// The caller is authenticated first, as keystonemiddleware does before Neutron routes.
async fn unknown_resource(_ctx: RequestContext) -> ApiResult<HttpResponse> {
    Err(ApiError::NotFound(
        "The resource could not be found.".into(),
    ))
}

async fn bulk_networks(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let kind = bulk::Kind {
        singular: "network",
        plural: "networks",
        create: networks::create,
        delete: networks::delete,
    };
    bulk::create(kind, ctx, state, raw).await
}

async fn bulk_subnets(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let kind = bulk::Kind {
        singular: "subnet",
        plural: "subnets",
        create: subnets::create,
        delete: subnets::delete,
    };
    bulk::create(kind, ctx, state, raw).await
}

async fn bulk_ports(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let kind = bulk::Kind {
        singular: "port",
        plural: "ports",
        create: ports::create,
        delete: ports::delete,
    };
    bulk::create(kind, ctx, state, raw).await
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/network")
            .wrap(FaultFormat::Neutron.errors())
            .service(web::resource("").route(web::get().to(versions)))
            .service(web::resource("/").route(web::get().to(versions)))
            .service(web::resource("/v2.0").route(web::get().to(resources)))
            .service(web::resource("/v2.0/").route(web::get().to(resources)))
            .service(web::resource("/v2.0/extensions").route(web::get().to(extensions)))
            .service(web::resource("/v2.0/extensions/{alias}").route(web::get().to(extension)))
            .service(web::resource("/v2.0/agents").route(web::get().to(agents)))
            .service(
                web::resource("/v2.0/networks")
                    .route(web::get().to(networks::list))
                    .route(web::post().to(bulk_networks)),
            )
            .service(
                web::resource("/v2.0/networks/{id}")
                    .route(web::get().to(networks::show))
                    .route(web::put().to(networks::update))
                    .route(web::delete().to(networks::delete)),
            )
            .service(
                web::resource("/v2.0/subnets")
                    .route(web::get().to(subnets::list))
                    .route(web::post().to(bulk_subnets)),
            )
            .service(
                web::resource("/v2.0/subnets/{id}")
                    .route(web::get().to(subnets::show))
                    .route(web::put().to(subnets::update))
                    .route(web::delete().to(subnets::delete)),
            )
            .service(
                web::resource("/v2.0/ports")
                    .route(web::get().to(ports::list))
                    .route(web::post().to(bulk_ports)),
            )
            .service(
                web::resource("/v2.0/ports/{id}")
                    .route(web::get().to(ports::show))
                    .route(web::put().to(ports::update))
                    .route(web::delete().to(ports::delete)),
            )
            .service(
                web::resource("/v2.0/security-groups")
                    .route(web::get().to(security_groups::list_groups))
                    .route(web::post().to(security_groups::create_group)),
            )
            .service(
                web::resource("/v2.0/security-groups/{id}")
                    .route(web::get().to(security_groups::show_group))
                    .route(web::put().to(security_groups::update_group))
                    .route(web::delete().to(security_groups::delete_group)),
            )
            .service(
                web::resource("/v2.0/security-group-rules")
                    .route(web::get().to(security_groups::list_rules))
                    .route(web::post().to(security_groups::create_rule)),
            )
            .service(
                web::resource("/v2.0/security-group-rules/{id}")
                    .route(web::get().to(security_groups::show_rule))
                    .route(web::delete().to(security_groups::delete_rule)),
            )
            .service(
                web::resource("/v2.0/{collection:networks|subnets|ports}/{id}/tags")
                    .route(web::get().to(tags::list_tags))
                    .route(web::put().to(tags::replace_tags))
                    .route(web::delete().to(tags::remove_tags)),
            )
            .service(
                web::resource("/v2.0/{collection:networks|subnets|ports}/{id}/tags/{tag}")
                    .route(web::get().to(tags::show_tag))
                    .route(web::put().to(tags::add_tag))
                    .route(web::delete().to(tags::remove_tag)),
            )
            .service(web::resource("/v2.0/quotas").route(web::get().to(quotas::list_quotas)))
            .service(
                web::resource("/v2.0/quotas/{project}")
                    .route(web::get().to(quotas::show_quota))
                    .route(web::put().to(quotas::update_quota))
                    .route(web::delete().to(quotas::reset_quota)),
            )
            .service(
                web::resource("/v2.0/quotas/{project}/default")
                    .route(web::get().to(quotas::default_quota)),
            )
            .service(
                web::resource("/v2.0/quotas/{project}/details")
                    .route(web::get().to(quotas::quota_details)),
            )
            .service(
                web::resource("/v2.0/quotas/{project}/details.json")
                    .route(web::get().to(quotas::quota_details)),
            )
            .default_service(web::to(unknown_resource)),
    );
}
