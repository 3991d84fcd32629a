//! Flavors and their extra specs.

use crate::listing::{self, Arg, Column, Cond, Kind, Listing};
use crate::rows::FlavorRow;
use crate::{on_pool, Db, DbResult};
use nova_core::model::Flavor;
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

/// Flavors as the list engine sees them.
pub const TABLE: listing::Table = listing::Table {
    name: "flavors",
    columns: COLUMNS,
    id: Column {
        expr: "flavorid",
        kind: Kind::Text,
    },
    tags: None,
};

/// The keys Nova sorts flavors by (its `VALID_SORT_KEYS` for flavors), as columns; `None` for
/// one it does not know.
pub fn sort_column(key: &str) -> Option<Column> {
    let (expr, kind) = match key {
        "flavorid" => return Some(TABLE.id),
        // The row's own id: the order flavors were created in.
        "id" | "created_at" => ("id", Kind::Int),
        "name" => ("name", Kind::Text),
        "description" => ("COALESCE(description, '')", Kind::Text),
        "memory_mb" => ("memory_mb", Kind::Int),
        "vcpus" => ("vcpus", Kind::Int),
        "root_gb" => ("root_gb", Kind::Int),
        "ephemeral_gb" => ("ephemeral_gb", Kind::Int),
        "swap" => ("swap", Kind::Int),
        "is_public" => ("is_public", Kind::Bool),
        "disabled" => ("disabled", Kind::Bool),
        // Flavors here are never updated in ways Nova stamps, and have no vcpu weight or
        // rxtx ordering of their own beyond their values.
        "rxtx_factor" => ("CAST(rxtx_factor * 1000000 AS BIGINT)", Kind::Int),
        "updated_at" | "vcpu_weight" => ("id", Kind::Int),
        _ => return None,
    };
    Some(Column { expr, kind })
}

/// Flavors the caller may see, for a listing: a non-admin sees public flavors and the private
/// ones shared with `project` (enabled ones only); `public` chooses as Nova's `is_public`
/// (`None`: all).
pub fn visible_cond(project: &str, admin: bool, public: Option<bool>) -> Vec<Cond> {
    let shared = || {
        Cond::sql(
            "EXISTS (SELECT 1 FROM flavor_projects a WHERE a.flavor_id = flavors.id \
             AND a.project_id = ?)",
            vec![Arg::Text(project.to_owned())],
        )
    };
    let mut conds = Vec::new();
    if !admin {
        conds.push(Cond::sql("NOT disabled", Vec::new()));
    }
    match public {
        None => {}
        Some(true) => conds.push(Cond::any(vec![
            Cond::sql("is_public", Vec::new()),
            shared(),
        ])),
        Some(false) => conds.push(Cond::sql("NOT is_public", Vec::new())),
    }
    conds
}

/// A page of a flavor listing, with the flavors' extra specs (one more query, for the page).
pub async fn page(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Flavor>> {
    let rows: Vec<FlavorRow> = listing::page(db, listing).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let marks = crate::placeholders(1, rows.len());
    let sql = format!(
        "SELECT flavor_id, key, value FROM flavor_extra_specs WHERE flavor_id IN ({})",
        marks
    );
    let specs: Vec<(i64, String, String)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for r in &rows {
            q = q.bind(r.id);
        }
        q.fetch_all(p).await?
    });
    let mut by_flavor: std::collections::HashMap<i64, BTreeMap<String, String>> =
        std::collections::HashMap::new();
    for (id, k, v) in specs {
        by_flavor.entry(id).or_default().insert(k, v);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let specs = by_flavor.remove(&row.id).unwrap_or_default();
            let mut flavor = row.into_model();
            flavor.extra_specs = specs;
            flavor
        })
        .collect())
}

/// Public flavors, ordered as Nova orders them by default (by flavor id).
pub async fn list(db: &Db) -> DbResult<Vec<Flavor>> {
    Ok(list_all(db)
        .await?
        .into_iter()
        .filter(|f| f.is_public && !f.disabled)
        .collect())
}

/// Each flavor's database id (Nova's `instance_type_id`), by its flavor id.
pub async fn db_ids(db: &Db) -> DbResult<std::collections::HashMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        on_pool!(db, p => sqlx::query_as("SELECT flavorid, id FROM flavors").fetch_all(p).await?);
    Ok(rows.into_iter().collect())
}

/// Every flavor, private and disabled ones included, by flavor id; callers filter by what the
/// asker may see (flavors are few).
pub async fn list_all(db: &Db) -> DbResult<Vec<Flavor>> {
    let sql = format!("SELECT {COLUMNS} FROM flavors ORDER BY flavorid");
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
    let now = nova_core::time::now_ms();
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

/// Which projects may use which private flavor: (flavor id, project id) pairs.
pub async fn access_all(db: &Db) -> DbResult<Vec<(String, String)>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT f.flavorid, a.project_id FROM flavor_projects a \
             JOIN flavors f ON f.id = a.flavor_id ORDER BY f.flavorid, a.project_id",
        )
        .fetch_all(p)
        .await?
    }))
}

/// The projects a flavor is shared with.
pub async fn access_of(db: &Db, flavorid: &str) -> DbResult<Vec<String>> {
    let rows: Vec<(String,)> = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT a.project_id FROM flavor_projects a JOIN flavors f ON f.id = a.flavor_id \
             WHERE f.flavorid = $1 ORDER BY a.project_id",
        )
        .bind(flavorid)
        .fetch_all(p)
        .await?
    });
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// Shares a flavor with a project; false when it already was.
pub async fn add_access(db: &Db, flavorid: &str, project: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO flavor_projects (flavor_id, project_id) \
             SELECT id, $2 FROM flavors WHERE flavorid = $1 ON CONFLICT DO NOTHING",
        )
        .bind(flavorid)
        .bind(project)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Stops sharing a flavor with a project; false when it was not shared with it.
pub async fn remove_access(db: &Db, flavorid: &str, project: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "DELETE FROM flavor_projects WHERE project_id = $2 AND flavor_id IN \
             (SELECT id FROM flavors WHERE flavorid = $1)",
        )
        .bind(flavorid)
        .bind(project)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Sets a flavor's description; false when there is no such flavor.
pub async fn set_description(db: &Db, flavorid: &str, description: Option<&str>) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE flavors SET description = $2 WHERE flavorid = $1")
            .bind(flavorid)
            .bind(description)
            .execute(p)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Removes one extra spec; false when the flavor has no such key.
pub async fn delete_extra_spec(db: &Db, flavorid: &str, key: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "DELETE FROM flavor_extra_specs WHERE key = $2 AND flavor_id IN \
             (SELECT id FROM flavors WHERE flavorid = $1)",
        )
        .bind(flavorid)
        .bind(key)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}
