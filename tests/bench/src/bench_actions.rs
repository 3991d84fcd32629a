//! Server action benchmark (#19): each action through the whole distributed stack (API,
//! RabbitMQ, conductor, PostgreSQL, agent, Docker driver) against the engine's own call for the
//! same operation on a container of the same image and limits, side by side in one run.
//!
//! `cargo run --release -p e2e-bench --bin bench-actions -- [--rounds N]`
//!
//! Needs what `scripts/test.sh` starts (PostgreSQL, RabbitMQ, dockerd). An action's time through
//! the service runs from the moment the client sends its POST to the moment PostgreSQL tells
//! the benchmark that the transaction ending the server's task committed (a notification from a
//! trigger on the benchmark's own database, delivered after the commit); nothing polls. The raw
//! call is the engine's: stop (no grace), start, restart (no grace), pause, unpause, update of
//! the limits, and commit + save of the filesystem for a snapshot (whose time through the
//! service includes the upload to the image service). A confirmResize has no engine call: its
//! time is the control plane's alone.

use bollard::models::{ContainerCreateBody, ContainerUpdateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use drivers::docker::LABEL_HOST;
use e2e::activations::TaskEnds;
use e2e::client::Client;
use e2e::docker::{test_image, RemoveContainersOf};
use e2e::stack::{Distributed, Options, Stack};
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The flavors' sizes: (vCPUs, MiB).
const SMALL: (i64, i64) = (1, 128);
const LARGE: (i64, i64) = (2, 192);

/// The pause before each step: the engine goes on with its own work after it answers.
const SETTLE: Duration = Duration::from_millis(100);

const ACTIONS: &[&str] = &[
    "stop",
    "start",
    "reboot",
    "pause",
    "unpause",
    "resize",
    "confirmResize",
    "createImage",
];

/// The engine's call for `action` on the raw container; returns ms.
async fn raw(
    docker: &bollard::Docker,
    name: &str,
    action: &str,
    sizes: (i64, i64),
    scratch: &std::path::Path,
) -> anyhow::Result<Option<f64>> {
    let t0 = Instant::now();
    match action {
        "stop" => {
            let o = StopContainerOptionsBuilder::default().t(0).build();
            docker.stop_container(name, Some(o)).await?;
        }
        "start" => docker.start_container(name, None).await?,
        "reboot" => {
            let o = RestartContainerOptionsBuilder::default().t(0).build();
            docker.restart_container(name, Some(o)).await?;
        }
        "pause" => docker.pause_container(name).await?,
        "unpause" => docker.unpause_container(name).await?,
        "resize" => {
            let memory = sizes.1 * 1024 * 1024;
            let body = ContainerUpdateBody {
                nano_cpus: Some(sizes.0 * 1_000_000_000),
                memory: Some(memory),
                memory_swap: Some(memory),
                ..Default::default()
            };
            docker.update_container(name, body).await?;
        }
        "createImage" => {
            let o = CommitContainerOptionsBuilder::default()
                .container(name)
                .repo("bench-raw-snap")
                .tag("latest")
                .pause(true)
                .build();
            let id = docker
                .commit_container(o, bollard::models::ContainerConfig::default())
                .await?
                .id;
            let mut file = tokio::fs::File::create(scratch).await?;
            let mut stream = docker.export_image(&id);
            while let Some(chunk) = stream.next().await {
                tokio::io::AsyncWriteExt::write_all(&mut file, &chunk?).await?;
            }
            let elapsed = e2e_bench::ms(t0.elapsed());
            let o = RemoveImageOptionsBuilder::default().build();
            docker
                .remove_image("bench-raw-snap:latest", Some(o), None)
                .await?;
            return Ok(Some(elapsed));
        }
        // No engine call: the control plane's alone.
        _ => return Ok(None),
    }
    Ok(Some(e2e_bench::ms(t0.elapsed())))
}

async fn flavor(admin: &Client, id: &str, (vcpus, ram): (i64, i64)) -> anyhow::Result<()> {
    let r = admin
        .post(
            "/flavors",
            &json!({"flavor": {"name": id, "id": id, "ram": ram, "vcpus": vcpus, "disk": 1}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "flavor: {}", r.body);
    admin
        .post(
            &format!("/flavors/{id}/os-extra_specs"),
            &json!({"extra_specs": {"node:type": "container"}}),
        )
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = e2e_bench::count_arg("--rounds", 20)?;
    e2e::init_logging();
    let state = tempfile::tempdir()?;
    let host = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _cleanup = RemoveContainersOf(host.clone());
    let options = Options {
        // A stop without grace, as the raw stop's.
        graceful_shutdown_s: 0,
        ..e2e_bench::docker_stack(state.path(), &host)
    };
    let stack = Distributed::start(options).await?;
    let mut ends = TaskEnds::watch(&stack.db_url).await?;
    let docker = bollard::Docker::connect_with_local_defaults()?;
    let admin = Client::new(stack.api_url(), "admin:admin");
    flavor(&admin, "bench-small", SMALL).await?;
    flavor(&admin, "bench-large", LARGE).await?;
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.45");
    let archive = test_image().await?;
    let image = c
        .create_image("bench", "docker", "raw", std::fs::read(&archive.archive)?)
        .await?;
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "bench-actions", "imageRef": image,
                               "flavorRef": "bench-small", "networks": "none"}}),
        )
        .await?;
    anyhow::ensure!(r.status == 202, "create: {}", r.body);
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    c.wait_status(&id, "ACTIVE", Duration::from_secs(120))
        .await?;
    // The raw container: the same image and limits, no network.
    let name = format!("bench-raw-{host}");
    let memory = SMALL.1 * 1024 * 1024;
    let body = ContainerCreateBody {
        image: Some(archive.id.clone()),
        labels: Some(HashMap::from([(LABEL_HOST.to_owned(), host.clone())])),
        host_config: Some(HostConfig {
            nano_cpus: Some(SMALL.0 * 1_000_000_000),
            memory: Some(memory),
            memory_swap: Some(memory),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let o = CreateContainerOptionsBuilder::default().name(&name).build();
    docker.create_container(Some(o), body).await?;
    docker.start_container(&name, None).await?;
    let scratch = state.path().join("raw-snapshot.tar");

    let mut samples = e2e_bench::actions::Samples::default();
    for round in 0..n {
        // Each round resizes to the other flavor.
        let (target, sizes) = if round % 2 == 0 {
            ("bench-large", LARGE)
        } else {
            ("bench-small", SMALL)
        };
        for action in ACTIONS {
            // The order alternates, so that neither side always comes right after the other.
            let (s, r) = if round % 2 == 0 {
                tokio::time::sleep(SETTLE).await;
                let s =
                    e2e_bench::actions::through_stack(&mut ends, &c, &id, action, target).await?;
                tokio::time::sleep(SETTLE).await;
                (s, raw(&docker, &name, action, sizes, &scratch).await?)
            } else {
                tokio::time::sleep(SETTLE).await;
                let r = raw(&docker, &name, action, sizes, &scratch).await?;
                tokio::time::sleep(SETTLE).await;
                (
                    e2e_bench::actions::through_stack(&mut ends, &c, &id, action, target).await?,
                    r,
                )
            };
            samples.record(action, s, r);
        }
    }
    let remove = RemoveContainerOptionsBuilder::default().force(true).build();
    docker.remove_container(&name, Some(remove)).await?;

    samples.print(
        &format!("server actions on Docker, {n} rounds, one at a time, alternating:"),
        "engine's call",
        ACTIONS,
    );
    Ok(())
}
