//! Domains: Keystone's create, list, show, update and delete. A domain is deleted only once
//! disabled, and takes its projects, users and grants with it; disabling one ends every token
//! scoped to it, to its projects, or held by its users.

use super::*;
use nova_db::identity::Domain;

fn domain_view(d: &Domain, base: &str) -> Value {
    json!({"id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled,
           "tags": [], "options": {}, "links": {"self": format!("{base}/domains/{}", d.id)}})
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find domain: {id}."))
}

/// Keystone's domain names: 1 to 64 characters.
const NAME_MAX: usize = 64;

pub(super) async fn list_domains(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    // A cloud reader lists every domain; a domain reader its own (Keystone's policy).
    let only: Option<String> = if cloud_reader(&c) {
        None
    } else if has_role(&c, "reader") && c.openstack_domain_id.is_some() {
        c.openstack_domain_id.clone()
    } else {
        return Err(KEYSTONE.denied("identity:list_domains"));
    };
    let q = filter(&req);
    let enabled = q.enabled();
    let base = v3_url(&req, &st.settings);
    let items = store::domains(&st.db)
        .await?
        .iter()
        .filter(|d| q.name.as_ref().is_none_or(|n| *n == d.name))
        .filter(|d| enabled.is_none_or(|e| e == d.enabled))
        .filter(|d| only.as_ref().is_none_or(|o| *o == d.id))
        .map(|d| domain_view(d, &base))
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
    let allowed = cloud_reader(&c)
        || c.openstack_domain_id.as_deref() == Some(id.as_str())
        || own_project_domain.as_deref() == Some(id.as_str());
    if !allowed {
        return Err(KEYSTONE.denied("identity:get_domain"));
    }
    let d = store::domain(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(json!({"domain": domain_view(&d, &v3_url(&req, &st.settings))})))
}

pub(super) async fn create_domain(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_domain")?;
    let body = json_body(&raw)?;
    let d = Value::Object(body_object(&body, "domain")?.clone());
    let domain = create(&st, &d).await?;
    Ok(HttpResponse::Created()
        .json(json!({"domain": domain_view(&domain, &v3_url(&req, &st.settings))})))
}

/// Creates a domain from a request's object (a domain's, or an `is_domain` project's).
pub(super) async fn create(st: &IdentityState, d: &Value) -> ApiResult<Domain> {
    let name = string_field(d, "name")?.ok_or_else(|| bad("'name' is a required property."))?;
    let domain = Domain {
        id: store::new_id(),
        name: checked_name(name, NAME_MAX)?,
        description: string_field(d, "description")?
            .unwrap_or_default()
            .to_owned(),
        enabled: bool_field(d, "enabled")?.unwrap_or(true),
    };
    store::create_domain(&st.db, &domain)
        .await
        .map_err(conflict_or_internal)?;
    Ok(domain)
}

pub(super) async fn update_domain(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_domain")?;
    let body = json_body(&raw)?;
    let patch = Value::Object(body_object(&body, "domain")?.clone());
    if patch
        .get("id")
        .is_some_and(|v| v.as_str() != Some(id.as_str()))
    {
        return Err(bad("Cannot change the ID of a domain."));
    }
    let d = update(&st, &id, &patch).await?;
    Ok(HttpResponse::Ok().json(json!({"domain": domain_view(&d, &v3_url(&req, &st.settings))})))
}

/// Applies a request's changes (name, description, enabled) to a domain; a disabled domain's
/// tokens end.
pub(super) async fn update(st: &IdentityState, id: &str, patch: &Value) -> ApiResult<Domain> {
    let mut d = store::domain(&st.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(n) = string_field(patch, "name")? {
        d.name = checked_name(n, NAME_MAX)?;
    }
    if let Some(desc) = string_field(patch, "description")? {
        d.description = desc.to_owned();
    }
    if let Some(e) = bool_field(patch, "enabled")? {
        d.enabled = e;
    }
    if !store::update_domain(&st.db, &d)
        .await
        .map_err(conflict_or_internal)?
    {
        return Err(not_found(id));
    }
    // Whenever the result is disabled (not only on the change): a revocation that failed
    // before is made by sending the same update again.
    if !d.enabled {
        end_tokens_of_domain(st, &d.id).await?;
    }
    Ok(d)
}

pub(super) async fn delete_domain(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_domain")?;
    remove(&st, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a disabled domain with everything in it.
pub(super) async fn remove(st: &IdentityState, id: &str) -> ApiResult<()> {
    let d = store::domain(&st.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    // Keystone's guard against deleting a domain in use by mistake.
    if d.enabled {
        return Err(ApiError::Forbidden(
            "Cannot delete a domain that is enabled, please disable it first.".into(),
        ));
    }
    // Its tokens ended when it was disabled; ended again here, in case that failed.
    end_tokens_of_domain(st, id).await?;
    if !store::delete_domain(&st.db, id).await? {
        return Err(not_found(id));
    }
    Ok(())
}

/// Ends every token scoped to the domain or to one of its projects, and every token of its
/// users (Keystone's revocation on disabling a domain).
async fn end_tokens_of_domain(st: &IdentityState, domain_id: &str) -> ApiResult<()> {
    st.tokens.revoke_scope(domain_id).await?;
    for p in store::projects(&st.db, None, Some(domain_id)).await? {
        st.tokens.revoke_scope(&p.id).await?;
    }
    for u in store::users(&st.db, None, Some(domain_id)).await? {
        st.tokens.revoke_user(&u.id, None).await?;
    }
    Ok(())
}
