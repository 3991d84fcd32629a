//! Identity configuration (`[auth]`, `NOVA__AUTH__…`).

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Tokens issued and validated by this service.
    #[default]
    Keystone,
    /// Tokens validated against an existing Keystone.
    Remote,
    /// Nova's noauth2: trust `X-Auth-Token: user:project`. Development and tests only.
    Noauth2,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub strategy: Strategy,
    /// Token lifetime (Keystone's `[token] expiration`).
    pub token_lifetime_s: i64,
    /// Where the signing keys live (created on first start).
    pub key_repository: PathBuf,
    /// Public URLs for the catalog and for links; unset, they derive from the request's host.
    pub public_url: Option<String>,
    pub region: String,
    /// The image service's URL for the catalog (default: `<public URL>/image`).
    pub image_url: Option<String>,
    /// Bootstrap passwords; unset, they are generated and printed once.
    pub admin_password: Option<String>,
    pub demo_password: Option<String>,
    /// Keystone's `[security_compliance] lockout_failure_attempts`: after this many failed
    /// password checks in a row a user is locked out for `lockout_duration_s`. Unset (as in
    /// Keystone): no lockout.
    pub lockout_failure_attempts: Option<u32>,
    /// Keystone's `lockout_duration` (its default, 1800 s).
    pub lockout_duration_s: u64,
    /// Remote mode: the Keystone to validate against and the service account to do it with.
    pub remote: RemoteSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RemoteSettings {
    /// e.g. `http://keystone.example.com/identity/v3`
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub user_domain_id: String,
    pub project_domain_id: String,
    /// How long a validation answer is reused.
    pub cache_ttl_s: u64,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        Self {
            auth_url: String::new(),
            username: "nova".into(),
            password: String::new(),
            project_name: "service".into(),
            user_domain_id: "default".into(),
            project_domain_id: "default".into(),
            cache_ttl_s: 30,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            strategy: Strategy::Keystone,
            token_lifetime_s: 3600,
            key_repository: PathBuf::from("keys"),
            public_url: None,
            region: "RegionOne".into(),
            image_url: None,
            admin_password: None,
            demo_password: None,
            lockout_failure_attempts: None,
            lockout_duration_s: 1800,
            remote: RemoteSettings::default(),
        }
    }
}
