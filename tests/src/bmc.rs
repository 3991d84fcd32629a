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
    /// The emulator and its backend's flag (`--fake`, or `--libvirt-uri …`).
    program: PathBuf,
    backend: Vec<String>,
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

/// A user and a password of the test's own, and sushy's htpasswd file (bcrypt) holding them.
fn credentials(dir: &std::path::Path) -> anyhow::Result<(String, String, PathBuf)> {
    let username = "bmc-admin".to_owned();
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
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
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("{username}:{}", String::from_utf8(hash.stdout)?.trim()),
    )?;
    Ok((username, password, htpasswd))
}

impl Bmc {
    /// An emulator with the fake backend holding `systems`.
    pub async fn start_fake(systems: &[FakeSystem]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (username, password, htpasswd) = credentials(dir.path())?;
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
        Self::launch(
            dir,
            username,
            password,
            config,
            venv_bin("sushy-emulator")?,
            vec!["--fake".into()],
        )
        .await
    }

    /// An emulator whose machines are libvirt domains of `qemu:///system` (the ones whose uuids
    /// are in `domains`): power is the domain's, and an inserted ISO is uploaded to libvirt's
    /// `default` pool and attached as the domain's CD-ROM. `program` is the emulator of a
    /// virtualenv with libvirt-python (scripts/sushy-libvirt.sh prints it).
    pub async fn start_libvirt(program: PathBuf, domains: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (username, password, htpasswd) = credentials(dir.path())?;
        let allowed: Vec<String> = domains.iter().map(|d| format!("'{d}'")).collect();
        let config = dir.path().join("emulator.conf");
        std::fs::write(
            &config,
            format!(
                "SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_STATE_DIR = '{}'\n\
                 SUSHY_EMULATOR_ALLOWED_INSTANCES = [{}]\n\
                 SUSHY_EMULATOR_STORAGE_POOL = 'default'\n",
                htpasswd.display(),
                dir.path().join("state").display(),
                allowed.join(", ")
            ),
        )?;
        let backend = vec!["--libvirt-uri".into(), "qemu:///system".into()];
        Self::launch(dir, username, password, config, program, backend).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        username: String,
        password: String,
        config: PathBuf,
        program: PathBuf,
        backend: Vec<String>,
    ) -> anyhow::Result<Self> {
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
            program,
            backend,
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
        let child = Command::new(&self.program)
            .args(["--config", &self.config.display().to_string()])
            .args(&self.backend)
            .args(["-i", "127.0.0.1", "-p", &self.port.to_string()])
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
