//! Named leases: work that one process of many does at a time (the conductor's reconciler runs
//! on one replica; the others wait to take over when its lease expires).

use crate::{on_pool, Db, DbResult};
use nova_core::time::now_ms;

/// Takes or renews the lease `name` for `holder` until `ttl_ms` from now. True when `holder`
/// holds it now: it was free, expired, or already `holder`'s. One statement, so that two
/// processes asking at once cannot both get it.
pub async fn acquire(db: &Db, name: &str, holder: &str, ttl_ms: i64) -> DbResult<bool> {
    let now = now_ms();
    let sql = "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
               ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
               expires_at = excluded.expires_at \
               WHERE leases.holder = excluded.holder OR leases.expires_at <= $4";
    let taken = on_pool!(db, p => sqlx::query(sql)
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
    Ok(taken == 1)
}

/// Gives the lease up (a holder that stops), so that another takes it without waiting.
pub async fn release(db: &Db, name: &str, holder: &str) -> DbResult<()> {
    on_pool!(db, p => sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(p)
        .await
        .map(|_| ())?);
    Ok(())
}
