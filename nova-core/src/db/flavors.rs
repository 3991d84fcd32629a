//! Flavors and their extra specs.

use super::rows::FlavorRow;
use super::{on_pool, Db, DbResult};
use crate::model::Flavor;
use std::collections::BTreeMap;

const COLUMNS: &str = "id, flavorid, name, memory_mb, vcpus, root_gb, ephemeral_gb, swap, \
    rxtx_factor, is_public, disabled, description";

async fn extra_specs(db: &Db, id: i64) -> DbResult<BTreeMap<String, String>> {
    let rows: Vec<(String, String)> = on_pool!(db, p => {
        sqlx::query_as("SELECT key, value FROM flavor_extra_specs WHERE flavor_id = $1")
            .bind(id)
            .fetch_all(p)
            .await?
    });
    Ok(rows.into_iter().collect())
}

/// The flavor with this flavor id (the API's `id`), extra specs included.
pub async fn get(db: &Db, flavorid: &str) -> DbResult<Option<Flavor>> {
    let sql = format!("SELECT {COLUMNS} FROM flavors WHERE flavorid = $1");
    let row: Option<FlavorRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(flavorid).fetch_optional(p).await?);
    let Some(row) = row else { return Ok(None) };
    let specs = extra_specs(db, row.id).await?;
    let mut flavor = row.into_model();
    flavor.extra_specs = specs;
    Ok(Some(flavor))
}

/// Public flavors, ordered as Nova orders them by default (by flavor id).
pub async fn list(db: &Db) -> DbResult<Vec<Flavor>> {
    let sql =
        format!("SELECT {COLUMNS} FROM flavors WHERE is_public AND NOT disabled ORDER BY flavorid");
    let rows: Vec<FlavorRow> = on_pool!(db, p => sqlx::query_as(&sql).fetch_all(p).await?);
    let specs: Vec<(i64, String, String)> = on_pool!(db, p => {
        sqlx::query_as("SELECT flavor_id, key, value FROM flavor_extra_specs")
            .fetch_all(p)
            .await?
    });
    let mut flavors = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.id;
        let mut flavor = row.into_model();
        flavor.extra_specs = specs
            .iter()
            .filter(|(f, _, _)| *f == id)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        flavors.push(flavor);
    }
    Ok(flavors)
}

/// Creates a flavor (the admin API comes with the Compute API issue; tests and the bootstrap
/// use this).
pub async fn create(db: &Db, flavor: &Flavor) -> DbResult<()> {
    let mut tx = db.begin().await?;
    let now = crate::time::now_ms();
    let id: i64 = super::on_tx!(&mut tx, c => {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO flavors (flavorid, name, memory_mb, vcpus, root_gb, ephemeral_gb, swap, \
             rxtx_factor, is_public, disabled, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(&flavor.flavorid)
        .bind(&flavor.name)
        .bind(flavor.memory_mb)
        .bind(flavor.vcpus)
        .bind(flavor.root_gb)
        .bind(flavor.ephemeral_gb)
        .bind(flavor.swap)
        .bind(flavor.rxtx_factor)
        .bind(flavor.is_public)
        .bind(flavor.disabled)
        .bind(&flavor.description)
        .bind(now)
        .fetch_one(&mut *c)
        .await?;
        for (k, v) in &flavor.extra_specs {
            sqlx::query("INSERT INTO flavor_extra_specs (flavor_id, key, value) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(k)
                .bind(v)
                .execute(&mut *c)
                .await?;
        }
        id
    });
    let _ = id;
    tx.commit().await
}

/// Deletes a flavor and its extra specs; false when there is none with this flavor id. Servers
/// keep their flavor snapshot.
pub async fn delete(db: &Db, flavorid: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = super::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM flavor_extra_specs WHERE flavor_id IN (SELECT id FROM flavors WHERE flavorid = $1)")
            .bind(flavorid)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM flavors WHERE flavorid = $1").bind(flavorid).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

/// Sets (adds or replaces) extra specs of a flavor; false when the flavor does not exist.
pub async fn set_extra_specs(
    db: &Db,
    flavorid: &str,
    specs: &BTreeMap<String, String>,
) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let found = super::on_tx!(&mut tx, c => {
        let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM flavors WHERE flavorid = $1")
            .bind(flavorid)
            .fetch_optional(&mut *c)
            .await?;
        if let Some((id,)) = id {
            for (k, v) in specs {
                sqlx::query(
                    "INSERT INTO flavor_extra_specs (flavor_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (flavor_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(id)
                .bind(k)
                .bind(v)
                .execute(&mut *c)
                .await?;
            }
        }
        id.is_some()
    });
    tx.commit().await?;
    Ok(found)
}
