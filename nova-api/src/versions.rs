//! Version discovery (`GET /`, `GET /v2.1/`) and microversion negotiation.
//!
//! This build serves microversions 2.1 to 2.96: a request outside the range gets 406 as Nova
//! answers, `latest` means 2.96, and every response under `/v2.1` names the version it was
//! served at. Handlers read the negotiated version with [`ApiVersion::of`].

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::ApiError;
use serde_json::json;

/// The range this build serves, as (major, minor).
pub const MIN_VERSION: (u16, u16) = (2, 1);
pub const MAX_VERSION: (u16, u16) = (2, 96);

/// The microversion a request is served at (2.1 when it asked for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u16, pub u16);

impl ApiVersion {
    pub fn of(req: &HttpRequest) -> Self {
        req.extensions()
            .get::<ApiVersion>()
            .copied()
            .unwrap_or(ApiVersion(MIN_VERSION.0, MIN_VERSION.1))
    }

    /// Whether the request asked for 2.`minor` or later.
    pub fn at_least(self, minor: u16) -> bool {
        self >= ApiVersion(2, minor)
    }
}

fn fmt(v: (u16, u16)) -> String {
    format!("{}.{}", v.0, v.1)
}

fn v21(base: &str) -> serde_json::Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": fmt(MAX_VERSION),
        "min_version": fmt(MIN_VERSION),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}],
    })
}

/// `GET /`: every API version, as Nova lists them.
pub async fn root(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    HttpResponse::Ok().json(json!({
        "versions": [
            {
                "id": "v2.0",
                "status": "SUPPORTED",
                "version": "",
                "min_version": "",
                "updated": "2011-01-21T11:33:21Z",
                "links": [{"rel": "self", "href": format!("{base}/v2/")}],
            },
            v21(&base),
        ]
    }))
}

/// `GET /v2/`: the legacy v2.0 version document (Nova serves v2.0 as v2.1 without
/// microversions; here the version document answers, for clients that follow every link of
/// `GET /`).
pub async fn v2_0(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    HttpResponse::Ok().json(json!({ "version": {
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [
            {"rel": "self", "href": format!("{base}/v2/")},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
        ],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2",
        }],
    }}))
}

/// `GET /v2.1/`: this version in detail.
pub async fn v2_1(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    let mut version = v21(&base);
    version["links"] = json!([
        {"rel": "self", "href": format!("{base}/v2.1/")},
        {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
    ]);
    version["media-types"] = json!([{
        "base": "application/json",
        "type": "application/vnd.openstack.compute+json;version=2.1",
    }]);
    HttpResponse::Ok().json(json!({ "version": version }))
}

/// The microversion a request asked for (the newer header wins, as in Nova).
fn requested(req: &ServiceRequest) -> Result<(u16, u16), ApiError> {
    let headers = req.headers();
    let raw = headers
        .get("OpenStack-API-Version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // `compute 2.5` (possibly among other services, comma separated).
            v.split(',').map(str::trim).find_map(|part| {
                let (service, version) = part.split_once(char::is_whitespace)?;
                service
                    .eq_ignore_ascii_case("compute")
                    .then(|| version.trim().to_owned())
            })
        })
        .or_else(|| {
            headers
                .get("X-OpenStack-Nova-API-Version")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
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
        .filter(|(_, minor)| !raw.ends_with('.') && *minor < 1000);
    let Some(version) = parsed else {
        return Err(ApiError::BadRequest(format!(
            "API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum."
        )));
    };
    if version < MIN_VERSION || version > MAX_VERSION {
        return Err(ApiError::NotAcceptable(format!(
            "Version {raw} is not supported by the API. Minimum is {} and maximum is {}.",
            fmt(MIN_VERSION),
            fmt(MAX_VERSION)
        )));
    }
    Ok(version)
}

/// Middleware for `/v2.1`: rejects versions outside the range, and names the version served
/// in the response headers (both header styles, and `Vary` for caches).
pub async fn negotiate(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let version = match requested(&req) {
        Ok(v) => v,
        Err(e) => {
            let (http, _) = req.into_parts();
            let response = actix_web::ResponseError::error_response(&e);
            return Ok(ServiceResponse::new(http, response));
        }
    };
    req.extensions_mut()
        .insert(ApiVersion(version.0, version.1));
    let mut res = next.call(req).await?.map_into_boxed_body();
    let v = fmt(version);
    let headers = res.headers_mut();
    let pairs = [
        ("openstack-api-version", format!("compute {v}")),
        ("x-openstack-nova-api-version", v.clone()),
        (
            "vary",
            "OpenStack-API-Version, X-OpenStack-Nova-API-Version".to_owned(),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(res)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(root)))
        .service(web::resource("/v2").route(web::get().to(v2_0)))
        .service(web::resource("/v2/").route(web::get().to(v2_0)));
}
