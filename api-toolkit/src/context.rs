//! Who is calling: the [`RequestContext`] every API handler receives, made from the request's
//! token by whatever [`Authenticate`] the process configured (identity's Keystone tokens, a
//! remote Keystone, or noauth2), and the request id the server gave the request.

use crate::error::FaultFormat;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use std::future::Future;
use std::pin::Pin;

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

/// The request id (`req-<uuid>`, as Nova's) that the server's middleware put in the request's
/// extensions; it travels with the task over the bus and into the logs.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn generate() -> Self {
        Self(format!("req-{}", uuid::Uuid::new_v4()))
    }
}

/// Why a request could not be authenticated: a 401 that names the identity endpoint, as
/// keystonemiddleware answers (in Keystone's body, whichever API was called).
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
        res.json(FaultFormat::Keystone.body(StatusCode::UNAUTHORIZED, &self.message, None))
    }
}

/// Turns a request's token into a [`RequestContext`]. The process puts one in the app data
/// (`web::Data<dyn Authenticate>`); every API's handlers get the context from it.
#[async_trait::async_trait]
pub trait Authenticate: Send + Sync {
    /// The context for `token` (the `X-Auth-Token` header). `here` is the identity endpoint on
    /// the host the client reached, for a 401 when none is configured.
    async fn authenticate(
        &self,
        token: Option<&str>,
        request_id: String,
        here: &str,
    ) -> Result<RequestContext, Unauthorized>;
}

/// The refusal of a token that is valid but scoped to no project (a domain or the system), or
/// not scoped at all: compute, image and network resources belong to projects, and Nova's,
/// Glance's and Neutron's policies accept project scope only (oslo.policy's `InvalidScope`,
/// answered as a 403). Rendered in the service's own fault body by its routes' error handlers.
fn no_project() -> crate::error::ApiError {
    crate::error::ApiError::Forbidden(
        "This API acts on a project's resources and needs a token scoped to a project; \
         this token is scoped to a domain, to the system or to nothing."
            .into(),
    )
}

/// A context extracted by an API handler always has a project: see [`no_project`]. (The
/// identity API reads its tokens itself.)
impl FromRequest for RequestContext {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<dyn Authenticate>>().cloned();
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
        let here = format!("{}/identity", crate::links::PublicUrl::of(req).0);
        Box::pin(async move {
            let Some(auth) = auth else {
                return Err(Unauthorized {
                    message: "no authenticator configured".into(),
                    identity_url: None,
                }
                .into());
            };
            let ctx = auth
                .authenticate(token.as_deref(), request_id, &here)
                .await?;
            if ctx.project_id.is_empty() {
                return Err(no_project().into());
            }
            Ok(ctx)
        })
    }
}
