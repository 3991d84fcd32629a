//! Remote mode: validate tokens against an existing Keystone (`GET /v3/auth/tokens` with the
//! token in `X-Subject-Token`, authenticated by a service token), as keystonemiddleware does,
//! with a short-lived cache of the answers.

use crate::settings::RemoteSettings;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Validated {
    pub user_id: String,
    pub project_id: String,
    pub roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("identity service unreachable: {0}")]
    Unreachable(String),
    #[error("the token is not valid")]
    Invalid,
    #[error("the service account cannot authenticate: {0}")]
    ServiceAuth(String),
}

pub struct RemoteValidator {
    settings: RemoteSettings,
    http: reqwest::Client,
    service_token: Mutex<Option<(String, Instant)>>,
    cache: Mutex<HashMap<String, (Validated, Instant)>>,
}

/// Cached answers at most; past this the cache starts afresh (a bound on memory).
const CACHE_MAX: usize = 100_000;

impl RemoteValidator {
    pub fn new(settings: RemoteSettings) -> Self {
        Self {
            settings,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            service_token: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.auth_url.trim_end_matches('/'))
    }

    async fn service_token(&self) -> Result<String, RemoteError> {
        if let Some((t, until)) = self
            .service_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            if Instant::now() < until {
                return Ok(t);
            }
        }
        let s = &self.settings;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": s.username, "domain": {"id": s.user_domain_id}, "password": s.password}}},
            "scope": {"project": {"name": s.project_name, "domain": {"id": s.project_domain_id}}}
        }});
        let res = self
            .http
            .post(self.url("/auth/tokens"))
            .json(&body)
            .send()
            .await
            .map_err(|e| RemoteError::Unreachable(e.to_string()))?;
        if res.status().as_u16() != 201 {
            return Err(RemoteError::ServiceAuth(format!("status {}", res.status())));
        }
        let token = res
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RemoteError::ServiceAuth("no X-Subject-Token".into()))?
            .to_owned();
        // Renew well before a typical lifetime ends.
        *self.service_token.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((token.clone(), Instant::now() + Duration::from_secs(600)));
        Ok(token)
    }

    pub async fn validate(&self, token: &str) -> Result<Validated, RemoteError> {
        let ttl = Duration::from_secs(self.settings.cache_ttl_s);
        if let Some((v, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
        {
            if at.elapsed() < ttl {
                return Ok(v.clone());
            }
        }
        let service = self.service_token().await?;
        let res = self
            .http
            .get(self.url("/auth/tokens?nocatalog"))
            .header("X-Auth-Token", &service)
            .header("X-Subject-Token", token)
            .send()
            .await
            .map_err(|e| RemoteError::Unreachable(e.to_string()))?;
        match res.status().as_u16() {
            200 => {}
            401 => {
                // Our service token may have been revoked; get a fresh one next time.
                *self.service_token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Err(RemoteError::Invalid);
            }
            _ => return Err(RemoteError::Invalid),
        }
        let body: Value = res
            .json()
            .await
            .map_err(|e| RemoteError::Unreachable(e.to_string()))?;
        let t = &body["token"];
        let validated = Validated {
            user_id: t["user"]["id"].as_str().unwrap_or_default().to_owned(),
            project_id: t["project"]["id"].as_str().unwrap_or_default().to_owned(),
            roles: t["roles"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.to_owned(), (validated.clone(), Instant::now()));
        Ok(validated)
    }
}
