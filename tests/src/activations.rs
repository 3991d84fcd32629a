//! When servers become ACTIVE, or their tasks end, told by PostgreSQL itself: for the boot
//! and action benchmarks, which time POST → ACTIVE (or the task's end) without a polling loop
//! loading the two cores while the hypervisor or engine works.

use sqlx::Connection;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Servers' ids as a trigger on `instances` (added to this run's own database, not to the
/// schema) notifies them, with the moment each notification arrived. PostgreSQL delivers a
/// notification only once its transaction has committed, so the moment it arrives is after
/// the change is durable.
struct Notified(UnboundedReceiver<(String, Instant)>);

impl Notified {
    /// Runs `trigger` (which makes the trigger notifying `channel`) and listens.
    async fn watch(db_url: &str, trigger: &str, channel: &str) -> anyhow::Result<Self> {
        let mut conn = sqlx::PgConnection::connect(db_url).await?;
        sqlx::raw_sql(trigger).execute(&mut conn).await?;
        let mut listener = sqlx::postgres::PgListener::connect(db_url).await?;
        listener.listen(channel).await?;
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

    /// The moment server `id` was notified, waiting at most `limit` (`what` names the change
    /// in the error).
    async fn of(&mut self, id: &str, limit: Duration, what: &str) -> anyhow::Result<Instant> {
        let notified = async {
            while let Some((server, at)) = self.0.recv().await {
                if server == id {
                    return Ok(at);
                }
            }
            anyhow::bail!("the database stopped sending notifications")
        };
        tokio::time::timeout(limit, notified)
            .await
            .map_err(|_| anyhow::anyhow!("server {id}: {what} not in {limit:?}"))?
    }
}

/// Servers' ids as their build commits ACTIVE (`launched_at` first set).
pub struct Activations(Notified);

impl Activations {
    pub async fn watch(db_url: &str) -> anyhow::Result<Self> {
        let trigger = "CREATE FUNCTION bench_notify_active() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN PERFORM pg_notify('bench_active', NEW.uuid::text); RETURN NEW; END $$; \
             CREATE TRIGGER bench_active AFTER UPDATE ON instances FOR EACH ROW \
             WHEN (OLD.launched_at IS NULL AND NEW.launched_at IS NOT NULL) \
             EXECUTE FUNCTION bench_notify_active();";
        Ok(Self(
            Notified::watch(db_url, trigger, "bench_active").await?,
        ))
    }

    /// The moment server `id` became ACTIVE, waiting at most `limit`.
    pub async fn of(&mut self, id: &str, limit: Duration) -> anyhow::Result<Instant> {
        self.0.of(id, limit, "ACTIVE").await
    }
}

/// Servers' ids as their task ends (the task state back to none) or their vm state changes
/// (a confirmResize, which runs with no task state).
pub struct TaskEnds(Notified);

impl TaskEnds {
    pub async fn watch(db_url: &str) -> anyhow::Result<Self> {
        let trigger = "CREATE FUNCTION bench_notify_settled() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN PERFORM pg_notify('bench_settled', NEW.uuid::text); RETURN NEW; END $$; \
             CREATE TRIGGER bench_settled AFTER UPDATE ON instances FOR EACH ROW \
             WHEN ((OLD.task_state IS NOT NULL AND NEW.task_state IS NULL) \
                   OR OLD.vm_state <> NEW.vm_state) \
             EXECUTE FUNCTION bench_notify_settled();";
        Ok(Self(
            Notified::watch(db_url, trigger, "bench_settled").await?,
        ))
    }

    /// Forgets what was told before (a step's own notifications only).
    pub fn clear(&mut self) {
        while self.0 .0.try_recv().is_ok() {}
    }

    /// The moment server `id`'s task ended, waiting at most `limit`.
    pub async fn of(&mut self, id: &str, limit: Duration) -> anyhow::Result<Instant> {
        self.0.of(id, limit, "task end").await
    }
}
