//! Networks (a Neutron subset): what a server create may choose by id. A network is a name for
//! a network that compute hosts provide (`backend`: for Docker, an engine network).

use crate::listing::{self, Arg, Column, Cond, Kind, Listing, Tags};
use crate::{on_pool, on_tx, Db, DbResult, Tx, Viewer};

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
    /// The network's tags (Neutron's standard-attr-tag), a JSON list.
    pub tags: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Neutron's port security: what its new ports take when they do not say.
    pub port_security_enabled: bool,
    /// Neutron's `router:external`: seen by every project, used by its owner, admins, or every
    /// project when also shared.
    pub router_external: bool,
}

const COLUMNS: &str = "id, name, description, project_id, shared, admin_state_up, backend, \
    tags, created_at, updated_at, port_security_enabled, router_external";

impl Network {
    /// The tags, in the order they were set.
    pub fn tag_list(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

/// The class of the PostgreSQL advisory locks that serialise one project's network creates
/// (the second key is the project's hash).
const NETWORK_LOCK_CLASS: i32 = 0x4e45_5457; // "NETW"

/// Stores a new network unless its project has `limit` networks already (a negative limit:
/// no limit); `false` then. The count and the insert are one transaction, under a lock per
/// project on PostgreSQL (SQLite has one writer), so concurrent creates cannot pass the quota
/// together.
pub async fn create_within_quota(db: &Db, n: &Network, limit: i64) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    if let Tx::Pg(t) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(NETWORK_LOCK_CLASS)
            .bind(&n.project_id)
            .execute(&mut **t)
            .await?;
    }
    let (count,): (i64,) = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM networks WHERE project_id = $1")
            .bind(&n.project_id)
            .fetch_one(&mut *c)
            .await?
    });
    if limit >= 0 && count >= limit {
        return Ok(false);
    }
    let sql = format!(
        "INSERT INTO networks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12)"
    );
    on_tx!(&mut tx, c => {
        sqlx::query(&sql)
            .bind(&n.id)
            .bind(&n.name)
            .bind(&n.description)
            .bind(&n.project_id)
            .bind(n.shared)
            .bind(n.admin_state_up)
            .bind(&n.backend)
            .bind(&n.tags)
            .bind(n.created_at)
            .bind(n.updated_at)
            .bind(n.port_security_enabled)
            .bind(n.router_external)
            .execute(&mut *c)
            .await?;
    });
    tx.commit().await?;
    Ok(true)
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<Network>> {
    let sql = format!("SELECT {COLUMNS} FROM networks WHERE id = $1");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
    }))
}

/// Neutron's visibility: admins see every network; others their project's, shared ones and
/// external ones.
pub fn visible_to(n: &Network, viewer: Viewer<'_>) -> bool {
    viewer.admin || n.shared || n.router_external || n.project_id == viewer.project
}

/// [`visible_to`] as a condition of a listing.
pub fn visible_cond(viewer: Viewer<'_>) -> Cond {
    if viewer.admin {
        return Cond::all(Vec::new());
    }
    Cond::any(vec![
        Cond::sql("shared", Vec::new()),
        Cond::sql("router_external", Vec::new()),
        Cond::eq("project_id", Arg::Text(viewer.project.to_owned())),
    ])
}

/// The networks a server of `project` is put on when its create names none (Nova's
/// `_get_available_networks`): the project's own and the shared ones, for admins too.
pub fn usable_cond(project: &str) -> Cond {
    Cond::any(vec![
        Cond::sql("shared", Vec::new()),
        Cond::eq("project_id", Arg::Text(project.to_owned())),
    ])
}

/// A network, if `viewer` may see it.
pub async fn get_visible(db: &Db, id: &str, viewer: Viewer<'_>) -> DbResult<Option<Network>> {
    Ok(get(db, id).await?.filter(|n| visible_to(n, viewer)))
}

/// Networks as the list engine sees them; their tags are a JSON list in the row.
pub const TABLE: listing::Table = listing::Table {
    name: "networks",
    columns: COLUMNS,
    id: Column {
        expr: "id",
        kind: Kind::Text,
    },
    tags: Some(Tags::JsonColumn("tags")),
};

/// A page of a network listing.
pub async fn page(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Network>> {
    listing::page(db, listing).await
}

/// Writes the fields a network update may change.
pub async fn update(db: &Db, n: &Network) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE networks SET name = $2, description = $3, shared = $4, \
             admin_state_up = $5, updated_at = $6, tags = $7, port_security_enabled = $8, \
             router_external = $9 WHERE id = $1",
        )
        .bind(&n.id)
        .bind(&n.name)
        .bind(&n.description)
        .bind(n.shared)
        .bind(n.admin_state_up)
        .bind(n.updated_at)
        .bind(&n.tags)
        .bind(n.port_security_enabled)
        .bind(n.router_external)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// What a network delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    /// Ports are on it (their ids), or a server that is not deleted chose it: it stays.
    InUse(Vec<String>),
    Missing,
}

/// Deletes the network and its subnets unless a port is on it or a server that is not
/// deleted chose it, in one transaction under the network's lock (no port can be made on it
/// meanwhile). Servers keep the networks they chose as a JSON list with their ids; a
/// network's id is a uuid, which appears in that text only when a server chose it.
pub async fn delete_unless_in_use(db: &Db, id: &str) -> DbResult<Deleted> {
    let mut tx = db.begin().await?;
    if !crate::subnets::lock_network(&mut tx, id).await? {
        return Ok(Deleted::Missing);
    }
    let ports: Vec<(String,)> = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT id FROM ports WHERE network_id = $1 ORDER BY created_at, id")
            .bind(id)
            .fetch_all(&mut *c)
            .await?
    });
    if !ports.is_empty() {
        return Ok(Deleted::InUse(ports.into_iter().map(|(p,)| p).collect()));
    }
    let pattern = format!("%\"{id}\"%");
    let (chosen,): (i64,) = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM instances WHERE deleted = $1 AND networks LIKE $2")
            .bind(false)
            .bind(&pattern)
            .fetch_one(&mut *c)
            .await?
    });
    if chosen > 0 {
        return Ok(Deleted::InUse(Vec::new()));
    }
    on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM subnets WHERE network_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM networks WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
    });
    tx.commit().await?;
    Ok(Deleted::Yes)
}

/// The networking resources that have tags (Neutron's standard-attr-tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tagged {
    Network,
    Subnet,
    Port,
}

/// Replaces a resource's tags (a JSON list); `false` if it is gone.
pub async fn set_tags(db: &Db, what: Tagged, id: &str, tags: &str, now: i64) -> DbResult<bool> {
    let sql = match what {
        Tagged::Network => "UPDATE networks SET tags = $2, updated_at = $3 WHERE id = $1",
        Tagged::Subnet => {
            "UPDATE subnets SET tags = $2, updated_at = $3, \
             revision_number = revision_number + 1 WHERE id = $1"
        }
        Tagged::Port => {
            "UPDATE ports SET tags = $2, updated_at = $3, \
             revision_number = revision_number + 1 WHERE id = $1"
        }
    };
    let done = on_pool!(db, p => {
        sqlx::query(sql)
            .bind(id)
            .bind(tags)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
    });
    Ok(done > 0)
}

/// Of these networks, those a port made on them could not apply security groups on (Nova's
/// `SecurityGroupCannotBeApplied`): without port security, or without a subnet. One query.
pub async fn without_port_security_or_subnet(db: &Db, ids: &[&str]) -> DbResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = crate::placeholders(2, ids.len());
    let sql = format!(
        "SELECT n.id FROM networks n WHERE n.id IN ({}) AND (n.port_security_enabled = $1 \
         OR NOT EXISTS (SELECT 1 FROM subnets s WHERE s.network_id = n.id))",
        marks
    );
    let rows: Vec<(String,)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql).bind(false);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(p).await?
    });
    Ok(rows.into_iter().map(|(id,)| id).collect())
}
