//! The message bus: one trait, two implementations.
//!
//! [`amqp::AmqpBus`] talks to RabbitMQ (durable quorum queues, persistent messages, publisher
//! confirms, manual acks, a prefetch limit, reconnect with backoff). [`inproc::InProcBus`] keeps
//! queues in memory for the all-in-one. Both give the same guarantee to a consumer: a delivery
//! that is not acked comes back.

pub mod amqp;
pub mod inproc;

use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker unavailable: {0}")]
    Unavailable(String),
    #[error("the broker did not confirm the message")]
    NotConfirmed,
    /// A call got no reply in time (nobody consumes the queue, or the consumer is slow).
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
}

/// A durable, at-least-once message bus.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `payload` to `queue` and returns once the bus holds it durably (for AMQP: once the
    /// broker confirmed it). Retries through broker restarts up to a deadline.
    async fn publish(&self, queue: &str, payload: Vec<u8>) -> Result<(), BusError>;

    /// Consumes `queue` with at most `prefetch` unacknowledged deliveries. The subscription
    /// survives broker restarts: it reconnects and goes on.
    async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, BusError>;

    /// Request/reply: sends `payload` to `queue` and waits up to `timeout` for the consumer's
    /// [`Delivery::reply`]. Calls are not durable: one that nobody answers in time expires,
    /// for questions (a console log) whose answer is useless later.
    async fn call(
        &self,
        queue: &str,
        payload: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, BusError>;
}

/// A stream of deliveries from one queue.
pub struct Subscription {
    rx: async_channel::Receiver<Delivery>,
}

impl Subscription {
    pub(crate) fn new(rx: async_channel::Receiver<Delivery>) -> Self {
        Self { rx }
    }

    /// The next delivery; `None` once the bus is shut down.
    pub async fn next(&self) -> Option<Delivery> {
        self.rx.recv().await.ok()
    }
}

/// How many times a queue hands out one message before it goes to the queue's dead-letter
/// queue: a message whose handling fails every time, or kills its consumer, must not be
/// redelivered for ever (a "poison" message).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// How many messages a dead-letter queue keeps: beyond, the oldest are dropped. A flood of
/// poison (one bad client, a bug in a handler) must not fill the broker's disk, and an admin
/// learns what is wrong from the newest as well as from all of them.
pub const DEFAULT_DEAD_LETTER_MAX_LENGTH: u32 = 10_000;

/// The limits of a bus's queues.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Deliveries of one message before it goes to its queue's dead-letter queue.
    pub delivery_limit: u32,
    /// Messages a dead-letter queue keeps (the newest).
    pub dead_letter_max_length: u32,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            dead_letter_max_length: DEFAULT_DEAD_LETTER_MAX_LENGTH,
        }
    }
}

impl QueueLimits {
    /// Both limits at least 1.
    fn sane(self) -> Self {
        Self {
            delivery_limit: self.delivery_limit.max(1),
            dead_letter_max_length: self.dead_letter_max_length.max(1),
        }
    }
}

pub(crate) const DEAD_LETTER_SUFFIX: &str = ".dead-letter";

/// Where a queue's poison messages go, for an admin to look at (`rabbitmqctl list_queues`).
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}{DEAD_LETTER_SUFFIX}")
}

/// One message. Ack it once its effects are committed; requeue it, or drop it unsettled (a
/// handler that panicked), to have it come back.
pub struct Delivery {
    pub payload: Vec<u8>,
    /// True when the bus delivered this message before (the previous consumer did not ack).
    pub redelivered: bool,
    /// How many times it was delivered before this one (RabbitMQ's `x-delivery-count`).
    pub delivery_count: u32,
    /// `None` once settled.
    acker: Option<Box<dyn Acker>>,
    /// Where the answer goes when the message is a [`Bus::call`].
    replier: Option<Box<dyn Replier>>,
    /// When the caller stops waiting (ms since the epoch), for a call that says so.
    reply_deadline_ms: Option<i64>,
}

impl Delivery {
    pub(crate) fn new(payload: Vec<u8>, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Self {
            payload,
            redelivered,
            delivery_count: u32::from(redelivered),
            acker: Some(acker),
            replier: None,
            reply_deadline_ms: None,
        }
    }

    pub(crate) fn with_replier(
        mut self,
        replier: Box<dyn Replier>,
        deadline_ms: Option<i64>,
    ) -> Self {
        self.replier = Some(replier);
        self.reply_deadline_ms = deadline_ms;
        self
    }

    /// Whether this is a call whose caller has stopped waiting: a message in a consumer's
    /// backlog outlives the broker's expiry, and answering it would be work for nobody.
    pub fn call_expired(&self) -> bool {
        self.replier.is_some()
            && self
                .reply_deadline_ms
                // At the deadline's millisecond the caller may already have given up.
                .is_some_and(|d| crate::time::now_ms() >= d)
    }

    /// Whether the sender waits for an answer ([`Bus::call`]).
    pub fn expects_reply(&self) -> bool {
        self.replier.is_some()
    }

    /// Answers a call; a message that is no call has nobody to answer, and the reply is
    /// dropped. A caller that gave up meanwhile does not hear it either.
    pub async fn reply(&mut self, payload: Vec<u8>) {
        if let Some(replier) = self.replier.take() {
            replier.reply(payload).await;
        }
    }

    pub(crate) fn with_delivery_count(mut self, count: u32) -> Self {
        self.delivery_count = count;
        self
    }

    pub async fn ack(mut self) {
        if let Some(acker) = self.acker.take() {
            acker.ack().await;
        }
    }

    /// Hands the message back to the queue for another try (counted against the queue's
    /// delivery limit).
    pub async fn requeue(mut self) {
        if let Some(acker) = self.acker.take() {
            acker.requeue(std::mem::take(&mut self.payload)).await;
        }
    }
}

impl Drop for Delivery {
    /// A delivery dropped unsettled (its handler panicked or forgot it) goes back to the
    /// queue at once. Left alone it would hold a prefetch slot until the connection closed.
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        let payload = std::mem::take(&mut self.payload);
        // Without a runtime (the process is ending) the broker redelivers once the
        // connection closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::warn!("a delivery was dropped unsettled; requeueing it");
            runtime.spawn(acker.requeue(payload));
        }
    }
}

#[async_trait]
pub(crate) trait Acker: Send + Sync {
    async fn ack(self: Box<Self>);
    async fn requeue(self: Box<Self>, payload: Vec<u8>);
}

#[async_trait]
pub(crate) trait Replier: Send + Sync {
    async fn reply(self: Box<Self>, payload: Vec<u8>);
}

/// Runs `handler` on every delivery of `sub`, at most `concurrency` at a time, until the
/// subscription ends. The handler decides whether to ack.
pub async fn consume<F, Fut>(sub: Subscription, concurrency: usize, handler: F)
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let handler = Arc::new(handler);
    while let Some(delivery) = sub.next().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            handler(delivery).await;
            drop(permit);
        });
    }
}

/// Which bus a process uses, from its configuration.
pub async fn connect(settings: &crate::settings::BusSettings) -> Result<Arc<dyn Bus>, BusError> {
    match settings.kind {
        crate::settings::BusKind::Amqp => Ok(Arc::new(
            amqp::AmqpBus::connect_with(&settings.amqp_url, settings.queue_limits()).await?,
        )),
        crate::settings::BusKind::InProcess => Ok(Arc::new(inproc::InProcBus::with_limits(
            settings.queue_limits(),
        ))),
    }
}
