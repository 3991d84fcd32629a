//! Container boot benchmark: POST → ACTIVE through the whole distributed stack (API, RabbitMQ,
//! conductor, PostgreSQL, agent, Docker driver) against a raw create + start of the same image
//! through the engine's API, side by side in one run, one boot at a time, alternating.
//!
//! `cargo run --release -p e2e --bin bench-docker -- [--boots N]`
//!
//! Needs what `scripts/test.sh` starts (PostgreSQL, RabbitMQ, dockerd). The stack's time is
//! from the moment the client sends its POST to the moment PostgreSQL tells the benchmark that
//! the transaction making the server ACTIVE committed (a notification sent by a trigger on the
//! benchmark's own database, delivered after the commit); nothing polls. The raw time is
//! create + start with the same limits and `--network none`.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use drivers::docker::LABEL_HOST;
use e2e::activations::Activations;
use e2e::client::Client;
use e2e::docker::{test_image, RemoveContainersOf};
use e2e::stack::{Distributed, Stack};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn boots() -> anyhow::Result<usize> {
    let mut n = 30;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--boots" => n = it.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(n)
}

const MEMORY_MB: i64 = 128;

/// The pause before each boot (see the loop in `main`).
const SETTLE: Duration = Duration::from_millis(100);

/// One boot through the service; returns POST → ACTIVE in ms.
async fn boot_through_stack(
    activations: &mut Activations,
    c: &Client,
    image: &str,
    i: usize,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    tracing::debug!(i, "POST");
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": format!("bench-{i}"), "imageRef": image,
                               "flavorRef": "bench-c", "networks": "none"}}),
        )
        .await?;
    anyhow::ensure!(r.status == 202, "create: {} {}", r.status, r.body);
    tracing::debug!(i, "202");
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let at = activations.of(&id, Duration::from_secs(60)).await?;
    let elapsed = at.duration_since(t0).as_secs_f64() * 1000.0;
    tracing::debug!(i, elapsed, "boot through the service");
    assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    c.wait_gone(&id, Duration::from_secs(60)).await?;
    Ok(elapsed)
}

/// One raw create + start with the same image and limits (and, with `drive`, a read-only bind
/// mount like the driver's config drive); returns ms.
async fn boot_raw(
    docker: &bollard::Docker,
    image_id: &str,
    host: &str,
    i: usize,
    drive: Option<&std::path::Path>,
) -> anyhow::Result<f64> {
    let name = format!("bench-raw-{host}-{i}-{}", drive.is_some());
    let memory = MEMORY_MB * 1024 * 1024;
    let body = ContainerCreateBody {
        image: Some(image_id.to_owned()),
        hostname: Some(format!("bench-{i}")),
        labels: Some(HashMap::from([(LABEL_HOST.to_owned(), host.to_owned())])),
        host_config: Some(HostConfig {
            nano_cpus: Some(1_000_000_000),
            memory: Some(memory),
            memory_swap: Some(memory),
            network_mode: Some("none".into()),
            binds: drive.map(|d| vec![format!("{}:/mnt/config:ro", d.display())]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t0 = Instant::now();
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker.create_container(Some(options), body).await?;
    docker.start_container(&name, None).await?;
    let elapsed = t0.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(i, elapsed, drive = drive.is_some(), "raw boot");
    let remove = RemoveContainerOptionsBuilder::default().force(true).build();
    docker.remove_container(&name, Some(remove)).await?;
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = boots()?;
    // `RUST_LOG=warn,nova_api=debug,conductor=debug,compute_agent=debug,drivers=debug,
    // bench_docker=debug` shows each boot's path through the services, with timestamps.
    e2e::init_logging();
    let state = tempfile::tempdir()?;
    let host = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _cleanup = RemoveContainersOf(host.clone());
    let options = e2e_bench::docker_stack(state.path(), &host);
    let stack = Distributed::start(options).await?;
    let mut activations = Activations::watch(&stack.db_url).await?;
    let docker = bollard::Docker::connect_with_local_defaults()?;
    let admin = Client::new(stack.api_url(), "admin:admin");
    let r = admin
        .post(
            "/flavors",
            &json!({"flavor": {"name": "bench-c", "id": "bench-c", "ram": MEMORY_MB,
                               "vcpus": 1, "disk": 1}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "flavor: {}", r.body);
    admin
        .post(
            "/flavors/bench-c/os-extra_specs",
            &json!({"extra_specs": {"node:type": "container"}}),
        )
        .await?;
    // 2.37: `networks: "none"` (the raw containers have no network either).
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.37");
    let archive = test_image().await?;
    let image = c
        .create_image("bench", "docker", "raw", std::fs::read(&archive.archive)?)
        .await?;

    // Warm-up: the first boot fetches the image into the host's cache and loads it into the
    // engine; both paths then start from a loaded image.
    let drive = tempfile::tempdir()?;
    std::fs::write(drive.path().join("meta_data.json"), "{}")?;
    boot_through_stack(&mut activations, &c, &image, 0).await?;
    boot_raw(&docker, &archive.id, &host, 0, None).await?;

    let (mut through, mut raw, mut raw_drive) = (Vec::new(), Vec::new(), Vec::new());
    // The order alternates (service then raw, raw then service), so that neither side always
    // comes right after the other's container removal.
    // Each boot starts from a quiet engine: it goes on cleaning up after a container's removal
    // for a while after answering, and the boot that came next paid for that.
    let settle = || tokio::time::sleep(SETTLE);
    for i in 1..=n {
        if i % 2 == 1 {
            settle().await;
            through.push(boot_through_stack(&mut activations, &c, &image, i).await?);
            settle().await;
            raw.push(boot_raw(&docker, &archive.id, &host, i, None).await?);
        } else {
            settle().await;
            raw.push(boot_raw(&docker, &archive.id, &host, i, None).await?);
            settle().await;
            through.push(boot_through_stack(&mut activations, &c, &image, i).await?);
        }
        settle().await;
        raw_drive.push(boot_raw(&docker, &archive.id, &host, i, Some(drive.path())).await?);
    }
    // The engine's own time drifts during a run (and between runs); the difference of each
    // boot through the service and the raw boot next to it cancels that drift.
    let mut paired: Vec<f64> = through.iter().zip(&raw).map(|(s, r)| s - r).collect();
    paired.sort_by(f64::total_cmp);
    through.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    raw_drive.sort_by(f64::total_cmp);
    let (s50, r50) = (e2e::percentile(&through, 0.5), e2e::percentile(&raw, 0.5));
    let d50 = e2e::percentile(&raw_drive, 0.5);
    println!("container boots, {n} each, one at a time, alternating:");
    println!(
        "  through the service (POST → ACTIVE): p50 {s50:.0} ms, p90 {:.0} ms",
        e2e::percentile(&through, 0.9)
    );
    println!(
        "  raw engine create + start:          p50 {r50:.0} ms, p90 {:.0} ms",
        e2e::percentile(&raw, 0.9)
    );
    println!(
        "  raw, with the config-drive mount:   p50 {d50:.0} ms, p90 {:.0} ms",
        e2e::percentile(&raw_drive, 0.9)
    );
    println!(
        "  overhead at p50: {:.0} ms = {:.1} % of the raw time ({:.0} ms = {:.1} % of the raw \
         time with the same mount)",
        s50 - r50,
        (s50 - r50) / r50 * 100.0,
        s50 - d50,
        (s50 - d50) / d50 * 100.0
    );
    let p50 = e2e::percentile(&paired, 0.5);
    println!(
        "  paired (each boot minus the raw boot next to it): median {p50:.0} ms = {:.1} % of the \
         raw p50",
        p50 / r50 * 100.0
    );
    Ok(())
}
