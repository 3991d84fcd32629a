//! Projects and their tags, in Keystone's hierarchy: a project's parent is another project of
//! its domain, or (top-level) the domain, at most [`MAX_DEPTH`] deep. A project with children
//! is not deleted, a parent with enabled children not disabled, a child of a disabled parent
//! not enabled. A project acting as a domain (`is_domain`) is a domain, shown as a project.

use super::*;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find project: {id}."))
}

/// Keystone's project names: 1 to 64 characters.
const NAME_MAX: usize = 64;

/// Keystone's bound on a project's tags.
const TAGS_MAX: usize = 80;

/// Keystone's `max_project_tree_depth`: a project at most this many levels below its domain.
const MAX_DEPTH: usize = 5;

/// `id` and its ancestors, nearest first (the project itself first).
async fn lineage(db: &Db, id: &str) -> ApiResult<Vec<Project>> {
    let mut out: Vec<Project> = Vec::new();
    let mut at = Some(id.to_owned());
    while let Some(next) = at {
        if out.iter().any(|p| p.id == next) || out.len() > MAX_DEPTH * 4 {
            break;
        }
        match store::project(db, &next).await? {
            Some(p) => {
                at = p.parent_id.clone();
                out.push(p);
            }
            None => break,
        }
    }
    Ok(out)
}

/// The projects below `id`, each with its parent (breadth first).
async fn descendants(db: &Db, p: &Project) -> ApiResult<Vec<Project>> {
    let all = store::projects(db, None, Some(&p.domain_id)).await?;
    let mut out: Vec<Project> = Vec::new();
    let mut frontier = vec![p.id.clone()];
    while let Some(parent) = frontier.pop() {
        for child in all
            .iter()
            .filter(|c| c.parent_id.as_deref() == Some(&parent))
        {
            if !out.iter().any(|o| o.id == child.id) {
                frontier.push(child.id.clone());
                out.push(child.clone());
            }
        }
    }
    Ok(out)
}

pub(super) fn project_view(p: &Project, tags: &[String], base: &str) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
        "enabled": p.enabled, "is_domain": false,
        "parent_id": p.parent_id.as_deref().unwrap_or(&p.domain_id), "tags": tags,
        "options": {}, "links": {"self": format!("{base}/projects/{}", p.id)},
    })
}

/// A domain shown as the project it is in Keystone's model (`is_domain`: a project acting as a
/// domain, with no domain and no parent of its own).
fn domain_as_project(d: &nova_db::identity::Domain, base: &str) -> Value {
    json!({
        "id": d.id, "name": d.name, "domain_id": null, "description": d.description,
        "enabled": d.enabled, "is_domain": true, "parent_id": null, "tags": [],
        "options": {}, "links": {"self": format!("{base}/projects/{}", d.id)},
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

/// A request's project name, for messages.
fn name_of(p: &Value) -> String {
    p["name"].as_str().unwrap_or_default().to_owned()
}

pub(super) async fn create_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_project")?;
    let body = json_body(&raw)?;
    let p = Value::Object(body_object(&body, "project")?.clone());
    if bool_field(&p, "is_domain")? == Some(true) {
        // A project acting as a domain is a domain (the domains' table holds it).
        if string_field(&p, "domain_id")?.is_some() || string_field(&p, "parent_id")?.is_some() {
            return Err(bad(
                "A project acting as a domain has no domain_id and no parent_id.",
            ));
        }
        let d = super::domains::create(&st, &p).await?;
        let base = v3_url(&req, &st.settings);
        return Ok(HttpResponse::Created().json(json!({"project": domain_as_project(&d, &base)})));
    }
    let domain_given = string_field(&p, "domain_id")?.map(str::to_owned);
    let enabled = bool_field(&p, "enabled")?.unwrap_or(true);
    // The parent: a project of the same domain (nested), or the domain itself (top-level).
    let (domain_id, parent_id) = match string_field(&p, "parent_id")? {
        None => (
            domain_given.unwrap_or_else(|| store::DEFAULT_DOMAIN_ID.to_owned()),
            None,
        ),
        Some(parent) => match store::project(&st.db, parent).await? {
            Some(pp) => {
                if domain_given.as_ref().is_some_and(|d| *d != pp.domain_id) {
                    return Err(bad(format!(
                        "Cannot create a project in domain {} under a parent of domain {}.",
                        domain_given.unwrap_or_default(),
                        pp.domain_id
                    )));
                }
                if lineage(&st.db, &pp.id).await?.len() + 1 > MAX_DEPTH {
                    return Err(ApiError::Forbidden(format!(
                        "Max hierarchy depth reached for {} branch.",
                        pp.id
                    )));
                }
                if enabled && lineage(&st.db, &pp.id).await?.iter().any(|a| !a.enabled) {
                    return Err(ApiError::Forbidden(format!(
                        "Cannot enable project {} since it has disabled parents",
                        name_of(&p)
                    )));
                }
                (pp.domain_id, Some(pp.id))
            }
            None => {
                let domain = domain_given.unwrap_or_else(|| parent.to_owned());
                if domain != parent {
                    return Err(not_found(parent));
                }
                (domain, None)
            }
        },
    };
    if store::domain(&st.db, &domain_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Could not find domain: {domain_id}."
        )));
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
        enabled,
        parent_id,
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

#[derive(serde::Deserialize, Default)]
struct ParentFilter {
    parent_id: Option<String>,
    is_domain: Option<String>,
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
    let parent = web::Query::<ParentFilter>::from_query(req.query_string())
        .map(|q| q.into_inner().parent_id)
        .unwrap_or_default();
    let is_domain = web::Query::<ParentFilter>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().is_domain)
        .is_some_and(|v| !(v == "0" || v.eq_ignore_ascii_case("false")));
    if is_domain {
        // Projects acting as domains: the domains (a cloud reader's list).
        if !cloud_reader(&c) {
            return Err(KEYSTONE.denied("identity:list_projects"));
        }
        let items = store::domains(&st.db)
            .await?
            .iter()
            .filter(|d| f.name.as_ref().is_none_or(|n| *n == d.name))
            .filter(|d| enabled.is_none_or(|e| e == d.enabled))
            .map(|d| domain_as_project(d, &base))
            .collect();
        return Ok(collection("projects", items, format!("{base}/projects")));
    }
    let mut projects = store::projects(&st.db, f.name.as_deref(), domain.as_deref()).await?;
    projects.retain(|p| enabled.is_none_or(|e| e == p.enabled));
    if let Some(parent) = &parent {
        projects.retain(|p| p.parent_id.as_deref().unwrap_or(&p.domain_id) == parent);
    }
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

/// The domain `id` names when it is no project, for a cloud reader (a project acting as a
/// domain).
async fn acting_domain(
    req: &HttpRequest,
    st: &IdentityState,
    id: &str,
) -> ApiResult<Option<nova_db::identity::Domain>> {
    if store::project(&st.db, id).await?.is_some() || !cloud_reader(&caller(req, st)?) {
        return Ok(None);
    }
    Ok(store::domain(&st.db, id).await?)
}

/// Of `projects`, those the caller may see: all for a cloud reader, else those the caller
/// holds a role on (Keystone's filter of the hierarchy's lists).
async fn visible_projects(
    req: &HttpRequest,
    st: &IdentityState,
    projects: Vec<Project>,
) -> ApiResult<Vec<Project>> {
    let c = caller(req, st)?;
    if cloud_reader(&c) {
        return Ok(projects);
    }
    let mine = store::projects_of_user(&st.db, &c.sub).await?;
    Ok(projects
        .into_iter()
        .filter(|p| mine.iter().any(|m| m.id == p.id))
        .collect())
}

pub(super) async fn show_project(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let base = v3_url(&req, &st.settings);
    if let Some(d) = acting_domain(&req, &st, &id).await? {
        return Ok(HttpResponse::Ok().json(json!({"project": domain_as_project(&d, &base)})));
    }
    let p = readable_project(&req, &st, &id, "identity:get_project").await?;
    let mut view = one_view(&st.db, &p, &base).await?;
    // Keystone's views of the hierarchy: `?parents_as_ids` / `?subtree_as_ids` (nested maps
    // of ids), `?parents_as_list` / `?subtree_as_list` (the projects the caller may see).
    let flags: Vec<String> = req
        .query_string()
        .split('&')
        .map(|kv| kv.split('=').next().unwrap_or_default().to_owned())
        .collect();
    let has = |f: &str| flags.iter().any(|x| x == f);
    for (list, ids) in [
        ("parents_as_list", "parents_as_ids"),
        ("subtree_as_list", "subtree_as_ids"),
    ] {
        if has(list) && has(ids) {
            return Err(bad(format!(
                "Cannot use {list} and {ids} query params at the same time."
            )));
        }
    }
    if has("parents_as_ids") || has("parents_as_list") {
        let parents: Vec<Project> = lineage(&st.db, &p.id).await?.into_iter().skip(1).collect();
        if has("parents_as_ids") {
            // Nearest first, each holding the next; the domain at the top.
            let mut ids = json!({p.domain_id.clone(): null});
            for parent in parents.iter().rev() {
                ids = json!({parent.id.clone(): ids});
            }
            view["parents"] = ids;
        } else {
            let visible = visible_projects(&req, &st, parents).await?;
            view["parents"] = json!(project_views(&st.db, &visible, &base)
                .await?
                .into_iter()
                .map(|v| json!({"project": v}))
                .collect::<Vec<_>>());
        }
    }
    if has("subtree_as_ids") || has("subtree_as_list") {
        let below = descendants(&st.db, &p).await?;
        if has("subtree_as_ids") {
            fn tree(of: &str, all: &[Project]) -> Value {
                let children: serde_json::Map<String, Value> = all
                    .iter()
                    .filter(|c| c.parent_id.as_deref() == Some(of))
                    .map(|c| (c.id.clone(), tree(&c.id, all)))
                    .collect();
                if children.is_empty() {
                    Value::Null
                } else {
                    Value::Object(children)
                }
            }
            view["subtree"] = tree(&p.id, &below);
        } else {
            let visible = visible_projects(&req, &st, below).await?;
            view["subtree"] = json!(project_views(&st.db, &visible, &base)
                .await?
                .into_iter()
                .map(|v| json!({"project": v}))
                .collect::<Vec<_>>());
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "project": view })))
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
    if acting_domain(&req, &st, &id).await?.is_some() {
        let d = super::domains::update(&st, &id, &patch).await?;
        let base = v3_url(&req, &st.settings);
        return Ok(HttpResponse::Ok().json(json!({"project": domain_as_project(&d, &base)})));
    }
    let mut p = store::project(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    // Keystone's: a project's domain, parent and nature are fixed at create.
    if string_field(&patch, "domain_id")?.is_some_and(|d| d != p.domain_id) {
        return Err(bad("Cannot change Domain ID."));
    }
    if string_field(&patch, "parent_id")?
        .is_some_and(|d| d != p.parent_id.as_deref().unwrap_or(&p.domain_id))
    {
        return Err(bad("Update of `parent_id` is not allowed."));
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
        // The hierarchy stays consistent: no enabled project under a disabled one.
        if e && !p.enabled
            && lineage(&st.db, &p.id)
                .await?
                .iter()
                .skip(1)
                .any(|a| !a.enabled)
        {
            return Err(ApiError::Forbidden(format!(
                "Cannot enable project {} since it has disabled parents",
                p.id
            )));
        }
        if !e && descendants(&st.db, &p).await?.iter().any(|d| d.enabled) {
            return Err(ApiError::Forbidden(format!(
                "Cannot disable project {} since its subtree contains enabled projects.",
                p.id
            )));
        }
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
    if acting_domain(&req, &st, &id).await?.is_some() {
        super::domains::remove(&st, &id).await?;
        return Ok(HttpResponse::NoContent().finish());
    }
    if let Some(p) = store::project(&st.db, &id).await? {
        if !descendants(&st.db, &p).await?.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "Cannot delete the project {id} since it is not a leaf in the hierarchy. Use the \
                 cascade option if you want to delete a whole subtree."
            )));
        }
    }
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
