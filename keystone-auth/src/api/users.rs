//! Users, and the projects a user has roles in.

use super::projects::project_views;
use super::*;
use crate::password;

/// Attributes with columns of their own, or that Keystone never stores as `extra`.
const FIXED: [&str; 9] = [
    "id",
    "name",
    "domain_id",
    "enabled",
    "password",
    "email",
    "default_project_id",
    "options",
    "links",
];

/// Keystone's user names: 1 to 255 characters.
const NAME_MAX: usize = 255;

pub(super) fn user_view(u: &User, base: &str) -> Value {
    // Keystone shows `extra` (description and any other attribute given) at the top level.
    let mut v = match serde_json::from_str::<Value>(&u.extra) {
        Ok(Value::Object(m)) => Value::Object(m),
        _ => json!({}),
    };
    for (k, val) in [
        ("id", json!(u.id)),
        ("name", json!(u.name)),
        ("domain_id", json!(u.domain_id)),
        ("enabled", json!(u.enabled)),
        ("password_expires_at", Value::Null),
        ("options", json!({})),
        ("links", json!({"self": format!("{base}/users/{}", u.id)})),
    ] {
        v[k] = val;
    }
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    v
}

/// Writes the attributes of a create or update body onto `u`: the fixed ones checked, the others
/// into `extra` (`null` removes one). Returns the password given, if any (`Some(None)`: none
/// any more), for the caller to hash in the password pool.
fn apply(u: &mut User, body: &serde_json::Map<String, Value>) -> ApiResult<Option<Option<String>>> {
    let obj = Value::Object(body.clone());
    if let Some(n) = string_field(&obj, "name")? {
        u.name = checked_name(n, NAME_MAX)?;
    }
    if let Some(e) = bool_field(&obj, "enabled")? {
        u.enabled = e;
    }
    if body.contains_key("email") {
        u.email = string_field(&obj, "email")?.map(str::to_owned);
    }
    if body.contains_key("default_project_id") {
        u.default_project_id = string_field(&obj, "default_project_id")?.map(str::to_owned);
    }
    let password = if body.contains_key("password") {
        Some(string_field(&obj, "password")?.map(str::to_owned))
    } else {
        None
    };
    let mut extra = match serde_json::from_str::<Value>(&u.extra) {
        Ok(Value::Object(m)) => m,
        _ => Default::default(),
    };
    for (k, v) in body {
        if FIXED.contains(&k.as_str()) {
            continue;
        }
        if v.is_null() {
            extra.remove(k);
        } else {
            extra.insert(k.clone(), v.clone());
        }
    }
    u.extra = Value::Object(extra).to_string();
    Ok(password)
}

/// Sets the hash of a password that [`apply`] returned.
async fn set_password(u: &mut User, password: Option<Option<String>>) -> ApiResult<()> {
    if let Some(p) = password {
        u.password_hash = match p {
            Some(p) => Some(
                password::hash_off_thread(&p)
                    .await
                    .map_err(ApiError::Internal)?,
            ),
            None => None,
        };
    }
    Ok(())
}

pub(super) async fn user_projects(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    // Keystone's: the user, an admin, or a reader of the user's domain.
    let domain_reader = has_role(&c, "reader")
        && c.openstack_domain_id.is_some()
        && store::user(&st.db, &id).await?.map(|u| u.domain_id) == c.openstack_domain_id;
    if c.sub != *id && !cloud_reader(&c) && !domain_reader {
        return Err(KEYSTONE.denied("identity:list_user_projects"));
    }
    let base = v3_url(&req, &st.settings);
    let projects = store::projects_of_user(&st.db, &id).await?;
    let items = project_views(&st.db, &projects, &base).await?;
    Ok(collection(
        "projects",
        items,
        format!("{base}/users/{id}/projects"),
    ))
}

pub(super) async fn create_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_user")?;
    let body = json_body(&raw)?;
    let u = body_object(&body, "user")?;
    let obj = Value::Object(u.clone());
    let domain_id = string_field(&obj, "domain_id")?
        .unwrap_or(store::DEFAULT_DOMAIN_ID)
        .to_owned();
    if store::domain(&st.db, &domain_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
    }
    if string_field(&obj, "name")?.is_none() {
        return Err(bad("'name' is a required property."));
    }
    let mut user = User {
        id: store::new_id(),
        name: String::new(),
        domain_id,
        enabled: true,
        email: None,
        default_project_id: None,
        password_hash: None,
        extra: "{}".into(),
    };
    let password = apply(&mut user, u)?;
    set_password(&mut user, password).await?;
    store::create_user(&st.db, &user)
        .await
        .map_err(conflict_or_internal)?;
    Ok(
        HttpResponse::Created()
            .json(json!({"user": user_view(&user, &v3_url(&req, &st.settings))})),
    )
}

pub(super) async fn update_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_user")?;
    let body = json_body(&raw)?;
    let patch = body_object(&body, "user")?;
    let mut user = store::user(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Could not find user: {id}.")))?;
    if let Some(d) = patch.get("domain_id").and_then(Value::as_str) {
        if d != user.domain_id {
            return Err(bad("Cannot change Domain ID."));
        }
    }
    let password = apply(&mut user, patch)?;
    set_password(&mut user, password).await?;
    if !store::update_user(&st.db, &user)
        .await
        .map_err(conflict_or_internal)?
    {
        return Err(ApiError::NotFound(format!("Could not find user: {id}.")));
    }
    // As Keystone: a disabled user's tokens, and those issued before a password change, end.
    // Whenever the result is disabled, so that sending it again repairs a failed revocation.
    if !user.enabled || patch.contains_key("password") {
        st.tokens.revoke_user(&user.id, None).await?;
    }
    Ok(HttpResponse::Ok().json(json!({"user": user_view(&user, &v3_url(&req, &st.settings))})))
}

/// `POST /v3/users/{id}/password`: a user changes their own password, proving the old one
/// (Keystone's self-service change; the old password is the authentication, so a token is not
/// needed). Every token of the user issued before ends.
pub(super) async fn change_password(
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = json_body(&raw)?;
    let u = Value::Object(body_object(&body, "user")?.clone());
    let original = string_field(&u, "original_password")?
        .ok_or_else(|| bad("'original_password' is a required property."))?;
    let new =
        string_field(&u, "password")?.ok_or_else(|| bad("'password' is a required property."))?;
    // The same checks as a login (lockout, disabled domain, the same work whether the user
    // exists or not): the old password is this call's authentication.
    let Some(mut user) = store::user(&st.db, &id).await? else {
        password::check(original, None).await;
        return Err(unauthorized());
    };
    if !super::auth::password_matches(&st, &user, original).await? || !user.enabled {
        return Err(unauthorized());
    }
    user.password_hash = Some(
        password::hash_off_thread(new)
            .await
            .map_err(ApiError::Internal)?,
    );
    store::update_user(&st.db, &user).await?;
    st.tokens.revoke_user(&user.id, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn list_users(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = require_reader(&req, &st, "identity:list_users")?;
    let f = filter(&req);
    let domain = domain_limit(&c, f.domain_id.clone(), "identity:list_users")?;
    let base = v3_url(&req, &st.settings);
    let enabled = f.enabled();
    let items = store::users(&st.db, f.name.as_deref(), domain.as_deref())
        .await?
        .iter()
        .filter(|u| enabled.is_none_or(|e| e == u.enabled))
        .map(|u| user_view(u, &base))
        .collect();
    Ok(collection("users", items, format!("{base}/users")))
}

pub(super) async fn show_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let u = store::user(&st.db, &id).await?;
    let allowed = cloud_reader(&c)
        || c.sub == *id
        || (has_role(&c, "reader")
            && c.openstack_domain_id.is_some()
            && u.as_ref().map(|u| &u.domain_id) == c.openstack_domain_id.as_ref());
    if !allowed {
        return Err(KEYSTONE.denied("identity:get_user"));
    }
    let u = u.ok_or_else(|| ApiError::NotFound(format!("Could not find user: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"user": user_view(&u, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_user")?;
    if !store::delete_user(&st.db, &id).await? {
        return Err(ApiError::NotFound(format!("Could not find user: {id}.")));
    }
    // A deleted user's tokens die with it.
    st.tokens.revoke_user(&id, None).await?;
    Ok(HttpResponse::NoContent().finish())
}
