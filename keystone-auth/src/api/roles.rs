//! Roles.

use super::*;

pub(super) fn role_view(r: &Role, base: &str) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": null, "description": null, "options": {},
           "links": {"self": format!("{base}/roles/{}", r.id)}})
}

pub(super) async fn create_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_role")?;
    let body = json_body(&raw)?;
    let r = &body["role"];
    if !r.is_object() {
        return Err(bad("'role' is a required property."));
    }
    let role = store::create_role(&st.db, &store::new_id(), &required_name(r, "role")?)
        .await
        .map_err(conflict_or_internal)?;
    Ok(
        HttpResponse::Created()
            .json(json!({"role": role_view(&role, &v3_url(&req, &st.settings))})),
    )
}

pub(super) async fn list_roles(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
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

pub(super) async fn show_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_reader(&req, &st, "identity:get_role")?;
    let r = store::role(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Could not find role: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"role": role_view(&r, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_role")?;
    if !store::delete_role(&st.db, &id).await? {
        return Err(ApiError::NotFound(format!("Could not find role: {id}.")));
    }
    Ok(HttpResponse::NoContent().finish())
}
