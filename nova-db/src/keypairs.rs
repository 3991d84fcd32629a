//! Key pairs: public keys a user registered (or had generated), per user and name.

use crate::{on_pool, Db, DbResult};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyPair {
    pub id: i64,
    pub user_id: String,
    pub name: String,
    /// `ssh` or `x509`.
    pub key_type: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, user_id, name, key_type, public_key, fingerprint, created_at";

/// What a create under a quota came to.
#[derive(Debug)]
pub enum Created {
    Created(KeyPair),
    /// The user already has a key pair of this name.
    NameTaken,
    /// The user has `limit` key pairs already.
    OverQuota,
}

/// The class of the PostgreSQL advisory locks that serialise one user's key pair creates.
const KEYPAIR_LOCK_CLASS: i32 = 0x4b45_5953; // "KEYS"

/// Stores a new key pair unless the user already holds `limit` (negative: no limit), in one
/// transaction in which the user's creates are serialised (an advisory lock on PostgreSQL;
/// SQLite has one writer): concurrent creates cannot together pass the quota.
pub async fn create_within_quota(
    db: &Db,
    user_id: &str,
    name: &str,
    key_type: &str,
    public_key: &str,
    fingerprint: &str,
    limit: i64,
) -> DbResult<Created> {
    let mut tx = db.begin().await?;
    if let crate::Tx::Pg(t) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(KEYPAIR_LOCK_CLASS)
            .bind(user_id)
            .execute(&mut **t)
            .await?;
    }
    let count: i64 = crate::on_tx!(&mut tx, c => {
        sqlx::query_scalar("SELECT COUNT(*) FROM keypairs WHERE user_id = $1")
            .bind(user_id).fetch_one(&mut *c).await?
    });
    if limit >= 0 && count >= limit {
        return Ok(Created::OverQuota);
    }
    let now = nova_core::time::now_ms();
    let sql = format!(
        "INSERT INTO keypairs (user_id, name, key_type, public_key, fingerprint, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, name) DO NOTHING \
         RETURNING {COLUMNS}"
    );
    let row: Option<KeyPair> = crate::on_tx!(&mut tx, c => {
        sqlx::query_as(&sql)
            .bind(user_id).bind(name).bind(key_type).bind(public_key).bind(fingerprint).bind(now)
            .fetch_optional(&mut *c).await?
    });
    tx.commit().await?;
    Ok(match row {
        Some(k) => Created::Created(k),
        None => Created::NameTaken,
    })
}

pub async fn get(db: &Db, user_id: &str, name: &str) -> DbResult<Option<KeyPair>> {
    let sql = format!("SELECT {COLUMNS} FROM keypairs WHERE user_id = $1 AND name = $2");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(user_id).bind(name).fetch_optional(p).await?
    }))
}

/// The user's key pairs by name, after `marker` (a name) when given, at most `limit`.
pub async fn list(
    db: &Db,
    user_id: &str,
    marker: Option<&str>,
    limit: i64,
) -> DbResult<Vec<KeyPair>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM keypairs WHERE user_id = $1 AND name > $2 ORDER BY name LIMIT $3"
    );
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql)
            .bind(user_id)
            .bind(marker.unwrap_or(""))
            .bind(limit)
            .fetch_all(p)
            .await?
    }))
}

/// Deletes the key pair; `false` when there was none.
pub async fn delete(db: &Db, user_id: &str, name: &str) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query("DELETE FROM keypairs WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .execute(p)
            .await?
            .rows_affected()
    });
    Ok(done > 0)
}
