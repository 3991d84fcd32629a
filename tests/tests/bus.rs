//! The AMQP bus's request/reply against the real RabbitMQ: a call gets the consumer's answer
//! (direct reply-to), concurrent calls get their own answers, and a call nobody answers ends
//! at its timeout instead of hanging.

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
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sub = bus.subscribe(&queue, 8).await?;
    let stale = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = stale.clone();
    let server = tokio::spawn(nova_core::bus::consume(sub, 8, move |mut d| {
        let seen = seen.clone();
        async move {
            if d.payload == b"anyone?" {
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
        "an expired call was delivered"
    );
    e2e::env::delete_queues(vec![queue]);
    Ok(())
}
