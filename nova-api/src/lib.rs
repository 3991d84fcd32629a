//! nova-api: the OpenStack Compute API (v2.1) over HTTP.
//!
//! Handlers validate, write the request to the database (instance + task in one transaction),
//! publish the task for the conductor after the commit, and answer. They never wait for a
//! compute host. Errors of every kind leave as Nova's fault body ([`error`]).

pub mod body;
pub mod error;
pub mod flavors;
pub mod images;
pub mod instance_actions;
pub mod keypairs;
pub mod links;
pub mod networks;
pub mod os_availability_zone;
pub mod os_hypervisors;
pub mod os_services;
pub mod policy;
pub mod quotas;
pub mod server_metadata;
pub mod server_tags;
pub mod servers;
pub mod versions;
pub mod views;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer};
use keystone_auth::{Identity, RequestId};
use links::ConfiguredPublicUrl;
use nova_core::bus::Bus;
use nova_db::Db;
use nova_core::rpc::Queues;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Where to listen; port 0 picks a free one.
    pub bind: String,
    /// The URL clients reach the API at, when it differs from the bind address (a proxy).
    pub public_url: Option<String>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// A compute service silent this long shows as down (Nova's `service_down_time`; keep it
    /// equal to the conductor's).
    pub service_down_time_s: u64,
    /// Where the image service keeps image data.
    pub image_store_dir: std::path::PathBuf,
    /// The largest image accepted, in bytes (Glance's `image_size_cap`, 1 TiB by default).
    pub image_size_cap: i64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8774".into(),
            public_url: None,
            workers: 0,
            service_down_time_s: 60,
            image_store_dir: "images".into(),
            image_size_cap: 1 << 40,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    pub db: Db,
    pub service_down_ms: i64,
    pub bus: Arc<dyn Bus>,
    pub queues: Queues,
}

/// Gives every request Nova's request id (`req-<uuid>`), a tracing span carrying it, and the
/// `x-openstack-request-id` and `x-compute-request-id` response headers.
async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId::generate();
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = %id.0, method = %req.method(), path = %req.path());
    let mut res = next.call(req).instrument(span.clone()).await?;
    span.in_scope(|| tracing::debug!(status = res.status().as_u16(), "response"));
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        res.headers_mut().insert(
            header::HeaderName::from_static("x-openstack-request-id"),
            v.clone(),
        );
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-compute-request-id"), v);
    }
    Ok(res)
}

/// Turns any error response the framework made on its own (unknown route, wrong method, body
/// too large) into Nova's fault body; responses that already are JSON pass unchanged.
fn nova_fault<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let message = match status.as_u16() {
        404 => "The resource could not be found.".to_owned(),
        405 => "The method is not allowed for this resource.".to_owned(),
        413 => "Request is too large.".to_owned(),
        _ => status.canonical_reason().unwrap_or("Error").to_owned(),
    };
    let (req, _) = res.into_parts();
    let response = HttpResponse::build(status).json(error::fault_body(status, &message));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

async fn not_found() -> HttpResponse {
    let status = actix_web::http::StatusCode::NOT_FOUND;
    HttpResponse::NotFound().json(error::fault_body(
        status,
        "The resource could not be found.",
    ))
}

/// The routes of the Compute API, for `App::configure`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    versions::configure(cfg);
    cfg.service(
        web::scope("/v2.1")
            .wrap(from_fn(versions::negotiate))
            .route("", web::get().to(versions::v2_1))
            .route("/", web::get().to(versions::v2_1))
            .configure(servers::configure)
            .configure(server_metadata::configure)
            .configure(server_tags::configure)
            .configure(instance_actions::configure)
            .configure(flavors::configure)
            .configure(os_services::configure)
            .configure(os_hypervisors::configure)
            .configure(keypairs::configure)
            .configure(quotas::configure)
            .configure(os_availability_zone::configure),
    );
}

/// A running API server.
pub struct RunningApi {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
}

/// Binds the API and returns the server future (to spawn or await) and the bound address.
pub fn start(
    settings: &ApiSettings,
    identity: &Identity,
    db: Db,
    bus: Arc<dyn Bus>,
    queues: Queues,
) -> std::io::Result<RunningApi> {
    let service_down_ms =
        i64::try_from(settings.service_down_time_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let state = web::Data::new(AppState {
        db,
        service_down_ms,
        bus,
        queues,
    });
    let public_url = ConfiguredPublicUrl(settings.public_url.clone());
    let identity = identity.clone();
    let image_store = web::Data::new(images::ImageStore {
        dir: settings.image_store_dir.clone(),
        size_cap: settings.image_size_cap,
    });
    let mut server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(state.clone())
            .app_data(identity.authenticator.clone())
            .app_data(image_store.clone())
            .configure(images::routes)
            .configure(networks::routes);
        if let Some(api) = &identity.api {
            app = app
                .app_data(api.clone())
                .configure(keystone_auth::api::routes);
        }
        app.app_data(public_url.clone())
            .app_data(web::PayloadConfig::new(body::MAX_BODY))
            .wrap(ErrorHandlers::new().default_handler(nova_fault))
            .wrap(from_fn(request_id))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .bind(&settings.bind)?;
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("no address bound"))?;
    let server = server.disable_signals().run();
    Ok(RunningApi { addr, server })
}
