//! Request bodies: parsed by hand from bytes so that malformed JSON gets the service's 400
//! instead of the framework's plain-text error, and checked key by key as the services'
//! JSON schemas check them.

use crate::error::{bad, ApiError};
use serde_json::{Map, Value};

/// The most a request body may hold (oslo.middleware's `max_request_body_size`, 114688 bytes).
pub const MAX_BODY: usize = 114_688;

pub fn json(raw: &[u8]) -> Result<Value, ApiError> {
    if raw.is_empty() {
        return Err(bad("The request body is empty."));
    }
    serde_json::from_slice(raw).map_err(|_| bad("Malformed request body"))
}

/// The JSON schema error for a property the schema does not know (`additionalProperties`).
pub fn unexpected(key: &str) -> ApiError {
    bad(format!(
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

/// Nova's schema error for a field's value: `Invalid input for field/attribute {field}. Value:
/// {value}. {why}`.
pub fn invalid(field: &str, value: &Value, why: &str) -> ApiError {
    bad(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}
