//! The kill matrix (#15): the distributed shape as deployed (three processes, RabbitMQ,
//! PostgreSQL, containers on the Docker Engine), with one part killed or restarted while
//! servers build:
//!
//! - `kill -9` of the API while the creates arrive (clients retry with the same
//!   `Idempotency-Key`, as a client that lost its answer does), of the conductor and of the
//!   agent while the builds run; each is started again;
//! - RabbitMQ restarted; PostgreSQL restarted.
//!
//! In every case each server ends ACTIVE, or ERROR with a fault, within the build timeout;
//! there is one server per key (none lost, none duplicated); the engine holds exactly one
//! container per ACTIVE server and none else (no orphan); the claims are exactly the ACTIVE
//! servers'; and deleting everything leaves no container and no claim.
//!
//! `KILL_MATRIX_BUILDS` servers per case (CI: a few; `scripts/kill-matrix.sh`: 100). It
//! restarts the shared broker and database, so it is a test binary of its own, and its cases
//! run one at a time.

use e2e::client::Client;
use e2e::deployment::{Deployment, API, COMPUTE, CONDUCTOR};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One case at a time: they restart what all of them share.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The build timeout the conductor runs with: every server must be settled within it.
const BUILD_TIMEOUT_S: u64 = 120;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillApi,
    KillConductor,
    KillAgent,
    RestartRabbitmq,
    RestartPostgresql,
}

fn builds() -> usize {
    std::env::var("KILL_MATRIX_BUILDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6)
}

fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn restart_postgresql() -> anyhow::Result<()> {
    let out = Command::new("pg_lsclusters").arg("-h").output()?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut first = listing.lines().next().unwrap_or("").split_whitespace();
    let (version, cluster) = (first.next().unwrap_or("15"), first.next().unwrap_or("main"));
    sh(
        "pg_ctlcluster",
        &[version, cluster, "restart", "-m", "fast"],
    )
}

/// The servers of the deployment, as an admin sees them: id → (status, fault message).
async fn servers(admin: &Client) -> anyhow::Result<HashMap<String, (String, Option<String>)>> {
    let r = admin
        .get("/servers/detail?all_tenants=1&limit=1000")
        .await?;
    anyhow::ensure!(r.status == 200, "list: {} {}", r.status, r.body);
    Ok(r.body["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                (
                    s["status"].as_str().unwrap_or_default().to_owned(),
                    s["fault"]["message"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect())
}

/// The containers of `host` on the engine: instance uuid → how many.
async fn containers(host: &str) -> anyhow::Result<HashMap<String, usize>> {
    let docker = bollard::Docker::connect_with_local_defaults()?;
    let mut by_instance = HashMap::new();
    for c in e2e::docker::containers_of_host(&docker, host).await? {
        let uuid = c
            .labels
            .as_ref()
            .and_then(|l| l.get(drivers::docker::LABEL_INSTANCE))
            .cloned()
            .unwrap_or_default();
        *by_instance.entry(uuid).or_insert(0) += 1;
    }
    Ok(by_instance)
}

/// Creates `n` servers, `concurrency` at a time, each with its own `Idempotency-Key`, retrying
/// whatever gets no answer (a dead API, a database restarting) with the same key. Counts the
/// answered creates in `answered`.
async fn create_all(
    c: Client,
    flavor: String,
    image: String,
    n: usize,
    answered: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<String>> {
    let concurrency = 10;
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..concurrency).map(|_| {
        let (c, flavor, image, next, answered) = (
            c.clone(),
            flavor.clone(),
            image.clone(),
            next.clone(),
            answered.clone(),
        );
        async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return anyhow::Ok(ids);
                }
                let body = json!({"server": {"name": format!("km-{i}"), "imageRef": image,
                                             "flavorRef": flavor}});
                let keyed = c.with_header("Idempotency-Key", &format!("km-{i}"));
                let deadline = Instant::now() + Duration::from_secs(120);
                let id = loop {
                    match keyed.post("/servers", &body).await {
                        Ok(r) if r.status == 202 => {
                            break r.body["server"]["id"].as_str().unwrap_or("").to_owned()
                        }
                        Ok(r) if r.status < 500 => {
                            anyhow::bail!("create km-{i}: {} {}", r.status, r.body)
                        }
                        _ if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        other => anyhow::bail!("create km-{i} never answered: {other:?}"),
                    }
                };
                answered.fetch_add(1, Ordering::SeqCst);
                ids.push(id);
            }
        }
    });
    Ok(futures::future::try_join_all(workers)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

async fn case(fault: Fault) -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    e2e::init_logging();
    let n = builds();
    let host = format!("km-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _containers = e2e::docker::RemoveContainersOf(host.clone());
    let state = tempfile::tempdir()?;
    let state_dir = state.path().display().to_string();
    let mut d = Deployment::new(
        &host,
        &[
            ("NOVA__AGENT__DRIVER", "docker"),
            ("NOVA__AGENT__DOCKER__STATE_DIR", &state_dir),
            ("NOVA__AGENT__DOCKER__NETWORK_MODE", "none"),
            ("NOVA__AGENT__DOCKER__CPU_ALLOCATION_RATIO", "256"),
            ("NOVA__AGENT__GRACEFUL_SHUTDOWN_TIMEOUT_S", "5"),
        ],
    )
    .await?;
    d.set(
        CONDUCTOR,
        "NOVA__CONDUCTOR__BUILD_TIMEOUT_S",
        &BUILD_TIMEOUT_S.to_string(),
    );
    d.start_all().await?;
    let queues = d.queues(&host);
    let admin = Client::new(&d.url, "admin:admin");
    e2e::wait_until(Duration::from_secs(60), "the agent's node", || async {
        let r = admin.get("/os-hypervisors").await?;
        Ok(r.body["hypervisors"]
            .as_array()
            .is_some_and(|h| !h.is_empty()))
    })
    .await?;
    let r = admin
        .post(
            "/flavors",
            &json!({"flavor": {"name": "km", "id": "km", "ram": 32, "vcpus": 1, "disk": 0}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "flavor: {} {}", r.status, r.body);
    let r = admin
        .post(
            "/flavors/km/os-extra_specs",
            &json!({"extra_specs": {"node:type": "container"}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "extra specs: {} {}", r.status, r.body);
    let r = admin
        .put(
            "/os-quota-sets/admin",
            &json!({"quota_set": {"instances": -1, "cores": -1, "ram": -1}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "quota: {} {}", r.status, r.body);
    let archive = std::fs::read(&e2e::docker::test_image().await?.archive)?;
    let image = admin.create_image("km", "docker", "raw", archive).await?;

    let started = Instant::now();
    let answered = Arc::new(AtomicUsize::new(0));
    let creates = tokio::spawn(create_all(
        admin.clone(),
        "km".into(),
        image,
        n,
        answered.clone(),
    ));
    // The fault, while servers are being created (the API) or built (the rest).
    let active = |admin: Client| async move {
        let s = servers(&admin).await?;
        anyhow::Ok(s.values().filter(|(st, _)| st == "ACTIVE").count())
    };
    match fault {
        Fault::KillApi => {
            e2e::wait_until(
                Duration::from_secs(120),
                "half the creates answered",
                || {
                    let answered = answered.clone();
                    async move { Ok(answered.load(Ordering::SeqCst) >= n / 2) }
                },
            )
            .await?;
            d.kill(API);
            tokio::time::sleep(Duration::from_secs(1)).await;
            d.start(API).await?;
        }
        _ => {
            let third = e2e::wait_until(
                Duration::from_secs(120),
                "a third of the servers active",
                || {
                    let admin = admin.clone();
                    async move { Ok(active(admin).await.unwrap_or(0) >= n.div_ceil(3)) }
                },
            )
            .await;
            if let Err(e) = third {
                // The creates' own failure, if that is why.
                if creates.is_finished() {
                    creates.await??;
                }
                return Err(e);
            }
            match fault {
                Fault::KillConductor | Fault::KillAgent => {
                    let process = if fault == Fault::KillAgent {
                        COMPUTE
                    } else {
                        CONDUCTOR
                    };
                    d.kill(process);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    d.start(process).await?;
                }
                Fault::RestartRabbitmq => {
                    tokio::task::spawn_blocking(|| -> anyhow::Result<()> {
                        sh("rabbitmqctl", &["stop_app"])?;
                        std::thread::sleep(Duration::from_secs(1));
                        sh("rabbitmqctl", &["start_app"])?;
                        sh("rabbitmqctl", &["await_startup"])
                    })
                    .await??;
                }
                Fault::RestartPostgresql => {
                    tokio::task::spawn_blocking(restart_postgresql).await??;
                }
                Fault::KillApi => unreachable!(),
            }
        }
    }
    let ids: HashSet<String> = creates.await??.into_iter().collect();
    anyhow::ensure!(
        ids.len() == n,
        "{} distinct servers for {n} keys",
        ids.len()
    );

    // Every server settles within the build timeout, ACTIVE or ERROR with a fault.
    let deadline = Duration::from_secs(BUILD_TIMEOUT_S + 30);
    e2e::wait_until(deadline, "every server settled", || {
        let admin = admin.clone();
        async move {
            // (An answer that fails is the fault not over yet: a 503 while PostgreSQL starts.)
            Ok(servers(&admin)
                .await
                .is_ok_and(|s| s.values().all(|(st, _)| st == "ACTIVE" || st == "ERROR")))
        }
    })
    .await?;
    let settled = started.elapsed();
    let all = servers(&admin).await?;
    let listed: HashSet<String> = all.keys().cloned().collect();
    assert_eq!(listed, ids, "the servers listed are not the ones created");
    for (id, (status, fault)) in &all {
        if status == "ERROR" {
            assert!(fault.is_some(), "{id} is in ERROR without a fault");
        }
    }
    let active_ids: HashSet<&String> = all
        .iter()
        .filter(|(_, (st, _))| st == "ACTIVE")
        .map(|(id, _)| id)
        .collect();
    // The engine agrees (a destroy of a failed build may still be on its way).
    let agrees = e2e::wait_until(
        Duration::from_secs(60),
        "one container per ACTIVE server",
        || {
            let (host, active_ids) = (host.clone(), active_ids.clone());
            async move {
                let on_engine = containers(&host).await?;
                Ok(on_engine.len() == active_ids.len()
                    && on_engine.values().all(|n| *n == 1)
                    && active_ids.iter().all(|id| on_engine.contains_key(*id)))
            }
        },
    )
    .await;
    if let Err(e) = agrees {
        let on_engine = containers(&host).await?;
        let orphans: Vec<(&String, Option<&String>)> = on_engine
            .keys()
            .filter(|id| !active_ids.contains(id))
            .map(|id| (id, all.get(id).map(|(st, _)| st)))
            .collect();
        let missing: Vec<&&String> = active_ids
            .iter()
            .filter(|id| !on_engine.contains_key(**id))
            .collect();
        let doubled: Vec<(&String, &usize)> = on_engine.iter().filter(|(_, n)| **n > 1).collect();
        anyhow::bail!(
            "{e}: containers of no ACTIVE server {orphans:?}; ACTIVE servers without one \
             {missing:?}; several containers {doubled:?}"
        );
    }
    let db = nova_db::Db::connect(&nova_db::DatabaseSettings {
        url: d.db_url.clone(),
        max_connections: 2,
    })
    .await?;
    assert_eq!(
        usize::try_from(nova_db::nodes::allocation_count(&db).await?)?,
        active_ids.len(),
        "claims that are not the ACTIVE servers'"
    );
    let faults: HashSet<&str> = all.values().filter_map(|(_, f)| f.as_deref()).collect();
    println!(
        "kill-matrix: {fault:?}: {n} servers, {} ACTIVE, {} ERROR, settled in {:.1} s; \
         faults: {faults:?}",
        active_ids.len(),
        n - active_ids.len(),
        settled.as_secs_f64()
    );

    // Deleting everything leaves nothing.
    for id in &ids {
        let r = admin.delete(&format!("/servers/{id}")).await?;
        anyhow::ensure!(r.status == 204, "delete {id}: {}", r.status);
    }
    e2e::wait_until(Duration::from_secs(120), "every server gone", || async {
        Ok(servers(&admin).await?.is_empty())
    })
    .await?;
    e2e::wait_until(Duration::from_secs(60), "no container left", || async {
        Ok(containers(&host).await?.is_empty())
    })
    .await?;
    assert_eq!(nova_db::nodes::allocation_count(&db).await?, 0);
    db.close().await;
    drop(d);
    e2e::env::delete_queues(queues);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_api_while_servers_are_created() -> anyhow::Result<()> {
    case(Fault::KillApi).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_conductor_while_servers_build() -> anyhow::Result<()> {
    case(Fault::KillConductor).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_while_servers_build() -> anyhow::Result<()> {
    case(Fault::KillAgent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restarted_while_servers_build() -> anyhow::Result<()> {
    case(Fault::RestartRabbitmq).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_while_servers_build() -> anyhow::Result<()> {
    case(Fault::RestartPostgresql).await
}
