//! Bare-metal benchmark (#17), against the all-in-one (SQLite, in-process bus) with Keystone
//! tokens, its bare-metal pool and a real sushy-emulator (fake backend):
//!
//! - **One deploy**: `POST /servers` → ACTIVE of a server on a bare-metal flavor, its BMC
//!   reached through a recording HTTP proxy of the benchmark's own: the Redfish requests the
//!   deploy made, the time they took, and the control plane's own time around them (before
//!   the first request and after the last answer). The time between requests is the driver
//!   waiting for the machine's power (it polls at `power_poll_interval_ms`; the fake machine
//!   takes 1–11 s at random).
//! - **N enrolled machines** (1,000 by default, enrolled, managed and provided through the API):
//!   `GET /baremetal/v1/nodes` (Ironic's default fields) and `/v1/nodes/detail`, p50 and p90.
//! - **Scheduling among them**: `POST /servers` → the claim committed (the server's host in the
//!   database, read every 0.2 ms), for servers of a bare-metal flavor whose class all N
//!   machines have, against the same for a flavor of the fake driver's one node, alternating,
//!   in the same run.
//!
//! `cargo run --release -p e2e --bin bench-baremetal -- [--nodes N] [--servers M]`
//!
//! Needs `.venv` (scripts/test.sh) for sushy-emulator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use e2e::bmc::{Bmc, FakeSystem};
use e2e::stack::{AllInOneStack, Options, Stack};
use e2e_bench::{ms, percentile};
use futures::StreamExt;
use keystone_auth::{AuthSettings, Strategy};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    nodes: usize,
    servers: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        nodes: 1000,
        servers: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--nodes" => a.nodes = it.next().unwrap_or_default().parse()?,
            "--servers" => a.servers = it.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// One request through the proxy.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    start: Instant,
    end: Instant,
}

/// A recording HTTP proxy in front of the emulator: one request per connection (the emulator's
/// server closes each), each timed from its head read to its answer's last byte written.
async fn proxy(upstream: String) -> anyhow::Result<(String, Arc<Mutex<Vec<Recorded>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let recorded = log.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (upstream, recorded) = (upstream.clone(), recorded.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                // The head, then as much body as it says.
                let (head_end, length) = loop {
                    let Ok(n) = client.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                let start = Instant::now();
                while request.len() < head_end + length {
                    let Ok(n) = client.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let first = String::from_utf8_lossy(&request[..head_end]).to_string();
                let mut words = first.split_whitespace();
                let method = words.next().unwrap_or_default().to_owned();
                let path = words.next().unwrap_or_default().to_owned();
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                if server.write_all(&request).await.is_err() {
                    return;
                }
                let mut response = Vec::new();
                if server.read_to_end(&mut response).await.is_err() {
                    return;
                }
                let _ = client.write_all(&response).await;
                let _ = client.shutdown().await;
                let end = Instant::now();
                recorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Recorded {
                        method,
                        path,
                        start,
                        end,
                    });
            });
        }
    });
    Ok((url, log))
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token)
            .header("X-OpenStack-Ironic-API-Version", "1.46")
            .header("OpenStack-API-Version", "compute 2.96");
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn enrol(
        &self,
        bmc: &Bmc,
        address: &str,
        system: &FakeSystem,
        class: &str,
    ) -> anyhow::Result<String> {
        let (status, node) = self
            .send(
                reqwest::Method::POST,
                "/baremetal/v1/nodes",
                Some(json!({
                    "driver": "redfish",
                    "name": system.name,
                    "resource_class": class,
                    "properties": {"cpus": 2, "memory_mb": 1024, "local_gb": 10},
                    "driver_info": {
                        "redfish_address": address,
                        "redfish_system_id": system.system_id(),
                        "redfish_username": bmc.username,
                        "redfish_password": bmc.password,
                    },
                })),
            )
            .await?;
        anyhow::ensure!(status == 201, "enrol: {status} {node}");
        Ok(node["uuid"].as_str().unwrap_or_default().to_owned())
    }

    async fn provision(&self, node: &str, verb: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                &format!("/baremetal/v1/nodes/{node}/states/provision"),
                Some(json!({"target": verb})),
            )
            .await?;
        anyhow::ensure!(status == 202, "{verb}: {status} {body}");
        Ok(())
    }

    async fn wait_state(&self, node: &str, state: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, n) = self
                .send(
                    reqwest::Method::GET,
                    &format!("/baremetal/v1/nodes/{node}"),
                    None,
                )
                .await?;
            if n["provision_state"] == state {
                return Ok(());
            }
            anyhow::ensure!(n["last_error"].is_null(), "node {node}: {n}");
            anyhow::ensure!(Instant::now() < deadline, "node {node} not {state}: {n}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create_server(&self, name: &str, flavor: &str, image: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v2.1/servers",
                Some(json!({"server": {"name": name, "flavorRef": flavor, "imageRef": image, "networks": "none"}})),
            )
            .await?;
        anyhow::ensure!(status == 202, "server create: {status} {body}");
        Ok(body["server"]["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// How long until the server's claim committed (its host set), read every 0.2 ms.
async fn placed(db: &nova_db::Db, id: &str, since: Instant) -> anyhow::Result<Duration> {
    let uuid: nova_core::ids::InstanceUuid = id.parse()?;
    let deadline = since + Duration::from_secs(30);
    loop {
        if let Some(i) = nova_db::instances::get_any(db, uuid).await? {
            if i.host.is_some() {
                return Ok(since.elapsed());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "server {id} not placed");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let systems: Vec<FakeSystem> = (0..=a.nodes)
        .map(|i| FakeSystem::new(&format!("machine-{i}"), "Off"))
        .collect();
    let bmc = Bmc::start_fake(&systems).await?;
    let (proxied, recorded) = proxy(bmc.url.clone()).await?;
    let auth = AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some("admin-secret".into()),
        demo_password: Some("demo-secret".into()),
        ..Default::default()
    };
    let stack = AllInOneStack::start(Options {
        auth: Some(auth),
        baremetal_pool: true,
        // Ironic's default: a power sync of a thousand machines every second would be the
        // load measured.
        baremetal_sync_interval_s: 60,
        ..Options::default()
    })
    .await?;
    let url = stack.api_url().to_owned();
    let api = Api {
        http: reqwest::Client::new(),
        token: e2e::client::password_token(&url, "admin", "admin-secret", "admin").await?,
        url,
    };
    let api = &api;
    // An ISO and the flavors: `bm.one` for the deploy's machine, `bm.pool` for the others.
    let iso = api.http.post(format!("{}/image/v2/images", api.url))
        .header("X-Auth-Token", &api.token)
        .json(&json!({"name": "bench-iso", "disk_format": "iso", "container_format": "bare", "visibility": "public"}))
        .send().await?.json::<Value>().await?;
    let iso = iso["id"].as_str().unwrap_or_default().to_owned();
    api.http
        .put(format!("{}/image/v2/images/{iso}/file", api.url))
        .header("X-Auth-Token", &api.token)
        .header("Content-Type", "application/octet-stream")
        .body(vec![7u8; 1 << 20])
        .send()
        .await?
        .error_for_status()?;
    for (id, class) in [
        ("bm.one", "CUSTOM_BENCH_ONE"),
        ("bm.pool", "CUSTOM_BENCH_POOL"),
    ] {
        let (status, body) = api
            .send(
                reqwest::Method::POST,
                "/v2.1/flavors",
                Some(json!({"flavor": {"name": id, "id": id, "ram": 1024, "vcpus": 2, "disk": 0}})),
            )
            .await?;
        anyhow::ensure!(status == 200, "flavor: {status} {body}");
        let (status, body) = api
            .send(
                reqwest::Method::POST,
                &format!("/v2.1/flavors/{id}/os-extra_specs"),
                Some(json!({"extra_specs": {format!("resources:{class}"): "1"}})),
            )
            .await?;
        anyhow::ensure!(status == 200, "extra specs: {status} {body}");
    }

    // One deploy through the recording proxy.
    let one = api.enrol(&bmc, &proxied, &systems[0], "bench-one").await?;
    api.provision(&one, "manage").await?;
    api.wait_state(&one, "manageable").await?;
    api.provision(&one, "provide").await?;
    api.wait_state(&one, "available").await?;
    recorded.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let t0 = Instant::now();
    let server = api.create_server("bench-deploy", "bm.one", &iso).await?;
    loop {
        let (_, s) = api
            .send(
                reqwest::Method::GET,
                &format!("/v2.1/servers/{server}"),
                None,
            )
            .await?;
        if s["server"]["status"] == "ACTIVE" {
            break;
        }
        anyhow::ensure!(s["server"]["status"] != "ERROR", "deploy failed: {s}");
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "deploy not done: {s}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = t0.elapsed();
    let requests = recorded.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let in_bmc: Duration = requests.iter().map(|r| r.end - r.start).sum();
    let first = requests.iter().map(|r| r.start).min().unwrap_or(t0);
    let last = requests.iter().map(|r| r.end).max().unwrap_or(t0);
    println!(
        "one deploy: POST → ACTIVE {:.0} ms; {} Redfish requests taking {:.1} ms in all:",
        ms(total),
        requests.len(),
        ms(in_bmc)
    );
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &requests {
        let path = r.path.split('/').skip(3).collect::<Vec<_>>().join("/");
        let shape = path
            .split('/')
            .filter(|p| p.len() < 20)
            .collect::<Vec<_>>()
            .join("/");
        *kinds.entry(format!("{} {}", r.method, shape)).or_default() += 1;
    }
    for (k, n) in &kinds {
        println!("  {n:3} × {k}");
    }
    println!(
        "  control plane around the BMC calls: {:.1} ms before the first request (API, bus, \
         scheduler, agent) + {:.1} ms after the last answer (report, conductor, database, the \
         benchmark's 2 ms poll of the API) = {:.1} ms; between requests {:.0} ms (the driver \
         waiting on the machine's power, polling at 1 s)",
        ms(first - t0),
        ms(t0 + total - last),
        ms(first - t0) + ms(t0 + total - last),
        ms((last - first).saturating_sub(in_bmc))
    );

    // N machines, enrolled, managed and provided through the API, 16 at a time.
    let t = Instant::now();
    let pool: Vec<String> = futures::stream::iter(systems[1..].iter())
        .map(|s| api.enrol(&bmc, &bmc.url, s, "bench-pool"))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    println!(
        "enrolled {} machines in {:.1} s",
        pool.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for (verb, state) in [("manage", "manageable"), ("provide", "available")] {
        futures::stream::iter(pool.iter())
            .map(|n| async move {
                api.provision(n, verb).await?;
                api.wait_state(n, state).await
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
    }
    println!(
        "managed and provided them in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    for path in ["/baremetal/v1/nodes", "/baremetal/v1/nodes/detail"] {
        let mut lat = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let (status, body) = api.send(reqwest::Method::GET, path, None).await?;
            lat.push(ms(t.elapsed()));
            anyhow::ensure!(
                // One page: Ironic's largest is 1,000.
                status == 200
                    && body["nodes"].as_array().map_or(0, Vec::len) == (a.nodes + 1).min(1000),
                "{path}: {status}"
            );
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "GET {path} ({} nodes enrolled, a page of at most 1,000): p50 {:.1} ms, p90 {:.1} ms",
            a.nodes + 1,
            percentile(&lat, 0.5),
            percentile(&lat, 0.9)
        );
    }

    // Scheduling: a bare-metal server among the N machines, against a server of the fake
    // driver's one node, alternating.
    let (mut baremetal, mut fake) = (Vec::new(), Vec::new());
    for i in 0..a.servers {
        for (flavor, image, out) in [
            ("bm.pool", iso.as_str(), &mut baremetal),
            ("1", e2e::client::IMAGE, &mut fake),
        ] {
            let t = Instant::now();
            let id = api
                .create_server(&format!("bench-{flavor}-{i}"), flavor, image)
                .await?;
            out.push(ms(placed(stack.db(), &id, t).await?));
        }
    }
    baremetal.sort_by(f64::total_cmp);
    fake.sort_by(f64::total_cmp);
    println!(
        "POST /servers → claim committed, {} servers each: bare metal among {} machines p50 {:.1} ms (p90 {:.1}); \
         the fake driver's one node p50 {:.1} ms (p90 {:.1}); difference at p50 {:.1} ms",
        a.servers,
        a.nodes,
        percentile(&baremetal, 0.5),
        percentile(&baremetal, 0.9),
        percentile(&fake, 0.5),
        percentile(&fake, 0.9),
        percentile(&baremetal, 0.5) - percentile(&fake, 0.5)
    );
    drop(stack);
    drop(bmc);
    Ok(())
}
