//! Identity: a Keystone v3 subset ([`api`]: tokens, catalog, users, projects, roles), the JWS
//! tokens it issues ([`tokens`], [`keys`]), and the [`Authenticator`] that makes the
//! [`RequestContext`] every API call carries, by the configured [`Strategy`]:
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

use api_toolkit::{Authenticate, RequestContext, Unauthorized};
pub use settings::{AuthSettings, Strategy};
use std::sync::Arc;

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
}

#[async_trait::async_trait]
impl Authenticate for Authenticator {
    async fn authenticate(
        &self,
        token: Option<&str>,
        request_id: String,
        here: &str,
    ) -> Result<RequestContext, Unauthorized> {
        self.context(token, request_id).await.map_err(|mut e| {
            // Keystone tokens are issued here: a client that has none is sent here.
            if e.identity_url.is_none() && self.strategy == Strategy::Keystone {
                e.identity_url = Some(here.to_owned());
            }
            e
        })
    }
}

impl Authenticator {
    /// The context for `token` (the `X-Auth-Token` header).
    async fn context(
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
                // A domain-, system- or un-scoped token has no project: the empty id, which the
                // context's extraction refuses for every project resource (api_toolkit).
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

fn authenticator_data(a: Authenticator) -> actix_web::web::Data<dyn Authenticate> {
    actix_web::web::Data::from(Arc::new(a) as Arc<dyn Authenticate>)
}

/// Identity as a process serves it: the authenticator every API uses and, with the `keystone`
/// strategy, the identity API's state (keys loaded or created, bootstrap done).
#[derive(Clone)]
pub struct Identity {
    pub authenticator: actix_web::web::Data<dyn Authenticate>,
    pub api: Option<actix_web::web::Data<api::IdentityState>>,
    /// Passwords the bootstrap generated, to show once.
    pub generated: Option<Arc<bootstrap::Generated>>,
}

/// The identity API, to serve ([`api_toolkit::server::serve`]).
struct IdentityApi(actix_web::web::Data<api::IdentityState>);

impl api_toolkit::Service for IdentityApi {
    fn configure(&self, cfg: &mut actix_web::web::ServiceConfig) {
        cfg.app_data(self.0.clone());
        api::routes(cfg);
    }
}

impl Identity {
    /// The identity API when this process issues tokens (`keystone`); `None` otherwise.
    pub fn api_service(&self) -> Option<Arc<dyn api_toolkit::Service>> {
        let state = self.api.clone()?;
        Some(Arc::new(IdentityApi(state)))
    }

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
                    authenticator: authenticator_data(authenticator),
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
                    authenticator: authenticator_data(authenticator),
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
                // Credentials' blobs are sealed under a key beside the token keys (every API
                // process shares the repository).
                let credential_key = nova_core::secret::SealingKey::load_or_create(
                    &settings.key_repository.join("credential.key"),
                )
                .map_err(|e| e.to_string())?;
                let state = api::IdentityState {
                    db: db.clone(),
                    tokens,
                    settings: settings.clone(),
                    credential_key,
                };
                Ok(Self {
                    authenticator: authenticator_data(authenticator),
                    api: Some(actix_web::web::Data::new(state)),
                    generated: Some(Arc::new(generated)),
                })
            }
        }
    }
}
