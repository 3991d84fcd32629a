//! How the agent proves itself to the image service. Nova's compute fetches images with a
//! token too; ours belongs to a service account (an admin of some project, so that it may read
//! every project's images), not to the user who asked for the server, whose token may have
//! expired by the time a build runs.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// A source of tokens for the image service.
#[async_trait]
pub trait Credential: Send + Sync + 'static {
    /// A valid token; a new one when `renew` (the last one was refused).
    async fn token(&self, renew: bool) -> Result<String, String>;
}

/// The agent's credential as configured (`[agent.images.auth]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum CredentialSettings {
    /// Supplied by the process that embeds the agent (the all-in-one), or none configured.
    #[default]
    None,
    /// A fixed token: for an image service in Nova's `noauth2` mode (`admin:admin`).
    Token { token: String },
    /// Keystone v3 password authentication, project-scoped.
    Password(PasswordSettings),
}

#[derive(Clone, Debug, Deserialize)]
pub struct PasswordSettings {
    /// The identity endpoint, `http://host/identity/v3`.
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    #[serde(default = "default_domain")]
    pub user_domain_name: String,
    #[serde(default = "default_domain")]
    pub project_domain_name: String,
    /// Domain ids, used instead of the names when given.
    #[serde(default)]
    pub user_domain_id: Option<String>,
    #[serde(default)]
    pub project_domain_id: Option<String>,
}

/// Keystone's `domain` object: by id when known, else by name.
fn domain(id: &Option<String>, name: &str) -> serde_json::Value {
    match id {
        Some(id) => json!({ "id": id }),
        None => json!({ "name": name }),
    }
}

fn default_domain() -> String {
    "Default".into()
}

impl CredentialSettings {
    /// The configured credential; `None` when the embedding process must supply one.
    pub fn build(&self) -> Option<Arc<dyn Credential>> {
        match self {
            CredentialSettings::None => None,
            CredentialSettings::Token { token } => Some(Arc::new(StaticToken(token.clone()))),
            CredentialSettings::Password(p) => Some(Arc::new(KeystonePassword::new(p.clone()))),
        }
    }
}

pub struct StaticToken(pub String);

#[async_trait]
impl Credential for StaticToken {
    async fn token(&self, _renew: bool) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

/// Tokens renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// Authenticates with a password and keeps the token until shortly before it expires.
pub struct KeystonePassword {
    settings: PasswordSettings,
    client: reqwest::Client,
    cached: Mutex<Option<(String, SystemTime)>>,
}

impl KeystonePassword {
    pub fn new(settings: PasswordSettings) -> Self {
        Self {
            settings,
            client: reqwest::Client::new(),
            cached: Mutex::new(None),
        }
    }

    async fn authenticate(&self) -> Result<(String, SystemTime), String> {
        let s = &self.settings;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": s.username,
                "domain": domain(&s.user_domain_id, &s.user_domain_name),
                "password": s.password,
            }}},
            "scope": {"project": {
                "name": s.project_name,
                "domain": domain(&s.project_domain_id, &s.project_domain_name),
            }},
        }});
        let url = format!("{}/auth/tokens?nocatalog", s.auth_url.trim_end_matches('/'));
        let resp = self
            .client
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("identity service unreachable at {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "identity service refused the agent's credential: {}",
                resp.status()
            ));
        }
        let token = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or("identity service answered without X-Subject-Token")?;
        let doc: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
        let expires = doc["token"]["expires_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
            // Without an expiry, keep it for a short while only.
            .unwrap_or_else(|| SystemTime::now() + EXPIRY_MARGIN * 2);
        Ok((token, expires))
    }
}

#[async_trait]
impl Credential for KeystonePassword {
    async fn token(&self, renew: bool) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if !renew && SystemTime::now() + EXPIRY_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let (token, expires) = self.authenticate().await?;
        *cached = Some((token.clone(), expires));
        Ok(token)
    }
}

/// Seconds since the epoch, as a `SystemTime` (for issuers that report expiry that way).
pub fn epoch_s(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// Wraps an issuer of `(token, expiry in epoch seconds)` that runs in the same process, caching
/// its token as [`KeystonePassword`] does.
pub struct Issued<F> {
    issue: F,
    cached: Mutex<Option<(String, SystemTime)>>,
}

impl<F> Issued<F> {
    pub fn new(issue: F) -> Self {
        Self {
            issue,
            cached: Mutex::new(None),
        }
    }
}

#[async_trait]
impl<F, Fut> Credential for Issued<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(String, i64), String>> + Send,
{
    async fn token(&self, renew: bool) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if !renew && SystemTime::now() + EXPIRY_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let (token, exp) = (self.issue)().await?;
        *cached = Some((token.clone(), epoch_s(exp)));
        Ok(token)
    }
}
