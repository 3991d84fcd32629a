//! Identity for the API: the [`RequestContext`] every handler receives, and the strategies that
//! produce it.
//!
//! Keystone v3 tokens come with the identity issue. Until then the only strategy is Nova's
//! `noauth2`, and it must be chosen explicitly (`auth.strategy = "noauth2"`): the token is
//! `user_id:project_id` (a bare `user_id` means the same id for both), the user `admin` has
//! the admin role, and a request without a token is refused with 401.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use std::future::{ready, Ready};

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
        self.roles.iter().any(|r| r == "admin")
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Nova's noauth2: trust `X-Auth-Token: user:project`. For development and tests only.
    #[default]
    Noauth2,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub strategy: Strategy,
}

/// Why a request could not be authenticated. The API's error mapping turns it into Nova's
/// fault body; it also renders on its own for extractors.
#[derive(Debug)]
pub struct Unauthorized(pub String);

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ResponseError for Unauthorized {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
    fn error_response(&self) -> HttpResponse {
        // Nova's fault body for 401.
        HttpResponse::Unauthorized().json(serde_json::json!({
            "error": {"code": 401, "title": "Unauthorized", "message": self.0}
        }))
    }
}

fn context_from(req: &HttpRequest) -> Result<RequestContext, Unauthorized> {
    let settings = req.app_data::<AuthSettings>().cloned().unwrap_or_default();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate)
        .0;
    match settings.strategy {
        Strategy::Noauth2 => {
            let token = req
                .headers()
                .get("X-Auth-Token")
                .and_then(|v| v.to_str().ok())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Unauthorized("The request you have made requires authentication.".into())
                })?;
            let (user, project) = token.split_once(':').unwrap_or((token, token));
            let mut roles = vec!["member".to_owned(), "reader".to_owned()];
            if user == "admin" {
                roles.push("admin".to_owned());
            }
            Ok(RequestContext {
                request_id,
                user_id: user.to_owned(),
                project_id: project.to_owned(),
                roles,
            })
        }
    }
}

impl FromRequest for RequestContext {
    type Error = Unauthorized;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(context_from(req))
    }
}
