//! Keystone's application credentials (`/v3/users/{user_id}/application_credentials`): a
//! secret a user makes for a program (Terraform, a CI job), which logs in to the project of the
//! token that made it with some of the user's roles there — the `application_credential` auth
//! method ([`authenticate`]) — until it expires or is deleted (its tokens revoked with it).
//! The secret is shown once and kept as an argon2 hash. As Keystone: a user makes only their
//! own; a restricted credential's tokens make none; the user and an admin (or system reader)
//! read and delete them. Access rules are not served (refused with 400).

use super::*;
use crate::tokens::AppCredClaim;
use nova_db::identity::AppCredential;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find Application Credential: {id}."))
}

/// Keystone shows `expires_at` as Python's `isoformat()` of the stored time: microseconds,
/// no zone, and no fraction when it is zero.
fn format_expiry(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    if micros == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        format!("{}.{micros:06}", t.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// An ISO 8601 time (with or without a zone: without, UTC) as microseconds since the epoch.
fn parse_expiry(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    let s = s.trim_end_matches('Z');
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc().timestamp_micros())
}

fn view(a: &AppCredential, base: &str, secret: Option<&str>) -> Value {
    let roles: Vec<Value> = serde_json::from_str::<Vec<Value>>(&a.roles)
        .unwrap_or_default()
        .into_iter()
        .map(|r| json!({"id": r["id"], "name": r["name"], "domain_id": null}))
        .collect();
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "description": a.description,
        "user_id": a.user_id,
        "project_id": a.project_id,
        "expires_at": a.expires_at_us.map(format_expiry),
        "unrestricted": a.unrestricted,
        "roles": roles,
        "access_rules": [],
        "links": {"self": format!("{base}/application_credentials/{}", a.id)},
    });
    if let Some(s) = secret {
        v["secret"] = json!(s);
    }
    v
}

/// A caller acting on `user_id`'s credentials to read or delete them: the user, or an admin
/// (or, reading, a system reader).
fn may_read(c: &Claims, user_id: &str) -> bool {
    c.sub == user_id || cloud_reader(c)
}

/// A new secret: 64 random bytes, URL-safe base64 (Keystone's).
fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 64];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) async fn create_app_credential(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    user_id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    if c.sub != *user_id {
        return Err(KEYSTONE.denied("identity:create_application_credential"));
    }
    if c.openstack_app_cred.as_ref().is_some_and(|a| a.restricted) {
        return Err(ApiError::Forbidden(
            "Using method 'application_credential' is not allowed for managing additional \
             application credentials."
                .into(),
        ));
    }
    let project_id = c.openstack_project_id.clone().ok_or_else(|| {
        bad("An application credential is made with a token scoped to the project it is for.")
    })?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "application_credential")?;
    let a = Value::Object(obj.clone());
    let name = short_string(&a, "name", false)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("'name' is a required property."))?;
    if obj
        .get("access_rules")
        .is_some_and(|r| r.as_array().is_some_and(|r| !r.is_empty()))
    {
        return Err(bad(
            "Access rules of application credentials are not supported by this deployment.",
        ));
    }
    let expires_at_us = match &a["expires_at"] {
        Value::Null => None,
        Value::String(s) => {
            let t = parse_expiry(s).ok_or_else(|| {
                bad(format!(
                    "Invalid input for field 'expires_at': '{s}' is not a date-time."
                ))
            })?;
            if t <= nova_core::time::now_ms() * 1000 {
                return Err(bad(
                    "Invalid application credential: The expiration time must be in the future.",
                ));
            }
            Some(t)
        }
        other => {
            return Err(bad(format!(
                "Invalid input for field 'expires_at': {other} is not a string."
            )))
        }
    };
    // Its roles: those asked for (by id or name), each one the caller holds; none asked for,
    // all of the token's.
    let roles: Vec<crate::tokens::RoleRef> = match &a["roles"] {
        Value::Null => c.openstack_roles.clone(),
        Value::Array(asked) if asked.is_empty() => c.openstack_roles.clone(),
        Value::Array(asked) => {
            // What the caller holds: an application credential's token, its roles only;
            // otherwise the user's roles on the project now (Keystone's tokens show the
            // current assignments; ours carry those at issue).
            let now_held: Vec<crate::tokens::RoleRef> = if c.openstack_app_cred.is_some() {
                c.openstack_roles.clone()
            } else {
                crate::bootstrap::with_implied(
                    &st.db,
                    store::effective_roles_of(&st.db, &c.sub, &project_id, "", "").await?,
                )
                .await?
                .into_iter()
                .map(|r| crate::tokens::RoleRef {
                    id: r.id,
                    name: r.name,
                })
                .collect()
            };
            let mut out = Vec::new();
            for r in asked {
                let held = now_held
                    .iter()
                    .find(|h| {
                        Some(h.id.as_str()) == r["id"].as_str()
                            || Some(h.name.as_str()) == r["name"].as_str()
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "Invalid application credential: the user does not hold the role {r} \
                             on project {project_id}."
                        ))
                    })?;
                if !out.iter().any(|o: &crate::tokens::RoleRef| o.id == held.id) {
                    out.push(held.clone());
                }
            }
            out
        }
        other => {
            return Err(bad(format!(
                "Invalid input for field 'roles': {other} is not an array."
            )))
        }
    };
    let secret = match string_field(&a, "secret")? {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => new_secret(),
    };
    let cred = AppCredential {
        id: store::new_id(),
        name,
        user_id: c.sub.clone(),
        project_id,
        secret_hash: crate::password::hash_off_thread(&secret)
            .await
            .map_err(ApiError::Internal)?,
        description: string_field(&a, "description")?.map(str::to_owned),
        expires_at_us,
        unrestricted: bool_field(&a, "unrestricted")?.unwrap_or(false),
        roles: serde_json::to_string(&roles).unwrap_or_else(|_| "[]".into()),
    };
    if !store::create_app_credential(&st.db, &cred).await? {
        return Err(ApiError::Conflict(format!(
            "Conflict occurred attempting to store application_credential - Duplicate \
             application credential name {}.",
            cred.name
        )));
    }
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Created()
        .json(json!({"application_credential": view(&cred, &base, Some(&secret))})))
}

#[derive(serde::Deserialize, Default)]
struct NameQuery {
    name: Option<String>,
}

pub(super) async fn list_app_credentials(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    user_id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    if !may_read(&c, &user_id) {
        return Err(KEYSTONE.denied("identity:list_application_credentials"));
    }
    let q = web::Query::<NameQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let base = v3_url(&req, &st.settings);
    let items = store::app_credentials(&st.db, &user_id, q.name.as_deref())
        .await?
        .iter()
        .map(|a| view(a, &base, None))
        .collect();
    Ok(collection(
        "application_credentials",
        items,
        format!("{base}/users/{user_id}/application_credentials"),
    ))
}

/// The credential `id` of `user_id`, for a caller who may act on it.
async fn owned(
    req: &HttpRequest,
    st: &IdentityState,
    user_id: &str,
    id: &str,
    action: &str,
    writing: bool,
) -> ApiResult<AppCredential> {
    let c = caller(req, st)?;
    let allowed = if writing {
        c.sub == user_id || has_role(&c, "admin")
    } else {
        may_read(&c, user_id)
    };
    if !allowed {
        return Err(KEYSTONE.denied(action));
    }
    if writing && c.openstack_app_cred.as_ref().is_some_and(|a| a.restricted) {
        return Err(ApiError::Forbidden(
            "Using method 'application_credential' is not allowed for managing additional \
             application credentials."
                .into(),
        ));
    }
    store::app_credential(&st.db, id)
        .await?
        .filter(|a| a.user_id == user_id)
        .ok_or_else(|| not_found(id))
}

pub(super) async fn show_app_credential(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (user_id, id) = path.into_inner();
    let a = owned(
        &req,
        &st,
        &user_id,
        &id,
        "identity:get_application_credential",
        false,
    )
    .await?;
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Ok().json(json!({"application_credential": view(&a, &base, None)})))
}

pub(super) async fn delete_app_credential(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (user_id, id) = path.into_inner();
    owned(
        &req,
        &st,
        &user_id,
        &id,
        "identity:delete_application_credential",
        true,
    )
    .await?;
    // Its tokens end first, so that a failed delete leaves nothing valid that should not be.
    st.tokens.revoke_app_credential(&id).await?;
    if !store::delete_app_credential(&st.db, &id).await? {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The `application_credential` auth method: the credential (by id, or by name and its user),
/// its secret, unexpired, its user enabled and still holding each of its roles on its project,
/// which must be enabled (their domains too). Returns the user, the project, the roles (with
/// those they imply), the token's claim and the credential's expiry in seconds (the token's
/// latest); any failure is Keystone's 401. A scope may not be asked for (the
/// credential's project is the scope).
pub(super) async fn authenticate(
    st: &IdentityState,
    v: &Value,
    scope: &Value,
) -> ApiResult<(User, Project, Vec<Role>, AppCredClaim, Option<i64>)> {
    let secret = v["secret"]
        .as_str()
        .ok_or_else(|| bad("application_credential.secret is required."))?;
    let cred = if let Some(id) = v["id"].as_str() {
        store::app_credential(&st.db, id).await?
    } else if let Some(name) = v["name"].as_str() {
        let u = &v["user"];
        let user = if let Some(id) = u["id"].as_str() {
            store::user(&st.db, id).await?
        } else if let (Some(n), true) = (u["name"].as_str(), u["domain"].is_object()) {
            match super::auth::find_domain(&st.db, &u["domain"]).await.ok() {
                Some(d) => store::user_by_name(&st.db, &d, n).await?,
                None => None,
            }
        } else {
            return Err(bad(
                "An application credential by name needs its user (an id, or a name and a domain).",
            ));
        };
        match user {
            Some(user) => store::app_credentials(&st.db, &user.id, Some(name))
                .await?
                .into_iter()
                .next(),
            None => None,
        }
    } else {
        return Err(bad(
            "application_credential needs an id, or a name and a user.",
        ));
    };
    // One argon2 check whether or not the credential exists (the time tells nothing).
    let Some(cred) = cred else {
        crate::password::check(secret, None).await;
        return Err(unauthorized());
    };
    if !crate::password::check(secret, Some(cred.secret_hash.clone())).await {
        return Err(unauthorized());
    }
    if cred
        .expires_at_us
        .is_some_and(|e| e <= nova_core::time::now_ms() * 1000)
    {
        return Err(unauthorized());
    }
    if !(scope.is_null() || scope["project"]["id"].as_str() == Some(cred.project_id.as_str())) {
        return Err(unauthorized());
    }
    let user = store::user(&st.db, &cred.user_id)
        .await?
        .filter(|u| u.enabled)
        .ok_or_else(unauthorized)?;
    let project = store::project(&st.db, &cred.project_id)
        .await?
        .filter(|p| p.enabled)
        .ok_or_else(unauthorized)?;
    // Their domains too: a disabled domain's users and projects get no tokens.
    for domain in [&user.domain_id, &project.domain_id] {
        if !store::domain(&st.db, domain)
            .await?
            .is_some_and(|d| d.enabled)
        {
            return Err(unauthorized());
        }
    }
    let held = crate::bootstrap::with_implied(
        &st.db,
        store::effective_roles_of(&st.db, &user.id, &project.id, "", "").await?,
    )
    .await?;
    let wanted: Vec<crate::tokens::RoleRef> = serde_json::from_str(&cred.roles).unwrap_or_default();
    let mut roles = Vec::new();
    for w in &wanted {
        let role = held
            .iter()
            .find(|h| h.id == w.id)
            .cloned()
            .ok_or_else(unauthorized)?;
        roles.push(role);
    }
    if roles.is_empty() {
        return Err(unauthorized());
    }
    let roles = crate::bootstrap::with_implied(&st.db, roles).await?;
    let claim = AppCredClaim {
        id: cred.id.clone(),
        name: cred.name.clone(),
        restricted: !cred.unrestricted,
    };
    // Its tokens expire with it at the latest (whole seconds, rounded down).
    let not_after = cred.expires_at_us.map(|us| us.div_euclid(1_000_000));
    Ok((user, project, roles, claim, not_after))
}
