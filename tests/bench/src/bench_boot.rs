//! Boot benchmark: N servers with the fake driver through the HTTP API, on RabbitMQ and
//! PostgreSQL (or `--all-in-one`: SQLite and the in-process bus). Prints throughput and the
//! p50/p99 of POST → ACTIVE.
//!
//! `cargo run --release -p e2e --bin bench-boot -- [--servers N] [--concurrency C] [--rate R]
//! [--all-in-one]`
//!
//! Without `--rate` the client sends as fast as `C` connections allow (a burst: latency then
//! includes the queue that builds up); with `--rate R` it offers R POSTs per second whatever
//! the answers (an open loop), which shows the latency at a load the service sustains.
//!
//! Latency of one server is measured from the moment the client sends its POST to the
//! `launched_at` the conductor writes in the transaction that commits it ACTIVE (same machine's
//! clock; the commit itself, about a millisecond, is not counted); completion is watched in
//! the database so that polling does not load the API being measured.

// glibc's malloc spends a quarter of a large listing's time in its free lists (perf);
// mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use e2e::client::Client;
use e2e::stack::{AllInOneStack, Distributed, Options, Stack};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Args {
    servers: usize,
    concurrency: usize,
    all_in_one: bool,
    /// Offered load in POSTs per second (open loop); 0 sends as fast as the client can.
    rate: u32,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        servers: 1000,
        concurrency: 32,
        all_in_one: false,
        rate: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--servers" => a.servers = it.next().unwrap_or_default().parse()?,
            "--concurrency" => a.concurrency = it.next().unwrap_or_default().parse()?,
            "--all-in-one" => a.all_in_one = true,
            "--rate" => a.rate = it.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    // Production-like timings: no fast heartbeats or reconciler passes that tests use.
    let options = Options {
        heartbeat_ms: 5_000,
        sync_ms: 10_000,
        reconcile_ms: 5_000,
        redrive_after_s: 60,
        build_timeout_s: 600,
        service_down_s: 60,
        prefetch: 128,
        ..Options::default()
    };
    let stack: Box<dyn Stack> = if args.all_in_one {
        Box::new(AllInOneStack::start(options).await?)
    } else {
        Box::new(Distributed::start(options).await?)
    };
    let shape = if args.all_in_one {
        "all-in-one (SQLite, in-process bus)"
    } else {
        "distributed (RabbitMQ, PostgreSQL)"
    };
    // A benchmark boots far more than Nova's default quota of ten servers.
    e2e::env::lift_quota_of(stack.db(), "bench").await?;
    let client = Client::new(stack.api_url(), "bench:bench");
    // Warm up connections and caches with a few servers that are not counted.
    for i in 0..5 {
        client.create_server(&format!("warm-{i}"), "42").await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warm = nova_db::instances::list(stack.db(), Some("bench"), 10_000)
        .await?
        .len();

    let started_wall = nova_core::time::now_ms();
    let started = Instant::now();
    let pacing = (args.rate > 0).then(|| Duration::from_secs(1) / args.rate);
    let posted: Vec<(String, i64)> = futures::stream::iter(0..args.servers)
        .then(|i| async move {
            if let Some(gap) = pacing {
                // Open loop: the i-th POST leaves at i/rate seconds, answered or not.
                let due = started + gap * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(due.into()).await;
            }
            i
        })
        .map(|i| {
            let client = client.clone();
            async move {
                let t0 = nova_core::time::now_ms();
                let id = client.create_server(&format!("bench-{i}"), "42").await?;
                anyhow::Ok((id, t0))
            }
        })
        .buffer_unordered(if pacing.is_some() {
            10_000
        } else {
            args.concurrency
        })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let post_done = started.elapsed();
    let sent: HashMap<String, i64> = posted.into_iter().collect();

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let counts = nova_db::instances::count_by_state(stack.db(), "bench").await?;
        let count = |state| {
            counts
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n)
        };
        let errors = count(nova_core::model::VmState::Error);
        anyhow::ensure!(errors == 0, "{errors} servers went to ERROR");
        let active = usize::try_from(count(nova_core::model::VmState::Active))?;
        if active >= args.servers + warm {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {active} of {} ACTIVE after 300 s",
            args.servers
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let launched = nova_db::instances::list(stack.db(), Some("bench"), 100_000).await?;
    let mut latencies: Vec<i64> = Vec::with_capacity(args.servers);
    let mut last_active = started_wall;
    for i in &launched {
        if let (Some(t0), Some(at)) = (sent.get(&i.uuid.to_string()), i.launched_at) {
            latencies.push(at - t0);
            last_active = last_active.max(at);
        }
    }
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let total_s = (last_active - started_wall) as f64 / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let throughput = args.servers as f64 / total_s;
    println!("shape:            {shape}");
    match args.rate {
        0 => println!(
            "servers:          {} (burst, client concurrency {})",
            args.servers, args.concurrency
        ),
        r => println!(
            "servers:          {} (open loop at {r} POST/s)",
            args.servers
        ),
    }
    println!("all POSTs done:   {:.2} s", post_done.as_secs_f64());
    println!("all ACTIVE after: {total_s:.2} s");
    println!("throughput:       {throughput:.0} servers/s");
    println!(
        "POST -> ACTIVE:   p50 {} ms, p99 {} ms, max {} ms",
        e2e::percentile(&latencies, 0.5),
        e2e::percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
    Ok(())
}
