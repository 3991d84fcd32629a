//! The second driver contract, [`NodeManagement`]: what a bare-metal pool does with an enrolled
//! machine that carries no instance — check that its BMC answers and the credentials work, set
//! its power, clean it after use. [`crate::Compute`] stays the life cycle of one instance.
//!
//! The machines are enrolled through the bare-metal API and live in the database; an agent is
//! told, with each command, which machine and which BMC ([`BmcAccess`]). Calls may take
//! minutes; the caller bounds them, and [`NodeManagement::clean`] names each step as it starts
//! so that a long operation shows its progress.

use crate::DriverError;
use async_trait::async_trait;
use nova_core::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// How a BMC is reached (Ironic's `redfish_*` driver_info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BmcAccess {
    /// `https://host:port` (a bare `host` means https), as Ironic's `redfish_address`.
    pub address: String,
    /// The system's path, as `redfish_system_id` (`/redfish/v1/Systems/<id>`).
    pub system_id: String,
    pub username: String,
    pub password: Secret,
    pub verify: TlsVerify,
}

/// Ironic's `redfish_verify_ca`: true (the system's roots), false, or a CA bundle's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsVerify {
    System,
    Off,
    CaBundle(PathBuf),
}

/// A machine's power as its BMC reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePower {
    On,
    Off,
}

impl NodePower {
    /// Ironic's spelling.
    pub fn ironic(self) -> &'static str {
        match self {
            Self::On => "power on",
            Self::Off => "power off",
        }
    }
}

/// What a power request asks (Ironic's target power states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    On,
    Off,
    /// ACPI off: the OS shuts down.
    SoftOff,
    Reboot,
    SoftReboot,
}

/// A machine as its BMC describes it (what `manage` learns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    pub power: NodePower,
    pub cpus: Option<u32>,
    pub memory_mb: Option<u64>,
    pub cpu_arch: Option<String>,
}

/// A source a machine boots from once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDevice {
    Cd,
    Pxe,
    Hdd,
}

#[async_trait]
pub trait NodeManagement: Send + Sync + 'static {
    /// The BMC answers and accepts the credentials: the machine as it describes it. A refusal
    /// says that the BMC refused the credentials.
    async fn verify(&self, bmc: &BmcAccess) -> Result<NodeFacts, DriverError>;

    async fn power_state(&self, bmc: &BmcAccess) -> Result<NodePower, DriverError>;

    /// Asks for `action` and waits (at most `timeout`) until the BMC reports the power it
    /// leads to. Setting the power a machine already has succeeds.
    async fn set_power(
        &self,
        bmc: &BmcAccess,
        action: PowerAction,
        timeout: Duration,
    ) -> Result<NodePower, DriverError>;

    /// Returns the machine to a free, clean state: powered off, no virtual media, no boot
    /// override. `progress` gets each step's name as it starts.
    async fn clean(
        &self,
        bmc: &BmcAccess,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), DriverError>;
}
