//! Identity data (a Keystone v3 subset): domains, projects, users, roles, role assignments and
//! token revocations.

use crate::{on_pool, Db, DbResult};
use nova_core::time::{now_ms, Millis};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Domain {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub description: String,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub enabled: bool,
    pub email: Option<String>,
    pub default_project_id: Option<String>,
    /// The argon2 PHC string; never leaves the identity service.
    pub password_hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct Role {
    pub id: String,
    pub name: String,
}

/// One role assignment: a user's role on a project or a domain.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Assignment {
    pub user_id: String,
    pub role_id: String,
    /// Empty when the assignment is on a domain.
    pub project_id: String,
    /// Empty when the assignment is on a project.
    pub domain_id: String,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RevocationEvent {
    pub id: i64,
    pub audit_id: Option<String>,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub issued_before: Millis,
    pub expires_at: Millis,
}

/// A new Keystone-style id: a uuid4 as 32 hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Keystone's `default` domain, which always exists.
pub const DEFAULT_DOMAIN_ID: &str = "default";

// Domains.

pub async fn create_domain(db: &Db, id: &str, name: &str, description: &str) -> DbResult<Domain> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO domains (id, name, description, enabled, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id).bind(name).bind(description).bind(true).bind(now_ms())
            .execute(p).await?;
    });
    Ok(Domain {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        enabled: true,
    })
}

pub async fn domain(db: &Db, id: &str) -> DbResult<Option<Domain>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name, description, enabled FROM domains WHERE id = $1").bind(id).fetch_optional(p).await?),
    )
}

pub async fn domain_by_name(db: &Db, name: &str) -> DbResult<Option<Domain>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name, description, enabled FROM domains WHERE name = $1").bind(name).fetch_optional(p).await?),
    )
}

pub async fn domains(db: &Db) -> DbResult<Vec<Domain>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name, description, enabled FROM domains ORDER BY name").fetch_all(p).await?),
    )
}

// Projects.

const PROJECT_COLUMNS: &str = "id, name, domain_id, description, enabled";

pub async fn create_project(db: &Db, p_: &Project) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO projects (id, name, domain_id, description, enabled, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&p_.id).bind(&p_.name).bind(&p_.domain_id).bind(&p_.description).bind(p_.enabled).bind(now_ms())
            .execute(p).await?;
    });
    Ok(())
}

pub async fn project(db: &Db, id: &str) -> DbResult<Option<Project>> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
}

pub async fn project_by_name(db: &Db, domain_id: &str, name: &str) -> DbResult<Option<Project>> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE domain_id = $1 AND name = $2");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(domain_id).bind(name).fetch_optional(p).await?))
}

/// Projects, optionally only those with this name and/or in this domain.
pub async fn projects(
    db: &Db,
    name: Option<&str>,
    domain_id: Option<&str>,
) -> DbResult<Vec<Project>> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE ($1 IS NULL OR name = $1) \
         AND ($2 IS NULL OR domain_id = $2) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(name).bind(domain_id).fetch_all(p).await?))
}

/// Projects on which the user has at least one role.
pub async fn projects_of_user(db: &Db, user_id: &str) -> DbResult<Vec<Project>> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id IN \
         (SELECT project_id FROM role_assignments WHERE user_id = $1) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await?))
}

pub async fn delete_project(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM role_assignments WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM projects WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

// Users.

const USER_COLUMNS: &str = "id, name, domain_id, enabled, email, default_project_id, password_hash";

pub async fn create_user(db: &Db, u: &User) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO users (id, name, domain_id, password_hash, email, enabled, default_project_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&u.id).bind(&u.name).bind(&u.domain_id).bind(&u.password_hash).bind(&u.email)
        .bind(u.enabled).bind(&u.default_project_id).bind(now_ms())
        .execute(p).await?;
    });
    Ok(())
}

pub async fn user(db: &Db, id: &str) -> DbResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
}

pub async fn user_by_name(db: &Db, domain_id: &str, name: &str) -> DbResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE domain_id = $1 AND name = $2");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(domain_id).bind(name).fetch_optional(p).await?))
}

pub async fn users(db: &Db, name: Option<&str>, domain_id: Option<&str>) -> DbResult<Vec<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR name = $1) \
         AND ($2 IS NULL OR domain_id = $2) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(name).bind(domain_id).fetch_all(p).await?))
}

pub async fn delete_user(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM role_assignments WHERE user_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

// Roles.

pub async fn create_role(db: &Db, id: &str, name: &str) -> DbResult<Role> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO roles (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id).bind(name).bind(now_ms()).execute(p).await?;
    });
    Ok(Role {
        id: id.into(),
        name: name.into(),
    })
}

pub async fn role(db: &Db, id: &str) -> DbResult<Option<Role>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name FROM roles WHERE id = $1").bind(id).fetch_optional(p).await?),
    )
}

pub async fn role_by_name(db: &Db, name: &str) -> DbResult<Option<Role>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name FROM roles WHERE name = $1").bind(name).fetch_optional(p).await?),
    )
}

pub async fn roles(db: &Db, name: Option<&str>) -> DbResult<Vec<Role>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name FROM roles WHERE ($1 IS NULL OR name = $1) ORDER BY name").bind(name).fetch_all(p).await?),
    )
}

pub async fn delete_role(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM role_assignments WHERE role_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM roles WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

// Role assignments.

/// Grants a role on a project (`project_id`) or a domain (`domain_id`); idempotent.
pub async fn grant(
    db: &Db,
    user_id: &str,
    role_id: &str,
    project_id: &str,
    domain_id: &str,
) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO role_assignments (user_id, role_id, project_id, domain_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id).bind(role_id).bind(project_id).bind(domain_id).execute(p).await?;
    });
    Ok(())
}

pub async fn revoke_grant(
    db: &Db,
    user_id: &str,
    role_id: &str,
    project_id: &str,
    domain_id: &str,
) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("DELETE FROM role_assignments WHERE user_id = $1 AND role_id = $2 AND project_id = $3 AND domain_id = $4")
            .bind(user_id).bind(role_id).bind(project_id).bind(domain_id).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The roles of a user on a project (`project_id`) or a domain (`domain_id`).
pub async fn roles_of(
    db: &Db,
    user_id: &str,
    project_id: &str,
    domain_id: &str,
) -> DbResult<Vec<Role>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT r.id, r.name FROM roles r JOIN role_assignments a ON a.role_id = r.id \
             WHERE a.user_id = $1 AND a.project_id = $2 AND a.domain_id = $3 ORDER BY r.name",
        )
        .bind(user_id).bind(project_id).bind(domain_id).fetch_all(p).await?
    }))
}

pub async fn assignments(
    db: &Db,
    user_id: Option<&str>,
    project_id: Option<&str>,
) -> DbResult<Vec<Assignment>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT user_id, role_id, project_id, domain_id FROM role_assignments \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR project_id = $2) \
             ORDER BY user_id, project_id, domain_id, role_id",
        )
        .bind(user_id).bind(project_id).fetch_all(p).await?
    }))
}

// Revocations.

pub async fn add_revocation(
    db: &Db,
    audit_id: Option<&str>,
    user_id: Option<&str>,
    project_id: Option<&str>,
    expires_at: Millis,
) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO revocation_events (audit_id, user_id, project_id, issued_before, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $4)",
        )
        .bind(audit_id).bind(user_id).bind(project_id).bind(now_ms()).bind(expires_at).execute(p).await?;
    });
    Ok(())
}

/// Revocation events after `after_id` that still matter, oldest first.
pub async fn revocations_since(db: &Db, after_id: i64) -> DbResult<Vec<RevocationEvent>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT id, audit_id, user_id, project_id, issued_before, expires_at FROM revocation_events \
             WHERE id > $1 AND expires_at > $2 ORDER BY id",
        )
        .bind(after_id).bind(now_ms()).fetch_all(p).await?
    }))
}
