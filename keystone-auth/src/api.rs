//! The identity API (a Keystone v3 subset) that the `openstack` CLI and keystoneauth use:
//! discovery, tokens, catalog, and the admin API for domains, projects, users, roles and role
//! assignments. Mounted under `/identity`. Errors use Keystone's body
//! (`{"error": {"code", "title", "message"}}`).

use crate::bootstrap;
use crate::catalog::catalog;
use crate::password;
use crate::settings::AuthSettings;
use crate::tokens::{Claims, NewToken, RoleRef, TokenError, TokenService};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use nova_db::identity::{self as store, Project, Role, User};
use nova_db::{Db, DbError};
use serde_json::{json, Value};
use std::sync::Arc;

/// What the identity handlers share.
pub struct IdentityState {
    pub db: Db,
    pub tokens: Arc<TokenService>,
    pub settings: AuthSettings,
}

impl IdentityState {
    /// A project-scoped token for `user` in `project` (names, in the `default` domain), issued
    /// in-process without a password: for a service that shares this process and has no
    /// credential of its own (the all-in-one's compute agent fetching images). Returns the
    /// token and its expiry in seconds since the epoch.
    pub async fn issue_for(&self, user: &str, project: &str) -> Result<(String, i64), String> {
        let err = |e: DbError| e.to_string();
        let user = store::user_by_name(&self.db, "default", user)
            .await
            .map_err(err)?
            .filter(|u| u.enabled)
            .ok_or_else(|| format!("no enabled user {user} in the default domain"))?;
        let project = store::project_by_name(&self.db, "default", project)
            .await
            .map_err(err)?
            .filter(|p| p.enabled)
            .ok_or_else(|| format!("no enabled project {project} in the default domain"))?;
        let roles = store::roles_of(&self.db, &user.id, &project.id, "")
            .await
            .map_err(err)?
            .into_iter()
            .map(|r| RoleRef {
                id: r.id,
                name: r.name,
            })
            .collect();
        let (token, claims) = self.tokens.issue(NewToken {
            user_id: &user.id,
            methods: vec!["password".into()],
            project_id: Some(project.id),
            domain_id: None,
            roles,
            parent: None,
        })?;
        Ok((token, claims.exp))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    BadRequest(String),
    #[error("The request you have made requires authentication.")]
    Unauthorized,
    #[error("You are not authorized to perform the requested action: {0}.")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("An unexpected error prevented the server from fulfilling your request.")]
    Internal(String),
}

impl From<DbError> for IdentityError {
    fn from(e: DbError) -> Self {
        let text = e.to_string();
        // A unique constraint: the name is taken.
        if text.contains("UNIQUE") || text.contains("unique") || text.contains("duplicate key") {
            return IdentityError::Conflict(
                "Conflict occurred attempting to store the resource: duplicate entry.".into(),
            );
        }
        IdentityError::Internal(text)
    }
}

impl ResponseError for IdentityError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "identity: internal error");
        }
        let status = self.status_code();
        HttpResponse::build(status).json(json!({"error": {
            "code": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "message": self.to_string(),
        }}))
    }
}

type IdResult<T> = Result<T, IdentityError>;

fn bad(msg: impl Into<String>) -> IdentityError {
    IdentityError::BadRequest(msg.into())
}

/// The public base URL (configured, else the request's scheme and host).
fn base_url(req: &HttpRequest, settings: &AuthSettings) -> String {
    match &settings.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

fn v3_url(req: &HttpRequest, s: &AuthSettings) -> String {
    format!("{}/identity/v3", base_url(req, s))
}

/// Keystone's timestamps: microseconds and Z.
fn keystone_time(seconds: i64) -> String {
    nova_core::time::to_datetime(seconds * 1000)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn json_body(raw: &[u8]) -> IdResult<Value> {
    serde_json::from_slice(raw).map_err(|_| bad("Expecting to find valid JSON in request body."))
}

// Discovery.

fn v3_version(req: &HttpRequest, s: &AuthSettings) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/", v3_url(req, s))}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(req: HttpRequest, st: web::Data<IdentityState>) -> HttpResponse {
    HttpResponse::MultipleChoices()
        .json(json!({"versions": {"values": [v3_version(&req, &st.settings)]}}))
}

async fn version(req: HttpRequest, st: web::Data<IdentityState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"version": v3_version(&req, &st.settings)}))
}

// The caller.

/// The caller's validated token (`X-Auth-Token`).
fn caller(req: &HttpRequest, st: &IdentityState) -> IdResult<Claims> {
    let token = req
        .headers()
        .get("X-Auth-Token")
        .and_then(|v| v.to_str().ok())
        .ok_or(IdentityError::Unauthorized)?;
    st.tokens
        .validate(token)
        .map_err(|_| IdentityError::Unauthorized)
}

fn has_role(c: &Claims, role: &str) -> bool {
    c.openstack_roles.iter().any(|r| r.name == role)
}

/// Keystone's default policy for the admin API: the `admin` role (writes), `admin` or
/// `reader` (reads).
fn require_admin(req: &HttpRequest, st: &IdentityState, action: &str) -> IdResult<Claims> {
    let c = caller(req, st)?;
    if has_role(&c, "admin") {
        Ok(c)
    } else {
        Err(IdentityError::Forbidden(action.into()))
    }
}

fn require_reader(req: &HttpRequest, st: &IdentityState, action: &str) -> IdResult<Claims> {
    let c = caller(req, st)?;
    if has_role(&c, "admin") || has_role(&c, "reader") {
        Ok(c)
    } else {
        Err(IdentityError::Forbidden(action.into()))
    }
}

// Views.

async fn domain_ref(db: &Db, id: &str) -> IdResult<Value> {
    let d = store::domain(db, id).await?;
    Ok(json!({"id": id, "name": d.map(|d| d.name).unwrap_or_default()}))
}

fn project_view(p: &Project, base: &str) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
        "enabled": p.enabled, "is_domain": false, "parent_id": p.domain_id, "tags": [], "options": {},
        "links": {"self": format!("{base}/projects/{}", p.id)},
    })
}

fn user_view(u: &User, base: &str) -> Value {
    let mut v = json!({
        "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
        "password_expires_at": null, "options": {},
        "links": {"self": format!("{base}/users/{}", u.id)},
    });
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    v
}

fn role_view(r: &Role, base: &str) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": null, "description": null, "options": {},
           "links": {"self": format!("{base}/roles/{}", r.id)}})
}

fn collection(key: &str, items: Vec<Value>, self_url: String) -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({key: items, "links": {"self": self_url, "previous": null, "next": null}}))
}

// Tokens.

/// Finds a domain given as `{"id": …}` or `{"name": …}`.
async fn find_domain(db: &Db, v: &Value) -> IdResult<String> {
    if let Some(id) = v["id"].as_str() {
        return Ok(store::domain(db, id)
            .await?
            .ok_or(IdentityError::Unauthorized)?
            .id);
    }
    if let Some(name) = v["name"].as_str() {
        return Ok(store::domain_by_name(db, name)
            .await?
            .ok_or(IdentityError::Unauthorized)?
            .id);
    }
    Err(bad("A domain needs an id or a name."))
}

/// The user of a password auth, checked. A wrong user and a wrong password give the same 401.
async fn password_user(db: &Db, v: &Value) -> IdResult<User> {
    let u = &v["user"];
    let secret = u["password"]
        .as_str()
        .ok_or_else(|| bad("password is required."))?;
    let user = if let Some(id) = u["id"].as_str() {
        store::user(db, id).await?
    } else if let Some(name) = u["name"].as_str() {
        let domain = if u["domain"].is_object() {
            find_domain(db, &u["domain"]).await.ok()
        } else {
            None
        };
        match domain {
            Some(d) => store::user_by_name(db, &d, name).await?,
            None => None,
        }
    } else {
        return Err(bad("A user needs an id, or a name and a domain."));
    };
    match user {
        Some(user)
            if user.enabled
                && user
                    .password_hash
                    .as_deref()
                    .is_some_and(|h| password::verify(secret, h)) =>
        {
            Ok(user)
        }
        Some(_) => Err(IdentityError::Unauthorized),
        None => {
            password::verify_nothing(secret);
            Err(IdentityError::Unauthorized)
        }
    }
}

struct Scope {
    project: Option<Project>,
    domain_id: Option<String>,
    roles: Vec<Role>,
}

async fn resolve_scope(db: &Db, user: &str, scope: &Value) -> IdResult<Scope> {
    if scope.is_null() || scope == "unscoped" {
        return Ok(Scope {
            project: None,
            domain_id: None,
            roles: vec![],
        });
    }
    if scope["project"].is_object() {
        let p = &scope["project"];
        let project = if let Some(id) = p["id"].as_str() {
            store::project(db, id).await?
        } else if let Some(name) = p["name"].as_str() {
            let d = find_domain(db, &p["domain"]).await?;
            store::project_by_name(db, &d, name).await?
        } else {
            return Err(bad("A project scope needs an id, or a name and a domain."));
        };
        let project = project
            .filter(|p| p.enabled)
            .ok_or(IdentityError::Unauthorized)?;
        let roles = store::roles_of(db, user, &project.id, "").await?;
        if roles.is_empty() {
            return Err(IdentityError::Unauthorized);
        }
        return Ok(Scope {
            project: Some(project),
            domain_id: None,
            roles,
        });
    }
    if scope["domain"].is_object() {
        let d = find_domain(db, &scope["domain"]).await?;
        let roles = store::roles_of(db, user, "", &d).await?;
        if roles.is_empty() {
            return Err(IdentityError::Unauthorized);
        }
        return Ok(Scope {
            project: None,
            domain_id: Some(d),
            roles,
        });
    }
    Err(bad("Only project, domain or no scope is supported."))
}

/// The token body Keystone returns for `claims`.
async fn token_body(
    req: &HttpRequest,
    st: &IdentityState,
    c: &Claims,
    with_catalog: bool,
) -> IdResult<Value> {
    let user = store::user(&st.db, &c.sub)
        .await?
        .ok_or(IdentityError::Unauthorized)?;
    let mut t = json!({
        "methods": c.openstack_methods,
        "user": {"id": user.id, "name": user.name, "domain": domain_ref(&st.db, &user.domain_id).await?,
                 "password_expires_at": null},
        "audit_ids": c.openstack_audit_ids,
        "expires_at": keystone_time(c.exp),
        "issued_at": keystone_time(c.iat),
    });
    if let Some(pid) = &c.openstack_project_id {
        let p = store::project(&st.db, pid)
            .await?
            .ok_or(IdentityError::Unauthorized)?;
        t["project"] =
            json!({"id": p.id, "name": p.name, "domain": domain_ref(&st.db, &p.domain_id).await?});
        t["is_domain"] = json!(false);
    }
    if let Some(did) = &c.openstack_domain_id {
        t["domain"] = domain_ref(&st.db, did).await?;
    }
    if c.openstack_project_id.is_some() || c.openstack_domain_id.is_some() {
        t["roles"] = json!(c.openstack_roles);
        if with_catalog {
            t["catalog"] = catalog(&base_url(req, &st.settings), &st.settings);
        }
    }
    Ok(json!({"token": t}))
}

async fn issue_token(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> IdResult<HttpResponse> {
    let body = json_body(&raw)?;
    let identity = &body["auth"]["identity"];
    let methods: Vec<String> = identity["methods"]
        .as_array()
        .ok_or_else(|| bad("auth.identity.methods is required."))?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let (user, parent) = match methods.as_slice() {
        [m] if m == "password" => (password_user(&st.db, &identity["password"]).await?, None),
        [m] if m == "token" => {
            let old = identity["token"]["id"]
                .as_str()
                .ok_or_else(|| bad("token.id is required."))?;
            let claims = st
                .tokens
                .validate(old)
                .map_err(|_| IdentityError::Unauthorized)?;
            let user = store::user(&st.db, &claims.sub)
                .await?
                .filter(|u| u.enabled)
                .ok_or(IdentityError::Unauthorized)?;
            (user, Some(claims))
        }
        _ => {
            return Err(bad(
                "Exactly one of the methods 'password' and 'token' is supported.",
            ))
        }
    };
    let scope = resolve_scope(&st.db, &user.id, &body["auth"]["scope"]).await?;
    let roles: Vec<RoleRef> = scope
        .roles
        .iter()
        .map(|r| RoleRef {
            id: r.id.clone(),
            name: r.name.clone(),
        })
        .collect();
    let (token, claims) = st
        .tokens
        .issue(NewToken {
            user_id: &user.id,
            methods,
            project_id: scope.project.map(|p| p.id),
            domain_id: scope.domain_id,
            roles,
            parent: parent.as_ref(),
        })
        .map_err(IdentityError::Internal)?;
    let nocatalog = req
        .query_string()
        .split('&')
        .any(|q| q == "nocatalog" || q.starts_with("nocatalog="));
    let body = token_body(&req, &st, &claims, !nocatalog).await?;
    Ok(HttpResponse::Created()
        .insert_header(("X-Subject-Token", token))
        .json(body))
}

fn subject(req: &HttpRequest, st: &IdentityState) -> IdResult<Claims> {
    let token = req
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("X-Subject-Token is required."))?;
    st.tokens.validate(token).map_err(|e| match e {
        TokenError::Missing | TokenError::Invalid | TokenError::Revoked => {
            IdentityError::NotFound("Could not find token.".into())
        }
    })
}

/// A token may inspect or revoke itself; admins may any.
fn may_see(caller: &Claims, subject: &Claims) -> bool {
    caller.sub == subject.sub || has_role(caller, "admin") || has_role(caller, "service")
}

async fn validate_token(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let s = subject(&req, &st)?;
    if !may_see(&c, &s) {
        return Err(IdentityError::Forbidden("identity:validate_token".into()));
    }
    let nocatalog = req
        .query_string()
        .split('&')
        .any(|q| q == "nocatalog" || q.starts_with("nocatalog="));
    let body = token_body(&req, &st, &s, !nocatalog).await?;
    let token = req.headers().get("X-Subject-Token").cloned();
    let mut res = HttpResponse::Ok();
    if let Some(t) = token {
        res.insert_header(("X-Subject-Token", t));
    }
    Ok(res.json(body))
}

async fn check_token(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let s = subject(&req, &st)?;
    if !may_see(&c, &s) {
        return Err(IdentityError::Forbidden("identity:check_token".into()));
    }
    Ok(HttpResponse::Ok().finish())
}

async fn revoke_token(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let s = subject(&req, &st)?;
    if !may_see(&c, &s) {
        return Err(IdentityError::Forbidden("identity:revoke_token".into()));
    }
    st.tokens.revoke(&s).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn auth_catalog(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    if c.openstack_project_id.is_none() && c.openstack_domain_id.is_none() {
        return Err(IdentityError::Forbidden(
            "an unscoped token has no catalog".into(),
        ));
    }
    let base = base_url(&req, &st.settings);
    Ok(
        HttpResponse::Ok().json(json!({"catalog": catalog(&base, &st.settings),
        "links": {"self": format!("{base}/identity/v3/auth/catalog")}})),
    )
}

async fn auth_projects(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let base = v3_url(&req, &st.settings);
    let items = store::projects_of_user(&st.db, &c.sub)
        .await?
        .iter()
        .map(|p| project_view(p, &base))
        .collect();
    Ok(collection(
        "projects",
        items,
        format!("{base}/auth/projects"),
    ))
}

async fn user_projects(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    if c.sub != *id && !has_role(&c, "admin") && !has_role(&c, "reader") {
        return Err(IdentityError::Forbidden(
            "identity:list_user_projects".into(),
        ));
    }
    let base = v3_url(&req, &st.settings);
    let items = store::projects_of_user(&st.db, &id)
        .await?
        .iter()
        .map(|p| project_view(p, &base))
        .collect();
    Ok(collection(
        "projects",
        items,
        format!("{base}/users/{id}/projects"),
    ))
}

// The admin API.

#[derive(serde::Deserialize, Default)]
struct NameFilter {
    name: Option<String>,
    domain_id: Option<String>,
}

fn filter(req: &HttpRequest) -> NameFilter {
    web::Query::<NameFilter>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

async fn list_domains(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_domains")?;
    let f = filter(&req);
    let base = v3_url(&req, &st.settings);
    let items = store::domains(&st.db)
        .await?
        .into_iter()
        .filter(|d| f.name.as_ref().is_none_or(|n| *n == d.name))
        .map(|d| json!({"id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled,
                        "tags": [], "options": {}, "links": {"self": format!("{base}/domains/{}", d.id)}}))
        .collect();
    Ok(collection("domains", items, format!("{base}/domains")))
}

async fn show_domain(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:get_domain")?;
    let base = v3_url(&req, &st.settings);
    let d = store::domain(&st.db, &id)
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find domain: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"domain": {"id": d.id, "name": d.name, "description": d.description,
        "enabled": d.enabled, "tags": [], "options": {}, "links": {"self": format!("{base}/domains/{}", d.id)}}})))
}

fn string_field<'a>(obj: &'a Value, key: &str) -> IdResult<Option<&'a str>> {
    match &obj[key] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(bad(format!(
            "Invalid input for field '{key}': {other} is not a string."
        ))),
    }
}

fn required_name(obj: &Value, what: &str) -> IdResult<String> {
    let name = string_field(obj, "name")?
        .ok_or_else(|| bad(format!("'name' is a required property of {what}.")))?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(bad("The name must be 1 to 255 characters."));
    }
    Ok(name.to_owned())
}

async fn create_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_project")?;
    let body = json_body(&raw)?;
    let p = &body["project"];
    if !p.is_object() {
        return Err(bad("'project' is a required property."));
    }
    let domain_id = string_field(p, "domain_id")?
        .unwrap_or(store::DEFAULT_DOMAIN_ID)
        .to_owned();
    if store::domain(&st.db, &domain_id).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
    }
    let project = Project {
        id: store::new_id(),
        name: required_name(p, "project")?,
        domain_id,
        description: string_field(p, "description")?
            .unwrap_or_default()
            .to_owned(),
        enabled: p["enabled"].as_bool().unwrap_or(true),
    };
    store::create_project(&st.db, &project).await?;
    Ok(HttpResponse::Created()
        .json(json!({"project": project_view(&project, &v3_url(&req, &st.settings))})))
}

async fn list_projects(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_projects")?;
    let f = filter(&req);
    let base = v3_url(&req, &st.settings);
    let items = store::projects(&st.db, f.name.as_deref(), f.domain_id.as_deref())
        .await?
        .iter()
        .map(|p| project_view(p, &base))
        .collect();
    Ok(collection("projects", items, format!("{base}/projects")))
}

async fn show_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    // A member may see their own project.
    if !(has_role(&c, "admin")
        || has_role(&c, "reader")
        || c.openstack_project_id.as_deref() == Some(id.as_str()))
    {
        return Err(IdentityError::Forbidden("identity:get_project".into()));
    }
    let p = store::project(&st.db, &id)
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find project: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"project": project_view(&p, &v3_url(&req, &st.settings))})))
}

async fn delete_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_project")?;
    if !store::delete_project(&st.db, &id).await? {
        return Err(IdentityError::NotFound(format!(
            "Could not find project: {id}."
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn create_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_user")?;
    let body = json_body(&raw)?;
    let u = &body["user"];
    if !u.is_object() {
        return Err(bad("'user' is a required property."));
    }
    let domain_id = string_field(u, "domain_id")?
        .unwrap_or(store::DEFAULT_DOMAIN_ID)
        .to_owned();
    if store::domain(&st.db, &domain_id).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
    }
    let password_hash = match string_field(u, "password")? {
        Some(p) => Some(password::hash(p).map_err(IdentityError::Internal)?),
        None => None,
    };
    let user = User {
        id: store::new_id(),
        name: required_name(u, "user")?,
        domain_id,
        enabled: u["enabled"].as_bool().unwrap_or(true),
        email: string_field(u, "email")?.map(str::to_owned),
        default_project_id: string_field(u, "default_project_id")?.map(str::to_owned),
        password_hash,
    };
    store::create_user(&st.db, &user).await?;
    Ok(
        HttpResponse::Created()
            .json(json!({"user": user_view(&user, &v3_url(&req, &st.settings))})),
    )
}

async fn list_users(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_users")?;
    let f = filter(&req);
    let base = v3_url(&req, &st.settings);
    let items = store::users(&st.db, f.name.as_deref(), f.domain_id.as_deref())
        .await?
        .iter()
        .map(|u| user_view(u, &base))
        .collect();
    Ok(collection("users", items, format!("{base}/users")))
}

async fn show_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    let c = caller(&req, &st)?;
    if !(has_role(&c, "admin") || has_role(&c, "reader") || c.sub == *id) {
        return Err(IdentityError::Forbidden("identity:get_user".into()));
    }
    let u = store::user(&st.db, &id)
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find user: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"user": user_view(&u, &v3_url(&req, &st.settings))})))
}

async fn delete_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_user")?;
    if !store::delete_user(&st.db, &id).await? {
        return Err(IdentityError::NotFound(format!(
            "Could not find user: {id}."
        )));
    }
    // A deleted user's tokens die with it.
    st.tokens.revoke_user(&id, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn create_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_role")?;
    let body = json_body(&raw)?;
    let r = &body["role"];
    if !r.is_object() {
        return Err(bad("'role' is a required property."));
    }
    let role = store::create_role(&st.db, &store::new_id(), &required_name(r, "role")?).await?;
    Ok(
        HttpResponse::Created()
            .json(json!({"role": role_view(&role, &v3_url(&req, &st.settings))})),
    )
}

async fn list_roles(req: HttpRequest, st: web::Data<IdentityState>) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_roles")?;
    let f = filter(&req);
    let base = v3_url(&req, &st.settings);
    let items = store::roles(&st.db, f.name.as_deref())
        .await?
        .iter()
        .map(|r| role_view(r, &base))
        .collect();
    Ok(collection("roles", items, format!("{base}/roles")))
}

async fn show_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:get_role")?;
    let r = store::role(&st.db, &id)
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find role: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"role": role_view(&r, &v3_url(&req, &st.settings))})))
}

async fn delete_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_role")?;
    if !store::delete_role(&st.db, &id).await? {
        return Err(IdentityError::NotFound(format!(
            "Could not find role: {id}."
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Checks that the project, user and role of a grant exist.
async fn grant_parts(st: &IdentityState, project: &str, user: &str, role: &str) -> IdResult<()> {
    if store::project(&st.db, project).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find project: {project}."
        )));
    }
    if store::user(&st.db, user).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find user: {user}."
        )));
    }
    if store::role(&st.db, role).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find role: {role}."
        )));
    }
    Ok(())
}

async fn add_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_grant")?;
    let (project, user, role) = path.into_inner();
    grant_parts(&st, &project, &user, &role).await?;
    store::grant(&st.db, &user, &role, &project, "").await?;
    // Tokens carry their roles: the user's tokens for this project are replaced.
    st.tokens.revoke_user(&user, Some(&project)).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn add_domain_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_grant")?;
    let (domain, user, role) = path.into_inner();
    if store::domain(&st.db, &domain).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find domain: {domain}."
        )));
    }
    if store::user(&st.db, &user).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find user: {user}."
        )));
    }
    if store::role(&st.db, &role).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "Could not find role: {role}."
        )));
    }
    store::grant(&st.db, &user, &role, "", &domain).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn check_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:check_grant")?;
    let (project, user, role) = path.into_inner();
    let has = store::roles_of(&st.db, &user, &project, "")
        .await?
        .iter()
        .any(|r| r.id == role);
    if has {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(IdentityError::NotFound(
            "Could not find role assignment.".into(),
        ))
    }
}

async fn remove_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> IdResult<HttpResponse> {
    require_admin(&req, &st, "identity:revoke_grant")?;
    let (project, user, role) = path.into_inner();
    if !store::revoke_grant(&st.db, &user, &role, &project, "").await? {
        return Err(IdentityError::NotFound(
            "Could not find role assignment.".into(),
        ));
    }
    st.tokens.revoke_user(&user, Some(&project)).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_grants(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_grants")?;
    let (project, user) = path.into_inner();
    let base = v3_url(&req, &st.settings);
    let items = store::roles_of(&st.db, &user, &project, "")
        .await?
        .iter()
        .map(|r| role_view(r, &base))
        .collect();
    Ok(collection(
        "roles",
        items,
        format!("{base}/projects/{project}/users/{user}/roles"),
    ))
}

async fn role_assignments(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> IdResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_role_assignments")?;
    #[derive(serde::Deserialize, Default)]
    struct Q {
        #[serde(rename = "user.id")]
        user: Option<String>,
        #[serde(rename = "scope.project.id")]
        project: Option<String>,
    }
    let q = web::Query::<Q>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let base = v3_url(&req, &st.settings);
    let items = store::assignments(&st.db, q.user.as_deref(), q.project.as_deref())
        .await?
        .into_iter()
        .map(|a| {
            let scope = if a.project_id.is_empty() {
                json!({"domain": {"id": a.domain_id}})
            } else {
                json!({"project": {"id": a.project_id}})
            };
            json!({"user": {"id": a.user_id}, "role": {"id": a.role_id}, "scope": scope,
                   "links": {"assignment": format!("{base}/role_assignments")}})
        })
        .collect();
    Ok(collection(
        "role_assignments",
        items,
        format!("{base}/role_assignments"),
    ))
}

/// Mounts the identity API under `/identity`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/identity")
            .route("", web::get().to(versions))
            .route("/", web::get().to(versions))
            .route("/v3", web::get().to(version))
            .route("/v3/", web::get().to(version))
            .route("/v3/auth/tokens", web::post().to(issue_token))
            .route("/v3/auth/tokens", web::get().to(validate_token))
            .route("/v3/auth/tokens", web::head().to(check_token))
            .route("/v3/auth/tokens", web::delete().to(revoke_token))
            .route("/v3/auth/catalog", web::get().to(auth_catalog))
            .route("/v3/auth/projects", web::get().to(auth_projects))
            .route("/v3/domains", web::get().to(list_domains))
            .route("/v3/domains/{id}", web::get().to(show_domain))
            .route(
                "/v3/domains/{d}/users/{u}/roles/{r}",
                web::put().to(add_domain_grant),
            )
            .route("/v3/projects", web::get().to(list_projects))
            .route("/v3/projects", web::post().to(create_project))
            .route("/v3/projects/{id}", web::get().to(show_project))
            .route("/v3/projects/{id}", web::delete().to(delete_project))
            .route(
                "/v3/projects/{p}/users/{u}/roles",
                web::get().to(list_grants),
            )
            .route(
                "/v3/projects/{p}/users/{u}/roles/{r}",
                web::put().to(add_grant),
            )
            .route(
                "/v3/projects/{p}/users/{u}/roles/{r}",
                web::head().to(check_grant),
            )
            .route(
                "/v3/projects/{p}/users/{u}/roles/{r}",
                web::get().to(check_grant),
            )
            .route(
                "/v3/projects/{p}/users/{u}/roles/{r}",
                web::delete().to(remove_grant),
            )
            .route("/v3/users", web::get().to(list_users))
            .route("/v3/users", web::post().to(create_user))
            .route("/v3/users/{id}", web::get().to(show_user))
            .route("/v3/users/{id}", web::delete().to(delete_user))
            .route("/v3/users/{id}/projects", web::get().to(user_projects))
            .route("/v3/roles", web::get().to(list_roles))
            .route("/v3/roles", web::post().to(create_role))
            .route("/v3/roles/{id}", web::get().to(show_role))
            .route("/v3/roles/{id}", web::delete().to(delete_role))
            .route("/v3/role_assignments", web::get().to(role_assignments)),
    );
}

/// Sets up identity for a process that serves it: keys, bootstrap, revocation refresh.
pub async fn start(
    db: &Db,
    settings: &AuthSettings,
) -> Result<(Arc<TokenService>, bootstrap::Generated), String> {
    let keys = crate::keys::KeyRing::load_or_create(&settings.key_repository)
        .map_err(|e| e.to_string())?;
    let tokens = TokenService::new(keys, settings.token_lifetime_s, db.clone());
    let generated = bootstrap::bootstrap(db, settings)
        .await
        .map_err(|e| e.to_string())?;
    tokens.refresh().await.map_err(|e| e.to_string())?;
    tokio::spawn(
        tokens
            .clone()
            .refresh_loop(std::time::Duration::from_secs(2)),
    );
    Ok((tokens, generated))
}
