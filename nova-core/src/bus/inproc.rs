//! The in-process bus of the all-in-one: queues in memory, the same contract as AMQP within one
//! process (an unacked delivery comes back), nothing survives a restart — the database does,
//! and the conductor's reconciler re-drives whatever was in flight.

use super::{Acker, Bus, BusError, Delivery, QueueLimits, Replier, Subscription};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

type Queue = (
    async_channel::Sender<Delivery>,
    async_channel::Receiver<Delivery>,
);

pub struct InProcBus {
    queues: Mutex<HashMap<String, Queue>>,
    limits: QueueLimits,
}

impl Default for InProcBus {
    fn default() -> Self {
        Self::with_limits(QueueLimits::default())
    }
}

impl InProcBus {
    /// A bus whose queues hand a message out at most `delivery_limit` times, as the AMQP bus's
    /// quorum queues do, then move it to the queue's dead-letter queue, which keeps the newest
    /// `dead_letter_max_length`.
    pub fn with_limits(limits: QueueLimits) -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            limits: limits.sane(),
        }
    }

    fn queue(&self, name: &str) -> Queue {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(name.to_owned())
            .or_insert_with(async_channel::unbounded)
            .clone()
    }

    fn acker(&self, queue: &str) -> Box<InProcAcker> {
        let (requeue_to, _) = self.queue(queue);
        Box::new(InProcAcker {
            queue: queue.to_owned(),
            requeue_to,
            dead_letters: self.queue(&super::dead_letter_queue(queue)),
            deliveries: 1,
            limits: self.limits,
        })
    }

    /// How many messages wait in `queue` (what an admin sees of a dead-letter queue).
    pub fn message_count(&self, queue: &str) -> usize {
        self.queue(queue).0.len()
    }
}

struct InProcAcker {
    queue: String,
    requeue_to: async_channel::Sender<Delivery>,
    dead_letters: Queue,
    /// How many times the message was handed out, this time included.
    deliveries: u32,
    limits: QueueLimits,
}

#[async_trait]
impl Acker for InProcAcker {
    async fn ack(self: Box<Self>) {}

    async fn requeue(mut self: Box<Self>, payload: Vec<u8>) {
        // The queues are unbounded and live as long as the bus: the sends cannot block.
        if self.deliveries >= self.limits.delivery_limit {
            tracing::error!(
                queue = %self.queue,
                deliveries = self.deliveries,
                "message failed at every delivery; moved to the dead-letter queue"
            );
            let (sender, oldest) = self.dead_letters.clone();
            // The queue keeps the newest, as RabbitMQ's `x-overflow: drop-head` does.
            while sender.len()
                >= usize::try_from(self.limits.dead_letter_max_length).unwrap_or(usize::MAX)
            {
                // Settled before it goes: a delivery dropped unsettled hands itself back.
                match oldest.try_recv() {
                    Ok(dropped) => dropped.ack().await,
                    Err(_) => break,
                }
            }
            let _ = sender.send(Delivery::new(payload, false, self)).await;
            return;
        }
        let count = self.deliveries;
        self.deliveries += 1;
        let sender = self.requeue_to.clone();
        let _ = sender
            .send(Delivery::new(payload, true, self).with_delivery_count(count))
            .await;
    }
}

struct InProcReplier(tokio::sync::oneshot::Sender<Vec<u8>>);

#[async_trait]
impl Replier for InProcReplier {
    async fn reply(self: Box<Self>, payload: Vec<u8>) {
        // The caller may have given up; then nobody wants the answer.
        let _ = self.0.send(payload);
    }
}

#[async_trait]
impl Bus for InProcBus {
    async fn publish(&self, queue: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let (tx, _) = self.queue(queue);
        tx.send(Delivery::new(payload, false, self.acker(queue)))
            .await
            .map_err(|_| BusError::Unavailable("in-process queue closed".into()))
    }

    async fn subscribe(&self, queue: &str, _prefetch: u16) -> Result<Subscription, BusError> {
        // Consumers of one queue compete for its messages, as on RabbitMQ; the concurrency
        // limit is the consumer's (see `bus::consume`).
        Ok(Subscription::new(self.queue(queue).1))
    }

    async fn call(
        &self,
        queue: &str,
        payload: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, BusError> {
        let (tx, _) = self.queue(queue);
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let acker = self.acker(queue);
        let deadline = crate::time::now_ms()
            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let delivery = Delivery::new(payload, false, acker)
            .with_replier(Box::new(InProcReplier(reply_tx)), Some(deadline));
        tx.send(delivery)
            .await
            .map_err(|_| BusError::Unavailable("in-process queue closed".into()))?;
        match tokio::time::timeout(timeout, reply_rx).await {
            Ok(Ok(reply)) => Ok(reply),
            // Answered by nobody (dropped unanswered) or not in time.
            Ok(Err(_)) | Err(_) => Err(BusError::Timeout(timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_requeued_message_comes_back_marked_redelivered() {
        let bus = InProcBus::default();
        bus.publish("q", b"one".to_vec()).await.unwrap();
        let sub = bus.subscribe("q", 1).await.unwrap();
        let d = sub.next().await.unwrap();
        assert!(!d.redelivered);
        d.requeue().await;
        let d = sub.next().await.unwrap();
        assert_eq!(d.payload, b"one");
        assert!(d.redelivered);
        d.ack().await;
    }

    #[tokio::test]
    async fn a_message_that_fails_every_delivery_ends_in_the_dead_letter_queue() {
        let bus = InProcBus::with_limits(QueueLimits {
            delivery_limit: 3,
            ..QueueLimits::default()
        });
        bus.publish("q", b"poison".to_vec()).await.unwrap();
        let sub = bus.subscribe("q", 1).await.unwrap();
        for count in 0..3 {
            let d = sub.next().await.unwrap();
            assert_eq!(d.delivery_count, count);
            if count == 1 {
                drop(d); // a handler that panicked: requeued too, and counted
                tokio::task::yield_now().await;
            } else {
                d.requeue().await;
            }
        }
        assert_eq!(bus.message_count("q"), 0);
        assert_eq!(bus.message_count("q.dead-letter"), 1);
        let dead = bus.subscribe("q.dead-letter", 1).await.unwrap();
        assert_eq!(dead.next().await.unwrap().payload, b"poison");
    }

    #[tokio::test]
    async fn a_dead_letter_queue_keeps_the_newest_messages() {
        let bus = InProcBus::with_limits(QueueLimits {
            delivery_limit: 1,
            dead_letter_max_length: 2,
        });
        let sub = bus.subscribe("q", 1).await.unwrap();
        for poison in [b"a", b"b", b"c"] {
            bus.publish("q", poison.to_vec()).await.unwrap();
            sub.next().await.unwrap().requeue().await;
        }
        // Nothing dropped comes back (a dropped delivery left unsettled would requeue itself).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(bus.message_count("q.dead-letter"), 2);
        let dead = bus.subscribe("q.dead-letter", 1).await.unwrap();
        assert_eq!(dead.next().await.unwrap().payload, b"b");
        assert_eq!(dead.next().await.unwrap().payload, b"c");
        assert_eq!(bus.message_count("q.dead-letter"), 0);
    }

    #[tokio::test]
    async fn a_call_gets_the_consumers_reply_and_times_out_without_one() {
        let bus = std::sync::Arc::new(InProcBus::default());
        let sub = bus.subscribe("q", 1).await.unwrap();
        let server = tokio::spawn(async move {
            let mut d = sub.next().await.unwrap();
            assert!(d.expects_reply());
            let mut answer = d.payload.clone();
            answer.extend_from_slice(b"!");
            d.reply(answer).await;
            d.ack().await;
        });
        let reply = bus
            .call("q", b"hi".to_vec(), std::time::Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply, b"hi!");
        server.await.unwrap();
        let r = bus
            .call(
                "q",
                b"anyone?".to_vec(),
                std::time::Duration::from_millis(50),
            )
            .await;
        assert!(matches!(r, Err(BusError::Timeout(_))));
        // The unanswered call is still queued here (no broker expiry), but says it is stale.
        let sub = bus.subscribe("q", 1).await.unwrap();
        let d = sub.next().await.unwrap();
        assert_eq!(d.payload, b"anyone?");
        assert!(d.call_expired());
    }
}
