//! The distributed shape as it is deployed: `nova-api`, `nova-conductor` and `nova-compute`
//! as separate processes of the workspace's binaries, configured from the environment,
//! connected only through RabbitMQ and PostgreSQL — and each one can be killed (`SIGKILL`)
//! and started again, for the fault tests. `scripts/test.sh` builds the binaries first
//! (`cargo build --bins`).

use crate::env;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const API: &str = "nova-api";
pub const CONDUCTOR: &str = "nova-conductor";
pub const COMPUTE: &str = "nova-compute";

/// A workspace binary: they sit next to the `deps/` folder the test runs from.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first",
        path.display()
    );
    Ok(path)
}

/// The three processes on a fresh database and queue prefix, the API on a fixed loopback
/// port (so that it comes back where clients expect it).
pub struct Deployment {
    pub db_url: String,
    pub queue_prefix: String,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Each process's environment, beyond the common one.
    env: HashMap<&'static str, Vec<(String, String)>>,
    common: Vec<(String, String)>,
    children: HashMap<&'static str, Child>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    /// A deployment whose API speaks noauth2, and whose agent runs `driver` on `host` with
    /// `agent_env` added (its driver's settings). Nothing is started yet.
    pub async fn new(host: &str, agent_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let db_url = env::fresh_pg_database().await?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let queue_prefix = env::queue_prefix();
        let path = |p: &str| dir.path().join(p).display().to_string();
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let common = owned(&[
            ("NOVA__DATABASE__URL", &db_url),
            ("NOVA__BUS__KIND", "amqp"),
            ("NOVA__BUS__AMQP_URL", &env::amqp_url()),
            ("NOVA__BUS__QUEUE_PREFIX", &queue_prefix),
            ("NOVA__AUTH__STRATEGY", "noauth2"),
            // `NOVA_TEST_PROCESS_LOG` sets the processes' log filter (e.g.
            // `warn,conductor=info,compute_agent=info`).
            (
                "RUST_LOG",
                &std::env::var("NOVA_TEST_PROCESS_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ]);
        let mut agent = owned(&[
            ("NOVA__AGENT__HOST", host),
            ("NOVA__AGENT__HEARTBEAT_INTERVAL_MS", "500"),
            ("NOVA__AGENT__SYNC_INTERVAL_MS", "1000"),
            ("NOVA__AGENT__IMAGES__CACHE_DIR", &path("cache")),
            ("NOVA__AGENT__STATE_DIR", &path("agent-state")),
            ("NOVA__AGENT__IMAGES__ENDPOINT", &format!("{url}/image")),
            ("NOVA__AGENT__IMAGES__AUTH__METHOD", "token"),
            ("NOVA__AGENT__IMAGES__AUTH__TOKEN", "admin:admin"),
        ]);
        agent.extend(owned(agent_env));
        let env = HashMap::from([
            (
                API,
                owned(&[
                    ("NOVA__API__BIND", &format!("127.0.0.1:{port}")),
                    ("NOVA__IMAGE__STORE__DIR", &path("store")),
                    ("NOVA__AUTH__KEY_REPOSITORY", &path("keys")),
                ]),
            ),
            (
                CONDUCTOR,
                owned(&[
                    ("NOVA__CONDUCTOR__RECONCILE_INTERVAL_MS", "1000"),
                    ("NOVA__CONDUCTOR__REDRIVE_AFTER_S", "5"),
                    ("NOVA__CONDUCTOR__SERVICE_DOWN_TIME_S", "15"),
                ]),
            ),
            (COMPUTE, agent),
        ]);
        Ok(Self {
            db_url,
            queue_prefix,
            url,
            env,
            common,
            children: HashMap::new(),
            _dir: dir,
        })
    }

    /// Adds `NAME=value` to `process`'s environment (for its next start).
    pub fn set(&mut self, process: &'static str, name: &str, value: &str) {
        if let Some(env) = self.env.get_mut(process) {
            env.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Starts `process`; for the API, waits until it answers.
    pub async fn start(&mut self, process: &'static str) -> anyhow::Result<()> {
        let mut cmd = Command::new(binary(process)?);
        cmd.envs(self.common.iter().map(|(k, v)| (k, v)))
            .envs(self.env[process].iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        self.children.insert(process, cmd.spawn()?);
        if process == API {
            let http = reqwest::Client::new();
            let url = format!("{}/", self.url);
            crate::wait_until(Duration::from_secs(60), "the API answers", || {
                let (http, url) = (http.clone(), url.clone());
                async move { Ok(http.get(&url).send().await.is_ok()) }
            })
            .await?;
        }
        Ok(())
    }

    /// Starts the three, the API first (it runs the migrations).
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for p in [API, CONDUCTOR, COMPUTE] {
            self.start(p).await?;
        }
        Ok(())
    }

    /// `kill -9` of `process`, and waits until it is gone.
    pub fn kill(&mut self, process: &'static str) {
        if let Some(mut child) = self.children.remove(process) {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// The queues of this deployment (to delete when done).
    pub fn queues(&self, host: &str) -> Vec<String> {
        let q = nova_core::rpc::Queues::new(&self.queue_prefix);
        vec![q.conductor_tasks(), q.conductor_events(), q.compute(host)]
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for (_, mut child) in self.children.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
