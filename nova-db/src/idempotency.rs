//! `Idempotency-Key` records of server creates: which server a project's key made, and from
//! which request body (its digest).

use crate::{on_pool, on_tx, Db, DbError, DbResult, Tx};
use nova_core::ids::InstanceUuid;
use nova_core::time::{now_ms, Millis};
use uuid::Uuid;

/// A key as a create request presents it.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub project_id: String,
    pub key: String,
    pub request_digest: String,
    /// Records made before this are expired: the key may be used afresh.
    pub not_before: Millis,
}

/// What an earlier request with the key made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub request_digest: String,
    pub instance: InstanceUuid,
}

const LOOKUP: &str = "SELECT request_digest, instance_uuid FROM idempotency_keys \
                      WHERE project_id = $1 AND key = $2 AND created_at >= $3";

fn recorded(row: Option<(String, Uuid)>) -> Option<Recorded> {
    row.map(|(request_digest, uuid)| Recorded {
        request_digest,
        instance: InstanceUuid(uuid),
    })
}

/// The live record of `key`, if any.
pub async fn lookup(db: &Db, key: &IdempotencyKey) -> DbResult<Option<Recorded>> {
    let row: Option<(String, Uuid)> = on_pool!(db, p => sqlx::query_as(LOOKUP)
        .bind(&key.project_id)
        .bind(&key.key)
        .bind(key.not_before)
        .fetch_optional(p)
        .await?);
    Ok(recorded(row))
}

/// [`lookup`] inside the creating transaction.
pub(crate) async fn lookup_tx(tx: &mut Tx, key: &IdempotencyKey) -> DbResult<Option<Recorded>> {
    let row: Option<(String, Uuid)> = on_tx!(tx, c => sqlx::query_as(LOOKUP)
        .bind(&key.project_id)
        .bind(&key.key)
        .bind(key.not_before)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)?);
    Ok(recorded(row))
}

/// Records `key` for `instance` in the creating transaction. A record of the key that is
/// still live makes this fail with a unique violation: another request with the key won.
pub(crate) async fn record(
    tx: &mut Tx,
    key: &IdempotencyKey,
    instance: InstanceUuid,
) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE project_id = $1 AND key = $2 AND created_at < $3",
        )
        .bind(&key.project_id)
        .bind(&key.key)
        .bind(key.not_before)
        .execute(&mut *c)
        .await
        .map_err(DbError::from)?;
        sqlx::query(
            "INSERT INTO idempotency_keys \
             (project_id, key, request_digest, instance_uuid, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.project_id)
        .bind(&key.key)
        .bind(&key.request_digest)
        .bind(instance.0)
        .bind(now_ms())
        .execute(&mut *c)
        .await
        .map_err(DbError::from)?;
    });
    Ok(())
}

/// Removes the records made before `before`; returns how many.
pub async fn prune(db: &Db, before: Millis) -> DbResult<u64> {
    Ok(
        on_pool!(db, p => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(before)
        .execute(p)
        .await?
        .rows_affected()),
    )
}
