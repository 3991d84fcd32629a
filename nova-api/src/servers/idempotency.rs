//! `Idempotency-Key` on `POST /servers` (the IETF draft "The Idempotency-Key HTTP Header
//! Field"; Nova has none). A client that did not hear the answer to a create (a timeout, a
//! dropped connection) sends it again with the same key and gets the server the first request
//! made, not a second one. The same key with another body is a 409; a key is a project's, and
//! lives `api.idempotency_key_ttl_s`.
//!
//! The key is recorded in the transaction that creates the servers (see
//! [`nova_db::instances::create_with_build_tasks`]), so two requests racing with one key make
//! servers once: the loser finds the winner's record.

use actix_web::HttpRequest;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_db::idempotency::{IdempotencyKey, Recorded};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicI64, Ordering};

pub(super) const HEADER: &str = "Idempotency-Key";
/// Said on a response that replays an earlier request's result (as Stripe says it).
pub(super) const REPLAYED: &str = "Idempotent-Replayed";
const MAX_LEN: usize = 255;

/// The request's key, if it has one: printable ASCII, 1 to 255 characters.
pub(super) fn key_of(
    req: &HttpRequest,
    ctx: &RequestContext,
    body: &Value,
    ttl_ms: i64,
) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_LEN)
        .filter(|k| k.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or_else(|| {
            bad(format!(
                "Invalid {HEADER} header: 1 to {MAX_LEN} printable ASCII characters."
            ))
        })?;
    Ok(Some(IdempotencyKey {
        project_id: ctx.project_id.clone(),
        key: key.to_owned(),
        request_digest: digest(body),
        not_before: nova_core::time::now_ms().saturating_sub(ttl_ms),
    }))
}

/// The server an earlier request with `key` made, or 409 when that request had another body.
pub(super) fn replayed(key: &IdempotencyKey, recorded: &Recorded) -> ApiResult<InstanceUuid> {
    if recorded.request_digest != key.request_digest {
        return Err(ApiError::Conflict(format!(
            "{HEADER} {} was already used with another request body.",
            key.key
        )));
    }
    Ok(recorded.instance)
}

/// Removes expired records, at most once a minute per process.
pub(super) async fn prune_now_and_then(db: &nova_db::Db, ttl_ms: i64) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = nova_core::time::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    if now - last < 60_000
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if let Err(e) = nova_db::idempotency::prune(db, now.saturating_sub(ttl_ms)).await {
        tracing::warn!(error = %e, "expired idempotency keys not pruned");
    }
}

/// A digest of the body that does not depend on the order of its members or its spacing.
fn digest(body: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    Sha256::digest(canonical.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            use std::fmt::Write;
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_ignores_member_order_but_not_values() {
        let a: Value =
            serde_json::from_str(r#"{"server": {"name": "a", "flavorRef": "1", "x": [1, 2]}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"server":{"x":[1,2],"flavorRef":"1","name":"a"}}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"server": {"name": "b"}})));
        assert_ne!(digest(&json!({"x": [1, 2]})), digest(&json!({"x": [2, 1]})));
    }
}
