//! Quotas: limits set per project, and what a project uses.

use crate::{on_pool, Db, DbResult};
use std::collections::BTreeMap;

/// The limits set for the project (resources without one have the default).
pub async fn limits(db: &Db, project_id: &str) -> DbResult<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = on_pool!(db, p => {
        sqlx::query_as("SELECT resource, hard_limit FROM quotas WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(p)
            .await?
    });
    Ok(rows.into_iter().collect())
}

/// Sets the project's limits for these resources.
pub async fn set(db: &Db, project_id: &str, limits: &BTreeMap<String, i64>) -> DbResult<()> {
    let mut tx = db.begin().await?;
    for (resource, limit) in limits {
        super::on_tx!(&mut tx, c => {
            sqlx::query(
                "INSERT INTO quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3) \
                 ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
            )
            .bind(project_id)
            .bind(resource)
            .bind(limit)
            .execute(&mut *c)
            .await?;
        });
    }
    tx.commit().await?;
    Ok(())
}

/// These resources back to their defaults for the project (each service resets its own).
pub async fn reset(db: &Db, project_id: &str, resources: &[&str]) -> DbResult<()> {
    for resource in resources {
        on_pool!(db, p => {
            sqlx::query("DELETE FROM quotas WHERE project_id = $1 AND resource = $2")
                .bind(project_id)
                .bind(resource)
                .execute(p)
                .await?;
        });
    }
    Ok(())
}

/// The projects that have a limit set for `resource`, with it.
pub async fn projects_with(db: &Db, resource: &str) -> DbResult<Vec<(String, i64)>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT project_id, hard_limit FROM quotas WHERE resource = $1 ORDER BY project_id",
        )
        .bind(resource)
        .fetch_all(p)
        .await?
    }))
}

/// How many networks a project has.
pub async fn network_count(db: &Db, project_id: &str) -> DbResult<i64> {
    let (n,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM networks WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(p)
            .await?
    });
    Ok(n)
}

/// A project's servers, their vcpus and memory (`$1` the project, `$2` false). SUM is NULL over
/// no rows; COALESCE keeps the type a BIGINT on both backends. As Nova's counts, SOFT_DELETED
/// servers do not count (a restore checks the quota again).
pub(crate) const SERVER_USAGE_SQL: &str =
    "SELECT COUNT(*), CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), \
     CAST(COALESCE(SUM(memory_mb), 0) AS BIGINT) \
     FROM instances WHERE project_id = $1 AND deleted = $2 AND vm_state <> 'soft-delete'";

/// What a project's live servers use: (instances, vcpus, RAM in MB), from the flavors they
/// were created with (kept on each server as columns).
pub async fn server_usage(db: &Db, project_id: &str) -> DbResult<(i64, i64, i64)> {
    let usage: (i64, i64, i64) = on_pool!(db, p => {
        sqlx::query_as(SERVER_USAGE_SQL)
        .bind(project_id)
        .bind(false)
        .fetch_one(p)
        .await?
    });
    Ok(usage)
}

/// How many key pairs a user has.
pub async fn keypair_count(db: &Db, user_id: &str) -> DbResult<i64> {
    let (n,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM keypairs WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(p)
            .await?
    });
    Ok(n)
}
