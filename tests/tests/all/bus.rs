//! The AMQP bus's request/reply against the real RabbitMQ: a call gets the consumer's answer
//! (direct reply-to), concurrent calls get their own answers, a call nobody answers ends at its
//! timeout instead of hanging, and one that outwaited its caller in a consumer's backlog is
//! known to be stale.

use nova_core::bus::amqp::AmqpBus;
use nova_core::bus::{Bus, BusError};
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
