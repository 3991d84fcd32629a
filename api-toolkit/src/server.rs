//! The HTTP server the APIs are served on: any process serves one or several of them
//! ([`Service`]) behind one listener, each request with its request id and every error the
//! framework makes on its own (no route, wrong method, body too large) in a fault body.

use crate::context::{Authenticate, RequestContext, RequestId, Unauthorized};
use crate::error::FaultFormat;
use crate::links::ConfiguredPublicUrl;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, App, FromRequest, HttpMessage, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

/// One API: its state (as app data) and its routes.
pub trait Service: Send + Sync {
    fn configure(&self, cfg: &mut web::ServiceConfig);
}

/// Where and how the HTTP server listens (`[api]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Where to listen; port 0 picks a free one.
    pub bind: String,
    /// The URL clients reach the APIs at, when it differs from the bind address (a proxy).
    pub public_url: Option<String>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Proxies (IP addresses) whose `Forwarded`/`X-Forwarded-*`/`Host` headers are believed
    /// for links when `public_url` is unset. Empty (the default): links use the address the
    /// connection reached.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A request body read whole must arrive within this; a streamed upload must not stall
    /// this long, and past it must average `upload_min_rate` bytes per second.
    pub body_timeout_s: u64,
    pub upload_min_rate: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8774".into(),
            public_url: None,
            workers: 0,
            trusted_proxies: Vec::new(),
            body_timeout_s: 30,
            upload_min_rate: 1024,
        }
    }
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
fn framework_fault<B: MessageBody + 'static>(
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
    let (req, old) = res.into_parts();
    let mut response =
        HttpResponse::build(status).json(FaultFormat::Nova.body(status, &message, None));
    // What the framework said besides (a 405's `Allow`) stays.
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

/// A path no API serves: 404 — to a caller that authenticated. As in Nova, where the token
/// is checked before the route is looked up, an unauthenticated request gets the 401 (so a
/// path's existence is not told to strangers); identity's own paths need no token.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    if !req.path().starts_with("/identity") {
        // Only the authentication decides here: a token without a project still learns that
        // the path does not exist, as any valid token does.
        if let Err(e) = RequestContext::extract(&req).await {
            if e.as_error::<Unauthorized>().is_some() {
                return Err(e);
            }
        }
    }
    Ok(HttpResponse::NotFound().json(FaultFormat::Nova.body(
        StatusCode::NOT_FOUND,
        "The resource could not be found.",
        None,
    )))
}

/// A running HTTP server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
}

/// Binds the server for `services` and returns it (to spawn or await) with its address.
pub fn serve(
    settings: &HttpSettings,
    authenticator: web::Data<dyn Authenticate>,
    services: Vec<Arc<dyn Service>>,
) -> std::io::Result<RunningServer> {
    let public_url = ConfiguredPublicUrl(settings.public_url.clone());
    let trusted = crate::links::TrustedProxies(settings.trusted_proxies.clone());
    let body_limits = web::Data::new(crate::slow_bodies::BodyLimits {
        timeout: std::time::Duration::from_secs(settings.body_timeout_s),
        min_rate: settings.upload_min_rate,
    });
    let mut server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(authenticator.clone())
            .app_data(public_url.clone())
            .app_data(trusted.clone())
            .app_data(body_limits.clone())
            .app_data(web::PayloadConfig::new(crate::body::MAX_BODY));
        for service in &services {
            let service = service.clone();
            app = app.configure(move |cfg| service.configure(cfg));
        }
        app.wrap(ErrorHandlers::new().default_handler(framework_fault))
            .wrap(from_fn(crate::slow_bodies::limit_body_reads))
            .wrap(from_fn(request_id))
            .default_service(web::to(not_found))
    })
    // Each connection's own local address, for links (see `links::PublicUrl`).
    .on_connect(|conn, data| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            if let Ok(addr) = tcp.local_addr() {
                data.insert(crate::links::LocalAddr(addr));
            }
        }
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
    Ok(RunningServer { addr, server })
}
