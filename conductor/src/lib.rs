//! The conductor: it carries out the tasks the API wrote, and applies what the agents report.
//!
//! Every handler is idempotent. A message only points at a task row; the handler reads the row
//! and the instance, acts only if they are in the state it expects, and acks the message after
//! its transaction committed and its follow-up message was confirmed. A duplicate finds the work
//! done and does nothing; a lost message is sent again by the [`reconciler`].

mod baremetal;
pub mod events;
mod firewall;
pub mod reconciler;
mod resize;
pub mod scheduler;
pub mod settings;
mod shelve;
pub mod tasks;

use nova_core::bus::{self, Bus, BusError};
use nova_core::model::CONDUCTOR_BINARY;
use nova_core::rpc::{AgentEvent, ComputeCommand, Envelope, Queues, TaskSubmitted};
use nova_db::{Db, DbError};
pub use settings::ConductorSettings;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Why a handler could not finish; the message goes back to the queue for another try.
#[derive(Debug, thiserror::Error)]
pub enum ConductorError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

pub type Result<T> = std::result::Result<T, ConductorError>;

pub struct Conductor {
    pub(crate) settings: ConductorSettings,
    pub(crate) db: Db,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) queues: Queues,
    pub(crate) scheduler: scheduler::Scheduler,
    /// This process among the conductors (replicas may share a host name): the reconciler
    /// lease's holder.
    pub(crate) replica: String,
    /// When the reconciler last asked the bare-metal agents for their machines' power.
    last_node_sync: std::sync::Mutex<i64>,
}

impl Conductor {
    pub fn new(
        settings: ConductorSettings,
        db: Db,
        bus: Arc<dyn Bus>,
        queues: Queues,
    ) -> Arc<Self> {
        let replica = format!("{}/{}", settings.host, uuid::Uuid::new_v4());
        Arc::new(Self {
            settings,
            db,
            bus,
            queues,
            scheduler: Default::default(),
            replica,
            last_node_sync: std::sync::Mutex::new(0),
        })
    }

    /// Whether the bare-metal power sync is due at `now` (and, if so, it counts as done now).
    pub(crate) fn node_sync_due(&self, now: i64) -> bool {
        let every = i64::try_from(self.settings.baremetal_sync_interval_s.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let mut last = self
            .last_node_sync
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if now - *last < every {
            return false;
        }
        *last = now;
        true
    }

    /// Consumes tasks and events and runs the reconciler until dropped.
    pub async fn run(self: Arc<Self>, prefetch: u16) -> anyhow::Result<()> {
        let task_sub = self
            .bus
            .subscribe(&self.queues.conductor_tasks(), prefetch)
            .await?;
        let event_sub = self
            .bus
            .subscribe(&self.queues.conductor_events(), prefetch)
            .await?;
        // A service like Nova's conductor: listed by os-services, heard from each reconciler
        // pass.
        nova_db::nodes::register(&self.db, &self.settings.host, CONDUCTOR_BINARY, &[]).await?;
        tracing::info!(database = self.db.backend(), host = %self.settings.host, "conductor serving");
        let reconciler = tokio::spawn(reconciler::run(self.clone()));
        let firewall = tokio::spawn(firewall::run(self.clone()));
        let tasks = serve(
            self.clone(),
            task_sub,
            prefetch,
            |me, env: Envelope<TaskSubmitted>| async move {
                let span = tracing::info_span!(
                    "task",
                    request_id = env.request_id.as_deref().unwrap_or("-"),
                    instance = %env.body.instance,
                    task = %env.body.task_id,
                );
                me.handle_task(env.body.task_id, env.body.instance)
                    .instrument(span)
                    .await
            },
        );
        let events = serve(
            self.clone(),
            event_sub,
            prefetch,
            |me, env: Envelope<AgentEvent>| async move {
                let span = tracing::info_span!(
                    "event",
                    request_id = env.request_id.as_deref().unwrap_or("-")
                );
                me.handle_event(env.body).instrument(span).await
            },
        );
        tokio::join!(tasks, events);
        reconciler.abort();
        firewall.abort();
        reconciler::release(&self).await;
        Ok(())
    }

    pub(crate) async fn send_to_host(
        &self,
        host: &str,
        command: ComputeCommand,
        request_id: Option<String>,
    ) -> std::result::Result<(), BusError> {
        let env = Envelope::new(request_id, command);
        self.bus
            .publish(&self.queues.compute(host), env.encode())
            .await
    }

    pub(crate) fn alive_since(&self) -> i64 {
        nova_core::time::now_ms() - self.settings.service_down_ms()
    }
}

/// Decodes every delivery of `sub` and hands it to `handle`, at most `prefetch` at a time;
/// acks or requeues by the outcome (see [`settle`]). Unreadable messages are dropped: a
/// redelivery could never read them either.
async fn serve<T, F, Fut>(me: Arc<Conductor>, sub: bus::Subscription, prefetch: u16, handle: F)
where
    T: serde::de::DeserializeOwned + serde::Serialize + Send + 'static,
    F: Fn(Arc<Conductor>, Envelope<T>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    bus::consume(sub, usize::from(prefetch), move |d| {
        let me = me.clone();
        async move {
            match Envelope::<T>::decode(&d.payload) {
                Err(e) => {
                    tracing::error!(error = %e, "dropping an unreadable message");
                    d.ack().await;
                }
                Ok(env) => settle(d, handle(me, env).await).await,
            }
        }
    })
    .await
}

/// Acks a handled message; puts it back when the handler failed, after a pause that doubles
/// with each delivery (from 0.5 s, at most 30 s): a database outage is not a busy loop, and the
/// queue's delivery limit (which dead-letters the message) spans minutes of outage, not
/// seconds. What a dead-lettered task message asked for is re-driven from its task row by the
/// reconciler.
async fn settle(d: bus::Delivery, result: Result<()>) {
    match result {
        Ok(()) => d.ack().await,
        Err(e) => {
            let pause = Duration::from_millis(500)
                .saturating_mul(1 << d.delivery_count.min(6))
                .min(Duration::from_secs(30));
            tracing::warn!(error = %e, ?pause, "handler failed; the message will be retried");
            tokio::time::sleep(pause).await;
            d.requeue().await;
        }
    }
}
