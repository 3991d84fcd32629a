//! The broker restarts in the middle of a run: every component reconnects, nothing is lost,
//! and later requests succeed. Its own test binary, so that it runs alone: restarting the
//! shared broker would disturb other tests (cargo runs test binaries one after another).

use e2e::client::Client;
use e2e::stack::{Distributed, Options};
use std::process::Command;
use std::time::Duration;

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_rides_through_a_broker_restart() -> anyhow::Result<()> {
    // Heartbeats travel over the broker: while it is down no host is heard from, and past
    // `service_down_s` every host counts as down (as Nova's services do when their heartbeats
    // stop). The tests' 3 s is shorter than a broker restart can take; this test is about the
    // messages, so it gives the hosts the time production's 60 s default would.
    let stack = Distributed::start(Options {
        service_down_s: 30,
        ..Options::default()
    })
    .await?;
    let c = Client::new(&stack_url(&stack), "demo:demo");
    let before = c.create_server("before", "1").await?;
    c.wait_status(&before, "ACTIVE", Duration::from_secs(60))
        .await?;

    // Stop the broker application: every client connection is closed and the broker is
    // unreachable until it starts again (queues and persistent messages survive on disk).
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"])).await??;
    // A request while the broker is down is still accepted: it is a row first, and the
    // reconciler or the publisher's retry delivers it once the broker is back.
    let during = c.create_server("during", "1").await;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["start_app"])).await??;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["await_startup"])).await??;

    let during = during?;
    c.wait_status(&during, "ACTIVE", Duration::from_secs(90))
        .await?;
    let after = c.create_server("after", "1").await?;
    c.wait_status(&after, "ACTIVE", Duration::from_secs(60))
        .await?;
    // Actions travel too (API → conductor → agent → conductor).
    let r = c
        .action(&before, &serde_json::json!({"os-stop": null}))
        .await?;
    assert_eq!(r.status, 202);
    c.wait_status(&before, "SHUTOFF", Duration::from_secs(60))
        .await?;
    Ok(())
}

fn stack_url(stack: &Distributed) -> String {
    e2e::stack::Stack::api_url(stack).to_owned()
}
