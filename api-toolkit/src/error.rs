//! The APIs' one error type, [`ApiError`], and its one mapping to each service's fault body
//! ([`FaultFormat`]): Nova's, Glance's, Neutron's, Keystone's and Ironic's. Handlers of every
//! API return `ApiError`; the service's routes say which body it leaves in
//! ([`FaultFormat::errors`]). Unwrapped, an `ApiError` renders as Nova's fault.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpResponse, ResponseError};
use nova_core::bus::BusError;
use nova_db::DbError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or invalid; nothing was written.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the resource is in the wrong state for it.
    #[error("{0}")]
    Conflict(String),
    /// The requested microversion is outside the supported range.
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The deployment cannot do this for this resource (Nova's NotImplementedError, 501).
    #[error("{0}")]
    NotImplemented(String),
    /// A dependency (the database, the bus) is down; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the detail goes to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error the service has a name for (Neutron's `type`, such as `NetworkNotFound`);
    /// formats without names show the inner error.
    #[error("{1}")]
    Named(&'static str, Box<ApiError>),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A 400 with this message (the most common error of all).
pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

impl ApiError {
    /// This error under the service's own name for it (Neutron's `type`).
    pub fn named(self, name: &'static str) -> Self {
        ApiError::Named(name, Box::new(self))
    }

    /// The error without its name.
    fn base(&self) -> &ApiError {
        match self {
            ApiError::Named(_, inner) => inner.base(),
            other => other,
        }
    }

    fn name(&self) -> Option<&'static str> {
        match self {
            ApiError::Named(name, _) => Some(name),
            _ => None,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sqlx(sqlx_error) if is_unavailable(&sqlx_error) => {
                tracing::error!(error = %sqlx_error, "database unavailable");
                ApiError::Unavailable("The database is unavailable; try again later.".into())
            }
            DbError::BadInput(_) | DbError::BadPattern(_) => {
                ApiError::BadRequest("Invalid input for query parameters.".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Whether the database is out of reach rather than refusing this request: the pool, the
/// connection, or PostgreSQL saying it is shutting down or starting (SQLSTATE class 08,
/// connection exceptions, and 57P01–57P03: the connection a restart ended). A client may try
/// again later (503), as it may when Nova's database is restarting.
fn is_unavailable(e: &nova_db::SqlxError) -> bool {
    match e {
        nova_db::SqlxError::PoolTimedOut
        | nova_db::SqlxError::PoolClosed
        | nova_db::SqlxError::Io(_) => true,
        nova_db::SqlxError::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.base() {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Named(..) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Nova's fault; the other services' routes re-render it ([`FaultFormat::errors`]).
    fn error_response(&self) -> HttpResponse {
        FaultFormat::Nova.response(self)
    }
}

/// Whose fault body an API answers errors in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultFormat {
    /// nova/api/openstack/wsgi.py `Fault`: `{"itemNotFound": {"code": 404, "message": "…"}}`.
    Nova,
    /// webob's JSON error, as Glance sends it: `{"code": "404 Not Found", "title", "message"}`.
    Glance,
    /// `{"NeutronError": {"type", "message", "detail"}}`, `type` the exception's name.
    Neutron,
    /// `{"error": {"code", "title", "message"}}` (Keystone, and keystonemiddleware's 401).
    Keystone,
    /// Ironic's (wsme's) fault: `{"error_message": "<JSON of faultstring, faultcode, debuginfo>"}`.
    Ironic,
}

/// Nova's name of the fault body for a status code.
pub fn nova_fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// webob's exception name for a status, which Neutron uses as `type` when it has no better.
fn webob_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "HTTPBadRequest",
        401 => "HTTPUnauthorized",
        403 => "HTTPForbidden",
        404 => "HTTPNotFound",
        405 => "HTTPMethodNotAllowed",
        409 => "HTTPConflict",
        413 => "HTTPRequestEntityTooLarge",
        503 => "HTTPServiceUnavailable",
        _ => "HTTPInternalServerError",
    }
}

impl FaultFormat {
    /// What a client is told of an internal error: the service's own generic sentence (the
    /// detail is logged under the request id).
    fn internal_message(self) -> &'static str {
        match self {
            FaultFormat::Nova => {
                "Unexpected API Error. Please report this at the project's issue tracker and \
                 attach the API log if possible."
            }
            FaultFormat::Glance => {
                "The server has either erred or is incapable of performing the requested \
                 operation."
            }
            FaultFormat::Neutron => {
                "Request Failed: internal server error while processing your request."
            }
            FaultFormat::Keystone => {
                "An unexpected error prevented the server from fulfilling your request."
            }
            FaultFormat::Ironic => "An internal error occurred while processing the request.",
        }
    }

    /// The body for `status` with `message`; `name` is the error's own name where the format
    /// has one (Neutron).
    pub fn body(self, status: StatusCode, message: &str, name: Option<&str>) -> serde_json::Value {
        let reason = status.canonical_reason().unwrap_or("Error");
        match self {
            FaultFormat::Nova => {
                json!({ nova_fault_name(status): { "code": status.as_u16(), "message": message } })
            }
            FaultFormat::Glance => json!({
                "code": format!("{} {reason}", status.as_u16()),
                "title": reason,
                // webob renders the explanation through its body template.
                "message": format!("{message}<br /><br />\n\n\n"),
            }),
            FaultFormat::Neutron => json!({
                "NeutronError": {
                    "type": name.unwrap_or_else(|| webob_name(status)),
                    "message": message,
                    "detail": "",
                }
            }),
            FaultFormat::Keystone => json!({
                "error": { "code": status.as_u16(), "title": reason, "message": message }
            }),
            FaultFormat::Ironic => {
                let fault = json!({
                    "faultstring": message,
                    "faultcode": if status.is_server_error() { "Server" } else { "Client" },
                    "debuginfo": null,
                });
                json!({ "error_message": fault.to_string() })
            }
        }
    }

    /// `error` as this service answers it.
    pub fn response(self, error: &ApiError) -> HttpResponse {
        let status = error.status_code();
        let message = match error.base() {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                self.internal_message().to_owned()
            }
            other => other.to_string(),
        };
        HttpResponse::build(status).json(self.body(status, &message, error.name()))
    }

    /// A policy's refusal of `rule`, in the service's words.
    pub fn policy_denied(self, rule: &str) -> ApiError {
        match self {
            FaultFormat::Nova => {
                ApiError::Forbidden(format!("Policy doesn't allow {rule} to be performed."))
            }
            FaultFormat::Neutron => {
                ApiError::Forbidden(format!("(rule:{rule}) is disallowed by policy"))
                    .named("PolicyNotAuthorized")
            }
            FaultFormat::Keystone => ApiError::Forbidden(format!(
                "You are not authorized to perform the requested action: {rule}."
            )),
            FaultFormat::Glance => {
                ApiError::Forbidden(format!("You are not authorized to complete {rule} action."))
            }
            FaultFormat::Ironic => ApiError::Forbidden(format!(
                "Access was denied to the following resource: {rule}"
            )),
        }
    }

    /// Middleware for a service's routes: the errors its handlers return leave in this
    /// format. Other error responses (an extractor's 401, which has a body of its own) pass.
    pub fn errors<B: MessageBody + 'static>(self) -> ErrorHandlers<B> {
        ErrorHandlers::new().default_handler(move |res: ServiceResponse<B>| {
            let Some(error) = res
                .response()
                .error()
                .and_then(|e| e.as_error::<ApiError>())
            else {
                return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
            };
            let response = self.response(error);
            let (req, _) = res.into_parts();
            Ok(ErrorHandlerResponse::Response(
                ServiceResponse::new(req, response).map_into_right_body(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_words_a_not_found_its_way() {
        let e = ApiError::NotFound("gone".into()).named("NetworkNotFound");
        let s = e.status_code();
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(
            FaultFormat::Nova.body(s, "gone", None),
            json!({"itemNotFound": {"code": 404, "message": "gone"}})
        );
        assert_eq!(
            FaultFormat::Neutron.body(s, "gone", Some("NetworkNotFound")),
            json!({"NeutronError": {"type": "NetworkNotFound", "message": "gone", "detail": ""}})
        );
        assert_eq!(
            FaultFormat::Glance.body(s, "gone", None)["code"],
            json!("404 Not Found")
        );
        let ironic = FaultFormat::Ironic.body(s, "gone", None);
        let inner: serde_json::Value =
            serde_json::from_str(ironic["error_message"].as_str().unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(inner["faultcode"], json!("Client"));
        assert_eq!(inner["faultstring"], json!("gone"));
    }
}
