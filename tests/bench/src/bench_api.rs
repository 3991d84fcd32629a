//! Read benchmark: `GET /servers/detail` in pages of 1,000 over 10,000 servers, and
//! `GET /servers/{id}`, then `GET /image/v2/images` in pages of 1,000 over 10,000 images (each
//! with a tag), through the distributed stack's API (2 workers, PostgreSQL) with Keystone
//! tokens (every request validates its token). Prints requests per second and latency
//! percentiles.
//!
//! `cargo run --release -p e2e --bin bench-api -- [--servers N] [--images N] [--seconds S]
//! [--concurrency C] [--all-in-one]`
//!
//! The servers are booted through the API with the fake driver first. The load client runs in
//! the same process, on the same two cores as the API and PostgreSQL. When `wrk` (Debian's
//! package) is installed, the same requests are measured again with it as the load client: a
//! C client that takes far less of the two shared cores than reqwest on tokio does, so its
//! figures are closer to what the service itself can serve.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use e2e::client::{password_token, Client};
use e2e::stack::{AllInOneStack, Distributed, Options, Stack};
use futures::StreamExt;
use keystone_auth::{AuthSettings, Strategy};
use std::time::{Duration, Instant};

struct Args {
    servers: usize,
    images: usize,
    seconds: u64,
    concurrency: usize,
    /// The embedded default (SQLite, in-process bus) instead of the distributed shape.
    all_in_one: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        servers: 10_000,
        images: 10_000,
        seconds: 10,
        concurrency: 8,
        all_in_one: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--servers" => a.servers = it.next().unwrap_or_default().parse()?,
            "--images" => a.images = it.next().unwrap_or_default().parse()?,
            "--seconds" => a.seconds = it.next().unwrap_or_default().parse()?,
            "--concurrency" => a.concurrency = it.next().unwrap_or_default().parse()?,
            "--all-in-one" => a.all_in_one = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// Runs `concurrency` loops of requests from `paths` (round robin) for `seconds`; prints the
/// figures.
async fn run(
    label: &str,
    http: &reqwest::Client,
    token: &str,
    paths: &[String],
    seconds: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let (http, token) = (http.clone(), token.to_owned());
        let paths = paths.to_vec();
        async move {
            let mut lat = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                let res = http
                    .get(&paths[i % paths.len()])
                    .header("X-Auth-Token", &token)
                    .send()
                    .await?;
                anyhow::ensure!(res.status() == 200, "{}", res.status());
                res.bytes().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                i += concurrency;
            }
            Ok::<_, anyhow::Error>(lat)
        }
    });
    let mut all: Vec<f64> = Vec::new();
    let results: Vec<_> = futures::stream::iter(workers)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        all.extend(r?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let rps = all.len() as f64 / elapsed;
    println!(
        "{label:<34} {rps:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests, {concurrency} connections)",
        e2e::percentile(&all, 0.5),
        e2e::percentile(&all, 0.99),
        all.len(),
    );
    Ok(())
}

/// The same round robin over `paths` with `wrk` as the load client (one thread, `connections`
/// connections); prints its figures. Every response must be a 200.
async fn run_wrk(
    label: &str,
    origin: &str,
    token: &str,
    paths: &[String],
    seconds: u64,
    connections: usize,
) -> anyhow::Result<()> {
    let quoted = paths
        .iter()
        .map(|p| {
            p.strip_prefix(origin)
                .map(|path| format!("{path:?}"))
                .ok_or_else(|| anyhow::anyhow!("{p} is not under {origin}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // wrk's Lua: each connection walks the paths round robin; any status but 200 is counted
    // and reported at the end.
    let script = format!(
        r#"local paths = {{{paths}}}
local i = 0
local bad = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], {{["X-Auth-Token"] = "{token}"}})
end
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %.1f %.1f %d\n", summary.requests,
    latency:percentile(50), latency:percentile(99), bad))
end
"#,
        paths = quoted.join(",")
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("paths.lua");
    std::fs::write(&file, script)?;
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "-s",
        ])
        .arg(&file)
        .arg(origin)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // wrk's own Requests/sec counts over its whole run; latencies are in microseconds.
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output: {text}"))?;
    let fields: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| anyhow::anyhow!("no RESULT in wrk's output: {text}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [requests, p50, p99, bad] = fields[..] else {
        anyhow::bail!("wrk's RESULT line: {text}");
    };
    anyhow::ensure!(bad == 0.0, "{bad} of {requests} responses were not 200");
    println!(
        "{label:<34} {rps:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({requests} requests, {connections} connections, wrk)",
        p50 / 1000.0,
        p99 / 1000.0,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let auth = AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some("bench-admin".into()),
        demo_password: Some("bench-demo".into()),
        ..Default::default()
    };
    let options = Options {
        auth: Some(auth),
        ..Options::default()
    };
    let stack: Box<dyn Stack> = if a.all_in_one {
        Box::new(AllInOneStack::start(options).await?)
    } else {
        Box::new(Distributed::start(options).await?)
    };
    println!(
        "shape: {}",
        if a.all_in_one {
            "all-in-one (SQLite)"
        } else {
            "distributed (PostgreSQL)"
        }
    );
    e2e::env::lift_quotas(stack.db()).await?;
    let url = stack.api_url().to_owned();
    let token = password_token(&url, "demo", "bench-demo", "demo").await?;
    let c = Client::new(&url, &token);

    // Boot the servers (fake driver), 32 requests at a time.
    let t = Instant::now();
    let creates = futures::stream::iter(0..a.servers)
        .map(|i| {
            let c = c.clone();
            async move { c.create_server(&format!("bench-{i}"), "1").await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let ids: Vec<String> = creates.into_iter().collect::<anyhow::Result<_>>()?;
    let project = nova_db::identity::projects(stack.db(), Some("demo"), None)
        .await?
        .first()
        .map(|p| p.id.clone())
        .ok_or_else(|| anyhow::anyhow!("no demo project"))?;
    loop {
        let counts = nova_db::instances::count_by_state(stack.db(), &project).await?;
        let active = counts
            .iter()
            .find(|(s, _)| *s == nova_core::model::VmState::Active)
            .map_or(0, |c| c.1);
        if usize::try_from(active).unwrap_or(0) >= a.servers {
            break;
        }
        let failed = counts
            .iter()
            .find(|(s, _)| *s == nova_core::model::VmState::Error)
            .map_or(0, |c| c.1);
        anyhow::ensure!(failed == 0, "{failed} servers went to ERROR");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} servers ACTIVE after {:.1} s; measuring for {} s each",
        a.servers,
        t.elapsed().as_secs_f64(),
        a.seconds
    );

    // The ten pages of 1,000, by their markers, as a client walking the list would ask.
    let base = format!("{url}/v2.1");
    let mut pages = vec![format!("{base}/servers/detail?limit=1000")];
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    loop {
        let last = pages.last().cloned().unwrap_or_default();
        let body: serde_json::Value = http
            .get(&last)
            .header("X-Auth-Token", &token)
            .send()
            .await?
            .json()
            .await?;
        match body["servers_links"][0]["href"].as_str() {
            Some(next) if body["servers"].as_array().is_some_and(|s| !s.is_empty()) => {
                pages.push(next.to_owned());
            }
            _ => break,
        }
    }
    pages.retain(|p| !p.is_empty());
    let shows: Vec<String> = ids
        .iter()
        .map(|id| format!("{base}/servers/{id}"))
        .collect();
    run(
        "GET /servers/detail?limit=1000 (1 conn)",
        &http,
        &token,
        &pages,
        a.seconds,
        1,
    )
    .await?;
    run(
        "GET /servers/detail?limit=1000",
        &http,
        &token,
        &pages,
        a.seconds,
        a.concurrency.min(4),
    )
    .await?;
    run(
        "GET /servers/{id}",
        &http,
        &token,
        &shows,
        a.seconds,
        a.concurrency,
    )
    .await?;
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
    {
        run_wrk(
            "GET /servers/detail?limit=1000",
            &url,
            &token,
            &pages,
            a.seconds,
            1,
        )
        .await?;
        run_wrk(
            "GET /servers/{id}",
            &url,
            &token,
            &shows,
            a.seconds,
            a.concurrency,
        )
        .await?;
    } else {
        println!("(wrk is not installed: `apt-get install wrk` adds its figures)");
    }
    if a.images > 0 {
        images(&a, &http, &url, &token).await?;
    }
    Ok(())
}

/// Creates `--images` image records (each tagged), then walks their listing in pages of
/// 1,000 by the `next` links, as a client would.
async fn images(a: &Args, http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    let creates = futures::stream::iter(0..a.images)
        .map(|i| {
            let (http, token) = (http.clone(), token.to_owned());
            let url = format!("{url}/image/v2/images");
            async move {
                let body = serde_json::json!({
                    "name": format!("bench-image-{i}"),
                    "disk_format": "qcow2",
                    "container_format": "bare",
                    "tags": [format!("t{}", i % 10)],
                });
                let r = http
                    .post(&url)
                    .header("X-Auth-Token", &token)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 201, "image create: {}", r.status());
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    creates.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!(
        "{} images created in {:.1} s",
        a.images,
        t.elapsed().as_secs_f64()
    );
    let mut pages = vec![format!("{url}/image/v2/images?limit=1000")];
    loop {
        let last = pages.last().cloned().unwrap_or_default();
        let body: serde_json::Value = http
            .get(&last)
            .header("X-Auth-Token", token)
            .send()
            .await?
            .json()
            .await?;
        match body["next"].as_str() {
            Some(next) => pages.push(format!("{url}/image{next}")),
            None => break,
        }
    }
    println!("{} pages of images", pages.len());
    run(
        "GET /image/v2/images?limit=1000 (1 conn)",
        http,
        token,
        &pages,
        a.seconds,
        1,
    )
    .await?;
    run(
        "GET /image/v2/images?limit=1000",
        http,
        token,
        &pages,
        a.seconds,
        a.concurrency.min(4),
    )
    .await
}
