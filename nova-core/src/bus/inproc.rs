//! The in-process bus of the all-in-one: queues in memory, the same contract as AMQP within one
//! process (an unacked delivery comes back), nothing survives a restart — the database does,
//! and the conductor's reconciler re-drives whatever was in flight.

use super::{Acker, Bus, BusError, Delivery, Subscription};
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
}
