//! Tokens: JWS (ES256) as Keystone's `jws` provider issues them, checked with jsonwebtoken;
//! revocation events persisted in the database and mirrored in memory.
//!
//! One deliberate difference from Keystone's payload: the token carries the roles of its scope
//! (`openstack_roles`), so that every service validates a token without a database round trip.
//! Changing a user's roles on a project revokes the user's tokens for that project, so a token
//! never outlives the roles it names.

use crate::keys::KeyRing;
use jsonwebtoken::{Algorithm, Header, Validation};
use nova_core::time::now_ms;
use nova_db::identity::{self, RevocationEvent};
use nova_db::{Db, DbError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

/// The token's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at and expiry, in seconds (JWT's registered claims).
    pub iat: i64,
    pub exp: i64,
    /// Issued at in milliseconds, for revocation events (which are finer than a second).
    pub openstack_issued_at_ms: i64,
    pub openstack_methods: Vec<String>,
    /// The first is this token's own; the second, when present, the root of the chain of tokens
    /// it was made from (Keystone's audit chain id).
    pub openstack_audit_ids: Vec<String>,
    /// The audit ids of every token this one was made from (parent first), so that revoking
    /// any of them ends this one too, not only revoking the chain's root. Not shown in the
    /// token body, which keeps Keystone's `[own, root]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub openstack_ancestors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack_project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack_domain_id: Option<String>,
    /// Keystone's system scope (`all`), for a token scoped to the whole deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack_system: Option<String>,
    #[serde(default)]
    pub openstack_roles: Vec<RoleRef>,
    /// The application credential the token was issued with (and every token made from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack_app_cred: Option<AppCredClaim>,
}

/// An application credential, as its tokens name it (Keystone's token body shows the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppCredClaim {
    pub id: String,
    pub name: String,
    /// Restricted: its tokens cannot make application credentials.
    pub restricted: bool,
}

/// The audit id every token of an application credential carries among its ancestors, so that
/// deleting the credential revokes them all (one revocation event).
pub fn app_cred_audit_id(app_cred_id: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("application_credential:{app_cred_id}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

impl Claims {
    /// Whether the token has a scope (a project, a domain or the system), and so roles.
    pub fn is_scoped(&self) -> bool {
        self.openstack_project_id.is_some()
            || self.openstack_domain_id.is_some()
            || self.openstack_system.is_some()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("The request you have made requires authentication.")]
    Missing,
    /// Malformed, wrong algorithm, unknown key, bad signature or expired: one answer for all,
    /// so that a forger learns nothing.
    #[error("The request you have made requires authentication.")]
    Invalid,
    #[error("The request you have made requires authentication.")]
    Revoked,
}

/// Revocation events in memory: audit ids, per user the times before which tokens (of a
/// project, or all) are revoked, and per scope (a project or a domain, disabled or deleted) the
/// time before which every token scoped to it is revoked. Each entry keeps its event's
/// `expires_at` (no token it could match is valid after it), so that it can be forgotten then.
#[derive(Default)]
struct Revocations {
    last_id: i64,
    audit_ids: HashMap<String, i64>,
    by_user: HashMap<String, Vec<UserRevocation>>,
    by_scope: HashMap<String, (i64, i64)>,
}

struct UserRevocation {
    project: Option<String>,
    issued_before: i64,
    expires_at: i64,
}

impl Revocations {
    fn add(&mut self, e: &RevocationEvent) {
        self.last_id = self.last_id.max(e.id);
        if let Some(a) = &e.audit_id {
            let expires = self.audit_ids.entry(a.clone()).or_default();
            *expires = (*expires).max(e.expires_at);
        }
        match (&e.user_id, &e.project_id) {
            (Some(u), _) => self
                .by_user
                .entry(u.clone())
                .or_default()
                .push(UserRevocation {
                    project: e.project_id.clone(),
                    issued_before: e.issued_before,
                    expires_at: e.expires_at,
                }),
            (None, Some(scope)) => {
                let (before, expires) = self.by_scope.entry(scope.clone()).or_default();
                *before = (*before).max(e.issued_before);
                *expires = (*expires).max(e.expires_at);
            }
            (None, None) => {}
        }
    }

    /// Forgets what can no longer match a valid token at `now`.
    fn prune(&mut self, now: i64) {
        self.audit_ids.retain(|_, expires| *expires > now);
        self.by_scope.retain(|_, (_, expires)| *expires > now);
        for events in self.by_user.values_mut() {
            events.retain(|e| e.expires_at > now);
        }
        self.by_user.retain(|_, events| !events.is_empty());
    }

    fn revokes(&self, c: &Claims) -> bool {
        if c.openstack_audit_ids
            .iter()
            .chain(&c.openstack_ancestors)
            .any(|a| self.audit_ids.contains_key(a))
        {
            return true;
        }
        let scope_revoked = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| self.by_scope.get(id))
                .is_some_and(|(before, _)| c.openstack_issued_at_ms <= *before)
        };
        if scope_revoked(&c.openstack_project_id) || scope_revoked(&c.openstack_domain_id) {
            return true;
        }
        self.by_user.get(&c.sub).is_some_and(|events| {
            events.iter().any(|e| {
                c.openstack_issued_at_ms <= e.issued_before
                    && e.project
                        .as_ref()
                        .is_none_or(|p| c.openstack_project_id.as_ref() == Some(p))
            })
        })
    }

    fn len(&self) -> usize {
        self.audit_ids.len()
            + self.by_user.values().map(Vec::len).sum::<usize>()
            + self.by_scope.len()
    }
}

/// What a new token is for.
pub struct NewToken<'a> {
    pub user_id: &'a str,
    pub methods: Vec<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    pub system: Option<String>,
    pub roles: Vec<RoleRef>,
    /// The token this one is made from (the `token` method): its audit id chains on and its
    /// expiry bounds the new one.
    pub parent: Option<&'a Claims>,
}

pub struct TokenService {
    keys: KeyRing,
    lifetime_s: i64,
    revocations: RwLock<Revocations>,
    /// Tokens whose signature was checked, with their claims: a client sends the same token
    /// many times, and an ES256 verification costs tens of microseconds. Expiry and revocation
    /// are still checked on every use (as keystonemiddleware's token cache does).
    verified: RwLock<HashMap<String, Claims>>,
    db: Db,
}

/// The longest chain of tokens made from tokens (each carries its ancestors' audit ids).
pub const MAX_CHAIN: usize = 32;

/// Refreshes between two prunes of expired revocation events (a minute at the usual 2 s).
const PRUNE_EVERY: u32 = 30;

/// Verified tokens kept at most; past this the cache starts afresh (a bound on memory).
const VERIFIED_MAX: usize = 100_000;

fn audit_id() -> String {
    use base64::Engine;
    // Keystone's audit ids: 16 random bytes, URL-safe base64 without padding (22 characters).
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

impl TokenService {
    pub fn new(keys: KeyRing, lifetime_s: i64, db: Db) -> Arc<Self> {
        Arc::new(Self {
            keys,
            lifetime_s,
            revocations: RwLock::new(Revocations::default()),
            verified: RwLock::new(HashMap::new()),
            db,
        })
    }

    /// Signs a new token.
    pub fn issue(&self, req: NewToken<'_>) -> Result<(String, Claims), String> {
        self.issue_with(req, None, None)
    }

    /// Signs a new token, issued with an application credential (or made from a token that
    /// was: it keeps the credential), expiring no later than `not_after` (seconds; the
    /// credential's own expiry, as Keystone cuts its tokens' back to it).
    pub fn issue_with(
        &self,
        req: NewToken<'_>,
        app_cred: Option<AppCredClaim>,
        not_after: Option<i64>,
    ) -> Result<(String, Claims), String> {
        let app_cred = app_cred.or_else(|| req.parent.and_then(|p| p.openstack_app_cred.clone()));
        let now_ms = now_ms();
        let now = now_ms / 1000;
        // Keystone's audit chain: a token's own id, then its chain's root (the last of the
        // parent's ids: its root if it had one, else its own), so that revoking the root
        // revokes every token made from it, however deep.
        let mut audit_ids = vec![audit_id()];
        audit_ids.extend(
            req.parent
                .and_then(|p| p.openstack_audit_ids.last().cloned()),
        );
        let mut ancestors: Vec<String> = match req.parent {
            Some(p) => p
                .openstack_audit_ids
                .first()
                .into_iter()
                .chain(&p.openstack_ancestors)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        if let Some(a) = &app_cred {
            let id = app_cred_audit_id(&a.id);
            if !ancestors.contains(&id) {
                ancestors.push(id);
            }
        }
        if ancestors.len() > MAX_CHAIN {
            return Err(format!(
                "a token can be made from a chain of at most {MAX_CHAIN} tokens"
            ));
        }
        let exp = (now + self.lifetime_s).min(not_after.unwrap_or(i64::MAX));
        let claims = Claims {
            sub: req.user_id.to_owned(),
            iat: now,
            // A token made from another never outlives it.
            exp: req.parent.map_or(exp, |p| p.exp.min(exp)),
            openstack_issued_at_ms: now_ms,
            openstack_methods: req.methods,
            openstack_audit_ids: audit_ids,
            openstack_ancestors: ancestors,
            openstack_project_id: req.project_id,
            openstack_domain_id: req.domain_id,
            openstack_system: req.system,
            openstack_roles: req.roles,
            openstack_app_cred: app_cred,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.keys.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, self.keys.signing())
            .map_err(|e| e.to_string())?;
        Ok((token, claims))
    }

    /// Checks signature (ES256 only, by a key of the ring), expiry and revocation.
    pub fn validate(&self, token: &str) -> Result<Claims, TokenError> {
        let cached = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        let claims = match cached {
            Some(c) => {
                if c.exp <= now_ms() / 1000 {
                    return Err(TokenError::Invalid);
                }
                c
            }
            None => {
                let c = self.verify_signature(token)?;
                let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
                if verified.len() >= VERIFIED_MAX {
                    verified.clear();
                }
                verified.insert(token.to_owned(), c.clone());
                c
            }
        };
        if self
            .revocations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .revokes(&claims)
        {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// The signature and expiry check alone, without the cache.
    pub fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.keys.verifying(k))
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)
    }

    /// Revokes one token (by its audit id), persistently.
    pub async fn revoke(&self, claims: &Claims) -> Result<(), DbError> {
        let audit = claims.openstack_audit_ids.first().map(String::as_str);
        identity::add_revocation(&self.db, audit, None, None, claims.exp * 1000).await?;
        self.refresh().await
    }

    /// Revokes every token issued with an application credential (deleted).
    pub async fn revoke_app_credential(&self, app_cred_id: &str) -> Result<(), DbError> {
        let until = now_ms() + self.lifetime_s * 1000;
        let audit = app_cred_audit_id(app_cred_id);
        identity::add_revocation(&self.db, Some(&audit), None, None, until).await?;
        self.refresh().await
    }

    /// Revokes every token of a user issued until now (of one project, or all).
    pub async fn revoke_user(
        &self,
        user_id: &str,
        project_id: Option<&str>,
    ) -> Result<(), DbError> {
        let until = now_ms() + self.lifetime_s * 1000;
        identity::add_revocation(&self.db, None, Some(user_id), project_id, until).await?;
        self.refresh().await
    }

    /// Revokes every token scoped to a project or a domain (by its id) issued until now: the
    /// scope was disabled or deleted. Recorded as an event with a project and no user.
    pub async fn revoke_scope(&self, scope_id: &str) -> Result<(), DbError> {
        let until = now_ms() + self.lifetime_s * 1000;
        identity::add_revocation(&self.db, None, None, Some(scope_id), until).await?;
        self.refresh().await
    }

    /// Loads revocation events recorded since the last refresh (by any replica).
    pub async fn refresh(&self) -> Result<(), DbError> {
        let after = self
            .revocations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last_id;
        let events = identity::revocations_since(&self.db, after).await?;
        if !events.is_empty() {
            let mut r = self.revocations.write().unwrap_or_else(|e| e.into_inner());
            for e in &events {
                r.add(e);
            }
        }
        Ok(())
    }

    /// Forgets the revocation events that can no longer match a valid token at `now` (each
    /// one's `expires_at` has passed): deleted from the database and dropped from memory.
    /// Returns how many rows were deleted. Safe on every replica at once.
    pub async fn prune(&self, now: nova_core::time::Millis) -> Result<u64, DbError> {
        let deleted = identity::prune_revocations(&self.db, now).await?;
        self.revocations
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .prune(now);
        Ok(deleted)
    }

    pub fn revocation_count(&self) -> usize {
        self.revocations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Keeps the in-memory revocations in step with other replicas, and prunes the expired
    /// ones every [`PRUNE_EVERY`] refreshes.
    pub async fn refresh_loop(self: Arc<Self>, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        let mut n: u32 = 0;
        loop {
            tick.tick().await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "revocation refresh failed");
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(PRUNE_EVERY) {
                match self.prune(now_ms()).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::debug!(deleted, "expired revocation events pruned"),
                    Err(e) => tracing::warn!(error = %e, "revocation prune failed"),
                }
            }
        }
    }

    /// Adds revocation events in memory only (the benchmark's large revocation list).
    pub fn add_revocations_for_benchmark(&self, events: &[RevocationEvent]) {
        let mut r = self.revocations.write().unwrap_or_else(|e| e.into_inner());
        for e in events {
            r.add(e);
        }
    }
}
