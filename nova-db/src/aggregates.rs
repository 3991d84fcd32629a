//! Host aggregates: named groups of compute hosts with metadata (Nova's `aggregates`,
//! `aggregate_hosts`, `aggregate_metadata`). The `availability_zone` key of an aggregate's
//! metadata puts its hosts in that availability zone; a host in none is in the default zone.

use crate::{on_pool, on_tx, Db, DbResult};
use std::collections::{BTreeMap, HashMap};

/// The metadata key that names an aggregate's availability zone.
pub const AZ_KEY: &str = "availability_zone";

/// Nova's `default_availability_zone`: compute hosts in no zone's aggregate.
pub const DEFAULT_ZONE: &str = "nova";

/// The zone of a compute host, from [`host_zones`].
pub fn zone_of<'a>(zones: &'a HashMap<String, String>, host: &str) -> &'a str {
    zones.get(host).map_or(DEFAULT_ZONE, String::as_str)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub name: String,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub hosts: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

impl Aggregate {
    pub fn availability_zone(&self) -> Option<&str> {
        self.metadata.get(AZ_KEY).map(String::as_str)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    uuid: uuid::Uuid,
    name: String,
    created_at: i64,
    updated_at: Option<i64>,
}

async fn complete(db: &Db, rows: Vec<Row>) -> DbResult<Vec<Aggregate>> {
    let hosts: Vec<(i64, String)> = on_pool!(db, p => sqlx::query_as(
        "SELECT aggregate_id, host FROM aggregate_hosts ORDER BY aggregate_id, created_at, host")
        .fetch_all(p).await?);
    let meta: Vec<(i64, String, String)> = on_pool!(db, p => sqlx::query_as(
        "SELECT aggregate_id, key, value FROM aggregate_metadata ORDER BY aggregate_id, key")
        .fetch_all(p).await?);
    Ok(rows
        .into_iter()
        .map(|r| Aggregate {
            hosts: hosts
                .iter()
                .filter(|(a, _)| *a == r.id)
                .map(|(_, h)| h.clone())
                .collect(),
            metadata: meta
                .iter()
                .filter(|(a, _, _)| *a == r.id)
                .map(|(_, k, v)| (k.clone(), v.clone()))
                .collect(),
            id: r.id,
            uuid: r.uuid,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

const COLUMNS: &str = "id, uuid, name, created_at, updated_at";

pub async fn list(db: &Db) -> DbResult<Vec<Aggregate>> {
    let sql = format!("SELECT {COLUMNS} FROM aggregates ORDER BY id");
    let rows: Vec<Row> = on_pool!(db, p => sqlx::query_as(&sql).fetch_all(p).await?);
    complete(db, rows).await
}

pub async fn get(db: &Db, id: i64) -> DbResult<Option<Aggregate>> {
    let sql = format!("SELECT {COLUMNS} FROM aggregates WHERE id = $1");
    let rows: Vec<Row> = on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_all(p).await?);
    Ok(complete(db, rows).await?.pop())
}

/// Creates an aggregate with `metadata`; `None` when the name is taken.
pub async fn create(
    db: &Db,
    name: &str,
    metadata: &BTreeMap<String, String>,
) -> DbResult<Option<Aggregate>> {
    let now = nova_core::time::now_ms();
    let mut tx = db.begin().await?;
    let id: Option<i64> = on_tx!(&mut tx, c => sqlx::query_scalar(
        "INSERT INTO aggregates (uuid, name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING RETURNING id")
        .bind(uuid::Uuid::new_v4()).bind(name).bind(now).fetch_optional(&mut *c).await?);
    let Some(id) = id else {
        return Ok(None);
    };
    for (k, v) in metadata {
        on_tx!(&mut tx, c => sqlx::query(
            "INSERT INTO aggregate_metadata (aggregate_id, key, value) VALUES ($1, $2, $3)")
            .bind(id).bind(k).bind(v).execute(&mut *c).await?.rows_affected());
    }
    tx.commit().await?;
    get(db, id).await
}

/// Renames; `false` when another aggregate has the name (the unique name decides, so two
/// concurrent renames to one name cannot both pass).
pub async fn rename(db: &Db, id: i64, name: &str) -> DbResult<bool> {
    let result = on_pool!(db, p => sqlx::query(
        "UPDATE aggregates SET name = $2, updated_at = $3 WHERE id = $1")
        .bind(id).bind(name).bind(nova_core::time::now_ms()).execute(p).await.map(|_| ()));
    match result {
        Ok(()) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sets metadata keys (a `None` value removes the key), as Nova's `update_metadata`.
pub async fn update_metadata(
    db: &Db,
    id: i64,
    changes: &BTreeMap<String, Option<String>>,
) -> DbResult<()> {
    let mut tx = db.begin().await?;
    for (k, v) in changes {
        match v {
            Some(v) => on_tx!(&mut tx, c => sqlx::query(
                "INSERT INTO aggregate_metadata (aggregate_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (aggregate_id, key) DO UPDATE SET value = excluded.value")
                .bind(id).bind(k).bind(v).execute(&mut *c).await?.rows_affected()),
            None => on_tx!(&mut tx, c => sqlx::query(
                "DELETE FROM aggregate_metadata WHERE aggregate_id = $1 AND key = $2")
                .bind(id).bind(k).execute(&mut *c).await?.rows_affected()),
        };
    }
    on_tx!(&mut tx, c => sqlx::query("UPDATE aggregates SET updated_at = $2 WHERE id = $1")
        .bind(id).bind(nova_core::time::now_ms()).execute(&mut *c).await?.rows_affected());
    tx.commit().await
}

/// Deletes an aggregate that has no hosts; `false` when it has (or is gone). One statement,
/// so a host added meanwhile is never deleted with it.
pub async fn delete_empty(db: &Db, id: i64) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "DELETE FROM aggregates WHERE id = $1 \
         AND NOT EXISTS (SELECT 1 FROM aggregate_hosts WHERE aggregate_id = $1)")
        .bind(id).execute(p).await?.rows_affected());
    Ok(n == 1)
}

/// Adds a host; `false` when it is already in the aggregate or the aggregate is gone.
pub async fn add_host(db: &Db, id: i64, host: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "INSERT INTO aggregate_hosts (aggregate_id, host, created_at) \
         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM aggregates WHERE id = $1) \
         ON CONFLICT (aggregate_id, host) DO NOTHING")
        .bind(id).bind(host).bind(nova_core::time::now_ms()).execute(p).await?.rows_affected());
    Ok(n == 1)
}

/// Removes a host; `false` when it was not in the aggregate.
pub async fn remove_host(db: &Db, id: i64, host: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "DELETE FROM aggregate_hosts WHERE aggregate_id = $1 AND host = $2")
        .bind(id).bind(host).execute(p).await?.rows_affected());
    Ok(n == 1)
}

/// The availability zone of each host that an aggregate puts in one (hosts in none are in
/// the default zone). A host is never in two zones: adding it to a second is refused.
pub async fn host_zones(db: &Db) -> DbResult<HashMap<String, String>> {
    let rows: Vec<(String, String)> = on_pool!(db, p => sqlx::query_as(
        "SELECT h.host, m.value FROM aggregate_hosts h JOIN aggregate_metadata m \
         ON m.aggregate_id = h.aggregate_id AND m.key = $1")
        .bind(AZ_KEY).fetch_all(p).await?);
    Ok(rows.into_iter().collect())
}

/// Every availability zone an aggregate names.
pub async fn zones(db: &Db) -> DbResult<Vec<String>> {
    Ok(on_pool!(db, p => sqlx::query_scalar(
        "SELECT DISTINCT value FROM aggregate_metadata WHERE key = $1 ORDER BY value")
        .bind(AZ_KEY).fetch_all(p).await?))
}
