//! Request bodies: parsed by hand from bytes so that malformed JSON gets Nova's 400 fault
//! instead of the framework's plain-text error.

use crate::error::ApiError;
use serde_json::Value;

/// The most a request body may hold (oslo.middleware's `max_request_body_size`, 114688 bytes).
pub const MAX_BODY: usize = 114_688;

pub fn json(raw: &[u8]) -> Result<Value, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::BadRequest("The request body is empty.".into()));
    }
    serde_json::from_slice(raw).map_err(|_| ApiError::BadRequest("Malformed request body".into()))
}
