//! Role assignments: grants of a role to a user on a project or a domain, and their listing.

use super::roles::role_view;
use super::*;

/// Checks that the project, user and role of a grant exist.
pub(super) async fn grant_parts(
    st: &IdentityState,
    project: &str,
    user: &str,
    role: &str,
) -> ApiResult<()> {
    if store::project(&st.db, project).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Could not find project: {project}."
        )));
    }
    if store::user(&st.db, user).await?.is_none() {
        return Err(ApiError::NotFound(format!("Could not find user: {user}.")));
    }
    if store::role(&st.db, role).await?.is_none() {
        return Err(ApiError::NotFound(format!("Could not find role: {role}.")));
    }
    Ok(())
}

pub(super) async fn add_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_grant")?;
    let (project, user, role) = path.into_inner();
    grant_parts(&st, &project, &user, &role).await?;
    store::grant(&st.db, &user, &role, &project, "")
        .await
        .map_err(conflict_or_internal)?;
    // Tokens carry their roles: the user's tokens for this project are replaced.
    st.tokens.revoke_user(&user, Some(&project)).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn add_domain_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_grant")?;
    let (domain, user, role) = path.into_inner();
    if store::domain(&st.db, &domain).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Could not find domain: {domain}."
        )));
    }
    if store::user(&st.db, &user).await?.is_none() {
        return Err(ApiError::NotFound(format!("Could not find user: {user}.")));
    }
    if store::role(&st.db, &role).await?.is_none() {
        return Err(ApiError::NotFound(format!("Could not find role: {role}.")));
    }
    store::grant(&st.db, &user, &role, "", &domain)
        .await
        .map_err(conflict_or_internal)?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn check_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    require_reader(&req, &st, "identity:check_grant")?;
    let (project, user, role) = path.into_inner();
    let has = store::roles_of(&st.db, &user, &project, "")
        .await?
        .iter()
        .any(|r| r.id == role);
    if has {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("Could not find role assignment.".into()))
    }
}

pub(super) async fn remove_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:revoke_grant")?;
    let (project, user, role) = path.into_inner();
    if !store::revoke_grant(&st.db, &user, &role, &project, "").await? {
        return Err(ApiError::NotFound("Could not find role assignment.".into()));
    }
    st.tokens.revoke_user(&user, Some(&project)).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn list_grants(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
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

pub(super) async fn role_assignments(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
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
