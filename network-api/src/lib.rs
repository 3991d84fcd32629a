//! The networking service's networks (a Neutron v2.0 subset) under `/network`: what a server
//! create may choose by id (`networks: [{"uuid": …}]`), and what clients look a network up in
//! by name (`openstack server create --network NAME` asks here before it asks for a server).
//!
//! A network is a name for a network the compute hosts provide (a provider network, in
//! Neutron's terms): `provider:physical_network` names it on the hosts (for Docker, an engine
//! network), and it defaults to the network's name. There are no subnets, ports or routers:
//! addresses come from the host's network when a server starts. Because a network must exist
//! on the hosts, creating one is for admins, as Neutron's policy has it for provider networks.
//!
//! Quotas (`/v2.0/quotas`) limit the networks of a project, which `openstack quota show` reads
//! from every networking service in the catalog.
//!
//! The handlers: [`networks`], [`tags`], [`quotas`]; discovery and the routes here.
//!
//! Errors leave in Neutron's body (`{"NeutronError": {"type", "message", "detail"}}`), with
//! Neutron's exception names ([`ApiError::named`]).

mod networks;
mod quotas;
mod tags;

use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::{ApiError, ApiResult, FaultFormat};
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

/// The extensions whose attributes the views above carry (Neutron's aliases).
fn extension_list() -> Vec<Value> {
    let ext = |alias: &str, name: &str, description: &str| {
        json!({"alias": alias, "name": name, "description": description,
               "updated": "2013-01-01T10:00:00-00:00", "links": []})
    };
    vec![
        ext("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
        ext("external-net", "Neutron external network", "Adds external network attribute to network resource."),
        ext("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
        ext("quotas", "Quota management support", "Expose functions for quotas management per project"),
        ext("quota_details", "Quota details extension", "Expose functions for quotas usage statistics per project"),
        ext("standard-attr-tag", "Tag support for resources with standard attribute: network", "Enables to set tag on resources with standard attribute."),
        ext("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
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

/// The resources of v2.0, as Neutron lists them at `/v2.0/`.
async fn resources(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    HttpResponse::Ok().json(json!({"resources": [{
        "name": "network",
        "collection": "networks",
        "links": [{"rel": "self", "href": format!("{base}/network/v2.0/networks")}],
    }]}))
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
                    .route(web::post().to(networks::create)),
            )
            .service(
                web::resource("/v2.0/networks/{id}")
                    .route(web::get().to(networks::show))
                    .route(web::put().to(networks::update))
                    .route(web::delete().to(networks::delete)),
            )
            .service(
                web::resource("/v2.0/networks/{id}/tags")
                    .route(web::get().to(tags::list_tags))
                    .route(web::put().to(tags::replace_tags))
                    .route(web::delete().to(tags::remove_tags)),
            )
            .service(
                web::resource("/v2.0/networks/{id}/tags/{tag}")
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
            ),
    );
}
