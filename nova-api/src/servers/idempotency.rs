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
//! The record holds a keyed digest of the body (HMAC-SHA256 under a secret kept outside the
//! database, `api.idempotency_secret_file`), never the body: a body may carry an `adminPass`
//! or secrets in `user_data`, and a plain digest of a guessable body would let whoever reads
//! the table test guesses offline, one hash each. Without a secret the digest is salted per
//! record, which only stops precomputed guesses.

use actix_web::HttpRequest;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use hmac::{Hmac, Mac};
use nova_core::ids::InstanceUuid;
use nova_db::idempotency::{IdempotencyKey, Recorded};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// How `Idempotency-Key`s are remembered.
#[derive(Clone, Default)]
pub struct IdempotencySettings {
    /// How long a key is remembered.
    pub ttl_ms: i64,
    /// The key of the body digests; `None`: salted digests.
    pub secret: Option<Arc<[u8]>>,
}

/// The digest key at `path`: 32 random bytes, written there (mode 0600) when the file is
/// missing, published atomically so that API processes starting together agree on one.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<Arc<[u8]>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(bytes.into()),
        Ok(_) => {
            return Err(std::io::Error::other(
                "shorter than 32 bytes: not a key this service made",
            ))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", uuid::Uuid::new_v4().simple()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&rand::random::<[u8; 32]>())?;
        file.sync_all()?;
    }
    // A link fails where the file exists: the first process's key wins, and every one reads it.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        // The name made durable too: a key lost in a power cut would turn retries into 409s.
        Ok(()) => {
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    Ok(std::fs::read(path)?.into())
}

pub(super) const HEADER: &str = "Idempotency-Key";
/// Said on a response that replays an earlier request's result (as Stripe says it).
pub(super) const REPLAYED: &str = "Idempotent-Replayed";
const MAX_LEN: usize = 255;

/// A request's key: the record to look up or write, and the body it came with (canonical), to
/// compare with a recorded digest.
pub(super) struct Keyed {
    pub record: IdempotencyKey,
    canonical: String,
    secret: Option<Arc<[u8]>>,
}

/// The request's key, if it has one: printable ASCII, 1 to 255 characters.
pub(super) fn key_of(
    req: &HttpRequest,
    ctx: &RequestContext,
    body: &Value,
    settings: &IdempotencySettings,
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
    let request_digest = match &settings.secret {
        Some(secret) => keyed_digest(secret, &canonical),
        None => salted_digest(&rand::random::<[u8; 16]>(), &canonical),
    };
    Ok(Some(Keyed {
        record: IdempotencyKey {
            project_id: ctx.project_id.clone(),
            key: key.to_owned(),
            request_digest,
            not_before: nova_core::time::now_ms().saturating_sub(settings.ttl_ms),
        },
        canonical,
        secret: settings.secret.clone(),
    }))
}

/// The server an earlier request with `key` made, or 409 when that request had another body.
pub(super) fn replayed(key: &Keyed, recorded: &Recorded) -> ApiResult<InstanceUuid> {
    if !same_body(
        &key.canonical,
        &recorded.request_digest,
        key.secret.as_deref(),
    ) {
        return Err(ApiError::Conflict(format!(
            "{HEADER} {} was already used with another request body.",
            key.record.key
        )));
    }
    Ok(recorded.instance)
}

/// Whether `canonical` is the body whose digest was recorded: `h1:<hmac-sha256(secret, body)>`
/// in hex, `s1:<salt>:<sha256(salt ‖ body)>`, or (records written before either, until they
/// expire) the bare SHA-256.
fn same_body(canonical: &str, recorded: &str, secret: Option<&[u8]>) -> bool {
    if let Some(tag) = recorded.strip_prefix("h1:") {
        // Without the key (or with another one) the body cannot be told: another body, then.
        return secret.is_some_and(|secret| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(canonical.as_bytes());
            hex::decode(tag).is_ok_and(|tag| mac.verify_slice(&tag).is_ok())
        });
    }
    match recorded.strip_prefix("s1:").and_then(|r| r.split_once(':')) {
        Some((salt, _)) => match hex::decode(salt) {
            Ok(salt) => salted_digest(&salt, canonical) == recorded,
            Err(_) => false,
        },
        None => hex::encode(Sha256::digest(canonical.as_bytes())) == recorded,
    }
}

fn keyed_digest(secret: &[u8], canonical: &str) -> String {
    let tag = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(canonical.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // (HMAC takes a key of any length: not reached.)
        Err(_) => Vec::new(),
    };
    format!("h1:{}", hex::encode(tag))
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
        assert!(same_body(&body, &one, None) && same_body(&body, &two, None));
        let other = canonical(&json!({"server": {"name": "a", "adminPass": "hunter3"}}));
        assert!(!same_body(&other, &one, None));
        assert!(!same_body(&body, "s1:zz:00", None));
        // A record written before salting still matches until it expires.
        assert!(same_body(
            &body,
            &hex::encode(Sha256::digest(body.as_bytes())),
            None
        ));
    }

    #[test]
    fn a_keyed_digest_needs_the_key() {
        let body = canonical(&json!({"server": {"name": "a", "adminPass": "hunter2"}}));
        let (key, other_key) = (rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>());
        let recorded = keyed_digest(&key, &body);
        assert!(recorded.starts_with("h1:"));
        // Not the plain digest of the body: a guess needs the key.
        assert!(!recorded.contains(&hex::encode(Sha256::digest(body.as_bytes()))));
        assert!(same_body(&body, &recorded, Some(&key)));
        assert!(!same_body(&body, &recorded, Some(&other_key)));
        assert!(!same_body(&body, &recorded, None));
        let other = canonical(&json!({"server": {"name": "a", "adminPass": "hunter3"}}));
        assert!(!same_body(&other, &recorded, Some(&key)));
        // Salted records (written without a key) still compare once a key is configured.
        let salted = salted_digest(&[7; 16], &body);
        assert!(same_body(&body, &salted, Some(&key)));
    }

    #[test]
    fn the_secret_file_is_made_once_and_read_by_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("idempotency.key");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create_secret(&path).is_err());
    }
}
