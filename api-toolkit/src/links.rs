//! Links in responses: the public URL they start from, and the link to a listing's next page.
//!
//! The public URL is the configured one (behind a proxy it differs from the bind address).
//! Without one, it is the address this connection reached — never the client's `Host` header,
//! which anybody can set (`Host: evil.example` would be echoed into links and the catalog) —
//! unless the connection comes from a proxy configured as trusted, whose `Forwarded` /
//! `X-Forwarded-Proto` / `X-Forwarded-Host` / `Host` headers then say where clients came.

use actix_web::HttpRequest;
use std::net::{IpAddr, SocketAddr};

/// Configured public base URL, without a trailing slash (app data).
#[derive(Clone, Debug, Default)]
pub struct ConfiguredPublicUrl(pub Option<String>);

/// The proxies whose forwarding headers are believed (app data; `http.trusted_proxies`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<IpAddr>);

/// The local address of the request's TCP connection (connection data, set when it is
/// accepted): the address the client reached.
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(pub SocketAddr);

/// The base URL links of this request start with.
pub struct PublicUrl(pub String);

impl PublicUrl {
    pub fn of(req: &HttpRequest) -> Self {
        if let Some(url) = req
            .app_data::<ConfiguredPublicUrl>()
            .and_then(|c| c.0.clone())
        {
            return Self(url.trim_end_matches('/').to_owned());
        }
        let trusted = req.peer_addr().is_some_and(|peer| {
            req.app_data::<TrustedProxies>()
                .is_some_and(|t| t.0.contains(&peer.ip()))
        });
        if trusted {
            let info = req.connection_info();
            return Self(format!("{}://{}", info.scheme(), info.host()));
        }
        let local = req
            .conn_data::<LocalAddr>()
            .map_or_else(|| req.app_config().local_addr(), |l| l.0);
        let scheme = if req.app_config().secure() {
            "https"
        } else {
            "http"
        };
        Self(format!("{scheme}://{local}"))
    }
}

/// The URL of the next page of a listing at `path` (under the public URL): the request's own
/// query without the keys in `drop`, then `add` in order — so that the next page keeps the
/// filters and sorting of this one.
pub fn next_page(req: &HttpRequest, path: &str, drop: &[&str], add: &[(&str, &str)]) -> String {
    let base = PublicUrl::of(req).0;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if !drop.contains(&k.as_ref()) {
            query.append_pair(&k, &v);
        }
    }
    for (k, v) in add {
        query.append_pair(k, v);
    }
    format!("{base}{path}?{}", query.finish())
}
