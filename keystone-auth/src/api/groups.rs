//! Groups of users: Keystone's create, list, show, update and delete, and membership. A
//! group's role grants (see [`super::grants`]) are its members' roles too, so a change of
//! membership or a deleted group ends the tokens that named those roles.

use super::users::user_view;
use super::*;
use nova_db::identity::Group;

/// Keystone's group names: 1 to 64 characters.
const NAME_MAX: usize = 64;

fn group_view(g: &Group, base: &str) -> Value {
    json!({"id": g.id, "name": g.name, "domain_id": g.domain_id, "description": g.description,
           "links": {"self": format!("{base}/groups/{}", g.id)}})
}

pub(super) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find group: {id}."))
}

/// A group the caller may read: a cloud reader any, a domain reader its domain's.
async fn readable_group(
    req: &HttpRequest,
    st: &IdentityState,
    id: &str,
    action: &str,
) -> ApiResult<Group> {
    let c = require_reader(req, st, action)?;
    let g = store::group(&st.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !cloud_reader(&c) && c.openstack_domain_id.as_deref() != Some(g.domain_id.as_str()) {
        return Err(KEYSTONE.denied(action));
    }
    Ok(g)
}

pub(super) async fn create_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_group")?;
    let body = json_body(&raw)?;
    let g = Value::Object(body_object(&body, "group")?.clone());
    let domain_id = string_field(&g, "domain_id")?
        .unwrap_or(store::DEFAULT_DOMAIN_ID)
        .to_owned();
    if store::domain(&st.db, &domain_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
    }
    let name = string_field(&g, "name")?.ok_or_else(|| bad("'name' is a required property."))?;
    let group = Group {
        id: store::new_id(),
        name: checked_name(name, NAME_MAX)?,
        domain_id,
        description: string_field(&g, "description")?
            .unwrap_or_default()
            .to_owned(),
    };
    store::create_group(&st.db, &group)
        .await
        .map_err(conflict_or_internal)?;
    Ok(HttpResponse::Created()
        .json(json!({"group": group_view(&group, &v3_url(&req, &st.settings))})))
}

pub(super) async fn list_groups(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = require_reader(&req, &st, "identity:list_groups")?;
    let f = filter(&req);
    let domain = domain_limit(&c, f.domain_id.clone(), "identity:list_groups")?;
    let base = v3_url(&req, &st.settings);
    let items = store::groups(&st.db, f.name.as_deref(), domain.as_deref())
        .await?
        .iter()
        .map(|g| group_view(g, &base))
        .collect();
    Ok(collection("groups", items, format!("{base}/groups")))
}

pub(super) async fn show_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let g = readable_group(&req, &st, &id, "identity:get_group").await?;
    Ok(HttpResponse::Ok().json(json!({"group": group_view(&g, &v3_url(&req, &st.settings))})))
}

pub(super) async fn update_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_group")?;
    let body = json_body(&raw)?;
    let patch = Value::Object(body_object(&body, "group")?.clone());
    let mut g = store::group(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if string_field(&patch, "domain_id")?.is_some_and(|d| d != g.domain_id) {
        return Err(bad("Cannot change Domain ID."));
    }
    if let Some(n) = string_field(&patch, "name")? {
        g.name = checked_name(n, NAME_MAX)?;
    }
    if let Some(d) = string_field(&patch, "description")? {
        g.description = d.to_owned();
    }
    if !store::update_group(&st.db, &g)
        .await
        .map_err(conflict_or_internal)?
    {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::Ok().json(json!({"group": group_view(&g, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_group")?;
    let members = store::group_members(&st.db, &id).await?;
    if !store::delete_group(&st.db, &id).await? {
        return Err(not_found(&id));
    }
    // The roles the group gave its members are gone: so are the tokens that named them.
    for m in members {
        st.tokens.revoke_user(&m.id, None).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn group_and_user(st: &IdentityState, group: &str, user: &str) -> ApiResult<()> {
    store::group(&st.db, group)
        .await?
        .ok_or_else(|| not_found(group))?;
    store::user(&st.db, user)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Could not find user: {user}.")))?;
    Ok(())
}

pub(super) async fn add_member(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:add_user_to_group")?;
    let (group, user) = path.into_inner();
    group_and_user(&st, &group, &user).await?;
    store::add_member(&st.db, &group, &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn check_member(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (group, user) = path.into_inner();
    let g = readable_group(&req, &st, &group, "identity:check_user_in_group").await?;
    group_and_user(&st, &group, &user).await?;
    // Keystone's: a domain reader checks users of its own domain only.
    let c = caller(&req, &st)?;
    let user_domain = store::user(&st.db, &user).await?.map(|u| u.domain_id);
    if !cloud_reader(&c) && user_domain.as_deref() != Some(g.domain_id.as_str()) {
        return Err(KEYSTONE.denied("identity:check_user_in_group"));
    }
    if store::group_members(&st.db, &group)
        .await?
        .iter()
        .any(|u| u.id == user)
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "User '{user}' not found in group '{group}'."
        )))
    }
}

pub(super) async fn remove_member(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:remove_user_from_group")?;
    let (group, user) = path.into_inner();
    group_and_user(&st, &group, &user).await?;
    if !store::remove_member(&st.db, &group, &user).await? {
        return Err(ApiError::NotFound(format!(
            "User '{user}' not found in group '{group}'."
        )));
    }
    // Keystone's: the user's tokens end, since they may name roles the group gave.
    st.tokens.revoke_user(&user, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn list_members(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    readable_group(&req, &st, &id, "identity:list_users_in_group").await?;
    let base = v3_url(&req, &st.settings);
    let items = store::group_members(&st.db, &id)
        .await?
        .iter()
        .map(|u| user_view(u, &base))
        .collect();
    Ok(collection(
        "users",
        items,
        format!("{base}/groups/{id}/users"),
    ))
}

/// `GET /v3/users/{id}/groups`: the user's own, or a cloud reader's view.
pub(super) async fn groups_of_user(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let user = store::user(&st.db, &id).await?;
    // The user, a cloud reader, or a reader of the user's domain (Keystone's policy).
    let domain_reader = has_role(&c, "reader")
        && c.openstack_domain_id.is_some()
        && user.as_ref().map(|u| &u.domain_id) == c.openstack_domain_id.as_ref();
    if c.sub != *id && !cloud_reader(&c) && !domain_reader {
        return Err(KEYSTONE.denied("identity:list_groups_for_user"));
    }
    user.ok_or_else(|| ApiError::NotFound(format!("Could not find user: {id}.")))?;
    let base = v3_url(&req, &st.settings);
    let items = store::groups_of_user(&st.db, &id)
        .await?
        .iter()
        .map(|g| group_view(g, &base))
        .collect();
    Ok(collection(
        "groups",
        items,
        format!("{base}/users/{id}/groups"),
    ))
}
