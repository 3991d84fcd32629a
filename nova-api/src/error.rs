//! The API's one error type and its one mapping to Nova's fault body
//! (`{"itemNotFound": {"code": 404, "message": "…"}}`, nova/api/openstack/wsgi.py `Fault`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use nova_core::bus::BusError;
use nova_db::DbError;

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
    /// A dependency (the database) is down; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the detail goes to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sqlx(sqlx_error) if is_unavailable(&sqlx_error) => {
                tracing::error!(error = %sqlx_error, "database unavailable");
                ApiError::Unavailable("The database is unavailable; try again later.".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

fn is_unavailable(e: &nova_db::SqlxError) -> bool {
    matches!(
        e,
        nova_db::SqlxError::PoolTimedOut
            | nova_db::SqlxError::PoolClosed
            | nova_db::SqlxError::Io(_)
    )
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

/// Nova's name of the fault body for a status code.
pub fn fault_name(status: StatusCode) -> &'static str {
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

/// The fault body for `status` with `message`.
pub fn fault_body(status: StatusCode, message: &str) -> serde_json::Value {
    serde_json::json!({ fault_name(status): { "code": status.as_u16(), "message": message } })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
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
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = match self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                // As Nova: a generic message; the detail is in the log under the request id.
                "Unexpected API Error. Please report this at the project's issue tracker and \
                 attach the API log if possible."
                    .to_owned()
            }
            other => other.to_string(),
        };
        // TODO-correctness: a 401 names the identity endpoint in WWW-Authenticate once the
        // identity service exists (identity issue).
        HttpResponse::build(status).json(fault_body(status, &message))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
