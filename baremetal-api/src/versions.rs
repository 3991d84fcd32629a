//! Ironic's version documents and its microversion negotiation
//! (`X-OpenStack-Ironic-API-Version`): a request names a version in the range served, or
//! `latest`; none means the minimum. Every response names the range and the version served,
//! which is how python-ironicclient negotiates down from the newest version it knows.

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::ApiError;
use serde_json::{json, Value};

/// The range served. 1.46 brings every field this service keeps (`conductor_group` last);
/// fields of later versions (owner, description, allocations…) are not kept here. Below 1.11
/// Ironic enrols a node straight into `available`, unchecked, which this service does not do.
pub const MIN_VERSION: (u16, u16) = (1, 11);
pub const MAX_VERSION: (u16, u16) = (1, 46);

/// The version a request is served at, in its extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IronicVersion(pub u16, pub u16);

impl IronicVersion {
    pub fn of(req: &HttpRequest) -> Self {
        req.extensions()
            .get::<IronicVersion>()
            .copied()
            .unwrap_or(IronicVersion(MIN_VERSION.0, MIN_VERSION.1))
    }

    /// Whether the request's version is at least `1.minor`.
    pub fn at_least(self, minor: u16) -> bool {
        self >= IronicVersion(1, minor)
    }
}

fn fmt((major, minor): (u16, u16)) -> String {
    format!("{major}.{minor}")
}

fn requested(req: &ServiceRequest) -> Result<(u16, u16), ApiError> {
    let headers = req.headers();
    let raw = headers
        .get("X-OpenStack-Ironic-API-Version")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .or_else(|| {
            headers
                .get("OpenStack-API-Version")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split(',').map(str::trim).find_map(|part| {
                        let (service, version) = part.split_once(char::is_whitespace)?;
                        service
                            .eq_ignore_ascii_case("baremetal")
                            .then(|| version.trim().to_owned())
                    })
                })
        });
    let Some(raw) = raw else {
        return Ok(MIN_VERSION);
    };
    if raw.eq_ignore_ascii_case("latest") {
        return Ok(MAX_VERSION);
    }
    let parsed = raw
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .filter(|_| !raw.ends_with('.'));
    let Some(version) = parsed else {
        return Err(ApiError::BadRequest(
            "Invalid value for X-OpenStack-Ironic-API-Version header".into(),
        ));
    };
    if version.0 != MIN_VERSION.0 {
        return Err(ApiError::NotAcceptable(format!(
            "Mutually exclusive versions requested. Version {raw} requested but not supported \
             by this service. The supported version range is: [{}, {}].",
            fmt(MIN_VERSION),
            fmt(MAX_VERSION)
        )));
    }
    if version < MIN_VERSION || version > MAX_VERSION {
        return Err(ApiError::NotAcceptable(format!(
            "Version {raw} was requested but the minor version is not supported by this \
             service. The supported version range is: [{}, {}].",
            fmt(MIN_VERSION),
            fmt(MAX_VERSION)
        )));
    }
    Ok(version)
}

fn name_range(res: &mut ServiceResponse<actix_web::body::BoxBody>, served: Option<(u16, u16)>) {
    let headers = res.headers_mut();
    let mut pairs = vec![
        ("x-openstack-ironic-api-minimum-version", fmt(MIN_VERSION)),
        ("x-openstack-ironic-api-maximum-version", fmt(MAX_VERSION)),
        ("vary", "X-OpenStack-Ironic-API-Version".to_owned()),
    ];
    if let Some(v) = served {
        pairs.push(("x-openstack-ironic-api-version", fmt(v)));
    }
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Middleware for `/baremetal`: refuses versions outside the range (406, naming the range, so
/// that a client can retry within it) and names the range and the version served.
pub async fn negotiate(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let version = match requested(&req) {
        Ok(v) => v,
        Err(e) => {
            // Ironic answers every refused version with 406 in webob's words (code, title,
            // description) inside its `error_message`; the range is named unless the header
            // could not be read at all.
            let readable = !matches!(e, ApiError::BadRequest(_));
            let inner = json!({
                "code": 406,
                "title": "Not Acceptable",
                "description": e.to_string(),
            });
            let response =
                HttpResponse::NotAcceptable().json(json!({ "error_message": inner.to_string() }));
            let (http, _) = req.into_parts();
            let mut res = ServiceResponse::new(http, response);
            if readable {
                name_range(&mut res, None);
            }
            return Ok(res);
        }
    };
    req.extensions_mut()
        .insert(IronicVersion(version.0, version.1));
    let mut res = next.call(req).await?.map_into_boxed_body();
    name_range(&mut res, Some(version));
    Ok(res)
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [{"href": format!("{base}/baremetal/v1/"), "rel": "self"}],
        "status": "CURRENT",
        "min_version": fmt(MIN_VERSION),
        "version": fmt(MAX_VERSION),
    })
}

/// `GET /baremetal/`: Ironic's root document.
pub async fn root(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    let v1 = version_doc(&base);
    HttpResponse::Ok().json(json!({
        "name": "OpenStack Ironic API",
        "description": "Ironic is an OpenStack project which enables the provision and \
            management of baremetal machines.",
        "default_version": v1,
        "versions": [v1],
    }))
}

/// `GET /baremetal/v1`: the v1 document, with links to the resources served.
pub async fn v1(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    let link = |path: &str| {
        json!([
            {"href": format!("{base}/baremetal/v1/{path}/"), "rel": "self"},
            {"href": format!("{base}/baremetal/{path}/"), "rel": "bookmark"},
        ])
    };
    HttpResponse::Ok().json(json!({
        "id": "v1",
        "links": [{"href": format!("{base}/baremetal/v1/"), "rel": "self"}],
        "media_types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.ironic.v1+json",
        }],
        "nodes": link("nodes"),
        "drivers": link("drivers"),
        "version": version_doc(&base),
    }))
}

/// `GET /baremetal/v1/drivers`: the one hardware type served, with the hosts that run it.
pub async fn drivers(
    req: HttpRequest,
    ctx: api_toolkit::RequestContext,
    state: actix_web::web::Data<crate::BaremetalState>,
) -> Result<HttpResponse, ApiError> {
    api_toolkit::policy::IRONIC.require_admin(&ctx, "baremetal:driver:get")?;
    let base = PublicUrl::of(&req).0;
    let hosts: Vec<String> = crate::nodes::driver_hosts(&state, "redfish")
        .await?
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let drivers = if hosts.is_empty() {
        Vec::new()
    } else {
        vec![json!({
            "name": "redfish",
            "type": "dynamic",
            "hosts": hosts,
            "links": [
                {"href": format!("{base}/baremetal/v1/drivers/redfish"), "rel": "self"},
                {"href": format!("{base}/baremetal/drivers/redfish"), "rel": "bookmark"},
            ],
        })]
    };
    Ok(HttpResponse::Ok().json(json!({ "drivers": drivers })))
}
