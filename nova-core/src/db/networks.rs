//! Networks (a Neutron subset): what a server create may choose by id. A network is a name for
//! a network that compute hosts provide (`backend`: for Docker, an engine network).

use super::{on_pool, Db, DbResult};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    /// Usable by every project (Neutron's `shared`).
    pub shared: bool,
    pub admin_state_up: bool,
    /// The network as compute hosts know it (Neutron's `provider:physical_network`).
    pub backend: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, name, description, project_id, shared, admin_state_up, backend, created_at, updated_at";

pub async fn create(db: &Db, n: &Network) -> DbResult<()> {
    let sql =
        format!("INSERT INTO networks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
    on_pool!(db, p => {
        sqlx::query(&sql)
            .bind(&n.id)
            .bind(&n.name)
            .bind(&n.description)
            .bind(&n.project_id)
            .bind(n.shared)
            .bind(n.admin_state_up)
            .bind(&n.backend)
            .bind(n.created_at)
            .bind(n.updated_at)
            .execute(p)
            .await?;
    });
    Ok(())
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<Network>> {
    let sql = format!("SELECT {COLUMNS} FROM networks WHERE id = $1");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
    }))
}

/// Every network, by creation (callers filter what a project may see).
pub async fn list(db: &Db) -> DbResult<Vec<Network>> {
    let sql = format!("SELECT {COLUMNS} FROM networks ORDER BY created_at, id");
    Ok(on_pool!(db, p => { sqlx::query_as(&sql).fetch_all(p).await? }))
}

/// Writes the fields a network update may change.
pub async fn update(db: &Db, n: &Network) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE networks SET name = $2, description = $3, shared = $4, \
             admin_state_up = $5, updated_at = $6 WHERE id = $1",
        )
        .bind(&n.id)
        .bind(&n.name)
        .bind(&n.description)
        .bind(n.shared)
        .bind(n.admin_state_up)
        .bind(n.updated_at)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// Whether a server that is not deleted was created on the network. Servers keep the networks
/// they chose as a JSON list of their ids (and names), so a network's id, which is a uuid,
/// appears in that text only when a server chose it.
pub async fn in_use(db: &Db, id: &str) -> DbResult<bool> {
    let pattern = format!("%\"{id}\"%");
    let (found,): (bool,) = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM instances WHERE deleted = $1 AND networks LIKE $2)",
        )
        .bind(false)
        .bind(&pattern)
        .fetch_one(p)
        .await?
    });
    Ok(found)
}

/// Deletes the network; `false` when there was none.
pub async fn delete(db: &Db, id: &str) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query("DELETE FROM networks WHERE id = $1")
            .bind(id)
            .execute(p)
            .await?
            .rows_affected()
    });
    Ok(done > 0)
}
