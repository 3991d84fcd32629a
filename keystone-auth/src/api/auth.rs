//! Tokens (`/v3/auth/tokens`: issue by password or token, validate, check, revoke) and what
//! a token shows of itself: its catalog and the projects its user may scope to.

use super::projects::project_views;
use super::*;
use crate::catalog::catalog;
use crate::password;
use crate::tokens::{Claims, NewToken, RoleRef, TokenError};

/// Finds a domain given as `{"id": …}` or `{"name": …}`.
pub(super) async fn find_domain(db: &Db, v: &Value) -> ApiResult<String> {
    if let Some(id) = v["id"].as_str() {
        return Ok(store::domain(db, id).await?.ok_or_else(unauthorized)?.id);
    }
    if let Some(name) = v["name"].as_str() {
        return Ok(store::domain_by_name(db, name)
            .await?
            .ok_or_else(unauthorized)?
            .id);
    }
    Err(bad("A domain needs an id or a name."))
}

/// The user of a password auth, checked. An unknown user, a wrong password, a disabled user or
/// domain and a locked account all get the same 401 after the same work (one argon2 check, in
/// the password pool), so that neither the answer nor its time tells them apart. With
/// Keystone's lockout configured, failed checks in a row lock the account for a while.
pub(super) async fn password_user(st: &IdentityState, v: &Value) -> ApiResult<User> {
    let db = &st.db;
    let u = &v["user"];
    let secret = u["password"]
        .as_str()
        .ok_or_else(|| bad("password is required."))?;
    let user = if let Some(id) = u["id"].as_str() {
        store::user(db, id).await?
    } else if let Some(name) = u["name"].as_str() {
        let domain = if u["domain"].is_object() {
            find_domain(db, &u["domain"]).await.ok()
        } else {
            None
        };
        match domain {
            Some(d) => store::user_by_name(db, &d, name).await?,
            None => None,
        }
    } else {
        return Err(bad("A user needs an id, or a name and a domain."));
    };
    let Some(user) = user else {
        password::check(secret, None).await;
        return Err(unauthorized());
    };
    if !password_matches(st, &user, secret).await? || !user.enabled {
        return Err(unauthorized());
    }
    Ok(user)
}

/// Checks `secret` against `user`'s password as every password check here must: under
/// Keystone's lockout when configured (the check reserved atomically first, so that parallel
/// guesses cannot pass the limit; a locked account is refused whatever the password), never
/// for a user of a disabled domain, and always with one argon2 check in the pool, so that the
/// time to answer tells nothing. A success resets the failures.
pub(super) async fn password_matches(
    st: &IdentityState,
    user: &User,
    secret: &str,
) -> ApiResult<bool> {
    let db = &st.db;
    let now = nova_core::time::now_ms();
    let lockout = st.settings.lockout_failure_attempts.map(i64::from);
    let duration =
        i64::try_from(st.settings.lockout_duration_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let locked = match lockout {
        Some(max) => !store::reserve_auth_attempt(db, &user.id, now, max, duration).await?,
        None => false,
    };
    let domain_ok = domain_enabled(db, &user.domain_id).await?;
    let stored = if locked || !domain_ok {
        None
    } else {
        user.password_hash.clone()
    };
    if !password::check(secret, stored).await {
        return Ok(false);
    }
    if lockout.is_some() {
        store::reset_failed_auth(db, &user.id).await?;
    }
    Ok(true)
}

/// Whether a domain exists and is enabled: nothing in a disabled domain authenticates or is
/// scoped to (Keystone's rule).
pub(super) async fn domain_enabled(db: &Db, id: &str) -> ApiResult<bool> {
    Ok(store::domain(db, id).await?.is_some_and(|d| d.enabled))
}

pub(super) struct Scope {
    project: Option<Project>,
    domain_id: Option<String>,
    system: bool,
    roles: Vec<Role>,
}

pub(super) async fn resolve_scope(db: &Db, user: &str, scope: &Value) -> ApiResult<Scope> {
    if scope.is_null() || scope == "unscoped" {
        return Ok(Scope {
            project: None,
            domain_id: None,
            system: false,
            roles: vec![],
        });
    }
    if scope["project"].is_object() {
        let p = &scope["project"];
        let project = if let Some(id) = p["id"].as_str() {
            store::project(db, id).await?
        } else if let Some(name) = p["name"].as_str() {
            let d = find_domain(db, &p["domain"]).await?;
            store::project_by_name(db, &d, name).await?
        } else {
            return Err(bad("A project scope needs an id, or a name and a domain."));
        };
        let project = project.filter(|p| p.enabled).ok_or_else(unauthorized)?;
        if !domain_enabled(db, &project.domain_id).await? {
            return Err(unauthorized());
        }
        let roles = crate::bootstrap::with_implied(
            db,
            store::effective_roles_of(db, user, &project.id, "", "").await?,
        )
        .await?;
        if roles.is_empty() {
            return Err(unauthorized());
        }
        return Ok(Scope {
            project: Some(project),
            domain_id: None,
            system: false,
            roles,
        });
    }
    if scope["domain"].is_object() {
        let d = find_domain(db, &scope["domain"]).await?;
        if !domain_enabled(db, &d).await? {
            return Err(unauthorized());
        }
        let roles = crate::bootstrap::with_implied(
            db,
            store::effective_roles_of(db, user, "", &d, "").await?,
        )
        .await?;
        if roles.is_empty() {
            return Err(unauthorized());
        }
        return Ok(Scope {
            project: None,
            domain_id: Some(d),
            system: false,
            roles,
        });
    }
    if scope["system"].is_object() {
        // Keystone's one system: `{"all": true}`.
        if scope["system"]["all"] != json!(true) {
            return Err(bad("The system scope is {\"all\": true}."));
        }
        let roles = crate::bootstrap::with_implied(
            db,
            store::effective_roles_of(db, user, "", "", "all").await?,
        )
        .await?;
        if roles.is_empty() {
            return Err(unauthorized());
        }
        return Ok(Scope {
            project: None,
            domain_id: None,
            system: true,
            roles,
        });
    }
    Err(bad("A scope is a project, a domain or the system."))
}

/// The token body Keystone returns for `claims`.
pub(super) async fn token_body(
    req: &HttpRequest,
    st: &IdentityState,
    c: &Claims,
    with_catalog: bool,
) -> ApiResult<Value> {
    let user = store::user(&st.db, &c.sub)
        .await?
        .ok_or_else(unauthorized)?;
    let mut t = json!({
        "methods": c.openstack_methods,
        "user": {"id": user.id, "name": user.name, "domain": domain_ref(&st.db, &user.domain_id).await?,
                 "password_expires_at": null},
        "audit_ids": c.openstack_audit_ids,
        "expires_at": keystone_time(c.exp),
        "issued_at": keystone_time(c.iat),
    });
    if let Some(pid) = &c.openstack_project_id {
        let p = store::project(&st.db, pid)
            .await?
            .ok_or_else(unauthorized)?;
        t["project"] =
            json!({"id": p.id, "name": p.name, "domain": domain_ref(&st.db, &p.domain_id).await?});
        t["is_domain"] = json!(false);
    }
    if let Some(did) = &c.openstack_domain_id {
        t["domain"] = domain_ref(&st.db, did).await?;
    }
    if c.openstack_system.is_some() {
        t["system"] = json!({"all": true});
    }
    if let Some(a) = &c.openstack_app_cred {
        t["application_credential"] =
            json!({"id": a.id, "name": a.name, "restricted": a.restricted});
    }
    if c.is_scoped() {
        t["roles"] = json!(c.openstack_roles);
        if with_catalog {
            t["catalog"] = catalog(
                &st.db,
                &base_url(req, &st.settings),
                c.openstack_project_id.as_deref(),
                &c.sub,
            )
            .await?;
        }
    }
    Ok(json!({"token": t}))
}

pub(super) async fn issue_token(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = json_body(&raw)?;
    let identity = &body["auth"]["identity"];
    let methods: Vec<String> = identity["methods"]
        .as_array()
        .ok_or_else(|| bad("auth.identity.methods is required."))?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    if methods.len() == 1 && methods[0] == "application_credential" {
        return issue_for_app_credential(&req, &st, &body).await;
    }
    let (user, parent) =
        match methods.as_slice() {
            [m] if m == "password" => (password_user(&st, &identity["password"]).await?, None),
            [m] if m == "token" => {
                let old = identity["token"]["id"]
                    .as_str()
                    .ok_or_else(|| bad("token.id is required."))?;
                let claims = st.tokens.validate(old).map_err(|_| unauthorized())?;
                // A token of an application credential is the credential's project and roles:
                // never rescoped, nor widened to the user's own roles (Keystone refuses it too).
                if claims.openstack_app_cred.is_some() {
                    return Err(ApiError::Forbidden(
                        "A token issued with an application credential cannot be used to get \
                     another token; authenticate with the credential again."
                            .into(),
                    ));
                }
                let user = store::user(&st.db, &claims.sub)
                    .await?
                    .filter(|u| u.enabled)
                    .ok_or_else(unauthorized)?;
                (user, Some(claims))
            }
            _ => return Err(bad(
                "Exactly one of the methods 'password', 'token' and 'application_credential' is \
                 supported.",
            )),
        };
    // As Keystone: a token made from a token keeps the methods that made the first, and adds
    // `token`.
    let methods = match &parent {
        Some(p) => {
            let mut all = p.openstack_methods.clone();
            if !all.iter().any(|m| m == "token") {
                all.push("token".into());
            }
            all
        }
        None => methods,
    };
    let mut scope = resolve_scope(&st.db, &user.id, &body["auth"]["scope"]).await?;
    // As Keystone: a password auth without a scope is scoped to the user's default project, if
    // the user holds a role there; otherwise it stays unscoped.
    if body["auth"]["scope"].is_null() && parent.is_none() {
        if let Some(p) = &user.default_project_id {
            let asked = json!({"project": {"id": p}});
            if let Ok(s) = resolve_scope(&st.db, &user.id, &asked).await {
                scope = s;
            }
        }
    }
    let roles: Vec<RoleRef> = scope
        .roles
        .iter()
        .map(|r| RoleRef {
            id: r.id.clone(),
            name: r.name.clone(),
        })
        .collect();
    // Each token carries its ancestors' audit ids (for revocation): chains are bounded.
    if parent
        .as_ref()
        .is_some_and(|p| p.openstack_ancestors.len() >= crate::tokens::MAX_CHAIN)
    {
        return Err(ApiError::Forbidden(format!(
            "A token can be made from a chain of at most {} tokens; authenticate again.",
            crate::tokens::MAX_CHAIN
        )));
    }
    let (token, claims) = st
        .tokens
        .issue(NewToken {
            user_id: &user.id,
            methods,
            project_id: scope.project.map(|p| p.id),
            domain_id: scope.domain_id,
            system: scope.system.then(|| "all".to_owned()),
            roles,
            parent: parent.as_ref(),
        })
        .map_err(ApiError::Internal)?;
    issued(&req, &st, token, &claims).await
}

/// The answer to a token issued: its body (with the catalog unless `?nocatalog`), the token
/// in `X-Subject-Token`.
async fn issued(
    req: &HttpRequest,
    st: &IdentityState,
    token: String,
    claims: &Claims,
) -> ApiResult<HttpResponse> {
    let nocatalog = req
        .query_string()
        .split('&')
        .any(|q| q == "nocatalog" || q.starts_with("nocatalog="));
    let body = token_body(req, st, claims, !nocatalog).await?;
    Ok(HttpResponse::Created()
        .insert_header(("X-Subject-Token", token))
        .json(body))
}

/// A token from an application credential: scoped to its project with its roles.
async fn issue_for_app_credential(
    req: &HttpRequest,
    st: &IdentityState,
    body: &Value,
) -> ApiResult<HttpResponse> {
    let (user, project, roles, claim, expires_at_s) = super::app_credentials::authenticate(
        st,
        &body["auth"]["identity"]["application_credential"],
        &body["auth"]["scope"],
    )
    .await?;
    let roles = roles
        .into_iter()
        .map(|r| RoleRef {
            id: r.id,
            name: r.name,
        })
        .collect();
    let (token, claims) = st
        .tokens
        .issue_with(
            NewToken {
                user_id: &user.id,
                methods: vec!["application_credential".into()],
                project_id: Some(project.id),
                domain_id: None,
                system: None,
                roles,
                parent: None,
            },
            Some(claim),
            expires_at_s,
        )
        .map_err(ApiError::Internal)?;
    issued(req, st, token, &claims).await
}

pub(super) fn subject(req: &HttpRequest, st: &IdentityState) -> ApiResult<Claims> {
    let token = req
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("X-Subject-Token is required."))?;
    st.tokens.validate(token).map_err(|e| match e {
        TokenError::Missing | TokenError::Invalid | TokenError::Revoked => {
            ApiError::NotFound("Could not find token.".into())
        }
    })
}

/// A token may inspect or revoke itself; admins, system readers and services may any
/// (Keystone's `ADMIN_OR_SYSTEM_USER_OR_SERVICE_OR_TOKEN_SUBJECT`).
pub(super) fn may_see(caller: &Claims, subject: &Claims) -> bool {
    caller.sub == subject.sub || cloud_reader(caller) || has_role(caller, "service")
}

pub(super) async fn validate_token(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let s = subject(&req, &st)?;
    if !may_see(&c, &s) {
        return Err(KEYSTONE.denied("identity:validate_token"));
    }
    let nocatalog = req
        .query_string()
        .split('&')
        .any(|q| q == "nocatalog" || q.starts_with("nocatalog="));
    let body = token_body(&req, &st, &s, !nocatalog).await?;
    let token = req.headers().get("X-Subject-Token").cloned();
    let mut res = HttpResponse::Ok();
    if let Some(t) = token {
        res.insert_header(("X-Subject-Token", t));
    }
    Ok(res.json(body))
}

pub(super) async fn check_token(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let s = subject(&req, &st)?;
    if !may_see(&c, &s) {
        return Err(KEYSTONE.denied("identity:check_token"));
    }
    Ok(HttpResponse::Ok().finish())
}

pub(super) async fn revoke_token(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let s = subject(&req, &st)?;
    // Reading is not revoking: a system reader may not revoke another's token.
    let may_revoke = c.sub == s.sub || has_role(&c, "admin") || has_role(&c, "service");
    if !may_revoke {
        return Err(KEYSTONE.denied("identity:revoke_token"));
    }
    st.tokens.revoke(&s).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn auth_catalog(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    if !c.is_scoped() {
        return Err(KEYSTONE.denied("an unscoped token has no catalog"));
    }
    let base = base_url(&req, &st.settings);
    Ok(HttpResponse::Ok().json(
        json!({"catalog": catalog(&st.db, &base, c.openstack_project_id.as_deref(), &c.sub).await?,
        "links": {"self": format!("{base}/identity/v3/auth/catalog")}}),
    ))
}

pub(super) async fn auth_projects(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let base = v3_url(&req, &st.settings);
    let projects = store::projects_of_user(&st.db, &c.sub).await?;
    let items = project_views(&st.db, &projects, &base).await?;
    Ok(collection(
        "projects",
        items,
        format!("{base}/auth/projects"),
    ))
}

/// `GET /v3/auth/domains`: the enabled domains the token's user may scope to.
pub(super) async fn auth_domains(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let base = v3_url(&req, &st.settings);
    let items = store::domains_of_user(&st.db, &c.sub)
        .await?
        .into_iter()
        .filter(|d| d.enabled)
        .map(|d| {
            json!({"id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled,
                        "links": {"self": format!("{base}/domains/{}", d.id)}})
        })
        .collect();
    Ok(collection("domains", items, format!("{base}/auth/domains")))
}

/// `GET /v3/auth/system`: the system, if the token's user holds a role on it.
pub(super) async fn auth_system(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let base = v3_url(&req, &st.settings);
    let has = !store::effective_roles_of(&st.db, &c.sub, "", "", "all")
        .await?
        .is_empty();
    let system: Vec<Value> = if has {
        vec![json!({"all": true})]
    } else {
        vec![]
    };
    Ok(HttpResponse::Ok().json(json!({"system": system,
        "links": {"self": format!("{base}/auth/system")}})))
}
