//! Roles, and Keystone's implied roles (inference rules: a role that brings others with it).
//! A role is global, or a domain's (domain-specific: granted only on that domain and its
//! projects, and never in a token itself — it brings the roles it implies, as Keystone's).

use super::*;

pub(super) fn role_view(r: &Role, base: &str) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": r.domain_id, "description": r.description, "options": {},
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
    let domain_id = string_field(r, "domain_id")?;
    if let Some(d) = domain_id {
        if store::domain(&st.db, d).await?.is_none() {
            return Err(ApiError::NotFound(format!("Could not find domain: {d}.")));
        }
    }
    let name = required_name(r, "role")?;
    let mut role = store::create_role(&st.db, &store::new_id(), &name, domain_id)
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                // Keystone makes a domain's role names unique within the domain; here they
                // are unique across the deployment.
                ApiError::Conflict(format!(
                    "Conflict occurred attempting to store role - Duplicate entry: role names \
                     are unique across the deployment, and {name} is taken."
                ))
            } else {
                ApiError::from(e)
            }
        })?;
    if let Some(d) = string_field(r, "description")? {
        role.description = Some(d.to_owned());
        store::update_role(&st.db, &role).await?;
    }
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
    // The global roles, or (`domain_id`) a domain's, as Keystone lists them.
    let items = store::roles(&st.db, f.name.as_deref(), f.domain_id.as_deref())
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

/// Revokes the tokens of every user holding `role` or a role that implies it, transitively.
async fn end_tokens_bringing(st: &IdentityState, role: &str) -> ApiResult<()> {
    let rules = store::implied_roles(&st.db).await?;
    let mut roles = vec![role.to_owned()];
    let mut i = 0;
    while i < roles.len() {
        for (prior, implied) in &rules {
            if *implied == roles[i] && !roles.contains(prior) {
                roles.push(prior.clone());
            }
        }
        i += 1;
    }
    let mut users: Vec<String> = Vec::new();
    for r in &roles {
        for u in store::holders_of_role(&st.db, r).await? {
            if !users.contains(&u) {
                users.push(u);
            }
        }
    }
    for user in users {
        st.tokens.revoke_user(&user, None).await?;
    }
    Ok(())
}

pub(super) async fn delete_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_role")?;
    // Tokens carry their roles: every token that could name this one — its holders', and
    // those of every role that brings it — ends with it. Revoked first, so that a failed
    // delete leaves nothing valid that should not be.
    end_tokens_bringing(&st, &id).await?;
    if !store::delete_role(&st.db, &id).await? {
        return Err(ApiError::NotFound(format!("Could not find role: {id}.")));
    }
    Ok(HttpResponse::NoContent().finish())
}

fn role_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find role: {id}."))
}

async fn existing_role(st: &IdentityState, id: &str) -> ApiResult<Role> {
    store::role(&st.db, id)
        .await?
        .ok_or_else(|| role_not_found(id))
}

pub(super) async fn update_role(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_role")?;
    let body = json_body(&raw)?;
    let patch = Value::Object(body_object(&body, "role")?.clone());
    let mut role = existing_role(&st, &id).await?;
    if string_field(&patch, "domain_id")?.is_some_and(|d| Some(d) != role.domain_id.as_deref()) {
        return Err(bad("Cannot change the domain of a role."));
    }
    if let Some(n) = string_field(&patch, "name")? {
        role.name = checked_name(n, 255)?;
    }
    if patch.get("description").is_some() {
        role.description = string_field(&patch, "description")?.map(str::to_owned);
    }
    if !store::update_role(&st.db, &role)
        .await
        .map_err(conflict_or_internal)?
    {
        return Err(role_not_found(&id));
    }
    Ok(HttpResponse::Ok().json(json!({"role": role_view(&role, &v3_url(&req, &st.settings))})))
}

/// A role as an inference rule shows it: id, name and link.
fn role_ref(r: &Role, base: &str) -> Value {
    json!({"id": r.id, "name": r.name, "links": {"self": format!("{base}/roles/{}", r.id)}})
}

/// The rule `prior` ⇒ `implied`, both roles existing.
async fn rule(st: &IdentityState, prior: &str, implied: &str) -> ApiResult<(Role, Role)> {
    Ok((
        existing_role(st, prior).await?,
        existing_role(st, implied).await?,
    ))
}

fn rule_view(prior: &Role, implied: &Role, base: &str) -> Value {
    json!({"role_inference": {"prior_role": role_ref(prior, base), "implies": role_ref(implied, base)},
           "links": {"self": format!("{base}/roles/{}/implies/{}", prior.id, implied.id)}})
}

pub(super) async fn create_inference(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_implied_role")?;
    let (prior, implied) = path.into_inner();
    let (p, i) = rule(&st, &prior, &implied).await?;
    // Keystone's `prohibited_implied_role` default: no role brings `admin` with it.
    if i.name == "admin" {
        return Err(ApiError::Forbidden(format!(
            "{implied} cannot be an implied role."
        )));
    }
    if p.id == i.id {
        return Err(bad("A role cannot imply itself."));
    }
    // Keystone's: a global role brings no domain-specific one (that would put a domain's role
    // into tokens of every domain).
    if p.domain_id.is_none() && i.domain_id.is_some() {
        return Err(ApiError::Forbidden(format!(
            "{implied} is a domain-specific role and cannot be implied by the global role {prior}."
        )));
    }
    store::add_implied_role(&st.db, &p.id, &i.id).await?;
    Ok(HttpResponse::Created().json(rule_view(&p, &i, &v3_url(&req, &st.settings))))
}

/// `GET` (the rule) and `HEAD` (204) of `/v3/roles/{prior}/implies/{implied}`.
pub(super) async fn show_inference(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_reader(&req, &st, "identity:get_implied_role")?;
    let (prior, implied) = path.into_inner();
    let (p, i) = rule(&st, &prior, &implied).await?;
    if !store::implied_by(&st.db, &p.id)
        .await?
        .iter()
        .any(|r| r.id == i.id)
    {
        return Err(ApiError::NotFound(format!(
            "{prior} does not imply {implied}."
        )));
    }
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(HttpResponse::NoContent().finish());
    }
    Ok(HttpResponse::Ok().json(rule_view(&p, &i, &v3_url(&req, &st.settings))))
}

pub(super) async fn delete_inference(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_implied_role")?;
    let (prior, implied) = path.into_inner();
    rule(&st, &prior, &implied).await?;
    // The tokens that got `implied` through this rule end with it: those of every holder of
    // `prior` or of a role that brings `prior` (tokens carry their roles; Keystone works them
    // out at each validation).
    end_tokens_bringing(&st, &prior).await?;
    if !store::remove_implied_role(&st.db, &prior, &implied).await? {
        return Err(ApiError::NotFound(format!(
            "{prior} does not imply {implied}."
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v3/roles/{prior}/implies`: the roles `prior` implies directly.
pub(super) async fn list_implied(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    prior: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_implied_roles")?;
    let p = existing_role(&st, &prior).await?;
    let base = v3_url(&req, &st.settings);
    let implies: Vec<Value> = store::implied_by(&st.db, &p.id)
        .await?
        .iter()
        .map(|r| role_ref(r, &base))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "role_inference": {"prior_role": role_ref(&p, &base), "implies": implies},
        "links": {"self": format!("{base}/roles/{}/implies", p.id)}})))
}

/// `GET /v3/role_inferences`: every rule, grouped by prior role.
pub(super) async fn list_inferences(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    require_reader(&req, &st, "identity:list_role_inference_rules")?;
    let base = v3_url(&req, &st.settings);
    let roles = store::all_roles(&st.db).await?;
    let by_id = |id: &str| roles.iter().find(|r| r.id == id);
    let mut out: Vec<Value> = Vec::new();
    let mut current: Option<String> = None;
    for (prior, implied) in store::implied_roles(&st.db).await? {
        let (Some(p), Some(i)) = (by_id(&prior), by_id(&implied)) else {
            continue;
        };
        if current.as_deref() != Some(prior.as_str()) {
            out.push(json!({"prior_role": role_ref(p, &base), "implies": []}));
            current = Some(prior.clone());
        }
        if let Some(Value::Array(list)) = out.last_mut().map(|v| &mut v["implies"]) {
            list.push(role_ref(i, &base));
        }
    }
    Ok(HttpResponse::Ok().json(json!({"role_inferences": out,
        "links": {"self": format!("{base}/role_inferences")}})))
}
