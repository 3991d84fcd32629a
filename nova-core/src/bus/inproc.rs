//! The in-process bus of the all-in-one: queues in memory, the same contract as AMQP within one
//! process (an unacked delivery comes back), nothing survives a restart — the database does,
//! and the conductor's reconciler re-drives whatever was in flight.

use super::{Acker, Bus, BusError, Delivery, Replier, Subscription};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

type Queue = (
    async_channel::Sender<Delivery>,
    async_channel::Receiver<Delivery>,
);

#[derive(Default)]
pub struct InProcBus {
    queues: Mutex<HashMap<String, Queue>>,
}

impl InProcBus {
    fn queue(&self, name: &str) -> Queue {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(name.to_owned())
            .or_insert_with(async_channel::unbounded)
            .clone()
    }
}

struct InProcAcker {
    requeue_to: async_channel::Sender<Delivery>,
}

#[async_trait]
impl Acker for InProcAcker {
    async fn ack(self: Box<Self>) {}

    async fn requeue(self: Box<Self>, payload: Vec<u8>) {
        let sender = self.requeue_to.clone();
        // The queue is unbounded and lives as long as the bus: the send cannot block.
        let _ = sender.send(Delivery::new(payload, true, self)).await;
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
        let acker = Box::new(InProcAcker {
            requeue_to: tx.clone(),
        });
        tx.send(Delivery::new(payload, false, acker))
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
        let acker = Box::new(InProcAcker {
            requeue_to: tx.clone(),
        });
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
