//! Networking benchmark (#18), against the all-in-one (SQLite, in-process bus, the fake
//! driver), or the distributed shape with `--shape distributed` (PostgreSQL, RabbitMQ):
//!
//! - **Server create with a port and a security group** against **today's create with
//!   `auto`**: `POST /servers` → ACTIVE (the instance row read every 0.2 ms), for a server on a
//!   network with a subnet in a group with a rule (its port made with the group, its address
//!   allocated, its filter resolved by the conductor, the NIC and its filter passed to the
//!   driver) and for one whose project has no network (`auto`: no port), alternating, in the
//!   same run. The difference at p50 is what ports and groups add to the control plane.
//! - **IPAM throughput on one subnet**: `POST /v2.0/ports` on one /16, `--clients` at a time,
//!   ports a second and the create's p50/p90.
//!
//! `cargo run --release -p e2e --bin bench-network -- [--servers N] [--ports M] [--clients C]
//! [--shape all-in-one|distributed]`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use e2e::client::Client;
use e2e::stack::{AllInOneStack, Distributed, Options, Stack};
use e2e_bench::{ms, percentile};
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

struct Args {
    servers: usize,
    ports: usize,
    clients: usize,
    distributed: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        servers: 50,
        ports: 2000,
        clients: 16,
        distributed: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--servers" => a.servers = it.next().unwrap_or_default().parse()?,
            "--ports" => a.ports = it.next().unwrap_or_default().parse()?,
            "--clients" => a.clients = it.next().unwrap_or_default().parse()?,
            "--shape" => a.distributed = it.next().as_deref() == Some("distributed"),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// How long until the server is ACTIVE, its row read every 0.2 ms.
async fn active(db: &nova_db::Db, id: &str, since: Instant) -> anyhow::Result<Duration> {
    let uuid: nova_core::ids::InstanceUuid = id.parse()?;
    let deadline = since + Duration::from_secs(30);
    loop {
        if let Some(i) = nova_db::instances::get_any(db, uuid).await? {
            match i.vm_state {
                nova_core::model::VmState::Active => return Ok(since.elapsed()),
                nova_core::model::VmState::Error => anyhow::bail!("server {id} in ERROR"),
                _ => {}
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "server {id} not ACTIVE");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The server's id, when the create was sent, and how long the API took to answer it.
async fn create(
    c: &Client,
    body: serde_json::Value,
) -> anyhow::Result<(String, Instant, Duration)> {
    let start = Instant::now();
    let r = c.post("/servers", &json!({ "server": body })).await?;
    let answered = start.elapsed();
    anyhow::ensure!(r.status == 202, "create: {} {}", r.status, r.body);
    Ok((
        r.body["server"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        start,
        answered,
    ))
}

async fn run(stack: &dyn Stack, a: &Args) -> anyhow::Result<()> {
    let admin = Client::new(stack.api_url(), "admin:admin");
    // Quotas out of the way: the benchmark's servers and ports are many.
    for project in ["bench-net", "bench-auto", "admin"] {
        let r = admin
            .put(
                &format!("/os-quota-sets/{project}"),
                &json!({"quota_set": {"instances": -1, "cores": -1, "ram": -1}}),
            )
            .await?;
        anyhow::ensure!(r.status == 200, "quota: {}", r.body);
    }
    let r = admin
        .networking(
            reqwest::Method::PUT,
            "/quotas/admin",
            Some(&json!({"quota": {"port": -1}})),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "port quota: {}", r.body);
    // The network of the servers with ports: the bench-net project's own (auto picks it for
    // nobody else), with a /16.
    let net = admin
        .create_network(json!({"name": "bench-net", "project_id": "bench-net"}))
        .await?;
    let r = admin
        .networking(
            reqwest::Method::POST,
            "/subnets",
            Some(&json!({"subnet": {"network_id": net, "ip_version": 4,
                "cidr": "10.60.0.0/16", "project_id": "bench-net"}})),
        )
        .await?;
    anyhow::ensure!(r.status == 201, "subnet: {}", r.body);
    // At 2.37, which `auto` needs.
    let with_port = Client::new(stack.api_url(), "bench:bench-net").at_microversion("2.37");
    let auto = Client::new(stack.api_url(), "bench:bench-auto").at_microversion("2.37");
    // The servers' group: SSH in from anywhere (and the group's default egress).
    let r = with_port
        .networking(
            reqwest::Method::POST,
            "/security-groups",
            Some(&json!({"security_group": {"name": "web"}})),
        )
        .await?;
    anyhow::ensure!(r.status == 201, "group: {}", r.body);
    let r = with_port
        .networking(
            reqwest::Method::POST,
            "/security-group-rules",
            Some(
                &json!({"security_group_rule": {"security_group_id": r.body["security_group"]["id"],
                "direction": "ingress", "protocol": "tcp", "port_range_min": 22,
                "port_range_max": 22}}),
            ),
        )
        .await?;
    anyhow::ensure!(r.status == 201, "rule: {}", r.body);
    let groups = json!([{"name": "web"}]);

    // Warm-up: one of each.
    for (c, networks, groups) in [
        (&with_port, json!([{"uuid": net}]), groups.clone()),
        (&auto, json!("auto"), json!([])),
    ] {
        let (id, start, _) = create(
            c,
            json!({"name": "warm", "imageRef": e2e::client::IMAGE, "flavorRef": "1",
                "networks": networks, "security_groups": groups}),
        )
        .await?;
        active(stack.db(), &id, start).await?;
    }
    let (mut ported, mut plain) = (Vec::new(), Vec::new());
    // The API's part (POST → 202) of each, apart.
    let (mut ported_api, mut plain_api) = (Vec::new(), Vec::new());
    for i in 0..a.servers {
        let (id, start, answered) = create(
            &with_port,
            json!({"name": format!("p{i}"), "imageRef": e2e::client::IMAGE, "flavorRef": "1",
                "networks": [{"uuid": net}], "security_groups": groups}),
        )
        .await?;
        ported.push(ms(active(stack.db(), &id, start).await?));
        ported_api.push(ms(answered));
        let (id, start, answered) = create(
            &auto,
            json!({"name": format!("a{i}"), "imageRef": e2e::client::IMAGE, "flavorRef": "1",
                "networks": "auto"}),
        )
        .await?;
        plain.push(ms(active(stack.db(), &id, start).await?));
        plain_api.push(ms(answered));
    }
    for v in [&mut ported, &mut plain, &mut ported_api, &mut plain_api] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "POST /servers → ACTIVE (fake driver), {} servers each: with a port on a subnet and a \
         security group p50 {:.1} ms (p90 {:.1}); `auto` without a network p50 {:.1} ms (p90 \
         {:.1}); added by the port and the group at p50 {:.1} ms",
        a.servers,
        percentile(&ported, 0.5),
        percentile(&ported, 0.9),
        percentile(&plain, 0.5),
        percentile(&plain, 0.9),
        percentile(&ported, 0.5) - percentile(&plain, 0.5),
    );
    println!(
        "of which the API's answer (POST → 202): with a port and a group p50 {:.1} ms, `auto` \
         p50 {:.1} ms; added at p50 {:.1} ms (the rest is the conductor's and the agent's)",
        percentile(&ported_api, 0.5),
        percentile(&plain_api, 0.5),
        percentile(&ported_api, 0.5) - percentile(&plain_api, 0.5),
    );

    // IPAM: ports on the one subnet, `clients` at a time.
    let started = Instant::now();
    let times: Vec<anyhow::Result<f64>> = futures::stream::iter(0..a.ports)
        .map(|i| {
            let admin = admin.clone();
            let net = net.clone();
            async move {
                let start = Instant::now();
                let r = admin
                    .networking(
                        reqwest::Method::POST,
                        "/ports",
                        Some(&json!({"port": {"network_id": net, "name": format!("b{i}")}})),
                    )
                    .await?;
                anyhow::ensure!(r.status == 201, "port: {} {}", r.status, r.body);
                Ok(ms(start.elapsed()))
            }
        })
        .buffer_unordered(a.clients)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut times: Vec<f64> = times.into_iter().collect::<anyhow::Result<_>>()?;
    times.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let rate = a.ports as f64 / elapsed.as_secs_f64();
    println!(
        "IPAM: {} ports on one /16, {} clients: {:.0} ports/s; a create p50 {:.1} ms, p90 {:.1} ms",
        a.ports,
        a.clients,
        rate,
        percentile(&times, 0.5),
        percentile(&times, 0.9),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    if a.distributed {
        let stack = Distributed::start(Options::default()).await?;
        println!("shape: distributed (PostgreSQL, RabbitMQ)");
        run(&stack, &a).await
    } else {
        let stack = AllInOneStack::start(Options::default()).await?;
        println!("shape: all-in-one (SQLite, in-process bus)");
        run(&stack, &a).await
    }
}
