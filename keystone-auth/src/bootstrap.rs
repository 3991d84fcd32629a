//! The first start, as `keystone-manage bootstrap`: the `default` domain, the roles `admin`,
//! `manager`, `member`, `reader` and `service` (the first four implying each next one, see
//! [`IMPLIED_ROLES`]), an `admin` project and user with all three roles (and `admin` on the
//! system, as Keystone's bootstrap gives it), a non-admin `demo` project and user (member,
//! reader), and the catalog's region and the deployment's own services. Idempotent: what exists
//! is left as it is (except the own endpoints' URLs, which follow the configuration).

use crate::password;
use crate::settings::AuthSettings;
use nova_db::identity::{self as store, Domain, Project, User, DEFAULT_DOMAIN_ID};
use nova_db::{Db, DbError};

/// Passwords the bootstrap generated (to show once); `None` where the account existed or the
/// password came from the configuration.
#[derive(Debug, Default)]
pub struct Generated {
    pub admin_password: Option<String>,
    pub demo_password: Option<String>,
}

/// The role implications `keystone-manage bootstrap` records: admin ⇒ manager ⇒ member ⇒
/// reader. Written at the first start (when there are no inference rules at all); from then on
/// the implied-roles API changes them. A token carries the roles its assignments imply, as
/// Keystone's do.
pub const IMPLIED_ROLES: &[(&str, &str)] = &[
    ("admin", "manager"),
    ("manager", "member"),
    ("member", "reader"),
];

/// `roles` with every role they imply, transitively, in name order, without domain-specific
/// roles (which only bring what they imply).
pub async fn with_implied(
    db: &Db,
    mut roles: Vec<store::Role>,
) -> Result<Vec<store::Role>, DbError> {
    let mut i = 0;
    while i < roles.len() {
        for r in store::implied_by(db, &roles[i].id).await? {
            if !roles.iter().any(|x| x.id == r.id) {
                roles.push(r);
            }
        }
        i += 1;
    }
    // A domain-specific role is never held itself: it brings the roles it implies (Keystone's).
    let domain_roles = store::domain_role_ids(db).await?;
    roles.retain(|r| !domain_roles.contains(&r.id));
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(roles)
}

async fn role(db: &Db, name: &str) -> Result<String, DbError> {
    Ok(match store::role_by_name(db, name).await? {
        Some(r) => r.id,
        None => {
            store::create_role(db, &store::new_id(), name, None)
                .await?
                .id
        }
    })
}

async fn project(db: &Db, name: &str) -> Result<String, DbError> {
    if let Some(p) = store::project_by_name(db, DEFAULT_DOMAIN_ID, name).await? {
        return Ok(p.id);
    }
    let p = Project {
        id: store::new_id(),
        name: name.into(),
        domain_id: DEFAULT_DOMAIN_ID.into(),
        description: format!("Bootstrap project {name}"),
        enabled: true,
        parent_id: None,
    };
    store::create_project(db, &p).await?;
    Ok(p.id)
}

/// Creates the user if missing; returns its id and the password when it was generated.
async fn user(
    db: &Db,
    name: &str,
    project_id: &str,
    configured: Option<&str>,
) -> Result<(String, Option<String>), DbError> {
    if let Some(u) = store::user_by_name(db, DEFAULT_DOMAIN_ID, name).await? {
        return Ok((u.id, None));
    }
    let (secret, generated) = match configured {
        Some(p) => (p.to_owned(), None),
        None => {
            let p = password::generate();
            (p.clone(), Some(p))
        }
    };
    let hash =
        password::hash(&secret).map_err(|e| DbError::Corrupt(format!("password hash: {e}")))?;
    let u = User {
        id: store::new_id(),
        name: name.into(),
        domain_id: DEFAULT_DOMAIN_ID.into(),
        enabled: true,
        email: None,
        default_project_id: Some(project_id.into()),
        password_hash: Some(hash),
        extra: "{}".into(),
    };
    store::create_user(db, &u).await?;
    Ok((u.id, generated))
}

pub async fn bootstrap(db: &Db, settings: &AuthSettings) -> Result<Generated, DbError> {
    if store::domain(db, DEFAULT_DOMAIN_ID).await?.is_none() {
        store::create_domain(
            db,
            &Domain {
                id: DEFAULT_DOMAIN_ID.into(),
                name: "Default".into(),
                description: "The default domain".into(),
                enabled: true,
            },
        )
        .await?;
    }
    let admin_role = role(db, "admin").await?;
    let member_role = role(db, "member").await?;
    let reader_role = role(db, "reader").await?;
    role(db, "manager").await?;
    role(db, "service").await?;
    let admin_project = project(db, "admin").await?;
    let demo_project = project(db, "demo").await?;
    let (admin, admin_password) = user(
        db,
        "admin",
        &admin_project,
        settings.admin_password.as_deref(),
    )
    .await?;
    let (demo, demo_password) =
        user(db, "demo", &demo_project, settings.demo_password.as_deref()).await?;
    for r in [&admin_role, &member_role, &reader_role] {
        store::grant(db, &admin, r, &admin_project, "").await?;
    }
    for r in [&member_role, &reader_role] {
        store::grant(db, &demo, r, &demo_project, "").await?;
    }
    store::grant_system(db, &admin, &admin_role).await?;
    if store::implied_roles(db).await?.is_empty() {
        for (prior, implied) in IMPLIED_ROLES {
            let prior = role(db, prior).await?;
            let implied = role(db, implied).await?;
            store::add_implied_role(db, &prior, &implied).await?;
        }
    }
    // The region, and the deployment's own services and endpoints in the catalog.
    crate::catalog::bootstrap(db, settings).await?;
    Ok(Generated {
        admin_password,
        demo_password,
    })
}
