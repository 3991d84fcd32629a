//! A Redfish BMC for tests: sushy-tools' `sushy-emulator` (installed into `.venv` by
//! `scripts/test.sh`), on loopback, with HTTP Basic credentials of the test's own, and its
//! fake backend (machines that exist only in the emulator; a power change takes it 1–11 s).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running emulator; stopped when dropped.
pub struct Bmc {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub username: String,
    pub password: String,
    /// Where its log goes (its requests), for assertions.
    pub log: PathBuf,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// A machine of the fake backend.
pub struct FakeSystem {
    pub uuid: String,
    pub name: String,
    /// `On` or `Off`.
    pub power: &'static str,
}

impl FakeSystem {
    pub fn new(name: &str, power: &'static str) -> Self {
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            power,
        }
    }

    /// Its path, Ironic's `redfish_system_id`.
    pub fn system_id(&self) -> String {
        format!("/redfish/v1/Systems/{}", self.uuid)
    }
}

fn venv_bin(name: &str) -> anyhow::Result<PathBuf> {
    let python = std::env::var("NOVA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    let path = python.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} missing: scripts/test.sh installs sushy-tools",
        path.display()
    );
    Ok(path)
}

impl Bmc {
    /// An emulator with the fake backend holding `systems`.
    pub async fn start_fake(systems: &[FakeSystem]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let username = "bmc-admin".to_owned();
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        // sushy's Basic auth reads an htpasswd file (bcrypt hashes).
        let hash = Command::new(venv_bin("python")?)
            .args([
                "-c",
                "import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())",
                &password,
            ])
            .output()?;
        anyhow::ensure!(
            hash.status.success(),
            "bcrypt: {}",
            String::from_utf8_lossy(&hash.stderr)
        );
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(
            &htpasswd,
            format!("{username}:{}", String::from_utf8(hash.stdout)?.trim()),
        )?;
        let systems_py: Vec<String> = systems
            .iter()
            .map(|s| {
                format!(
                    "{{'uuid': '{}', 'name': '{}', 'power_state': '{}', 'nics': []}}",
                    s.uuid, s.name, s.power
                )
            })
            .collect();
        let config = dir.path().join("emulator.conf");
        std::fs::write(
            &config,
            format!(
                "SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_STATE_DIR = '{}'\n\
                 SUSHY_EMULATOR_FAKE_SYSTEMS = [{}]\n",
                htpasswd.display(),
                dir.path().join("state").display(),
                systems_py.join(", ")
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.path().join("emulator.log");
        let mut bmc = Self {
            url: format!("http://127.0.0.1:{port}"),
            username,
            password,
            log,
            config,
            port,
            child: None,
            _dir: dir,
        };
        bmc.start().await?;
        Ok(bmc)
    }

    /// Stops the emulator: its BMC no longer answers.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again), on its port, with its machines as it left them.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(venv_bin("sushy-emulator")?)
            .args(["--config", &self.config.display().to_string()])
            .args(["--fake", "-i", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        // Up once the service root answers (it is not behind the credentials).
        let http = reqwest::Client::new();
        let root = format!("{}/redfish/v1/", self.url);
        crate::wait_until(
            Duration::from_secs(30),
            "sushy-emulator to answer",
            || async {
                Ok(http
                    .get(&root)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()))
            },
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "sushy-emulator did not answer: {e}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }

    /// A resource of the emulator (with the test's credentials).
    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json().await?)
    }

    /// The system's CD drive as the emulator tells it (its `Image`, `Inserted`).
    pub async fn cd(&self, system: &FakeSystem) -> anyhow::Result<serde_json::Value> {
        self.get(&format!("{}/VirtualMedia/Cd", system.system_id()))
            .await
    }

    /// A system's state as the emulator tells it (with the test's credentials).
    pub async fn system(&self, system: &FakeSystem) -> anyhow::Result<serde_json::Value> {
        let r = reqwest::Client::new()
            .get(format!("{}{}", self.url, system.system_id()))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json().await?)
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        self.stop();
    }
}
