//! Identity: a Keystone v3 subset ([`api`]: tokens, catalog, users, projects, roles), the JWS
//! tokens it issues ([`tokens`], [`keys`]), and the [`RequestContext`] every API call carries,
//! made by the configured [`Strategy`]:
//!
//! - `keystone` (the default): tokens issued by this service, validated locally.
//! - `remote`: tokens of an existing Keystone, validated against it ([`remote`]).
//! - `noauth2`: Nova's development strategy, only when chosen explicitly: the token is
//!   `user_id:project_id`, and the user `admin` has the admin role.

pub mod api;
pub mod bootstrap;
pub mod catalog;
pub mod keys;
pub mod password;
pub mod remote;
pub mod settings;
pub mod tokens;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
pub use settings::{AuthSettings, Strategy};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Who is calling, as every API handler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub user_id: String,
    pub project_id: String,
    pub roles: Vec<String>,
}

impl RequestContext {
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Nova's default policy for writes (`project_member`): members and admins; a reader only
    /// reads.
    pub fn can_write(&self) -> bool {
        self.is_admin() || self.has_role("member")
    }
}

/// The request id (`req-<uuid>`, as Nova's) that the API's middleware put in the request's
/// extensions; it travels with the task over the bus and into the logs.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn generate() -> Self {
        Self(format!("req-{}", uuid::Uuid::new_v4()))
    }
}

/// Why a request could not be authenticated: a 401 that names the identity endpoint, as
/// keystonemiddleware answers.
#[derive(Debug)]
pub struct Unauthorized {
    pub message: String,
    /// The identity service's public URL, for `WWW-Authenticate`.
    pub identity_url: Option<String>,
}

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for Unauthorized {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::Unauthorized();
        if let Some(url) = &self.identity_url {
            res.insert_header(("WWW-Authenticate", format!("Keystone uri=\"{url}\"")));
        }
        // keystonemiddleware's body for 401.
        res.json(serde_json::json!({
            "error": {"code": 401, "title": "Unauthorized", "message": self.message}
        }))
    }
}

/// Turns the token of a request into a [`RequestContext`]; shared by every API as app data.
pub struct Authenticator {
    pub strategy: Strategy,
    pub tokens: Option<Arc<tokens::TokenService>>,
    pub remote: Option<Arc<remote::RemoteValidator>>,
    /// The identity endpoint clients should authenticate at.
    pub identity_url: Option<String>,
}

impl Authenticator {
    fn unauthorized(&self) -> Unauthorized {
        Unauthorized {
            message: "The request you have made requires authentication.".into(),
            identity_url: self.identity_url.clone(),
        }
    }

    /// The context for `token` (the `X-Auth-Token` header).
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        request_id: String,
    ) -> Result<RequestContext, Unauthorized> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.unauthorized())?;
        match self.strategy {
            Strategy::Noauth2 => {
                let (user, project) = token.split_once(':').unwrap_or((token, token));
                let mut roles = vec!["member".to_owned(), "reader".to_owned()];
                if user == "admin" {
                    roles.push("admin".to_owned());
                }
                Ok(RequestContext {
                    request_id,
                    user_id: user.into(),
                    project_id: project.into(),
                    roles,
                })
            }
            Strategy::Keystone => {
                let service = self.tokens.as_ref().ok_or_else(|| self.unauthorized())?;
                let claims = service.validate(token).map_err(|_| self.unauthorized())?;
                // Compute calls are project-scoped; a domain-scoped or unscoped token has no
                // project to act in.
                let project_id = claims.openstack_project_id.clone().unwrap_or_default();
                Ok(RequestContext {
                    request_id,
                    user_id: claims.sub,
                    project_id,
                    roles: claims.openstack_roles.into_iter().map(|r| r.name).collect(),
                })
            }
            Strategy::Remote => {
                let remote = self.remote.as_ref().ok_or_else(|| self.unauthorized())?;
                let v = remote.validate(token).await.map_err(|e| {
                    tracing::info!(error = %e, "remote validation refused the token");
                    self.unauthorized()
                })?;
                Ok(RequestContext {
                    request_id,
                    user_id: v.user_id,
                    project_id: v.project_id,
                    roles: v.roles,
                })
            }
        }
    }
}

impl FromRequest for RequestContext {
    type Error = Unauthorized;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req
            .app_data::<actix_web::web::Data<Authenticator>>()
            .cloned();
        let token = req
            .headers()
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate)
            .0;
        // Without a configured public URL, the identity endpoint is on the host the client
        // reached (the all-in-one serves both).
        let info = req.connection_info();
        let here = format!("{}://{}/identity", info.scheme(), info.host());
        Box::pin(async move {
            let Some(auth) = auth else {
                return Err(Unauthorized {
                    message: "no authenticator configured".into(),
                    identity_url: None,
                });
            };
            auth.authenticate(token.as_deref(), request_id)
                .await
                .map_err(|mut e| {
                    if e.identity_url.is_none() && auth.strategy == Strategy::Keystone {
                        e.identity_url = Some(here);
                    }
                    e
                })
        })
    }
}

/// Identity as a process serves it: the authenticator every API uses and, with the `keystone`
/// strategy, the identity API's state (keys loaded or created, bootstrap done).
#[derive(Clone)]
pub struct Identity {
    pub authenticator: actix_web::web::Data<Authenticator>,
    pub api: Option<actix_web::web::Data<api::IdentityState>>,
    /// Passwords the bootstrap generated, to show once.
    pub generated: Option<Arc<bootstrap::Generated>>,
}

impl Identity {
    pub async fn setup(db: &nova_db::Db, settings: &AuthSettings) -> Result<Self, String> {
        let identity_url = settings
            .public_url
            .as_ref()
            .map(|u| format!("{}/identity", u.trim_end_matches('/')));
        match settings.strategy {
            Strategy::Noauth2 => {
                tracing::warn!(
                    "auth.strategy = noauth2: requests are trusted without a token check"
                );
                let authenticator = Authenticator {
                    strategy: Strategy::Noauth2,
                    tokens: None,
                    remote: None,
                    identity_url,
                };
                Ok(Self {
                    authenticator: actix_web::web::Data::new(authenticator),
                    api: None,
                    generated: None,
                })
            }
            Strategy::Remote => {
                let remote = Arc::new(remote::RemoteValidator::new(settings.remote.clone()));
                let url = Some(settings.remote.auth_url.trim_end_matches("/v3").to_owned());
                let authenticator = Authenticator {
                    strategy: Strategy::Remote,
                    tokens: None,
                    remote: Some(remote),
                    identity_url: url,
                };
                Ok(Self {
                    authenticator: actix_web::web::Data::new(authenticator),
                    api: None,
                    generated: None,
                })
            }
            Strategy::Keystone => {
                let (tokens, generated) = api::start(db, settings).await?;
                let authenticator = Authenticator {
                    strategy: Strategy::Keystone,
                    tokens: Some(tokens.clone()),
                    remote: None,
                    identity_url,
                };
                let state = api::IdentityState {
                    db: db.clone(),
                    tokens,
                    settings: settings.clone(),
                };
                Ok(Self {
                    authenticator: actix_web::web::Data::new(authenticator),
                    api: Some(actix_web::web::Data::new(state)),
                    generated: Some(Arc::new(generated)),
                })
            }
        }
    }
}
