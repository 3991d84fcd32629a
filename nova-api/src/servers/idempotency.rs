//! `Idempotency-Key` on `POST /servers` (the IETF draft "The Idempotency-Key HTTP Header
//! Field"; Nova has none). A client that did not hear the answer to a create (a timeout, a
//! dropped connection) sends it again with the same key and gets the server the first request
//! made, not a second one. The same key with another body is a 409; a key is a project's, and
//! lives `api.idempotency_key_ttl_s`.
//!
//! The key is recorded in the transaction that creates the servers (see
//! [`nova_db::instances::create_with_build_tasks`]), so two requests racing with one key make
//! servers once: the loser finds the winner's record.
//!
//! The record holds a salted digest of the body, never the body: a body may carry an
//! `adminPass` or secrets in `user_data`, and an unsalted digest of a guessable body would let
//! whoever reads the table test guesses offline, one hash each.

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

/// A request's key: the record to look up or write, and the body it came with (canonical), to
/// compare with a recorded digest under that record's salt.
pub(super) struct Keyed {
    pub record: IdempotencyKey,
    canonical: String,
}

/// The request's key, if it has one: printable ASCII, 1 to 255 characters.
pub(super) fn key_of(
    req: &HttpRequest,
    ctx: &RequestContext,
    body: &Value,
    ttl_ms: i64,
) -> ApiResult<Option<Keyed>> {
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
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    let salt: [u8; 16] = rand::random();
    Ok(Some(Keyed {
        record: IdempotencyKey {
            project_id: ctx.project_id.clone(),
            key: key.to_owned(),
            request_digest: salted_digest(&salt, &canonical),
            not_before: nova_core::time::now_ms().saturating_sub(ttl_ms),
        },
        canonical,
    }))
}

/// The server an earlier request with `key` made, or 409 when that request had another body.
pub(super) fn replayed(key: &Keyed, recorded: &Recorded) -> ApiResult<InstanceUuid> {
    if !same_body(&key.canonical, &recorded.request_digest) {
        return Err(ApiError::Conflict(format!(
            "{HEADER} {} was already used with another request body.",
            key.record.key
        )));
    }
    Ok(recorded.instance)
}

/// Whether `canonical` is the body whose digest was recorded: `s1:<salt>:<sha256(salt ‖ body)>`
/// in hex, or (records written before salting, until they expire) the bare SHA-256.
fn same_body(canonical: &str, recorded: &str) -> bool {
    match recorded.strip_prefix("s1:").and_then(|r| r.split_once(':')) {
        Some((salt, _)) => match hex::decode(salt) {
            Ok(salt) => salted_digest(&salt, canonical) == recorded,
            Err(_) => false,
        },
        None => hex::encode(Sha256::digest(canonical.as_bytes())) == recorded,
    }
}

fn salted_digest(salt: &[u8], canonical: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(salt);
    hash.update(canonical.as_bytes());
    format!("s1:{}:{}", hex::encode(salt), hex::encode(hash.finalize()))
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

/// The body in a form that does not depend on the order of its members or its spacing.
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

    fn canonical(v: &Value) -> String {
        let mut out = String::new();
        write_canonical(v, &mut out);
        out
    }

    #[test]
    fn the_canonical_body_ignores_member_order_but_not_values() {
        let a: Value =
            serde_json::from_str(r#"{"server": {"name": "a", "flavorRef": "1", "x": [1, 2]}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"server":{"x":[1,2],"flavorRef":"1","name":"a"}}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&a), canonical(&json!({"server": {"name": "b"}})));
        assert_ne!(
            canonical(&json!({"x": [1, 2]})),
            canonical(&json!({"x": [2, 1]}))
        );
    }

    #[test]
    fn a_recorded_digest_is_salted_and_matches_only_its_body() {
        let body = canonical(&json!({"server": {"name": "a", "adminPass": "hunter2"}}));
        let (one, two) = (
            salted_digest(&rand::random::<[u8; 16]>(), &body),
            salted_digest(&rand::random::<[u8; 16]>(), &body),
        );
        // Two records of one body share nothing a guess could be checked against at once.
        assert_ne!(one, two);
        assert!(!one.contains(&hex::encode(Sha256::digest(body.as_bytes()))));
        assert!(same_body(&body, &one) && same_body(&body, &two));
        let other = canonical(&json!({"server": {"name": "a", "adminPass": "hunter3"}}));
        assert!(!same_body(&other, &one));
        assert!(!same_body(&body, "s1:zz:00"));
        // A record written before salting still matches until it expires.
        assert!(same_body(
            &body,
            &hex::encode(Sha256::digest(body.as_bytes()))
        ));
    }
}
