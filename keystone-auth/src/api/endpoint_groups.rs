//! Keystone's endpoint filter (`/v3/OS-EP-FILTER`): endpoint groups — a filter on interface,
//! service and region — and the endpoints and groups associated with projects. A token scoped
//! to a project with associations lists only those endpoints (`crate::catalog`). Reads are
//! `ADMIN_OR_SYSTEM_READER`, writes the admin's, as Keystone's policy.

use super::*;
use nova_db::catalog::{self as cat, Association, EndpointGroup};

/// The keys an endpoint group may filter on (Keystone's).
const FILTER_KEYS: &[&str] = &["interface", "service_id", "region_id"];

fn group_view(g: &EndpointGroup, base: &str) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "filters": serde_json::from_str::<Value>(&g.filters).unwrap_or_else(|_| json!({})),
        "links": {"self": format!("{base}/OS-EP-FILTER/endpoint_groups/{}", g.id)},
    })
}

fn group_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find endpoint group: {id}."))
}

fn checked_filters(v: &Value) -> ApiResult<String> {
    let f = v
        .as_object()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| bad("Invalid input for field 'filters': not a non-empty object."))?;
    for (k, val) in f {
        if !FILTER_KEYS.contains(&k.as_str()) || !val.is_string() {
            return Err(bad(format!(
                "{k} is not a valid endpoint group filter: the valid ones are interface, \
                 service_id and region_id, each a string."
            )));
        }
    }
    Ok(v.to_string())
}

async fn group(st: &IdentityState, id: &str) -> ApiResult<EndpointGroup> {
    cat::endpoint_group(&st.db, id)
        .await?
        .ok_or_else(|| group_not_found(id))
}

async fn project_exists(st: &IdentityState, id: &str) -> ApiResult<Project> {
    store::project(&st.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Could not find project: {id}.")))
}

async fn endpoint_exists(st: &IdentityState, id: &str) -> ApiResult<()> {
    cat::endpoint(&st.db, id)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("Could not find endpoint: {id}.")))
}

pub(super) async fn create_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_endpoint_group")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "endpoint_group")?;
    let g = Value::Object(obj.clone());
    let group = EndpointGroup {
        id: store::new_id(),
        name: short_string(&g, "name", false)?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("'name' is a required property."))?,
        description: short_string(&g, "description", true)?,
        filters: checked_filters(&g["filters"])?,
    };
    cat::create_endpoint_group(&st.db, &group).await?;
    Ok(HttpResponse::Created()
        .json(json!({"endpoint_group": group_view(&group, &v3_url(&req, &st.settings))})))
}

pub(super) async fn list_groups(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:list_endpoint_groups")?;
    let base = v3_url(&req, &st.settings);
    let name = filter(&req).name;
    let items = cat::endpoint_groups(&st.db)
        .await?
        .iter()
        .filter(|g| name.as_ref().is_none_or(|n| *n == g.name))
        .map(|g| group_view(g, &base))
        .collect();
    Ok(collection(
        "endpoint_groups",
        items,
        format!("{base}/OS-EP-FILTER/endpoint_groups"),
    ))
}

pub(super) async fn show_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:get_endpoint_group")?;
    let g = group(&st, &id).await?;
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(HttpResponse::Ok().finish());
    }
    Ok(HttpResponse::Ok()
        .json(json!({"endpoint_group": group_view(&g, &v3_url(&req, &st.settings))})))
}

pub(super) async fn update_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_endpoint_group")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "endpoint_group")?;
    let v = Value::Object(obj.clone());
    let mut g = group(&st, &id).await?;
    if let Some(n) = short_string(&v, "name", false)? {
        if n.is_empty() {
            return Err(bad("Invalid input for field 'name': '' is too short."));
        }
        g.name = n;
    }
    if obj.contains_key("description") {
        g.description = short_string(&v, "description", true)?;
    }
    if obj.contains_key("filters") {
        g.filters = checked_filters(&v["filters"])?;
    }
    if !cat::update_endpoint_group(&st.db, &g).await? {
        return Err(group_not_found(&id));
    }
    Ok(HttpResponse::Ok()
        .json(json!({"endpoint_group": group_view(&g, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_group(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_endpoint_group")?;
    if !cat::delete_endpoint_group(&st.db, &id).await? {
        return Err(group_not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The endpoints a group's filters match.
pub(super) async fn group_endpoints(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(
        &req,
        &st,
        "identity:list_endpoints_associated_with_endpoint_group",
    )?;
    let g = group(&st, &id).await?;
    let filters: Value = serde_json::from_str(&g.filters).unwrap_or_default();
    let base = v3_url(&req, &st.settings);
    let items = cat::endpoints(&st.db, &cat::EndpointFilter::default())
        .await?
        .iter()
        .filter(|e| cat::matches(&filters, e))
        .map(|e| super::catalog::endpoint_view(e, &base))
        .collect();
    Ok(collection(
        "endpoints",
        items,
        format!("{base}/OS-EP-FILTER/endpoint_groups/{id}/endpoints"),
    ))
}

/// The projects associated with a group (`kind` Group) or an endpoint (`kind` Endpoint).
async fn projects_of(
    req: &HttpRequest,
    st: &IdentityState,
    kind: Association,
    target: &str,
) -> ApiResult<HttpResponse> {
    let base = v3_url(req, &st.settings);
    let mut projects = Vec::new();
    for (_, p) in cat::associations(&st.db, kind, Some(target), None).await? {
        if let Some(p) = store::project(&st.db, &p).await? {
            projects.push(p);
        }
    }
    let items = super::projects::project_views(&st.db, &projects, &base).await?;
    let own = format!("{}{}", base_url(req, &st.settings), req.uri().path());
    Ok(collection("projects", items, own))
}

pub(super) async fn group_projects(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(
        &req,
        &st,
        "identity:list_projects_associated_with_endpoint_group",
    )?;
    group(&st, &id).await?;
    projects_of(&req, &st, Association::Group, &id).await
}

pub(super) async fn endpoint_projects(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:list_projects_for_endpoint")?;
    endpoint_exists(&st, &id).await?;
    projects_of(&req, &st, Association::Endpoint, &id).await
}

/// `PUT`, `HEAD`/`GET` (check) and `DELETE` of a group's or an endpoint's association with a
/// project: `/OS-EP-FILTER/endpoint_groups/{g}/projects/{p}` and
/// `/OS-EP-FILTER/projects/{p}/endpoints/{e}`.
async fn association(
    req: &HttpRequest,
    st: &IdentityState,
    kind: Association,
    target: &str,
    project_id: &str,
) -> ApiResult<HttpResponse> {
    let method = req.method().clone();
    let writing =
        method == actix_web::http::Method::PUT || method == actix_web::http::Method::DELETE;
    if writing {
        require_admin(req, st, "identity:add_endpoint_to_project")?;
    } else {
        require_cloud_reader(req, st, "identity:check_endpoint_in_project")?;
    }
    match kind {
        Association::Group => {
            group(st, target).await?;
        }
        Association::Endpoint => endpoint_exists(st, target).await?,
    }
    let project = project_exists(st, project_id).await?;
    if method == actix_web::http::Method::PUT {
        cat::associate(&st.db, kind, target, project_id).await?;
        return Ok(HttpResponse::NoContent().finish());
    }
    let associated = cat::associations(&st.db, kind, Some(target), Some(project_id))
        .await?
        .len()
        == 1;
    let missing = || {
        ApiError::NotFound(format!(
            "Could not find association between {target} and project {project_id}."
        ))
    };
    if method == actix_web::http::Method::DELETE {
        if !cat::dissociate(&st.db, kind, target, project_id).await? {
            return Err(missing());
        }
        return Ok(HttpResponse::NoContent().finish());
    }
    if !associated {
        return Err(missing());
    }
    if method == actix_web::http::Method::GET && kind == Association::Group {
        let base = v3_url(req, &st.settings);
        return Ok(HttpResponse::Ok().json(
            json!({"project": super::projects::project_views(&st.db, &[project], &base).await?.remove(0)}),
        ));
    }
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn group_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (g, p) = path.into_inner();
    association(&req, &st, Association::Group, &g, &p).await
}

pub(super) async fn project_endpoint(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (p, e) = path.into_inner();
    association(&req, &st, Association::Endpoint, &e, &p).await
}

/// A project's directly associated endpoints (`kind` Endpoint) or groups (`kind` Group).
async fn of_project(
    req: &HttpRequest,
    st: &IdentityState,
    kind: Association,
    project_id: &str,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(req, st, "identity:list_endpoints_for_project")?;
    project_exists(st, project_id).await?;
    let base = v3_url(req, &st.settings);
    let mut items = Vec::new();
    match kind {
        // A project's endpoints: its own and its groups' (Keystone's list_endpoints_for_project).
        Association::Endpoint => {
            let ids = cat::endpoints_of_project(&st.db, project_id)
                .await?
                .unwrap_or_default();
            for id in ids {
                if let Some(e) = cat::endpoint(&st.db, &id).await? {
                    items.push(super::catalog::endpoint_view(&e, &base));
                }
            }
        }
        Association::Group => {
            for (target, _) in cat::associations(&st.db, kind, None, Some(project_id)).await? {
                if let Some(g) = cat::endpoint_group(&st.db, &target).await? {
                    items.push(group_view(&g, &base));
                }
            }
        }
    }
    let key = match kind {
        Association::Endpoint => "endpoints",
        Association::Group => "endpoint_groups",
    };
    let own = format!("{}{}", base_url(req, &st.settings), req.uri().path());
    Ok(collection(key, items, own))
}

pub(super) async fn project_endpoints(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    p: web::Path<String>,
) -> ApiResult<HttpResponse> {
    of_project(&req, &st, Association::Endpoint, &p).await
}

pub(super) async fn project_groups(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    p: web::Path<String>,
) -> ApiResult<HttpResponse> {
    of_project(&req, &st, Association::Group, &p).await
}
