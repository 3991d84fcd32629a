//! The distributed mode as it is deployed: `nova-api`, `nova-conductor` and `nova-compute` as
//! three separate processes, configured from the environment, connected only through RabbitMQ
//! and PostgreSQL. `scripts/test.sh` builds the binaries first (`cargo build --bins`).

use e2e::client::Client;
use e2e::deployment::binary;
use e2e::env;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Child processes that are killed when the test ends, however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_boot_and_delete_servers() -> anyhow::Result<()> {
    let db_url = env::fresh_pg_database().await?;
    let images = tempfile::tempdir()?;
    let store = images.path().join("store");
    let cache = images.path().join("cache");
    let state = images.path().join("agent-state");
    {
        let settings = nova_db::DatabaseSettings {
            url: db_url.clone(),
            max_connections: 1,
        };
        let db = nova_db::Db::connect(&settings).await?;
        let local = image_api::store::local::LocalStore::new(store.clone());
        env::register_test_images(&db, &local).await?;
        db.close().await;
    }
    let keys = tempfile::tempdir()?;
    let key_repository = keys.path().display().to_string();
    let prefix = env::queue_prefix();
    let common = [
        ("NOVA__DATABASE__URL", db_url.as_str()),
        ("NOVA__BUS__KIND", "amqp"),
        ("NOVA__BUS__QUEUE_PREFIX", prefix.as_str()),
        ("RUST_LOG", "warn"),
    ];
    let amqp = env::amqp_url();
    let spawn = |name: &str, extra: &[(&str, &str)]| -> anyhow::Result<Child> {
        let mut cmd = Command::new(binary(name)?);
        cmd.envs(common)
            .env("NOVA__BUS__AMQP_URL", &amqp)
            .envs(extra.iter().copied());
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        Ok(cmd.spawn()?)
    };
    let mut procs = Processes(Vec::new());
    // The API first (the test ran the migrations already).
    // With Keystone identity, as deployed: the API process serves /identity too.
    procs.0.push(spawn(
        "nova-api",
        &[
            ("NOVA__API__BIND", "127.0.0.1:0"),
            ("NOVA__IMAGE__STORE__DIR", &store.display().to_string()),
            ("NOVA__AUTH__KEY_REPOSITORY", key_repository.as_str()),
            ("NOVA__AUTH__ADMIN_PASSWORD", "admin-pw"),
            ("NOVA__AUTH__DEMO_PASSWORD", "demo-pw"),
        ],
    )?);
    let stdout = procs.0[0]
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let url = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(url) = line.strip_prefix("Compute API listening on ") {
                return Ok(url.trim_end_matches("/v2.1").to_owned());
            }
        }
        anyhow::bail!("nova-api ended without saying where it listens")
    })
    .await??;
    procs.0.push(spawn("nova-conductor", &[])?);
    // The agent fetches images with a password credential of its own, as deployed.
    procs.0.push(spawn(
        "nova-compute",
        &[
            ("NOVA__AGENT__HOST", "proc-host"),
            ("NOVA__AGENT__HEARTBEAT_INTERVAL_MS", "500"),
            (
                "NOVA__AGENT__IMAGES__CACHE_DIR",
                &cache.display().to_string(),
            ),
            ("NOVA__AGENT__STATE_DIR", &state.display().to_string()),
            ("NOVA__AGENT__IMAGES__ENDPOINT", &format!("{url}/image")),
            ("NOVA__AGENT__IMAGES__AUTH__METHOD", "password"),
            (
                "NOVA__AGENT__IMAGES__AUTH__AUTH_URL",
                &format!("{url}/identity/v3"),
            ),
            ("NOVA__AGENT__IMAGES__AUTH__USERNAME", "admin"),
            ("NOVA__AGENT__IMAGES__AUTH__PASSWORD", "admin-pw"),
            ("NOVA__AGENT__IMAGES__AUTH__PROJECT_NAME", "admin"),
        ],
    )?);

    let c = Client::new(
        &url,
        &e2e::client::password_token(&url, "demo", "demo-pw", "demo").await?,
    );
    // The agent registers through the conductor; until then builds find no host, so wait for
    // the node through the API's own view of it: the hypervisor an admin sees.
    let admin = Client::new(
        &url,
        &e2e::client::password_token(&url, "admin", "admin-pw", "admin").await?,
    );
    e2e::wait_until(
        Duration::from_secs(60),
        "the agent's node registered",
        || async {
            let r = admin.get("/os-hypervisors").await?;
            Ok(r.body["hypervisors"]
                .as_array()
                .is_some_and(|h| !h.is_empty()))
        },
    )
    .await?;
    let first = c.create_server("probe", "1").await?;
    c.wait_status(&first, "ACTIVE", Duration::from_secs(30))
        .await?;
    let mut ids = vec![first];
    for i in 0..5 {
        ids.push(c.create_server(&format!("proc-{i}"), "1").await?);
    }
    for id in &ids {
        let s = c.wait_status(id, "ACTIVE", Duration::from_secs(60)).await?;
        assert_eq!(s["OS-EXT-STS:power_state"], serde_json::json!(1));
    }
    let admin = Client::new(
        &url,
        &e2e::client::password_token(&url, "admin", "admin-pw", "admin").await?,
    );
    let s = admin.server(&ids[0]).await?;
    assert_eq!(
        s.body["server"]["OS-EXT-SRV-ATTR:host"],
        serde_json::json!("proc-host")
    );
    // The image reached the host's cache under its sha512, once for all six servers.
    let data = std::fs::read(store.join(e2e::client::IMAGE))?;
    let hash = format!("{:x}", <sha2::Sha512 as sha2::Digest>::digest(&data));
    assert_eq!(std::fs::read(cache.join(&hash))?, data);
    assert_eq!(
        std::fs::read_dir(cache.join("instances"))?.count(),
        ids.len()
    );
    for id in &ids {
        assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    }
    for id in &ids {
        c.wait_gone(id, Duration::from_secs(60)).await?;
    }
    drop(procs);
    let queues = nova_core::rpc::Queues::new(&prefix);
    env::delete_queues(vec![
        queues.conductor_tasks(),
        queues.conductor_events(),
        queues.compute("proc-host"),
    ]);
    Ok(())
}
