//! Projects and their tags. Projects are flat: each one's parent is its domain (nested projects
//! and projects acting as domains are refused at create, not ignored).

use super::*;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find project: {id}."))
}

/// Keystone's project names: 1 to 64 characters.
const NAME_MAX: usize = 64;

/// Keystone's bound on a project's tags.
const TAGS_MAX: usize = 80;

pub(super) fn project_view(p: &Project, tags: &[String], base: &str) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
        "enabled": p.enabled, "is_domain": false, "parent_id": p.domain_id, "tags": tags,
        "options": {}, "links": {"self": format!("{base}/projects/{}", p.id)},
    })
}

/// The views of `projects`, each with its tags (one query for all).
pub(super) async fn project_views(
    db: &Db,
    projects: &[Project],
    base: &str,
) -> ApiResult<Vec<Value>> {
    let ids: Vec<String> = projects.iter().map(|p| p.id.clone()).collect();
    let tags = store::project_tags(db, &ids).await?;
    Ok(projects
        .iter()
        .map(|p| project_view(p, tags.get(&p.id).map_or(&[][..], Vec::as_slice), base))
        .collect())
}

async fn one_view(db: &Db, p: &Project, base: &str) -> ApiResult<Value> {
    Ok(project_views(db, std::slice::from_ref(p), base)
        .await?
        .remove(0))
}

/// A tag as Keystone allows it: 1 to 255 characters, without `/` or `,`.
fn checked_tag(t: &str) -> ApiResult<String> {
    if t.is_empty() || t.chars().count() > 255 || t.contains('/') || t.contains(',') {
        return Err(bad(format!(
            "Invalid input for field 'tags': '{t}' is not a valid tag (1 to 255 characters, \
             without '/' or ',')."
        )));
    }
    Ok(t.to_owned())
}

/// A request's `tags`: a list of valid tags, at most [`TAGS_MAX`], duplicates dropped.
fn checked_tags(v: &Value) -> ApiResult<Vec<String>> {
    let list = v
        .as_array()
        .ok_or_else(|| bad("Invalid input for field 'tags': not an array."))?;
    let mut tags = Vec::with_capacity(list.len());
    for t in list {
        let t = t
            .as_str()
            .ok_or_else(|| bad("Invalid input for field 'tags': a tag is a string."))?;
        let t = checked_tag(t)?;
        // Keystone's schema: unique items.
        if tags.contains(&t) {
            return Err(bad(format!(
                "Invalid input for field 'tags': '{t}' is given twice."
            )));
        }
        tags.push(t);
    }
    if tags.len() > TAGS_MAX {
        return Err(bad(format!(
            "Invalid input for field 'tags': more than {TAGS_MAX} tags."
        )));
    }
    Ok(tags)
}

pub(super) async fn create_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_project")?;
    let body = json_body(&raw)?;
    let p = Value::Object(body_object(&body, "project")?.clone());
    let domain_id = string_field(&p, "domain_id")?
        .unwrap_or(store::DEFAULT_DOMAIN_ID)
        .to_owned();
    if store::domain(&st.db, &domain_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
    }
    if string_field(&p, "parent_id")?.is_some_and(|parent| parent != domain_id) {
        return Err(bad(
            "Projects nested under other projects are not supported by this deployment: \
             a project's parent is its domain.",
        ));
    }
    if bool_field(&p, "is_domain")? == Some(true) {
        return Err(bad(
            "Projects acting as domains are not supported by this deployment.",
        ));
    }
    let name = string_field(&p, "name")?.ok_or_else(|| bad("'name' is a required property."))?;
    let tags = match p.get("tags") {
        Some(t) => checked_tags(t)?,
        None => vec![],
    };
    let project = Project {
        id: store::new_id(),
        name: checked_name(name, NAME_MAX)?,
        domain_id,
        description: string_field(&p, "description")?
            .unwrap_or_default()
            .to_owned(),
        enabled: bool_field(&p, "enabled")?.unwrap_or(true),
    };
    store::create_project(&st.db, &project)
        .await
        .map_err(conflict_or_internal)?;
    if !tags.is_empty() {
        store::set_project_tags(&st.db, &project.id, &tags).await?;
    }
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Created().json(json!({"project": project_view(&project, &tags, &base)})))
}

/// Keystone's tag filters on a project listing: `tags` (all of), `tags-any`, `not-tags` (not
/// all of), `not-tags-any` (none of), each a comma-separated list.
#[derive(serde::Deserialize, Default)]
struct TagFilter {
    tags: Option<String>,
    #[serde(rename = "tags-any")]
    tags_any: Option<String>,
    #[serde(rename = "not-tags")]
    not_tags: Option<String>,
    #[serde(rename = "not-tags-any")]
    not_tags_any: Option<String>,
}

impl TagFilter {
    fn matches(&self, tags: &[String]) -> bool {
        let split = |s: &Option<String>| -> Option<Vec<String>> {
            s.as_ref()
                .map(|s| s.split(',').map(str::to_owned).collect())
        };
        let has = |t: &String| tags.contains(t);
        split(&self.tags).is_none_or(|want| want.iter().all(has))
            && split(&self.tags_any).is_none_or(|want| want.iter().any(has))
            && split(&self.not_tags).is_none_or(|want| !want.iter().all(has))
            && split(&self.not_tags_any).is_none_or(|want| !want.iter().any(has))
    }
}

pub(super) async fn list_projects(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = require_reader(&req, &st, "identity:list_projects")?;
    let f = filter(&req);
    let tf = web::Query::<TagFilter>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let domain = domain_limit(&c, f.domain_id.clone(), "identity:list_projects")?;
    let base = v3_url(&req, &st.settings);
    let enabled = f.enabled();
    let mut projects = store::projects(&st.db, f.name.as_deref(), domain.as_deref()).await?;
    projects.retain(|p| enabled.is_none_or(|e| e == p.enabled));
    let items = project_views(&st.db, &projects, &base)
        .await?
        .into_iter()
        .filter(|v| {
            let tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap_or_default();
            tf.matches(&tags)
        })
        .collect();
    Ok(collection("projects", items, format!("{base}/projects")))
}

/// A project the caller may read: an admin or system reader any, a member their own, a domain
/// reader their domain's (Keystone's `identity:get_project`).
async fn readable_project(
    req: &HttpRequest,
    st: &IdentityState,
    id: &str,
    action: &str,
) -> ApiResult<Project> {
    let c = caller(req, st)?;
    let p = store::project(&st.db, id).await?;
    let allowed = cloud_reader(&c)
        || c.openstack_project_id.as_deref() == Some(id)
        || (has_role(&c, "reader")
            && c.openstack_domain_id.is_some()
            && p.as_ref().map(|p| &p.domain_id) == c.openstack_domain_id.as_ref());
    if !allowed {
        return Err(KEYSTONE.denied(action));
    }
    p.ok_or_else(|| not_found(id))
}

pub(super) async fn show_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let p = readable_project(&req, &st, &id, "identity:get_project").await?;
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Ok().json(json!({"project": one_view(&st.db, &p, &base).await?})))
}

pub(super) async fn update_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_project")?;
    let body = json_body(&raw)?;
    let patch = Value::Object(body_object(&body, "project")?.clone());
    let mut p = store::project(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    // Keystone's: a project's domain, parent and nature are fixed at create.
    if string_field(&patch, "domain_id")?.is_some_and(|d| d != p.domain_id) {
        return Err(bad("Cannot change Domain ID."));
    }
    if string_field(&patch, "parent_id")?.is_some_and(|d| d != p.domain_id) {
        return Err(bad("Cannot change the parent of a project."));
    }
    if bool_field(&patch, "is_domain")? == Some(true) {
        return Err(bad("Cannot change is_domain of a project."));
    }
    if let Some(n) = string_field(&patch, "name")? {
        p.name = checked_name(n, NAME_MAX)?;
    }
    if let Some(d) = string_field(&patch, "description")? {
        p.description = d.to_owned();
    }
    if let Some(e) = bool_field(&patch, "enabled")? {
        p.enabled = e;
    }
    let tags = match patch.get("tags") {
        Some(t) => Some(checked_tags(t)?),
        None => None,
    };
    if !store::update_project(&st.db, &p)
        .await
        .map_err(conflict_or_internal)?
    {
        return Err(not_found(&id));
    }
    if let Some(tags) = &tags {
        store::set_project_tags(&st.db, &p.id, tags).await?;
    }
    // A disabled project's tokens end at once (Keystone's revocation on disable); whenever the
    // result is disabled, so that sending it again repairs a revocation that failed.
    if !p.enabled {
        st.tokens.revoke_scope(&p.id).await?;
    }
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Ok().json(json!({"project": one_view(&st.db, &p, &base).await?})))
}

pub(super) async fn delete_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_project")?;
    if !store::delete_project(&st.db, &id).await? {
        return Err(not_found(&id));
    }
    // Tokens scoped to it end with it.
    st.tokens.revoke_scope(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

// Tags (`/v3/projects/{id}/tags`): read as the project is read, written by admins.

async fn tags_of(db: &Db, id: &str) -> ApiResult<Vec<String>> {
    Ok(store::project_tags(db, &[id.to_owned()])
        .await?
        .remove(id)
        .unwrap_or_default())
}

pub(super) async fn list_tags(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    readable_project(&req, &st, &id, "identity:list_project_tags").await?;
    let base = v3_url(&req, &st.settings);
    Ok(
        HttpResponse::Ok().json(json!({"tags": tags_of(&st.db, &id).await?,
        "links": {"self": format!("{base}/projects/{id}/tags")}})),
    )
}

pub(super) async fn check_tag(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    readable_project(&req, &st, &id, "identity:get_project_tag").await?;
    if tags_of(&st.db, &id).await?.contains(&tag) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("Could not find tag: {tag}.")))
    }
}

/// The project, for an admin's tag change.
async fn tagged_project(
    req: &HttpRequest,
    st: &IdentityState,
    id: &str,
    action: &str,
) -> ApiResult<()> {
    require_admin(req, st, action)?;
    store::project(&st.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(())
}

pub(super) async fn replace_tags(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    tagged_project(&req, &st, &id, "identity:update_project_tags").await?;
    let body = json_body(&raw)?;
    let tags = checked_tags(&body["tags"])?;
    store::set_project_tags(&st.db, &id, &tags).await?;
    let base = v3_url(&req, &st.settings);
    Ok(
        HttpResponse::Ok().json(json!({"tags": tags_of(&st.db, &id).await?,
        "links": {"self": format!("{base}/projects/{id}/tags")}})),
    )
}

pub(super) async fn add_tag(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    tagged_project(&req, &st, &id, "identity:create_project_tag").await?;
    let tag = checked_tag(&tag)?;
    let mut tags = tags_of(&st.db, &id).await?;
    if !tags.contains(&tag) {
        tags.push(tag.clone());
        if tags.len() > TAGS_MAX {
            return Err(bad(format!(
                "Invalid input for field 'tags': more than {TAGS_MAX} tags."
            )));
        }
        store::set_project_tags(&st.db, &id, &tags).await?;
    }
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{base}/projects/{id}/tags/{tag}")))
        .finish())
}

pub(super) async fn delete_tag(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    tagged_project(&req, &st, &id, "identity:delete_project_tag").await?;
    let mut tags = tags_of(&st.db, &id).await?;
    let before = tags.len();
    tags.retain(|t| *t != tag);
    if tags.len() == before {
        return Err(ApiError::NotFound(format!("Could not find tag: {tag}.")));
    }
    store::set_project_tags(&st.db, &id, &tags).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn delete_tags(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    tagged_project(&req, &st, &id, "identity:delete_project_tags").await?;
    store::set_project_tags(&st.db, &id, &[]).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::TagFilter;

    #[test]
    fn tag_filters_are_keystones() {
        let tags = vec!["a".to_owned(), "b".to_owned()];
        let f = |q: &str| {
            actix_web::web::Query::<TagFilter>::from_query(q)
                .unwrap()
                .into_inner()
                .matches(&tags)
        };
        assert!(f("tags=a,b"));
        assert!(!f("tags=a,c"));
        assert!(f("tags-any=c,b"));
        assert!(!f("tags-any=c"));
        assert!(f("not-tags=a,c"));
        assert!(!f("not-tags=a,b"));
        assert!(f("not-tags-any=c"));
        assert!(!f("not-tags-any=c,a"));
        assert!(f(""));
    }
}
