//! Users, and the projects a user has roles in.

use super::projects::project_view;
use super::*;
use crate::password;

pub(super) fn user_view(u: &User, base: &str) -> Value {
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
    if c.sub != *id && !has_role(&c, "admin") && !domain_reader {
        return Err(KEYSTONE.denied("identity:list_user_projects"));
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

pub(super) async fn create_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
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
        return Err(ApiError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
    }
    let password_hash = match string_field(u, "password")? {
        Some(p) => Some(password::hash(p).map_err(ApiError::Internal)?),
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
    store::create_user(&st.db, &user)
        .await
        .map_err(conflict_or_internal)?;
    Ok(
        HttpResponse::Created()
            .json(json!({"user": user_view(&user, &v3_url(&req, &st.settings))})),
    )
}

pub(super) async fn list_users(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = require_reader(&req, &st, "identity:list_users")?;
    let f = filter(&req);
    let domain = domain_limit(&c, f.domain_id, "identity:list_users")?;
    let base = v3_url(&req, &st.settings);
    let items = store::users(&st.db, f.name.as_deref(), domain.as_deref())
        .await?
        .iter()
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
    let allowed = has_role(&c, "admin")
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
