//! Role assignments: grants of a role to a user or a group on a project, a domain or the
//! system (Keystone's system scope, `all`), and their listing. The six route families
//! (`/v3/{projects/{p}|domains/{d}|system}/{users/{u}|groups/{g}}/roles[/{r}]`) share one handler
//! per method: who holds the grant ([`Actor`]) and where it applies ([`Target`]) come from the
//! route's parameters.

use super::roles::role_view;
use super::*;
use nova_db::identity::GroupAssignment;

fn no_assignment() -> ApiError {
    ApiError::NotFound("Could not find role assignment.".into())
}

/// One row of `/v3/role_assignments`.
struct Listed {
    actor: Value,
    role: String,
    scope: Value,
    /// The grant's path under `/v3`, for its `assignment` link.
    path: String,
    /// For an effective assignment that a group gives: the group.
    via_group: Option<(String, String)>,
    /// For an effective assignment that a role implies: the role granted.
    prior_role: Option<String>,
}

fn grant_scope(project: &str, domain: &str, system: &str) -> (Value, String) {
    if !system.is_empty() {
        (json!({"system": {"all": true}}), "system".into())
    } else if !project.is_empty() {
        (
            json!({"project": {"id": project}}),
            format!("projects/{project}"),
        )
    } else {
        (
            json!({"domain": {"id": domain}}),
            format!("domains/{domain}"),
        )
    }
}

/// `GET /v3/role_assignments`, with Keystone's filters (`user.id`, `group.id`, `role.id`,
/// `scope.project.id`, `scope.domain.id`, `scope.system`) and `effective`, which replaces a
/// group's grants by one per member.
pub(super) async fn role_assignments(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = require_reader(&req, &st, "identity:list_role_assignments")?;
    #[derive(serde::Deserialize, Default)]
    struct Q {
        #[serde(rename = "user.id")]
        user: Option<String>,
        #[serde(rename = "group.id")]
        group: Option<String>,
        #[serde(rename = "role.id")]
        role: Option<String>,
        #[serde(rename = "scope.project.id")]
        project: Option<String>,
        #[serde(rename = "scope.domain.id")]
        domain: Option<String>,
        #[serde(rename = "scope.system")]
        system: Option<String>,
        effective: Option<String>,
        include_names: Option<String>,
    }
    let q = web::Query::<Q>::from_query(req.query_string())
        .map_err(|e| bad(format!("Invalid query: {e}")))?
        .into_inner();
    // Keystone's truthiness: `effective` alone, or any value but `0`/`false`.
    let effective = q
        .effective
        .as_deref()
        .is_some_and(|v| !(v == "0" || v.eq_ignore_ascii_case("false")));
    // Keystone's refusals of filters that cannot hold together.
    let scopes = [q.project.is_some(), q.domain.is_some(), q.system.is_some()];
    if scopes.iter().filter(|s| **s).count() > 1 {
        return Err(bad(
            "Specify one of domain, project or system as the scope.",
        ));
    }
    if q.user.is_some() && q.group.is_some() {
        return Err(bad("Specify a user or group, not both."));
    }
    if effective && q.group.is_some() {
        return Err(bad(
            "Combining effective and group filter will always result in an empty list.",
        ));
    }
    let scoped = q.project.is_some() || q.domain.is_some();
    // A domain reader sees the assignments on its domain and on the domain's projects only.
    let own_domain = c.openstack_domain_id.clone();
    let visible_projects: Option<Vec<String>> = if cloud_reader(&c) {
        None
    } else {
        if q.domain.is_some() && q.domain != own_domain {
            return Err(KEYSTONE.denied("identity:list_role_assignments"));
        }
        Some(
            store::projects(&st.db, None, own_domain.as_deref())
                .await?
                .into_iter()
                .map(|p| p.id)
                .collect(),
        )
    };
    let visible = |project: &str, domain: &str, system: &str| match &visible_projects {
        None => true,
        Some(v) => {
            system.is_empty()
                && (own_domain.as_deref() == Some(domain) || v.iter().any(|p| p == project))
        }
    };
    // With `effective`, the role filter applies to what the grants give (implied roles
    // included, domain-specific ones left out), so it is applied at the end; otherwise to the
    // grants themselves (Keystone's order).
    let role_filter = if effective { None } else { q.role.as_deref() };
    let mut rows: Vec<Listed> = Vec::new();
    if q.group.is_none() {
        if q.system.is_none() {
            for a in store::assignments(
                &st.db,
                q.user.as_deref(),
                role_filter,
                q.project.as_deref(),
                q.domain.as_deref(),
            )
            .await?
            {
                if !visible(&a.project_id, &a.domain_id, "") {
                    continue;
                }
                let (scope, target) = grant_scope(&a.project_id, &a.domain_id, "");
                rows.push(Listed {
                    actor: json!({"user": {"id": a.user_id}}),
                    path: format!("{target}/users/{}/roles/{}", a.user_id, a.role_id),
                    role: a.role_id,
                    scope,
                    via_group: None,
                    prior_role: None,
                });
            }
        }
        if !scoped && visible("", "", "all") {
            for (user, role) in store::system_assignments(&st.db, q.user.as_deref()).await? {
                if role_filter.is_some_and(|r| r != role) {
                    continue;
                }
                rows.push(Listed {
                    actor: json!({"user": {"id": user}}),
                    path: format!("system/users/{user}/roles/{role}"),
                    role,
                    scope: json!({"system": {"all": true}}),
                    via_group: None,
                    prior_role: None,
                });
            }
        }
    }
    // Group grants: listed as the group's, or (effective) as each member's.
    if effective || q.user.is_none() {
        let system = q.system.as_ref().map(|_| "all");
        let groups = store::group_assignments(
            &st.db,
            q.group.as_deref(),
            role_filter,
            q.project.as_deref(),
            q.domain.as_deref(),
            system,
        )
        .await?;
        for g in groups {
            if (scoped && !g.system.is_empty()) || !visible(&g.project_id, &g.domain_id, &g.system)
            {
                continue;
            }
            let (scope, target) = grant_scope(&g.project_id, &g.domain_id, &g.system);
            let path = format!("{target}/groups/{}/roles/{}", g.group_id, g.role_id);
            if !effective {
                rows.push(Listed {
                    actor: json!({"group": {"id": g.group_id}}),
                    role: g.role_id,
                    scope,
                    path,
                    via_group: None,
                    prior_role: None,
                });
                continue;
            }
            for m in store::group_members(&st.db, &g.group_id).await? {
                if q.user.as_ref().is_some_and(|u| *u != m.id) {
                    continue;
                }
                rows.push(Listed {
                    actor: json!({"user": {"id": m.id}}),
                    role: g.role_id.clone(),
                    scope: scope.clone(),
                    path: path.clone(),
                    via_group: Some((g.group_id.clone(), m.id.clone())),
                    prior_role: None,
                });
            }
        }
    }
    // Effective: each grant also gives the roles its role implies, transitively (Keystone lists
    // them with a `prior_role` link).
    if effective {
        let rules = store::implied_roles(&st.db).await?;
        let mut i = 0;
        while i < rows.len() {
            let implied: Vec<String> = rules
                .iter()
                .filter(|(prior, _)| *prior == rows[i].role)
                .map(|(_, implied)| implied.clone())
                .collect();
            for role in implied {
                let dup = rows.iter().any(|r| {
                    r.role == role && r.actor == rows[i].actor && r.scope == rows[i].scope
                });
                if dup {
                    continue;
                }
                let from = &rows[i];
                rows.push(Listed {
                    actor: from.actor.clone(),
                    role,
                    scope: from.scope.clone(),
                    path: from.path.clone(),
                    via_group: from.via_group.clone(),
                    prior_role: Some(from.role.clone()),
                });
            }
            i += 1;
        }
    }
    // Effective: a domain-specific role itself is no one's (it only brings what it implies);
    // then the role filter.
    if effective {
        let domain_roles = store::domain_role_ids(&st.db).await?;
        rows.retain(|r| !domain_roles.contains(&r.role));
        if let Some(want) = &q.role {
            rows.retain(|r| r.role == *want);
        }
    }
    let base = v3_url(&req, &st.settings);
    let mut items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut links = json!({"assignment": format!("{base}/{}", r.path)});
            if let Some((group, user)) = &r.via_group {
                links["membership"] = json!(format!("{base}/groups/{group}/users/{user}"));
            }
            if let Some(prior) = &r.prior_role {
                links["prior_role"] = json!(format!("{base}/roles/{prior}"));
            }
            let mut v = json!({"role": {"id": r.role}, "scope": r.scope, "links": links});
            if let (Value::Object(m), Value::Object(actor)) = (&mut v, r.actor) {
                m.extend(actor);
            }
            v
        })
        .collect();
    let truthy = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| !(v == "0" || v.eq_ignore_ascii_case("false")))
    };
    if truthy(&q.include_names) {
        with_names(&st.db, &mut items).await?;
    }
    Ok(collection(
        "role_assignments",
        items,
        format!("{base}/role_assignments"),
    ))
}

/// Keystone's `include_names`: the names of each assignment's user or group (with its domain),
/// role and scope, as `openstack role assignment list --names` shows them.
async fn with_names(db: &Db, items: &mut [Value]) -> ApiResult<()> {
    use std::collections::HashMap;
    let mut domains: HashMap<String, String> = HashMap::new();
    let mut domain_ref = async |id: &str| -> ApiResult<Value> {
        if !domains.contains_key(id) {
            let name = store::domain(db, id)
                .await?
                .map(|d| d.name)
                .unwrap_or_default();
            domains.insert(id.to_owned(), name);
        }
        Ok(json!({"id": id, "name": domains[id]}))
    };
    let roles: HashMap<String, String> = store::all_roles(db)
        .await?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    for v in items.iter_mut() {
        if let Some(id) = v["role"]["id"].as_str().map(str::to_owned) {
            v["role"]["name"] = json!(roles.get(&id).cloned().unwrap_or_default());
        }
        if let Some(id) = v["user"]["id"].as_str().map(str::to_owned) {
            if let Some(u) = store::user(db, &id).await? {
                v["user"]["name"] = json!(u.name);
                v["user"]["domain"] = domain_ref(&u.domain_id).await?;
            }
        }
        if let Some(id) = v["group"]["id"].as_str().map(str::to_owned) {
            if let Some(g) = store::group(db, &id).await? {
                v["group"]["name"] = json!(g.name);
                v["group"]["domain"] = domain_ref(&g.domain_id).await?;
            }
        }
        if let Some(id) = v["scope"]["project"]["id"].as_str().map(str::to_owned) {
            if let Some(p) = store::project(db, &id).await? {
                v["scope"]["project"]["name"] = json!(p.name);
                v["scope"]["project"]["domain"] = domain_ref(&p.domain_id).await?;
            }
        }
        if let Some(id) = v["scope"]["domain"]["id"].as_str().map(str::to_owned) {
            v["scope"]["domain"] = domain_ref(&id).await?;
        }
    }
    Ok(())
}

// Grants.

/// Where a grant applies.
enum Target {
    Project(String),
    Domain(String),
    System,
}

/// Who holds a grant.
enum Actor {
    User(String),
    Group(String),
}

impl Target {
    fn of(req: &HttpRequest) -> Target {
        let m = req.match_info();
        match (m.get("p"), m.get("d")) {
            (Some(p), _) => Target::Project(p.to_owned()),
            (None, Some(d)) => Target::Domain(d.to_owned()),
            (None, None) => Target::System,
        }
    }

    /// The (project, domain) columns of a user grant here; `None` on the system, whose grants
    /// are a table of their own, as Keystone keeps them.
    fn columns(&self) -> Option<(&str, &str)> {
        match self {
            Target::Project(p) => Some((p, "")),
            Target::Domain(d) => Some(("", d)),
            Target::System => None,
        }
    }

    fn group_assignment(&self, group: &str, role: &str) -> GroupAssignment {
        let (project_id, domain_id, system) = match self {
            Target::Project(p) => (p.clone(), String::new(), String::new()),
            Target::Domain(d) => (String::new(), d.clone(), String::new()),
            Target::System => (String::new(), String::new(), "all".to_owned()),
        };
        GroupAssignment {
            group_id: group.to_owned(),
            role_id: role.to_owned(),
            project_id,
            domain_id,
            system,
        }
    }

    fn path(&self) -> String {
        match self {
            Target::Project(p) => format!("projects/{p}"),
            Target::Domain(d) => format!("domains/{d}"),
            Target::System => "system".to_owned(),
        }
    }

    /// The project whose tokens name this grant's roles: a grant elsewhere may be named by any
    /// of the holder's tokens (revocation by user does not tell domain and system scopes apart).
    fn token_project(&self) -> Option<&str> {
        match self {
            Target::Project(p) => Some(p),
            _ => None,
        }
    }

    async fn check_exists(&self, st: &IdentityState) -> ApiResult<()> {
        match self {
            Target::Project(p) => {
                if store::project(&st.db, p).await?.is_none() {
                    return Err(ApiError::NotFound(format!("Could not find project: {p}.")));
                }
            }
            Target::Domain(d) => {
                if store::domain(&st.db, d).await?.is_none() {
                    return Err(ApiError::NotFound(format!("Could not find domain: {d}.")));
                }
            }
            Target::System => {}
        }
        Ok(())
    }
}

impl Actor {
    fn of(req: &HttpRequest) -> Actor {
        let m = req.match_info();
        match m.get("g") {
            Some(g) => Actor::Group(g.to_owned()),
            None => Actor::User(m.get("u").unwrap_or_default().to_owned()),
        }
    }

    fn path(&self) -> String {
        match self {
            Actor::User(u) => format!("users/{u}"),
            Actor::Group(g) => format!("groups/{g}"),
        }
    }

    async fn check_exists(&self, st: &IdentityState) -> ApiResult<()> {
        match self {
            Actor::User(u) => {
                if store::user(&st.db, u).await?.is_none() {
                    return Err(ApiError::NotFound(format!("Could not find user: {u}.")));
                }
            }
            Actor::Group(g) => {
                if store::group(&st.db, g).await?.is_none() {
                    return Err(super::groups::not_found(g));
                }
            }
        }
        Ok(())
    }

    /// The roles granted to this holder directly on `target`.
    async fn roles_on(&self, st: &IdentityState, target: &Target) -> ApiResult<Vec<Role>> {
        Ok(match (self, target.columns()) {
            (Actor::User(u), Some((p, d))) => store::roles_of(&st.db, u, p, d).await?,
            (Actor::User(u), None) => store::system_roles_of(&st.db, u).await?,
            (Actor::Group(g), _) => {
                let a = target.group_assignment(g, "");
                let mut roles = Vec::new();
                for found in store::group_assignments(
                    &st.db,
                    Some(g),
                    None,
                    Some(&a.project_id),
                    Some(&a.domain_id),
                    Some(&a.system),
                )
                .await?
                {
                    roles.extend(store::role(&st.db, &found.role_id).await?);
                }
                roles
            }
        })
    }

    async fn grant(&self, st: &IdentityState, target: &Target, role: &str) -> ApiResult<()> {
        match (self, target.columns()) {
            (Actor::User(u), Some((p, d))) => store::grant(&st.db, u, role, p, d)
                .await
                .map_err(conflict_or_internal)?,
            (Actor::User(u), None) => store::grant_system(&st.db, u, role).await?,
            (Actor::Group(g), _) => {
                store::grant_group(&st.db, &target.group_assignment(g, role)).await?
            }
        }
        Ok(())
    }

    async fn revoke(&self, st: &IdentityState, target: &Target, role: &str) -> ApiResult<bool> {
        Ok(match (self, target.columns()) {
            (Actor::User(u), Some((p, d))) => store::revoke_grant(&st.db, u, role, p, d).await?,
            (Actor::User(u), None) => store::revoke_system(&st.db, u, role).await?,
            (Actor::Group(g), _) => {
                store::revoke_group(&st.db, &target.group_assignment(g, role)).await?
            }
        })
    }

    /// Ends the tokens that may name a role this holder had on `target`: the user's, or every
    /// member's (tokens carry their roles).
    async fn end_tokens(&self, st: &IdentityState, target: &Target) -> ApiResult<()> {
        let project = target.token_project();
        match self {
            Actor::User(u) => st.tokens.revoke_user(u, project).await?,
            Actor::Group(g) => {
                for m in store::group_members(&st.db, g).await? {
                    st.tokens.revoke_user(&m.id, project).await?;
                }
            }
        }
        Ok(())
    }
}

/// Keystone's grant reads: a cloud reader any; a domain reader those on its own domain or on one
/// of the domain's projects. Grants on the system are a cloud reader's only.
async fn require_grant_reader(
    req: &HttpRequest,
    st: &IdentityState,
    target: &Target,
    action: &str,
) -> ApiResult<()> {
    let c = require_reader(req, st, action)?;
    if cloud_reader(&c) {
        return Ok(());
    }
    let domain = match target {
        Target::Project(p) => store::project(&st.db, p).await?.map(|p| p.domain_id),
        Target::Domain(d) => Some(d.clone()),
        Target::System => None,
    };
    if domain.is_some() && domain == c.openstack_domain_id {
        Ok(())
    } else {
        Err(KEYSTONE.denied(action))
    }
}

fn role_param(req: &HttpRequest) -> String {
    req.match_info().get("r").unwrap_or_default().to_owned()
}

/// `PUT …/roles/{r}`: grants the role (idempotent).
pub(super) async fn add_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_grant")?;
    let (target, actor, role) = (Target::of(&req), Actor::of(&req), role_param(&req));
    target.check_exists(&st).await?;
    actor.check_exists(&st).await?;
    let Some(r) = store::role(&st.db, &role).await? else {
        return Err(ApiError::NotFound(format!("Could not find role: {role}.")));
    };
    // A domain-specific role is granted only within its domain (Keystone's
    // DomainSpecificRoleMismatch).
    if let Some(role_domain) = &r.domain_id {
        let target_domain = match &target {
            Target::Project(p) => store::project(&st.db, p).await?.map(|p| p.domain_id),
            Target::Domain(d) => Some(d.clone()),
            Target::System => None,
        };
        if target_domain.as_ref() != Some(role_domain) {
            return Err(ApiError::Forbidden(format!(
                "The role {role} is of domain {role_domain}: it is granted only on that domain \
                 and its projects."
            )));
        }
    }
    actor.grant(&st, &target, &role).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `HEAD`/`GET …/roles/{r}`: 204 when the role is granted, else 404.
pub(super) async fn check_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let (target, actor, role) = (Target::of(&req), Actor::of(&req), role_param(&req));
    require_grant_reader(&req, &st, &target, "identity:check_grant").await?;
    if actor
        .roles_on(&st, &target)
        .await?
        .iter()
        .any(|r| r.id == role)
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_assignment())
    }
}

/// `DELETE …/roles/{r}`: removes the grant, and the tokens that named it.
pub(super) async fn remove_grant(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:revoke_grant")?;
    let (target, actor, role) = (Target::of(&req), Actor::of(&req), role_param(&req));
    if !actor.revoke(&st, &target, &role).await? {
        return Err(no_assignment());
    }
    actor.end_tokens(&st, &target).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET …/roles`: the roles granted directly.
pub(super) async fn list_grants(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let (target, actor) = (Target::of(&req), Actor::of(&req));
    require_grant_reader(&req, &st, &target, "identity:list_grants").await?;
    target.check_exists(&st).await?;
    actor.check_exists(&st).await?;
    let base = v3_url(&req, &st.settings);
    let items = actor
        .roles_on(&st, &target)
        .await?
        .iter()
        .map(|r| role_view(r, &base))
        .collect();
    Ok(collection(
        "roles",
        items,
        format!("{base}/{}/{}/roles", target.path(), actor.path()),
    ))
}
