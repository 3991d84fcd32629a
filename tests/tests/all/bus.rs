//! The AMQP bus's request/reply against the real RabbitMQ: a call gets the consumer's answer
//! (direct reply-to), concurrent calls get their own answers, a call nobody answers ends at its
//! timeout instead of hanging, and one that outwaited its caller in a consumer's backlog is
//! known to be stale. A message that fails at every delivery, or whose handler panics, ends in
//! its queue's dead-letter queue after the delivery limit; an expired call does not; and a
//! dead-letter queue keeps only the newest poison messages.

use nova_core::bus::amqp::AmqpBus;
use nova_core::bus::{Bus, BusError, QueueLimits};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_answered_by_the_consumer_or_time_out() -> anyhow::Result<()> {
    e2e::init_logging();
    let queue = format!("{}calls", e2e::env::queue_prefix());
    let bus = Arc::new(AmqpBus::connect(&e2e::env::amqp_url()).await?);

    // Nobody consumes yet: the call ends at its timeout.
    let started = std::time::Instant::now();
    let r = bus
        .call(&queue, b"anyone?".to_vec(), Duration::from_millis(300))
        .await;
    assert!(matches!(r, Err(BusError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The unanswered call expires instead of waiting for a consumer (per-message TTL).
    e2e::wait_until(
        Duration::from_secs(10),
        "the unanswered call expired",
        || async { Ok(bus.message_count(&queue).await? == 0) },
    )
    .await?;

    let sub = bus.subscribe(&queue, 8).await?;
    let stale = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = stale.clone();
    let server = tokio::spawn(nova_core::bus::consume(sub, 8, move |mut d| {
        let seen = seen.clone();
        async move {
            if d.payload == b"anyone?" || d.call_expired() {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let mut answer = b"re: ".to_vec();
            answer.extend_from_slice(&d.payload);
            d.reply(answer).await;
            d.ack().await;
        }
    }));
    let calls = (0..10).map(|i| {
        let bus = bus.clone();
        let queue = queue.clone();
        async move {
            let reply = bus
                .call(
                    &queue,
                    format!("q{i}").into_bytes(),
                    Duration::from_secs(10),
                )
                .await?;
            anyhow::ensure!(reply == format!("re: q{i}").into_bytes(), "{reply:?}");
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(calls).await?;
    server.abort();
    assert!(
        !stale.load(std::sync::atomic::Ordering::SeqCst),
        "an expired call was delivered, or a live one said it had expired"
    );

    // A call that waits in a busy consumer's backlog past its caller's timeout says so when
    // its turn comes (the deadline travels in a header). The consumer is busy with "slow"
    // until the test lets it go, after "late" has timed out behind it.
    let sub = bus.subscribe(&queue, 8).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let busy = Arc::new(tokio::sync::Notify::new());
    let (let_go, go) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(nova_core::bus::consume(sub, 1, {
        let busy = busy.clone();
        move |mut d| {
            let (tx, busy, mut go) = (tx.clone(), busy.clone(), go.clone());
            async move {
                if d.payload == b"slow" {
                    busy.notify_one();
                    let _ = go.wait_for(|go| *go).await;
                }
                let _ = tx.send((d.payload.clone(), d.call_expired()));
                d.reply(b"done".to_vec()).await;
                d.ack().await;
            }
        }
    }));
    let slow = {
        let bus = bus.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            bus.call(&queue, b"slow".to_vec(), Duration::from_secs(10))
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(10), busy.notified()).await?;
    let late = bus
        .call(&queue, b"late".to_vec(), Duration::from_millis(300))
        .await;
    assert!(matches!(late, Err(BusError::Timeout(_))), "{late:?}");
    let_go.send_replace(true);
    assert_eq!(slow.await??, b"done");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let Some(item) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await? else {
            break;
        };
        seen.push(item);
    }
    // Which of the two the consumer reports first is not the point (under load a delivery
    // may be handled beside another): the slow call was in time, the late one expired.
    seen.sort();
    assert_eq!(seen, [(b"late".to_vec(), true), (b"slow".to_vec(), false)]);
    server.abort();
    e2e::env::delete_queues(vec![queue]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_end_in_the_dead_letter_queue() -> anyhow::Result<()> {
    e2e::init_logging();
    let queue = format!("{}poison", e2e::env::queue_prefix());
    let dead = nova_core::bus::dead_letter_queue(&queue);
    e2e::env::delete_queues(vec![queue.clone()]);
    let limit = 3;
    let limits = QueueLimits {
        delivery_limit: limit,
        ..QueueLimits::default()
    };
    let bus = Arc::new(AmqpBus::connect_with(&e2e::env::amqp_url(), limits).await?);
    bus.publish(&queue, b"fails".to_vec()).await?;
    bus.publish(&queue, b"panics".to_vec()).await?;
    bus.publish(&queue, b"fine".to_vec()).await?;
    // An unanswered call expires in the queue: expiry is no poison, and must not land there.
    let r = bus
        .call(&queue, b"call".to_vec(), Duration::from_millis(100))
        .await;
    assert!(matches!(r, Err(BusError::Timeout(_))), "{r:?}");
    // (A quorum queue drops an expired message when it reaches the queue's head.)

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sub = bus.subscribe(&queue, 4).await?;
    let consumer = tokio::spawn(nova_core::bus::consume(sub, 4, move |d| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((d.payload.clone(), d.delivery_count));
            match d.payload.as_slice() {
                b"fails" => d.requeue().await,
                b"panics" => panic!("a handler that panics on this message"),
                _ => d.ack().await,
            }
        }
    }));
    e2e::wait_until(
        Duration::from_secs(30),
        "both poison messages were dead-lettered",
        || async { Ok(bus.message_count(&dead).await? == 2) },
    )
    .await?;
    // Nothing more comes: the consumer has nothing left to take.
    tokio::time::sleep(Duration::from_millis(500)).await;
    consumer.abort();
    let mut seen: Vec<(Vec<u8>, u32)> = Vec::new();
    while let Ok(item) = rx.try_recv() {
        seen.push(item);
    }
    for poison in [&b"fails"[..], b"panics"] {
        let counts: Vec<u32> = seen
            .iter()
            .filter(|(p, _)| p == poison)
            .map(|(_, c)| *c)
            .collect();
        // Delivered `limit` times, each delivery saying how many came before it.
        assert_eq!(
            counts,
            (0..limit).collect::<Vec<_>>(),
            "{}",
            String::from_utf8_lossy(poison)
        );
    }
    assert_eq!(
        seen.iter().filter(|(p, _)| p == b"fine").count(),
        1,
        "{seen:?}"
    );
    assert!(!seen.iter().any(|(p, _)| p == b"call"), "{seen:?}");
    assert_eq!(bus.message_count(&queue).await?, 0);

    // What reached the dead-letter queue is the two poison messages, as they were sent.
    let sub = bus.subscribe(&dead, 4).await?;
    let mut dead_payloads = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await?
            .expect("a dead letter");
        dead_payloads.push(d.payload.clone());
        d.ack().await;
    }
    dead_payloads.sort();
    assert_eq!(dead_payloads, [b"fails".to_vec(), b"panics".to_vec()]);
    e2e::env::delete_queues(vec![queue]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_keeps_only_the_newest_messages() -> anyhow::Result<()> {
    e2e::init_logging();
    let queue = format!("{}poison-flood", e2e::env::queue_prefix());
    let dead = nova_core::bus::dead_letter_queue(&queue);
    e2e::env::delete_queues(vec![queue.clone()]);
    let limits = QueueLimits {
        delivery_limit: 2,
        dead_letter_max_length: 2,
    };
    let bus = Arc::new(AmqpBus::connect_with(&e2e::env::amqp_url(), limits).await?);
    let poison: Vec<Vec<u8>> = (0..5).map(|i| format!("poison-{i}").into_bytes()).collect();
    let sub = bus.subscribe(&queue, 1).await?;
    // One at a time, so that they are dead-lettered in the order they were sent.
    for p in &poison {
        bus.publish(&queue, p.clone()).await?;
        for _ in 0..limits.delivery_limit {
            let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await?
                .expect("a delivery");
            assert_eq!(&d.payload, p);
            d.requeue().await;
        }
        let dead_lettered = poison.iter().position(|q| q == p).unwrap_or(0) + 1;
        e2e::wait_until(
            Duration::from_secs(10),
            "the message was dead-lettered",
            || async {
                Ok(bus.message_count(&queue).await? == 0
                    && bus.message_count(&dead).await?
                        == u32::try_from(dead_lettered.min(2)).unwrap_or(0))
            },
        )
        .await?;
    }
    drop(sub);
    let sub = bus.subscribe(&dead, 4).await?;
    let mut kept = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await?
            .expect("a dead letter");
        kept.push(d.payload.clone());
        d.ack().await;
    }
    assert_eq!(kept, poison[3..].to_vec());
    e2e::env::delete_queues(vec![queue]);
    Ok(())
}
