//! RabbitMQ through lapin.
//!
//! - Queues are durable quorum queues: they survive a broker restart and are replicated when the
//!   broker is a cluster.
//! - Messages are persistent and every publish waits for the broker's confirm, so `publish`
//!   returning `Ok` means the message is on disk.
//! - Consumers ack by hand, after the database commit (the caller decides), with a prefetch
//!   limit so that one consumer never hoards a queue.
//! - A lost connection is re-opened with exponential backoff, for publishers and consumers
//!   alike; an unacked delivery of the old connection is redelivered by the broker.
//! - Each queue has a delivery limit (`x-delivery-limit`): a message handed out that many
//!   times without an ack (its handler fails or kills the consumer every time) is
//!   dead-lettered to `<queue>.dead-letter` instead of being redelivered for ever. Only
//!   durable messages reach it: they carry their queue's name in a header that the
//!   dead-letter exchange (a headers exchange) routes on, and expired calls do not. A
//!   dead-letter queue keeps the newest `dead_letter_max_length` messages (`x-max-length`,
//!   dropping from the head).
//! - Calls (request/reply) use RabbitMQ's direct reply-to: the caller consumes the
//!   `amq.rabbitmq.reply-to` pseudo-queue on a channel of its own and the consumer answers
//!   there; the request is transient and expires with the caller's timeout.

use super::{Acker, Bus, BusError, Delivery, QueueLimits, Replier, Subscription};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long `publish` keeps retrying through a broker outage before it gives up.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;
/// RabbitMQ's pseudo-queue for direct replies.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// A call's deadline (ms since the epoch), set by the caller.
const DEADLINE_HEADER: &str = "x-nova-deadline-ms";
/// The queue a durable message was published to; the dead-letter exchange routes on it.
// (Not `x-`: a headers exchange ignores `x-` headers when it matches.)
const ORIGIN_HEADER: &str = "nova-origin";
/// Where queues send what they dead-letter.
const DEAD_LETTER_EXCHANGE: &str = "nova.dead-letter";
/// A quorum queue's count of earlier deliveries of a message.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// AMQP's reply code for a declaration that contradicts the existing queue.
const PRECONDITION_FAILED: u16 = 406;

struct Link {
    connection: Connection,
    channel: Channel,
    declared: HashSet<String>,
}

pub struct AmqpBus {
    url: String,
    link: Mutex<Option<Link>>,
    limits: QueueLimits,
}

fn props() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), text("quorum"));
    args
}

/// A dead-letter queue's arguments: no delivery limit of its own (an admin reads it through
/// the bus), and a length bound that drops the oldest.
fn dead_letter_args(limits: QueueLimits) -> FieldTable {
    let mut args = quorum_args();
    args.insert(
        ShortString::from("x-max-length"),
        AMQPValue::LongLongInt(i64::from(limits.dead_letter_max_length)),
    );
    args.insert(ShortString::from("x-overflow"), text("drop-head"));
    args
}

/// Declares `queue` (a durable quorum queue with a delivery limit) and its dead-letter queue.
async fn declare(
    connection: &Connection,
    queue: &str,
    limits: QueueLimits,
) -> Result<(), lapin::Error> {
    if queue.ends_with(super::DEAD_LETTER_SUFFIX) {
        return declare_or_keep(connection, queue, dead_letter_args(limits)).await;
    }
    let dead_letters = super::dead_letter_queue(queue);
    declare_or_keep(connection, &dead_letters, dead_letter_args(limits)).await?;
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE,
            lapin::ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut binding = FieldTable::default();
    binding.insert(ShortString::from("x-match"), text("all"));
    binding.insert(ShortString::from(ORIGIN_HEADER), text(queue));
    channel
        .queue_bind(
            &dead_letters,
            DEAD_LETTER_EXCHANGE,
            "",
            QueueBindOptions::default(),
            binding,
        )
        .await?;
    let mut args = quorum_args();
    // RabbitMQ dead-letters a message once it was delivered more than `x-delivery-limit`
    // times: one less than the number of deliveries allowed.
    args.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongLongInt(i64::from(limits.delivery_limit.saturating_sub(1))),
    );
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        text(DEAD_LETTER_EXCHANGE),
    );
    let _ = channel.close(200, "declared").await;
    declare_or_keep(connection, queue, args).await
}

/// Declares a durable `queue` with `args`, on a channel of its own (a declaration the broker
/// refuses closes its channel). A queue that exists with other arguments is used as it is.
async fn declare_or_keep(
    connection: &Connection,
    queue: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    match channel.queue_declare(queue, durable, args).await {
        Ok(_) => {
            let _ = channel.close(200, "declared").await;
            Ok(())
        }
        // A queue declared before it had its limits (or as another type) keeps its arguments
        // until it is deleted; use it as it is, and say how to fix it. (A changed value alone
        // is not refused: RabbitMQ keeps the one the queue was declared with.)
        Err(lapin::Error::ProtocolError(e)) if e.get_id() == PRECONDITION_FAILED => {
            tracing::warn!(
                queue,
                error = %e.get_message(),
                "the queue exists with other arguments (declared before it had its delivery \
                 limit or length bound, or of another type): poison messages may be \
                 redelivered for ever, or dead letters kept without bound; delete the queue \
                 while the services are stopped, or set a RabbitMQ policy with \
                 delivery-limit and dead-letter-exchange (max-length and overflow for a \
                 dead-letter queue)"
            );
            let channel = connection.create_channel().await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            channel
                .queue_declare(queue, passive, FieldTable::default())
                .await?;
            let _ = channel.close(200, "declared").await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The number of earlier deliveries a quorum queue counted, from its header.
fn delivery_count(headers: Option<&FieldTable>) -> Option<u32> {
    let value = headers?.inner().get(DELIVERY_COUNT_HEADER)?;
    let count = match value {
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        _ => return None,
    };
    u32::try_from(count).ok()
}

fn unavailable(e: lapin::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl AmqpBus {
    /// Connects once to check the URL and the broker; later outages are retried.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        Self::connect_with(url, QueueLimits::default()).await
    }

    /// [`connect`](Self::connect), with queues of the given limits.
    pub async fn connect_with(url: &str, limits: QueueLimits) -> Result<Self, BusError> {
        let bus = Self {
            url: url.to_owned(),
            link: Mutex::new(None),
            limits: limits.sane(),
        };
        bus.channel_for(None).await?;
        Ok(bus)
    }

    async fn open(&self) -> Result<Link, lapin::Error> {
        let connection = Connection::connect(&self.url, props()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Link {
            connection,
            channel,
            declared: HashSet::new(),
        })
    }

    /// The publishing channel, (re)connecting when needed and declaring `queue` once per
    /// connection.
    async fn channel_for(&self, queue: Option<&str>) -> Result<Channel, BusError> {
        let mut guard = self.link.lock().await;
        Ok(self.ensure_link(&mut guard, queue).await?.channel.clone())
    }

    /// The link in `guard`, opened again when it is gone or dead, with `queue` declared on it.
    async fn ensure_link<'a>(
        &self,
        guard: &'a mut Option<Link>,
        queue: Option<&str>,
    ) -> Result<&'a mut Link, BusError> {
        let alive = guard
            .as_ref()
            .is_some_and(|l| l.connection.status().connected() && l.channel.status().connected());
        if !alive {
            *guard = Some(self.open().await.map_err(unavailable)?);
        }
        let link = guard.as_mut().ok_or(BusError::NotConfirmed)?;
        if let Some(queue) = queue {
            if !link.declared.contains(queue) {
                declare(&link.connection, queue, self.limits)
                    .await
                    .map_err(unavailable)?;
                link.declared.insert(queue.to_owned());
            }
        }
        Ok(link)
    }

    /// A fresh channel on the publishing connection (for a call), with `queue` declared: under
    /// one hold of the link, so that a concurrent call that finds the connection dead and opens
    /// another cannot leave this one without a link between the two steps.
    async fn call_channel(&self, queue: &str) -> Result<Channel, BusError> {
        let mut guard = self.link.lock().await;
        let link = self.ensure_link(&mut guard, Some(queue)).await?;
        link.connection.create_channel().await.map_err(unavailable)
    }

    /// One try of a call whose caller gives up at `deadline_ms` (ms since the epoch).
    async fn call_once(
        &self,
        queue: &str,
        payload: &[u8],
        timeout: Duration,
        deadline_ms: i64,
    ) -> Result<Vec<u8>, BusError> {
        let channel = self.call_channel(queue).await?;
        let result = async {
            // Consuming the pseudo-queue (without acks, as RabbitMQ requires) must come before
            // the publish that names it.
            let mut replies = channel
                .basic_consume(
                    REPLY_TO,
                    "",
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
            let correlation = uuid::Uuid::new_v4().to_string();
            // The broker drops the call when it expires in the queue; the deadline tells a
            // consumer that already holds it (in its prefetch backlog) not to answer late.
            // Both are the caller's own: the time spent opening the channel is spent already.
            let expiration = deadline_ms
                .saturating_sub(crate::time::now_ms())
                .max(1)
                .to_string();
            let mut headers = FieldTable::default();
            headers.insert(
                ShortString::from(DEADLINE_HEADER),
                AMQPValue::LongLongInt(deadline_ms),
            );
            channel
                .basic_publish(
                    "",
                    queue,
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default()
                        .with_content_type(ShortString::from("application/json"))
                        .with_reply_to(ShortString::from(REPLY_TO))
                        .with_correlation_id(ShortString::from(correlation.as_str()))
                        .with_expiration(ShortString::from(expiration.as_str()))
                        .with_headers(headers),
                )
                .await
                .map_err(unavailable)?;
            let wait = async {
                while let Some(item) = replies.next().await {
                    let d = item.map_err(unavailable)?;
                    let ours = d
                        .properties
                        .correlation_id()
                        .as_ref()
                        .is_some_and(|c| c.as_str() == correlation);
                    if ours {
                        return Ok(d.data);
                    }
                }
                Err(BusError::Unavailable("the reply channel closed".into()))
            };
            tokio::time::timeout(timeout, wait)
                .await
                .map_err(|_| BusError::Timeout(timeout))?
        }
        .await;
        // The channel served this call only.
        let _ = channel.close(200, "call done").await;
        result
    }

    /// Deletes a queue and the messages in it (test clean-up, decommissioned hosts).
    pub async fn delete_queue(&self, queue: &str) -> Result<(), BusError> {
        let channel = self.channel_for(None).await?;
        channel
            .queue_delete(queue, lapin::options::QueueDeleteOptions::default())
            .await
            .map_err(unavailable)?;
        if let Some(link) = self.link.lock().await.as_mut() {
            link.declared.remove(queue);
        }
        Ok(())
    }

    /// How many messages wait in a queue that exists (operators' and tests' view of a
    /// backlog).
    pub async fn message_count(&self, queue: &str) -> Result<u32, BusError> {
        // A channel of its own: a passive declare of a missing queue closes its channel.
        let channel = {
            self.channel_for(None).await?;
            let guard = self.link.lock().await;
            let link = guard.as_ref().ok_or(BusError::NotConfirmed)?;
            link.connection
                .create_channel()
                .await
                .map_err(unavailable)?
        };
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = channel
            .queue_declare(queue, options, FieldTable::default())
            .await
            .map_err(unavailable)?;
        let _ = channel.close(200, "done").await;
        Ok(q.message_count())
    }

    async fn publish_once(&self, queue: &str, payload: &[u8]) -> Result<(), BusError> {
        let channel = self.channel_for(Some(queue)).await?;
        let mut headers = FieldTable::default();
        headers.insert(ShortString::from(ORIGIN_HEADER), text(queue));
        let confirm = channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default()
                    .with_delivery_mode(PERSISTENT)
                    .with_content_type(ShortString::from("application/json"))
                    .with_headers(headers),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        if confirm.is_ack() {
            Ok(())
        } else {
            Err(BusError::NotConfirmed)
        }
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, queue: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
        let mut backoff = BACKOFF_START;
        loop {
            match self.publish_once(queue, &payload).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(queue, error = %e, ?backoff, "publish failed, retrying");
                    // Drop the link so that the next try opens a fresh connection.
                    *self.link.lock().await = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, BusError> {
        // A bounded hand-over: the broker's prefetch limit is what bounds unacked messages.
        let (tx, rx) = async_channel::bounded(usize::from(prefetch.max(1)));
        let url = self.url.clone();
        let queue = queue.to_owned();
        let limits = self.limits;
        // Consume once here so that the caller learns about a broker it cannot use — after
        // retrying for as long as a publish would: a broker that is still starting (its
        // quorum queues recovering after a restart answer INTERNAL_ERROR for a moment) is not
        // a reason for a service to fail at start.
        let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
        let mut backoff = BACKOFF_START;
        let first = loop {
            match open_consumer(&url, &queue, prefetch, limits).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(queue, error = %e, ?backoff, "cannot consume yet, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(unavailable(e)),
            }
        };
        tokio::spawn(consume_forever(url, queue, prefetch, limits, first, tx));
        Ok(Subscription::new(rx))
    }

    async fn call(
        &self,
        queue: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, BusError> {
        // The whole call is bounded, not only the wait for the answer: a broker that stops
        // answering mid-call must not hold the caller. A channel the broker closed under the
        // call (seen under load) costs one more try on a fresh connection within the same
        // bound: calls only ask (console, diagnostics, uptime), so asking twice is harmless.
        let deadline_ms = crate::time::now_ms()
            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let bounded = async {
            let mut tries = 0;
            loop {
                tries += 1;
                let result = self.call_once(queue, &payload, timeout, deadline_ms).await;
                if matches!(result, Err(BusError::Unavailable(_))) {
                    // A fresh channel next time; a fresh connection only when this one is down
                    // (dropping a live one would fail the other calls on it as well).
                    let mut link = self.link.lock().await;
                    if link
                        .as_ref()
                        .is_some_and(|l| !l.connection.status().connected())
                    {
                        *link = None;
                    }
                    drop(link);
                    if tries < 2 {
                        continue;
                    }
                }
                return result;
            }
        };
        match tokio::time::timeout(timeout, bounded).await {
            Ok(r) => r,
            Err(_) => Err(BusError::Timeout(timeout)),
        }
    }
}

struct Consumer {
    connection: Connection,
    /// The consumer's channel, also the one its replies to calls go out on.
    channel: Channel,
    consumer: lapin::Consumer,
}

async fn open_consumer(
    url: &str,
    queue: &str,
    prefetch: u16,
    limits: QueueLimits,
) -> Result<Consumer, lapin::Error> {
    let connection = Connection::connect(url, props()).await?;
    declare(&connection, queue, limits).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch.max(1), BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Consumer {
        connection,
        channel,
        consumer,
    })
}

/// Pumps deliveries into `tx` and reconnects with backoff whenever the connection drops,
/// until every receiver is gone.
async fn consume_forever(
    url: String,
    queue: String,
    prefetch: u16,
    limits: QueueLimits,
    first: Consumer,
    tx: async_channel::Sender<Delivery>,
) {
    let mut current = Some(first);
    let mut backoff = BACKOFF_START;
    loop {
        let Consumer {
            connection,
            channel,
            mut consumer,
        } = match current.take() {
            Some(c) => c,
            None => match open_consumer(&url, &queue, prefetch, limits).await {
                Ok(c) => {
                    tracing::info!(queue, "consumer reconnected");
                    backoff = BACKOFF_START;
                    c
                }
                Err(e) => {
                    tracing::warn!(queue, error = %e, ?backoff, "consumer cannot connect, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        // Keep the connection alive as long as its consumer.
        let _connection = Arc::new(connection);
        while let Some(item) = consumer.next().await {
            match item {
                Ok(d) => {
                    let reply_to = d.properties.reply_to().clone();
                    let correlation = d.properties.correlation_id().clone();
                    let deadline = d.properties.headers().as_ref().and_then(|h| {
                        match h.inner().get(DEADLINE_HEADER) {
                            Some(AMQPValue::LongLongInt(ms)) => Some(*ms),
                            _ => None,
                        }
                    });
                    let count = delivery_count(d.properties.headers().as_ref())
                        .unwrap_or(u32::from(d.redelivered));
                    if count + 1 >= limits.delivery_limit {
                        tracing::error!(
                            queue,
                            delivery = count + 1,
                            limit = limits.delivery_limit,
                            "last delivery of a message that failed every time: it goes to \
                             the dead-letter queue unless acked now"
                        );
                    }
                    let acker = Box::new(AmqpAcker(d.acker));
                    let mut delivery =
                        Delivery::new(d.data, d.redelivered, acker).with_delivery_count(count);
                    if let Some(reply_to) = reply_to {
                        delivery = delivery.with_replier(
                            Box::new(AmqpReplier {
                                channel: channel.clone(),
                                reply_to,
                                correlation,
                            }),
                            deadline,
                        );
                    }
                    if tx.send(delivery).await.is_err() {
                        return; // nobody listens any more
                    }
                }
                Err(e) => {
                    tracing::warn!(queue, error = %e, "consumer lost its connection");
                    break;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}

struct AmqpReplier {
    channel: Channel,
    reply_to: ShortString,
    correlation: Option<ShortString>,
}

#[async_trait]
impl Replier for AmqpReplier {
    async fn reply(self: Box<Self>, payload: Vec<u8>) {
        let mut properties =
            BasicProperties::default().with_content_type(ShortString::from("application/json"));
        if let Some(c) = self.correlation {
            properties = properties.with_correlation_id(c);
        }
        let sent = self
            .channel
            .basic_publish(
                "",
                self.reply_to.as_str(),
                BasicPublishOptions::default(),
                &payload,
                properties,
            )
            .await;
        // A caller that is gone (timed out, reconnected) cannot be answered; it knows.
        if let Err(e) = sent {
            tracing::warn!(error = %e, "reply not sent");
        }
    }
}

struct AmqpAcker(lapin::acker::Acker);

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) {
        // A failed ack means the connection is gone; the broker will redeliver, and handlers are
        // idempotent.
        if let Err(e) = self.0.ack(BasicAckOptions::default()).await {
            tracing::warn!(error = %e, "ack failed; the message will be redelivered");
        }
    }

    async fn requeue(self: Box<Self>, _payload: Vec<u8>) {
        let options = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        if let Err(e) = self.0.nack(options).await {
            tracing::warn!(error = %e, "nack failed; the message will be redelivered");
        }
    }
}
