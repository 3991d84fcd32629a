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
    /// The parent project; `None`: the project is top-level, its parent its domain.
    pub parent_id: Option<String>,
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
    /// Keystone's `extra`: `description` and any other attribute given, as a JSON object.
    pub extra: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct Role {
    pub id: String,
    pub name: String,
    /// Read by the role queries of the roles API only (elsewhere `None`).
    #[sqlx(default)]
    pub description: Option<String>,
    /// A domain-specific role's domain (Keystone's); `None`: a global role. Read by the role
    /// queries of the roles API only (elsewhere `None`).
    #[sqlx(default)]
    pub domain_id: Option<String>,
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
pub struct Group {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub description: String,
}

/// One role grant to a group: on a project, a domain, or the system (`system` = `all`).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct GroupAssignment {
    pub group_id: String,
    pub role_id: String,
    pub project_id: String,
    pub domain_id: String,
    pub system: String,
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

pub async fn create_domain(db: &Db, d: &Domain) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO domains (id, name, description, enabled, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&d.id).bind(&d.name).bind(&d.description).bind(d.enabled).bind(now_ms())
            .execute(p).await?;
    });
    Ok(())
}

/// Writes a domain's name, description and enabled flag; false when there is no such domain.
pub async fn update_domain(db: &Db, d: &Domain) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE domains SET name = $2, description = $3, enabled = $4 WHERE id = $1")
            .bind(&d.id).bind(&d.name).bind(&d.description).bind(d.enabled)
            .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Deletes a domain with everything in it, as Keystone does: its projects and users, and every
/// grant on them or held by them.
pub async fn delete_domain(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query(
            "DELETE FROM role_assignments WHERE domain_id = $1 \
             OR project_id IN (SELECT id FROM projects WHERE domain_id = $1) \
             OR user_id IN (SELECT id FROM users WHERE domain_id = $1)",
        ).bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM system_role_assignments WHERE user_id IN (SELECT id FROM users WHERE domain_id = $1)")
            .bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM project_tags WHERE project_id IN (SELECT id FROM projects WHERE domain_id = $1)")
            .bind(id).execute(&mut *c).await?;
        for table in ["credentials", "application_credentials", "project_endpoint_groups", "project_endpoints"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE project_id IN (SELECT id FROM projects WHERE domain_id = $1)"
            ))
            .bind(id).execute(&mut *c).await?;
        }
        sqlx::query(
            "DELETE FROM group_role_assignments WHERE domain_id = $1 \
             OR project_id IN (SELECT id FROM projects WHERE domain_id = $1) \
             OR group_id IN (SELECT id FROM user_groups WHERE domain_id = $1)",
        ).bind(id).execute(&mut *c).await?;
        sqlx::query(
            "DELETE FROM group_members WHERE group_id IN (SELECT id FROM user_groups WHERE domain_id = $1) \
             OR user_id IN (SELECT id FROM users WHERE domain_id = $1)",
        ).bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM user_groups WHERE domain_id = $1").bind(id).execute(&mut *c).await?;
        // Its domain-specific roles, with their grants and inference rules.
        for sql in [
            "DELETE FROM role_assignments WHERE role_id IN (SELECT id FROM roles WHERE domain_id = $1)",
            "DELETE FROM system_role_assignments WHERE role_id IN (SELECT id FROM roles WHERE domain_id = $1)",
            "DELETE FROM group_role_assignments WHERE role_id IN (SELECT id FROM roles WHERE domain_id = $1)",
            "DELETE FROM implied_roles WHERE prior_role_id IN (SELECT id FROM roles WHERE domain_id = $1) \
             OR implied_role_id IN (SELECT id FROM roles WHERE domain_id = $1)",
            "DELETE FROM roles WHERE domain_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *c).await?;
        }
        sqlx::query("DELETE FROM users WHERE domain_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM projects WHERE domain_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM domains WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
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

const PROJECT_COLUMNS: &str = "id, name, domain_id, description, enabled, parent_id";

pub async fn create_project(db: &Db, p_: &Project) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO projects (id, name, domain_id, description, enabled, created_at, parent_id) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&p_.id).bind(&p_.name).bind(&p_.domain_id).bind(&p_.description).bind(p_.enabled).bind(now_ms())
            .bind(&p_.parent_id)
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

/// Domains on which the user has at least one role, of their own or of one of their groups.
pub async fn domains_of_user(db: &Db, user_id: &str) -> DbResult<Vec<Domain>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT id, name, description, enabled FROM domains WHERE id IN \
             (SELECT domain_id FROM role_assignments WHERE user_id = $1 \
              UNION SELECT g.domain_id FROM group_role_assignments g \
              JOIN group_members m ON m.group_id = g.group_id WHERE m.user_id = $1) ORDER BY name",
        )
        .bind(user_id).fetch_all(p).await?
    }))
}

/// Writes a project's name, description and enabled flag; false when there is no such project.
pub async fn update_project(db: &Db, p_: &Project) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE projects SET name = $2, description = $3, enabled = $4 WHERE id = $1")
            .bind(&p_.id).bind(&p_.name).bind(&p_.description).bind(p_.enabled)
            .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The tags of the given projects, each project's sorted.
pub async fn project_tags(
    db: &Db,
    project_ids: &[String],
) -> DbResult<std::collections::HashMap<String, Vec<String>>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    // In chunks: both backends bound the parameters of one statement.
    for chunk in project_ids.chunks(500) {
        let marks = crate::placeholders(1, chunk.len());
        let sql = format!(
            "SELECT project_id, tag FROM project_tags WHERE project_id IN ({}) ORDER BY project_id, tag",
            marks
        );
        let rows: Vec<(String, String)> = on_pool!(db, p => {
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await?
        });
        for (project, tag) in rows {
            out.entry(project).or_default().push(tag);
        }
    }
    Ok(out)
}

/// Replaces a project's tags.
pub async fn set_project_tags(db: &Db, project_id: &str, tags: &[String]) -> DbResult<()> {
    let mut tx = db.begin().await?;
    super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM project_tags WHERE project_id = $1").bind(project_id).execute(&mut *c).await?;
        for t in tags {
            sqlx::query("INSERT INTO project_tags (project_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(project_id).bind(t).execute(&mut *c).await?;
        }
    });
    tx.commit().await?;
    Ok(())
}

/// Projects on which the user has at least one role, of their own or of one of their groups.
pub async fn projects_of_user(db: &Db, user_id: &str) -> DbResult<Vec<Project>> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id IN \
         (SELECT project_id FROM role_assignments WHERE user_id = $1 \
          UNION SELECT g.project_id FROM group_role_assignments g \
          JOIN group_members m ON m.group_id = g.group_id WHERE m.user_id = $1) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await?))
}

pub async fn delete_project(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM role_assignments WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM project_tags WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM group_role_assignments WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM credentials WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM application_credentials WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM project_endpoint_groups WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM project_endpoints WHERE project_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM projects WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

// Users.

const USER_COLUMNS: &str =
    "id, name, domain_id, enabled, email, default_project_id, password_hash, extra";

pub async fn create_user(db: &Db, u: &User) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO users (id, name, domain_id, password_hash, email, enabled, default_project_id, created_at, extra) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&u.id).bind(&u.name).bind(&u.domain_id).bind(&u.password_hash).bind(&u.email)
        .bind(u.enabled).bind(&u.default_project_id).bind(now_ms()).bind(&u.extra)
        .execute(p).await?;
    });
    Ok(())
}

/// Reserves one password check of a user under Keystone's lockout, in one statement so that
/// concurrent guesses cannot all pass the limit: the check counts as a failure until a success
/// resets the count. A lock whose duration has passed starts the count again (Keystone's
/// `_is_account_locked`). False, writing nothing, while the account is locked: `max` checks
/// in a row reserved, the last less than `duration` ago.
pub async fn reserve_auth_attempt(
    db: &Db,
    user_id: &str,
    now: Millis,
    max: i64,
    duration: Millis,
) -> DbResult<bool> {
    let row: Option<(i64,)> = on_pool!(db, p => {
        sqlx::query_as(
            "UPDATE users SET failed_auth_count = CASE WHEN failed_auth_count >= $3 THEN 1 \
             ELSE failed_auth_count + 1 END, failed_auth_at = $2 \
             WHERE id = $1 AND NOT (failed_auth_count >= $3 AND failed_auth_at IS NOT NULL \
             AND failed_auth_at > $2 - $4) RETURNING CAST(failed_auth_count AS BIGINT)",
        )
        .bind(user_id).bind(now).bind(max).bind(duration).fetch_optional(p).await?
    });
    Ok(row.is_some())
}

/// Forgets a user's failed password checks (a success, or a lockout that ran out).
pub async fn reset_failed_auth(db: &Db, user_id: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("UPDATE users SET failed_auth_count = 0, failed_auth_at = NULL WHERE id = $1")
            .bind(user_id).execute(p).await?;
    });
    Ok(())
}

/// Writes every attribute of a user but its id and domain; false when there is no such user.
pub async fn update_user(db: &Db, u: &User) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "UPDATE users SET name = $2, password_hash = $3, email = $4, enabled = $5, \
             default_project_id = $6, extra = $7 WHERE id = $1",
        )
        .bind(&u.id).bind(&u.name).bind(&u.password_hash).bind(&u.email).bind(u.enabled)
        .bind(&u.default_project_id).bind(&u.extra)
        .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
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
        sqlx::query("DELETE FROM system_role_assignments WHERE user_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM group_members WHERE user_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM credentials WHERE user_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM application_credentials WHERE user_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

// Roles.

/// Creates a role: global (`domain_id` `None`) or of a domain.
pub async fn create_role(db: &Db, id: &str, name: &str, domain_id: Option<&str>) -> DbResult<Role> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO roles (id, name, created_at, domain_id) VALUES ($1, $2, $3, $4)")
            .bind(id).bind(name).bind(now_ms()).bind(domain_id).execute(p).await?;
    });
    Ok(Role {
        id: id.into(),
        name: name.into(),
        description: None,
        domain_id: domain_id.map(str::to_owned),
    })
}

pub async fn role(db: &Db, id: &str) -> DbResult<Option<Role>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name, description, domain_id FROM roles WHERE id = $1").bind(id).fetch_optional(p).await?),
    )
}

/// A global role by its name.
pub async fn role_by_name(db: &Db, name: &str) -> DbResult<Option<Role>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, name, description, domain_id FROM roles WHERE name = $1 AND domain_id IS NULL").bind(name).fetch_optional(p).await?),
    )
}

/// The global roles (`domain_id` `None`) or a domain's, optionally only the one of a name.
pub async fn roles(db: &Db, name: Option<&str>, domain_id: Option<&str>) -> DbResult<Vec<Role>> {
    Ok(on_pool!(db, p => sqlx::query_as(
            "SELECT id, name, description, domain_id FROM roles WHERE ($1 IS NULL OR name = $1) \
             AND COALESCE(domain_id, '') = COALESCE($2, '') ORDER BY name",
        ).bind(name).bind(domain_id).fetch_all(p).await?))
}

/// Every role, global and domain-specific.
pub async fn all_roles(db: &Db) -> DbResult<Vec<Role>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, name, description, domain_id FROM roles ORDER BY name").fetch_all(p).await?))
}

/// The ids of every domain-specific role (which tokens and effective assignments leave out:
/// they only bring the roles they imply, as Keystone's).
pub async fn domain_role_ids(db: &Db) -> DbResult<Vec<String>> {
    let rows: Vec<(String,)> = on_pool!(db, p => sqlx::query_as(
        "SELECT id FROM roles WHERE domain_id IS NOT NULL").fetch_all(p).await?);
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Every user holding a role: granted directly (on a project, a domain or the system) or through
/// a group.
pub async fn holders_of_role(db: &Db, role_id: &str) -> DbResult<Vec<String>> {
    let rows: Vec<(String,)> = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT user_id FROM role_assignments WHERE role_id = $1 \
             UNION SELECT user_id FROM system_role_assignments WHERE role_id = $1 \
             UNION SELECT m.user_id FROM group_members m JOIN group_role_assignments g \
               ON g.group_id = m.group_id WHERE g.role_id = $1",
        )
        .bind(role_id).fetch_all(p).await?
    });
    Ok(rows.into_iter().map(|(u,)| u).collect())
}

/// Writes a role's name and description; false when there is no such role.
pub async fn update_role(db: &Db, r: &Role) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE roles SET name = $2, description = $3 WHERE id = $1")
            .bind(&r.id).bind(&r.name).bind(&r.description).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Records that `prior` implies `implied`; idempotent.
pub async fn add_implied_role(db: &Db, prior: &str, implied: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO implied_roles (prior_role_id, implied_role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(prior).bind(implied).execute(p).await?;
    });
    Ok(())
}

pub async fn remove_implied_role(db: &Db, prior: &str, implied: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("DELETE FROM implied_roles WHERE prior_role_id = $1 AND implied_role_id = $2")
            .bind(prior).bind(implied).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The roles `prior` implies directly.
pub async fn implied_by(db: &Db, prior: &str) -> DbResult<Vec<Role>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT r.id, r.name, r.description FROM roles r JOIN implied_roles i ON i.implied_role_id = r.id \
             WHERE i.prior_role_id = $1 ORDER BY r.name",
        )
        .bind(prior).fetch_all(p).await?
    }))
}

/// Every inference rule, as (prior, implied) role ids.
pub async fn implied_roles(db: &Db) -> DbResult<Vec<(String, String)>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as("SELECT prior_role_id, implied_role_id FROM implied_roles ORDER BY prior_role_id, implied_role_id")
            .fetch_all(p).await?
    }))
}

pub async fn delete_role(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM role_assignments WHERE role_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM system_role_assignments WHERE role_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM group_role_assignments WHERE role_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM implied_roles WHERE prior_role_id = $1 OR implied_role_id = $1").bind(id).execute(&mut *c).await?;
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

/// A user's effective roles on a project (`project_id`), a domain (`domain_id`) or the system
/// (`system` = `all`, both others empty): their own grants and their groups'.
pub async fn effective_roles_of(
    db: &Db,
    user_id: &str,
    project_id: &str,
    domain_id: &str,
    system: &str,
) -> DbResult<Vec<Role>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT r.id, r.name FROM roles r WHERE r.id IN ( \
               SELECT role_id FROM role_assignments WHERE $4 = '' AND user_id = $1 AND project_id = $2 AND domain_id = $3 \
               UNION SELECT role_id FROM system_role_assignments WHERE $4 <> '' AND user_id = $1 \
               UNION SELECT g.role_id FROM group_role_assignments g JOIN group_members m ON m.group_id = g.group_id \
                 WHERE m.user_id = $1 AND g.project_id = $2 AND g.domain_id = $3 AND g.system = $4) \
             ORDER BY r.name",
        )
        .bind(user_id).bind(project_id).bind(domain_id).bind(system).fetch_all(p).await?
    }))
}

/// The roles granted to a user directly on a project (`project_id`) or a domain (`domain_id`).
pub async fn roles_of(
    db: &Db,
    user_id: &str,
    project_id: &str,
    domain_id: &str,
) -> DbResult<Vec<Role>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT r.id, r.name, r.description, r.domain_id FROM roles r JOIN role_assignments a ON a.role_id = r.id \
             WHERE a.user_id = $1 AND a.project_id = $2 AND a.domain_id = $3 ORDER BY r.name",
        )
        .bind(user_id).bind(project_id).bind(domain_id).fetch_all(p).await?
    }))
}

/// Project and domain assignments, optionally of one user, one role, one project, one domain.
pub async fn assignments(
    db: &Db,
    user_id: Option<&str>,
    role_id: Option<&str>,
    project_id: Option<&str>,
    domain_id: Option<&str>,
) -> DbResult<Vec<Assignment>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT user_id, role_id, project_id, domain_id FROM role_assignments \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR role_id = $2) \
             AND ($3 IS NULL OR project_id = $3) AND ($4 IS NULL OR domain_id = $4) \
             ORDER BY user_id, project_id, domain_id, role_id",
        )
        .bind(user_id).bind(role_id).bind(project_id).bind(domain_id).fetch_all(p).await?
    }))
}

// System role assignments (Keystone's system scope, `all`).

/// Grants a role on the system; idempotent.
pub async fn grant_system(db: &Db, user_id: &str, role_id: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO system_role_assignments (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(user_id).bind(role_id).execute(p).await?;
    });
    Ok(())
}

pub async fn revoke_system(db: &Db, user_id: &str, role_id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("DELETE FROM system_role_assignments WHERE user_id = $1 AND role_id = $2")
            .bind(user_id).bind(role_id).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// A user's roles on the system.
pub async fn system_roles_of(db: &Db, user_id: &str) -> DbResult<Vec<Role>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT r.id, r.name FROM roles r JOIN system_role_assignments a ON a.role_id = r.id \
             WHERE a.user_id = $1 ORDER BY r.name",
        )
        .bind(user_id).fetch_all(p).await?
    }))
}

/// System assignments as (user, role), optionally of one user.
pub async fn system_assignments(db: &Db, user_id: Option<&str>) -> DbResult<Vec<(String, String)>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT user_id, role_id FROM system_role_assignments WHERE ($1 IS NULL OR user_id = $1) \
             ORDER BY user_id, role_id",
        )
        .bind(user_id).fetch_all(p).await?
    }))
}

// Groups.

const GROUP_COLUMNS: &str = "id, name, domain_id, description";

pub async fn create_group(db: &Db, g: &Group) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO user_groups (id, name, domain_id, description) VALUES ($1, $2, $3, $4)")
            .bind(&g.id).bind(&g.name).bind(&g.domain_id).bind(&g.description).execute(p).await?;
    });
    Ok(())
}

pub async fn group(db: &Db, id: &str) -> DbResult<Option<Group>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM user_groups WHERE id = $1");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
}

pub async fn groups(db: &Db, name: Option<&str>, domain_id: Option<&str>) -> DbResult<Vec<Group>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM user_groups WHERE ($1 IS NULL OR name = $1) \
         AND ($2 IS NULL OR domain_id = $2) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(name).bind(domain_id).fetch_all(p).await?))
}

pub async fn update_group(db: &Db, g: &Group) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE user_groups SET name = $2, description = $3 WHERE id = $1")
            .bind(&g.id).bind(&g.name).bind(&g.description).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

pub async fn delete_group(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM group_role_assignments WHERE group_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM user_groups WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

/// Adds a user to a group; idempotent.
pub async fn add_member(db: &Db, group_id: &str, user_id: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(group_id).bind(user_id).execute(p).await?;
    });
    Ok(())
}

pub async fn remove_member(db: &Db, group_id: &str, user_id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id).bind(user_id).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The members of a group.
pub async fn group_members(db: &Db, group_id: &str) -> DbResult<Vec<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id IN \
         (SELECT user_id FROM group_members WHERE group_id = $1) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(group_id).fetch_all(p).await?))
}

/// The groups a user is a member of.
pub async fn groups_of_user(db: &Db, user_id: &str) -> DbResult<Vec<Group>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM user_groups WHERE id IN \
         (SELECT group_id FROM group_members WHERE user_id = $1) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await?))
}

/// Grants a role to a group on a project, a domain or the system (`system` = `all`); idempotent.
pub async fn grant_group(db: &Db, a: &GroupAssignment) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO group_role_assignments (group_id, role_id, project_id, domain_id, system) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&a.group_id).bind(&a.role_id).bind(&a.project_id).bind(&a.domain_id).bind(&a.system)
        .execute(p).await?;
    });
    Ok(())
}

pub async fn revoke_group(db: &Db, a: &GroupAssignment) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "DELETE FROM group_role_assignments WHERE group_id = $1 AND role_id = $2 \
             AND project_id = $3 AND domain_id = $4 AND system = $5",
        )
        .bind(&a.group_id).bind(&a.role_id).bind(&a.project_id).bind(&a.domain_id).bind(&a.system)
        .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Group grants, each filter optional (`system`: `all` for the system's only).
pub async fn group_assignments(
    db: &Db,
    group_id: Option<&str>,
    role_id: Option<&str>,
    project_id: Option<&str>,
    domain_id: Option<&str>,
    system: Option<&str>,
) -> DbResult<Vec<GroupAssignment>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT group_id, role_id, project_id, domain_id, system FROM group_role_assignments \
             WHERE ($1 IS NULL OR group_id = $1) AND ($2 IS NULL OR role_id = $2) \
             AND ($3 IS NULL OR project_id = $3) AND ($4 IS NULL OR domain_id = $4) \
             AND ($5 IS NULL OR system = $5) \
             ORDER BY group_id, project_id, domain_id, system, role_id",
        )
        .bind(group_id).bind(role_id).bind(project_id).bind(domain_id).bind(system)
        .fetch_all(p).await?
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

/// Deletes the revocation events that expired by `now` (no token they match is still valid).
pub async fn prune_revocations(db: &Db, now: Millis) -> DbResult<u64> {
    Ok(on_pool!(db, p => {
        sqlx::query("DELETE FROM revocation_events WHERE expires_at <= $1")
            .bind(now).execute(p).await?.rows_affected()
    }))
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

// Policies (Keystone's policy API: stored blobs, enforced by nobody).

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Policy {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub blob: String,
    /// Attributes beyond the fixed ones, as a JSON object (Keystone's `extra`).
    pub extra: String,
}

pub async fn create_policy(db: &Db, x: &Policy) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO policies (id, type, blob, extra) VALUES ($1, $2, $3, $4)")
            .bind(&x.id).bind(&x.kind).bind(&x.blob).bind(&x.extra)
            .execute(p).await?;
    });
    Ok(())
}

pub async fn policy(db: &Db, id: &str) -> DbResult<Option<Policy>> {
    Ok(
        on_pool!(db, p => sqlx::query_as("SELECT id, type, blob, extra FROM policies WHERE id = $1")
        .bind(id).fetch_optional(p).await?),
    )
}

pub async fn policies(db: &Db, kind: Option<&str>) -> DbResult<Vec<Policy>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, type, blob, extra FROM policies WHERE ($1 IS NULL OR type = $1) ORDER BY id",
    ).bind(kind).fetch_all(p).await?))
}

pub async fn update_policy(db: &Db, x: &Policy) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query("UPDATE policies SET type = $2, blob = $3, extra = $4 WHERE id = $1")
        .bind(&x.id).bind(&x.kind).bind(&x.blob).bind(&x.extra)
        .execute(p).await?.rows_affected());
    Ok(n == 1)
}

pub async fn delete_policy(db: &Db, id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query("DELETE FROM policies WHERE id = $1").bind(id).execute(p).await?.rows_affected());
    Ok(n == 1)
}

// Credentials (Keystone's; the blob sealed by the identity service before it is written).

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    pub project_id: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub encrypted_blob: String,
    pub extra: String,
}

const CREDENTIAL_COLUMNS: &str = "id, user_id, project_id, type, encrypted_blob, extra";

/// Inserts a credential; false when its id is taken.
pub async fn create_credential(db: &Db, c_: &Credential) -> DbResult<bool> {
    let sql = format!(
        "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO NOTHING"
    );
    let n = on_pool!(db, p => sqlx::query(&sql)
        .bind(&c_.id).bind(&c_.user_id).bind(&c_.project_id).bind(&c_.kind)
        .bind(&c_.encrypted_blob).bind(&c_.extra)
        .execute(p).await?.rows_affected());
    Ok(n == 1)
}

pub async fn credential(db: &Db, id: &str) -> DbResult<Option<Credential>> {
    let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE id = $1");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
}

pub async fn credentials(
    db: &Db,
    user_id: Option<&str>,
    kind: Option<&str>,
) -> DbResult<Vec<Credential>> {
    let sql = format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE ($1 IS NULL OR user_id = $1) \
         AND ($2 IS NULL OR type = $2) ORDER BY id"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(user_id).bind(kind).fetch_all(p).await?))
}

pub async fn update_credential(db: &Db, c_: &Credential) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE credentials SET user_id = $2, project_id = $3, type = $4, encrypted_blob = $5, \
         extra = $6 WHERE id = $1",
    )
    .bind(&c_.id).bind(&c_.user_id).bind(&c_.project_id).bind(&c_.kind)
    .bind(&c_.encrypted_blob).bind(&c_.extra)
    .execute(p).await?.rows_affected());
    Ok(n == 1)
}

pub async fn delete_credential(db: &Db, id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query("DELETE FROM credentials WHERE id = $1").bind(id).execute(p).await?.rows_affected());
    Ok(n == 1)
}

// Application credentials.

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AppCredential {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub project_id: String,
    /// The argon2 PHC string of the secret; never leaves the identity service.
    pub secret_hash: String,
    pub description: Option<String>,
    /// Microseconds since the epoch (Keystone shows it to the microsecond).
    pub expires_at_us: Option<i64>,
    pub unrestricted: bool,
    /// A JSON list of `{"id", "name"}`.
    pub roles: String,
}

const APP_CRED_COLUMNS: &str =
    "id, name, user_id, project_id, secret_hash, description, expires_at_us, unrestricted, roles";

/// Inserts an application credential; false when its user has one of that name.
pub async fn create_app_credential(db: &Db, a: &AppCredential) -> DbResult<bool> {
    let sql = format!(
        "INSERT INTO application_credentials ({APP_CRED_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (user_id, name) DO NOTHING"
    );
    let n = on_pool!(db, p => sqlx::query(&sql)
        .bind(&a.id).bind(&a.name).bind(&a.user_id).bind(&a.project_id).bind(&a.secret_hash)
        .bind(&a.description).bind(a.expires_at_us).bind(a.unrestricted).bind(&a.roles)
        .execute(p).await?.rows_affected());
    Ok(n == 1)
}

pub async fn app_credential(db: &Db, id: &str) -> DbResult<Option<AppCredential>> {
    let sql = format!("SELECT {APP_CRED_COLUMNS} FROM application_credentials WHERE id = $1");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
}

/// A user's application credentials, optionally only the one of this name.
pub async fn app_credentials(
    db: &Db,
    user_id: &str,
    name: Option<&str>,
) -> DbResult<Vec<AppCredential>> {
    let sql = format!(
        "SELECT {APP_CRED_COLUMNS} FROM application_credentials WHERE user_id = $1 \
         AND ($2 IS NULL OR name = $2) ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(user_id).bind(name).fetch_all(p).await?))
}

pub async fn delete_app_credential(db: &Db, id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query("DELETE FROM application_credentials WHERE id = $1")
        .bind(id).execute(p).await?.rows_affected());
    Ok(n == 1)
}
