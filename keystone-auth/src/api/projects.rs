//! Domains (read-only: the bootstrap's `default`) and projects.

use super::*;

pub(super) fn project_view(p: &Project, base: &str) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
        "enabled": p.enabled, "is_domain": false, "parent_id": p.domain_id, "tags": [], "options": {},
        "links": {"self": format!("{base}/projects/{}", p.id)},
    })
}

pub(super) async fn list_domains(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    // Keystone's system reader only.
    require_admin(&req, &st, "identity:list_domains")?;
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

pub(super) async fn show_domain(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    // Keystone's: a system reader, or a token scoped to the domain or to one of its projects.
    let c = caller(&req, &st)?;
    let own_project_domain = match &c.openstack_project_id {
        Some(p) => store::project(&st.db, p).await?.map(|p| p.domain_id),
        None => None,
    };
    let allowed = has_role(&c, "admin")
        || c.openstack_domain_id.as_deref() == Some(id.as_str())
        || own_project_domain.as_deref() == Some(id.as_str());
    if !allowed {
        return Err(KEYSTONE.denied("identity:get_domain"));
    }
    let base = v3_url(&req, &st.settings);
    let d = store::domain(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Could not find domain: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"domain": {"id": d.id, "name": d.name, "description": d.description,
        "enabled": d.enabled, "tags": [], "options": {}, "links": {"self": format!("{base}/domains/{}", d.id)}}})))
}

pub(super) async fn create_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
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
        return Err(ApiError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
    }
    let name = required_name(p, "project")?;
    // Keystone's project schema: names of at most 64 characters.
    if name.chars().count() > 64 {
        return Err(bad(format!(
            "Invalid input for field 'name': '{name}' is too long (more than 64 characters)."
        )));
    }
    let project = Project {
        id: store::new_id(),
        name,
        domain_id,
        description: string_field(p, "description")?
            .unwrap_or_default()
            .to_owned(),
        enabled: p["enabled"].as_bool().unwrap_or(true),
    };
    store::create_project(&st.db, &project)
        .await
        .map_err(conflict_or_internal)?;
    Ok(HttpResponse::Created()
        .json(json!({"project": project_view(&project, &v3_url(&req, &st.settings))})))
}

pub(super) async fn list_projects(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = require_reader(&req, &st, "identity:list_projects")?;
    let f = filter(&req);
    let domain = domain_limit(&c, f.domain_id, "identity:list_projects")?;
    let base = v3_url(&req, &st.settings);
    let items = store::projects(&st.db, f.name.as_deref(), domain.as_deref())
        .await?
        .iter()
        .map(|p| project_view(p, &base))
        .collect();
    Ok(collection("projects", items, format!("{base}/projects")))
}

pub(super) async fn show_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    // A member may see their own project; a domain reader its domain's.
    let p = store::project(&st.db, &id).await?;
    let allowed = has_role(&c, "admin")
        || c.openstack_project_id.as_deref() == Some(id.as_str())
        || (has_role(&c, "reader")
            && c.openstack_domain_id.is_some()
            && p.as_ref().map(|p| &p.domain_id) == c.openstack_domain_id.as_ref());
    if !allowed {
        return Err(KEYSTONE.denied("identity:get_project"));
    }
    let p = p.ok_or_else(|| ApiError::NotFound(format!("Could not find project: {id}.")))?;
    Ok(HttpResponse::Ok().json(json!({"project": project_view(&p, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_project")?;
    if !store::delete_project(&st.db, &id).await? {
        return Err(ApiError::NotFound(format!("Could not find project: {id}.")));
    }
    Ok(HttpResponse::NoContent().finish())
}
