//! When servers become ACTIVE, told by PostgreSQL itself: for the boot benchmarks, which time
//! POST → ACTIVE without a polling loop loading the two cores while the hypervisor or engine
//! works.

use sqlx::Connection;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Servers' ids as their build commits ACTIVE, with the moment each notification arrived.
pub struct Activations(UnboundedReceiver<(String, Instant)>);

impl Activations {
    /// Watches the stack's database. A trigger (added to this run's own database, not to the
    /// schema) notifies when `launched_at` is first set; PostgreSQL delivers a notification
    /// only once its transaction has committed, so the moment it arrives is after ACTIVE is
    /// durable.
    pub async fn watch(db_url: &str) -> anyhow::Result<Self> {
        let mut conn = sqlx::PgConnection::connect(db_url).await?;
        sqlx::raw_sql(
            "CREATE FUNCTION bench_notify_active() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_notify('bench_active', NEW.uuid::text); RETURN NEW; END $$; \
             CREATE TRIGGER bench_active AFTER UPDATE ON instances FOR EACH ROW \
             WHEN (OLD.launched_at IS NULL AND NEW.launched_at IS NOT NULL) \
             EXECUTE FUNCTION bench_notify_active();",
        )
        .execute(&mut conn)
        .await?;
        let mut listener = sqlx::postgres::PgListener::connect(db_url).await?;
        listener.listen("bench_active").await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(n) = listener.recv().await {
                let at = Instant::now();
                if tx.send((n.payload().to_owned(), at)).is_err() {
                    break;
                }
            }
        });
        Ok(Self(rx))
    }

    /// The moment server `id` became ACTIVE, waiting at most `limit`.
    pub async fn of(&mut self, id: &str, limit: Duration) -> anyhow::Result<Instant> {
        let active = async {
            while let Some((server, at)) = self.0.recv().await {
                if server == id {
                    return Ok(at);
                }
            }
            anyhow::bail!("the database stopped sending notifications")
        };
        tokio::time::timeout(limit, active)
            .await
            .map_err(|_| anyhow::anyhow!("server {id} not ACTIVE in {limit:?}"))?
    }
}

/// Servers' ids as their task ends (the task state back to none) or their vm state changes
/// (a confirmResize, which runs with no task state), told by PostgreSQL once committed: for the
/// action benchmarks, as [`Activations`] for boots.
pub struct TaskEnds(UnboundedReceiver<(String, Instant)>);

impl TaskEnds {
    pub async fn watch(db_url: &str) -> anyhow::Result<Self> {
        let mut conn = sqlx::PgConnection::connect(db_url).await?;
        sqlx::raw_sql(
            "CREATE FUNCTION bench_notify_settled() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_notify('bench_settled', NEW.uuid::text); RETURN NEW; END $$; \
             CREATE TRIGGER bench_settled AFTER UPDATE ON instances FOR EACH ROW \
             WHEN ((OLD.task_state IS NOT NULL AND NEW.task_state IS NULL) \
                   OR OLD.vm_state <> NEW.vm_state) \
             EXECUTE FUNCTION bench_notify_settled();",
        )
        .execute(&mut conn)
        .await?;
        let mut listener = sqlx::postgres::PgListener::connect(db_url).await?;
        listener.listen("bench_settled").await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(n) = listener.recv().await {
                let at = Instant::now();
                if tx.send((n.payload().to_owned(), at)).is_err() {
                    break;
                }
            }
        });
        Ok(Self(rx))
    }

    /// Forgets what was told before (a step's own notifications only).
    pub fn clear(&mut self) {
        while self.0.try_recv().is_ok() {}
    }

    /// The moment server `id`'s task ended, waiting at most `limit`.
    pub async fn of(&mut self, id: &str, limit: Duration) -> anyhow::Result<Instant> {
        let settled = async {
            while let Some((server, at)) = self.0.recv().await {
                if server == id {
                    return Ok(at);
                }
            }
            anyhow::bail!("the database stopped sending notifications")
        };
        tokio::time::timeout(limit, settled)
            .await
            .map_err(|_| anyhow::anyhow!("server {id}'s task did not end in {limit:?}"))?
    }
}
