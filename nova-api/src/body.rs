//! Request bodies: parsed by hand from bytes so that malformed JSON gets Nova's 400 fault
//! instead of the framework's plain-text error.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// The most a request body may hold (oslo.middleware's `max_request_body_size`, 114688 bytes).
pub const MAX_BODY: usize = 114_688;

pub fn json(raw: &[u8]) -> Result<Value, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::BadRequest("The request body is empty.".into()));
    }
    serde_json::from_slice(raw).map_err(|_| ApiError::BadRequest("Malformed request body".into()))
}

/// Nova's schema error for a property its schema does not know (`additionalProperties`).
pub fn unexpected(key: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "Additional properties are not allowed ('{key}' was unexpected)"
    ))
}

/// Refuses the first key of `obj` that is not in `allowed`, as [`unexpected`].
pub fn only(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(unexpected(extra)),
        None => Ok(()),
    }
}
