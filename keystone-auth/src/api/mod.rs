//! The identity API (a Keystone v3 subset) that the `openstack` CLI and keystoneauth use,
//! mounted under `/identity`: discovery here, then [`auth`] (tokens, catalog),
//! [`app_credentials`], [`catalog`]
//! (regions, services, endpoints), [`endpoint_groups`] (OS-EP-FILTER), [`credentials`],
//! [`policies`], [`domains`],
//! [`projects`] (and their tags), [`users`], [`groups`], [`roles`] and [`grants`] (role
//! assignments of users and groups on projects, domains and the system). Errors leave in
//! Keystone's body (`{"error": {"code", "title", "message"}}`).

mod app_credentials;
mod auth;
mod catalog;
mod credentials;
mod domains;
mod endpoint_groups;
mod grants;
mod groups;
mod policies;
mod projects;
mod roles;
mod users;

use crate::bootstrap;
use crate::settings::AuthSettings;
use crate::tokens::{Claims, NewToken, RoleRef, TokenService};
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::policy::KEYSTONE;
use api_toolkit::{ApiError, ApiResult, FaultFormat};
use nova_db::identity::{self as store, Project, Role, User};
use nova_db::{Db, DbError};
use serde_json::{json, Value};
use std::sync::Arc;

/// What the identity handlers share.
pub struct IdentityState {
    pub db: Db,
    pub tokens: Arc<TokenService>,
    pub settings: AuthSettings,
    /// Seals credentials' blobs (`credentials`).
    pub credential_key: nova_core::secret::SealingKey,
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
        let assigned = store::effective_roles_of(&self.db, &user.id, &project.id, "", "")
            .await
            .map_err(err)?;
        let roles = crate::bootstrap::with_implied(&self.db, assigned)
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
            system: None,
            roles,
            parent: None,
        })?;
        Ok((token, claims.exp))
    }
}

/// Keystone's 401 for a request without a valid token.
fn unauthorized() -> ApiError {
    ApiError::Unauthorized("The request you have made requires authentication.".into())
}

/// A store error: a unique constraint means the name is taken (Keystone's 409).
fn conflict_or_internal(e: DbError) -> ApiError {
    if e.is_unique_violation() {
        return ApiError::Conflict(
            "Conflict occurred attempting to store the resource: duplicate entry.".into(),
        );
    }
    ApiError::from(e)
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// The public base URL (configured, else the request's scheme and host).
fn base_url(req: &HttpRequest, settings: &AuthSettings) -> String {
    match &settings.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        // The server's own rule (its configured public URL, trusted proxies, else the address
        // the connection reached), never a client's Host header.
        None => api_toolkit::links::PublicUrl::of(req).0,
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

fn json_body(raw: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(raw).map_err(|_| bad("Expecting to find valid JSON in request body."))
}

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

/// The caller's validated token (`X-Auth-Token`).
fn caller(req: &HttpRequest, st: &IdentityState) -> ApiResult<Claims> {
    let token = req
        .headers()
        .get("X-Auth-Token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    st.tokens.validate(token).map_err(|_| unauthorized())
}

fn has_role(c: &Claims, role: &str) -> bool {
    c.openstack_roles.iter().any(|r| r.name == role)
}

/// Keystone's `ADMIN_OR_SYSTEM_READER`: the `admin` role, or `reader` on the system scope. Such
/// a caller reads every domain's users, projects and grants.
fn cloud_reader(c: &Claims) -> bool {
    has_role(c, "admin") || (has_role(c, "reader") && c.openstack_system.is_some())
}

/// Keystone's default policy for the admin API: the `admin` role (writes); reads also for a
/// system reader, and for a reader with a domain-scoped token (Keystone's domain reader,
/// limited to that domain by the callers, see [`domain_limit`]). A project-scoped reader is
/// neither: it lists no users or projects.
fn require_admin(req: &HttpRequest, st: &IdentityState, action: &str) -> ApiResult<Claims> {
    let c = caller(req, st)?;
    if has_role(&c, "admin") {
        Ok(c)
    } else {
        Err(KEYSTONE.denied(action))
    }
}

fn require_reader(req: &HttpRequest, st: &IdentityState, action: &str) -> ApiResult<Claims> {
    let c = caller(req, st)?;
    if cloud_reader(&c) || (has_role(&c, "reader") && c.openstack_domain_id.is_some()) {
        Ok(c)
    } else {
        Err(KEYSTONE.denied(action))
    }
}

/// The domain a non-admin reader's listing is limited to (its token's domain), or `asked`;
/// a domain reader asking for another domain is refused, as Keystone's policy does.
fn domain_limit(c: &Claims, asked: Option<String>, action: &str) -> ApiResult<Option<String>> {
    if cloud_reader(c) {
        return Ok(asked);
    }
    if asked.is_some() && asked != c.openstack_domain_id {
        return Err(KEYSTONE.denied(action));
    }
    Ok(c.openstack_domain_id.clone())
}

async fn domain_ref(db: &Db, id: &str) -> ApiResult<Value> {
    let d = store::domain(db, id).await?;
    Ok(json!({"id": id, "name": d.map(|d| d.name).unwrap_or_default()}))
}

fn collection(key: &str, items: Vec<Value>, self_url: String) -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({key: items, "links": {"self": self_url, "previous": null, "next": null}}))
}

#[derive(serde::Deserialize, Default)]
struct NameFilter {
    name: Option<String>,
    domain_id: Option<String>,
    enabled: Option<String>,
}

impl NameFilter {
    /// The `enabled` filter, with Keystone's truthiness: `0` and `false` (any case) are false,
    /// anything else true.
    fn enabled(&self) -> Option<bool> {
        self.enabled
            .as_deref()
            .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false")))
    }
}

fn filter(req: &HttpRequest) -> NameFilter {
    web::Query::<NameFilter>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn string_field<'a>(obj: &'a Value, key: &str) -> ApiResult<Option<&'a str>> {
    match &obj[key] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(bad(format!(
            "Invalid input for field '{key}': {other} is not a string."
        ))),
    }
}

fn required_name(obj: &Value, what: &str) -> ApiResult<String> {
    let name = string_field(obj, "name")?
        .ok_or_else(|| bad(format!("'name' is a required property of {what}.")))?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(bad("The name must be 1 to 255 characters."));
    }
    Ok(name.to_owned())
}

/// A JSON boolean (Keystone's schema accepts no other spelling).
fn bool_field(obj: &Value, key: &str) -> ApiResult<Option<bool>> {
    match &obj[key] {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(bad(format!(
            "Invalid input for field '{key}': {other} is not of type 'boolean'."
        ))),
    }
}

/// The object under `key` of a request body (`{"user": {…}}`), or Keystone's 400.
fn body_object<'a>(body: &'a Value, key: &str) -> ApiResult<&'a serde_json::Map<String, Value>> {
    body[key]
        .as_object()
        .ok_or_else(|| bad(format!("'{key}' is a required property.")))
}

/// A name of 1 to `max` characters, as Keystone's schemas bound them.
fn checked_name(name: &str, max: usize) -> ApiResult<String> {
    let n = name.chars().count();
    if n == 0 {
        return Err(bad("Invalid input for field 'name': '' is too short."));
    }
    if n > max {
        return Err(bad(format!(
            "Invalid input for field 'name': '{name}' is too long (more than {max} characters)."
        )));
    }
    Ok(name.to_owned())
}

/// Keystone's `ADMIN_OR_SYSTEM_READER`.
fn require_cloud_reader(req: &HttpRequest, st: &IdentityState, action: &str) -> ApiResult<()> {
    if cloud_reader(&caller(req, st)?) {
        Ok(())
    } else {
        Err(KEYSTONE.denied(action))
    }
}

/// The attributes a client gave beyond the fixed ones (Keystone keeps them in `extra` and
/// shows them back).
fn extra_of(
    obj: &serde_json::Map<String, Value>,
    fixed: &[&str],
) -> serde_json::Map<String, Value> {
    obj.iter()
        .filter(|(k, _)| !fixed.contains(&k.as_str()) && k.as_str() != "links")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn parse_extra(extra: &str) -> serde_json::Map<String, Value> {
    serde_json::from_str(extra).unwrap_or_default()
}

/// A string of at most 255 characters, or null (`nullable`), as Keystone's schemas bound them.
fn short_string(obj: &Value, key: &str, nullable: bool) -> ApiResult<Option<String>> {
    match &obj[key] {
        Value::Null if nullable || obj.get(key).is_none() => Ok(None),
        Value::String(s) if s.chars().count() <= 255 => Ok(Some(s.clone())),
        Value::String(s) => Err(bad(format!(
            "Invalid input for field '{key}': '{s}' is too long."
        ))),
        other => Err(bad(format!(
            "Invalid input for field '{key}': {other} is not of type 'string'."
        ))),
    }
}

/// Mounts the identity API under `/identity`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/identity")
            .wrap(FaultFormat::Keystone.errors())
            .service(web::resource("").route(web::get().to(versions)))
            .service(web::resource("/").route(web::get().to(versions)))
            .service(web::resource("/v3").route(web::get().to(version)))
            .service(web::resource("/v3/").route(web::get().to(version)))
            .service(
                web::resource("/v3/auth/tokens")
                    .route(web::post().to(auth::issue_token))
                    .route(web::get().to(auth::validate_token))
                    .route(web::head().to(auth::check_token))
                    .route(web::delete().to(auth::revoke_token)),
            )
            .service(web::resource("/v3/auth/catalog").route(web::get().to(auth::auth_catalog)))
            .service(web::resource("/v3/auth/projects").route(web::get().to(auth::auth_projects)))
            .service(web::resource("/v3/auth/domains").route(web::get().to(auth::auth_domains)))
            .service(web::resource("/v3/auth/system").route(web::get().to(auth::auth_system)))
            .service(
                web::resource("/v3/domains")
                    .route(web::get().to(domains::list_domains))
                    .route(web::post().to(domains::create_domain)),
            )
            .service(
                web::resource("/v3/domains/{id}")
                    .route(web::get().to(domains::show_domain))
                    .route(web::patch().to(domains::update_domain))
                    .route(web::delete().to(domains::delete_domain)),
            )
            .service(
                web::resource("/v3/groups")
                    .route(web::get().to(groups::list_groups))
                    .route(web::post().to(groups::create_group)),
            )
            .service(
                web::resource("/v3/groups/{id}")
                    .route(web::get().to(groups::show_group))
                    .route(web::patch().to(groups::update_group))
                    .route(web::delete().to(groups::delete_group)),
            )
            .service(
                web::resource("/v3/groups/{id}/users").route(web::get().to(groups::list_members)),
            )
            .service(
                web::resource("/v3/groups/{g}/users/{u}")
                    .route(web::put().to(groups::add_member))
                    .route(web::head().to(groups::check_member))
                    .route(web::get().to(groups::check_member))
                    .route(web::delete().to(groups::remove_member)),
            )
            .service(
                web::resource("/v3/users/{id}/groups").route(web::get().to(groups::groups_of_user)),
            )
            .service(
                web::resource("/v3/projects")
                    .route(web::get().to(projects::list_projects))
                    .route(web::post().to(projects::create_project)),
            )
            .service(
                web::resource("/v3/projects/{id}")
                    .route(web::get().to(projects::show_project))
                    .route(web::patch().to(projects::update_project))
                    .route(web::delete().to(projects::delete_project)),
            )
            .service(
                web::resource("/v3/projects/{id}/tags")
                    .route(web::get().to(projects::list_tags))
                    .route(web::put().to(projects::replace_tags))
                    .route(web::delete().to(projects::delete_tags)),
            )
            .service(
                web::resource("/v3/projects/{id}/tags/{tag}")
                    .route(web::get().to(projects::check_tag))
                    .route(web::head().to(projects::check_tag))
                    .route(web::put().to(projects::add_tag))
                    .route(web::delete().to(projects::delete_tag)),
            )
            .service(
                web::resource("/v3/users")
                    .route(web::get().to(users::list_users))
                    .route(web::post().to(users::create_user)),
            )
            .service(
                web::resource("/v3/users/{id}")
                    .route(web::get().to(users::show_user))
                    .route(web::patch().to(users::update_user))
                    .route(web::delete().to(users::delete_user)),
            )
            .service(
                web::resource("/v3/users/{id}/password")
                    .route(web::post().to(users::change_password)),
            )
            .service(
                web::resource("/v3/users/{id}/projects").route(web::get().to(users::user_projects)),
            )
            .service(
                web::resource("/v3/roles")
                    .route(web::get().to(roles::list_roles))
                    .route(web::post().to(roles::create_role)),
            )
            .service(
                web::resource("/v3/roles/{id}")
                    .route(web::get().to(roles::show_role))
                    .route(web::patch().to(roles::update_role))
                    .route(web::delete().to(roles::delete_role)),
            )
            .service(
                web::resource("/v3/roles/{id}/implies").route(web::get().to(roles::list_implied)),
            )
            .service(
                web::resource("/v3/roles/{p}/implies/{i}")
                    .route(web::put().to(roles::create_inference))
                    .route(web::get().to(roles::show_inference))
                    .route(web::head().to(roles::show_inference))
                    .route(web::delete().to(roles::delete_inference)),
            )
            .service(
                web::resource("/v3/role_inferences").route(web::get().to(roles::list_inferences)),
            )
            .service(
                web::resource([
                    "/v3/projects/{p}/users/{u}/roles",
                    "/v3/domains/{d}/users/{u}/roles",
                    "/v3/system/users/{u}/roles",
                    "/v3/projects/{p}/groups/{g}/roles",
                    "/v3/domains/{d}/groups/{g}/roles",
                    "/v3/system/groups/{g}/roles",
                ])
                .route(web::get().to(grants::list_grants)),
            )
            .service(
                web::resource([
                    "/v3/projects/{p}/users/{u}/roles/{r}",
                    "/v3/domains/{d}/users/{u}/roles/{r}",
                    "/v3/system/users/{u}/roles/{r}",
                    "/v3/projects/{p}/groups/{g}/roles/{r}",
                    "/v3/domains/{d}/groups/{g}/roles/{r}",
                    "/v3/system/groups/{g}/roles/{r}",
                ])
                .route(web::put().to(grants::add_grant))
                .route(web::head().to(grants::check_grant))
                .route(web::get().to(grants::check_grant))
                .route(web::delete().to(grants::remove_grant)),
            )
            .service(
                web::resource("/v3/regions")
                    .route(web::get().to(catalog::list_regions))
                    .route(web::post().to(catalog::create_region)),
            )
            .service(
                web::resource("/v3/regions/{id}")
                    .route(web::get().to(catalog::show_region))
                    .route(web::put().to(catalog::put_region))
                    .route(web::patch().to(catalog::update_region))
                    .route(web::delete().to(catalog::delete_region)),
            )
            .service(
                web::resource("/v3/services")
                    .route(web::get().to(catalog::list_services))
                    .route(web::post().to(catalog::create_service)),
            )
            .service(
                web::resource("/v3/services/{id}")
                    .route(web::get().to(catalog::show_service))
                    .route(web::patch().to(catalog::update_service))
                    .route(web::delete().to(catalog::delete_service)),
            )
            .service(
                web::resource("/v3/endpoints")
                    .route(web::get().to(catalog::list_endpoints))
                    .route(web::post().to(catalog::create_endpoint)),
            )
            .service(
                web::resource("/v3/endpoints/{id}")
                    .route(web::get().to(catalog::show_endpoint))
                    .route(web::patch().to(catalog::update_endpoint))
                    .route(web::delete().to(catalog::delete_endpoint)),
            )
            .service(
                web::resource("/v3/users/{user_id}/application_credentials")
                    .route(web::get().to(app_credentials::list_app_credentials))
                    .route(web::post().to(app_credentials::create_app_credential)),
            )
            .service(
                web::resource("/v3/users/{user_id}/application_credentials/{id}")
                    .route(web::get().to(app_credentials::show_app_credential))
                    .route(web::delete().to(app_credentials::delete_app_credential)),
            )
            .service(
                web::resource("/v3/credentials")
                    .route(web::get().to(credentials::list_credentials))
                    .route(web::post().to(credentials::create_credential)),
            )
            .service(
                web::resource("/v3/credentials/{id}")
                    .route(web::get().to(credentials::show_credential))
                    .route(web::patch().to(credentials::update_credential))
                    .route(web::delete().to(credentials::delete_credential)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/endpoint_groups")
                    .route(web::get().to(endpoint_groups::list_groups))
                    .route(web::post().to(endpoint_groups::create_group)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/endpoint_groups/{id}")
                    .route(web::get().to(endpoint_groups::show_group))
                    .route(web::head().to(endpoint_groups::show_group))
                    .route(web::patch().to(endpoint_groups::update_group))
                    .route(web::delete().to(endpoint_groups::delete_group)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/endpoint_groups/{id}/endpoints")
                    .route(web::get().to(endpoint_groups::group_endpoints)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/endpoint_groups/{id}/projects")
                    .route(web::get().to(endpoint_groups::group_projects)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/endpoint_groups/{id}/projects/{p}")
                    .route(web::put().to(endpoint_groups::group_project))
                    .route(web::get().to(endpoint_groups::group_project))
                    .route(web::head().to(endpoint_groups::group_project))
                    .route(web::delete().to(endpoint_groups::group_project)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/projects/{p}/endpoint_groups")
                    .route(web::get().to(endpoint_groups::project_groups)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/projects/{p}/endpoints")
                    .route(web::get().to(endpoint_groups::project_endpoints)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/projects/{p}/endpoints/{e}")
                    .route(web::put().to(endpoint_groups::project_endpoint))
                    .route(web::head().to(endpoint_groups::project_endpoint))
                    .route(web::get().to(endpoint_groups::project_endpoint))
                    .route(web::delete().to(endpoint_groups::project_endpoint)),
            )
            .service(
                web::resource("/v3/OS-EP-FILTER/endpoints/{e}/projects")
                    .route(web::get().to(endpoint_groups::endpoint_projects)),
            )
            .service(
                web::resource("/v3/policies")
                    .route(web::get().to(policies::list_policies))
                    .route(web::post().to(policies::create_policy)),
            )
            .service(
                web::resource("/v3/policies/{id}")
                    .route(web::get().to(policies::show_policy))
                    .route(web::patch().to(policies::update_policy))
                    .route(web::delete().to(policies::delete_policy)),
            )
            .service(
                web::resource("/v3/role_assignments")
                    .route(web::get().to(grants::role_assignments)),
            ),
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
