//! The agent's configuration (`[agent]` in its TOML file, `NOVA__AGENT__…` in the environment).

use drivers::docker::DockerSettings;
use drivers::fake::FakeSettings;
use drivers::libvirt::LibvirtSettings;
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct AgentSettings {
    /// The name this host registers under; commands arrive on `compute.<host>`.
    pub host: String,
    /// The host's address as the API shows it (Nova's `my_ip`); found from the routing table
    /// when unset.
    pub my_ip: Option<String>,
    pub heartbeat_interval_ms: u64,
    pub sync_interval_ms: u64,
    /// How long a guest gets to shut down before it is forced off.
    pub graceful_shutdown_timeout_s: u64,
    /// A driver call that takes longer fails.
    pub operation_timeout_s: u64,
    /// The agent's own state: the record of the tasks it finished (see
    /// [`crate::finished_tasks`]).
    pub state_dir: std::path::PathBuf,
    /// How long a finished task's record is kept.
    pub finished_task_retention_s: u64,
    pub driver: DriverKind,
    pub fake: FakeSettings,
    pub docker: DockerSettings,
    pub libvirt: LibvirtSettings,
    /// `[agent.baremetal]`: the bare-metal pool (`driver = "baremetal"`, and in the all-in-one).
    pub baremetal: BaremetalSettings,
    /// The image cache and how to reach the image service (`[agent.images]`).
    pub images: crate::image_cache::ImageSettings,
}

/// Which driver the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// In memory, for tests and development: boots nothing.
    Fake,
    /// Containers on the local Docker Engine.
    Docker,
    /// Virtual machines on libvirt/QEMU.
    Libvirt,
    /// Enrolled bare-metal machines, through their BMCs (Redfish).
    Baremetal,
    /// The all-in-one only: one agent per pool that works on the machine (libvirt when
    /// libvirtd answers, Docker when the engine answers, `fake` when neither does).
    Auto,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Fake => "fake",
            DriverKind::Docker => "docker",
            DriverKind::Libvirt => "libvirt",
            DriverKind::Baremetal => "baremetal",
            DriverKind::Auto => "auto",
        }
    }

    /// The pool a driver's agent serves, as the all-in-one names it (and its host `<host>-<pool>`).
    pub fn pool(self) -> &'static str {
        match self {
            DriverKind::Libvirt => "vm",
            DriverKind::Docker => "container",
            DriverKind::Baremetal => "baremetal",
            DriverKind::Fake | DriverKind::Auto => "fake",
        }
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            host: nova_core::settings::default_host(),
            my_ip: None,
            heartbeat_interval_ms: 10_000,
            sync_interval_ms: 10_000,
            graceful_shutdown_timeout_s: 60,
            operation_timeout_s: 3600,
            state_dir: "agent-state".into(),
            finished_task_retention_s: 86_400,
            driver: DriverKind::Fake,
            fake: FakeSettings::default(),
            docker: DockerSettings::default(),
            libvirt: LibvirtSettings::default(),
            baremetal: BaremetalSettings::default(),
            images: Default::default(),
        }
    }
}

impl AgentSettings {
    /// `my_ip`, or the source address of the default route, as Nova finds it: a UDP socket
    /// "connected" to an outside address (connecting sends nothing), else loopback.
    pub fn my_ip(&self) -> String {
        if let Some(ip) = &self.my_ip {
            return ip.clone();
        }
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                s.connect("192.0.2.1:9")?;
                s.local_addr()
            })
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| "127.0.0.1".into())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(10))
    }
    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.max(10))
    }
    pub fn graceful_shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.graceful_shutdown_timeout_s)
    }
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_s.max(1))
    }
}

/// `[agent.baremetal]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct BaremetalSettings {
    /// The key that opens the BMC passwords the bare-metal API sealed: the API's
    /// `api.baremetal.key_file` (by default `baremetal.key` in its key repository). Required
    /// for `driver = "baremetal"`; the all-in-one fills it in.
    pub key_file: Option<std::path::PathBuf>,
    /// The all-in-one runs a bare-metal pool (`<host>-baremetal`) beside the driver it names;
    /// `auto` always does.
    pub pool: bool,
    /// Requests to BMCs.
    pub redfish: drivers::redfish::RedfishSettings,
    /// The image service as the BMCs reach it, for the signed URLs of the ISOs they boot
    /// (`http://…/image`); unset: `agent.images.endpoint`.
    pub image_url: Option<String>,
    /// How long such a URL works.
    pub image_url_ttl_s: u64,
}

impl Default for BaremetalSettings {
    fn default() -> Self {
        Self {
            key_file: None,
            pool: false,
            redfish: Default::default(),
            image_url: None,
            image_url_ttl_s: 3600,
        }
    }
}
