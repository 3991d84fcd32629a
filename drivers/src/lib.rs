//! The [`Compute`] trait: what a compute agent asks of a hypervisor, a container engine or a
//! bare-metal pool, and its implementations. Which one a host runs is chosen at run time and
//! held as `Arc<dyn Compute>`.
//!
//! # Contract
//!
//! - Every call is keyed by the instance uuid; a driver finds its instance by that uuid alone
//!   (a domain name, a container label, a node's assigned instance), so that an agent that
//!   restarted can find what it had built.
//! - [`Compute::spawn`] and [`Compute::destroy`] are idempotent: spawning an instance that
//!   exists returns it as it is (one instance, never two), and destroying an instance that does
//!   not exist succeeds.
//! - Power calls leave the instance in the state they name whatever it was in before
//!   (powering off a stopped instance succeeds).
//! - Calls may take long (a bare-metal boot takes minutes); the agent, not the driver, bounds
//!   them with timeouts, and the conductor's build timeout bounds a build as a whole.
//! - Errors carry a message meant for the user: it becomes the server's fault.

pub mod baremetal;
pub mod docker;
pub mod docker_firewall;
mod docker_nics;
pub mod fake;
pub mod libvirt;
pub mod libvirt_firewall;
mod libvirt_nics;
pub mod nodes;
pub mod redfish;

use async_trait::async_trait;
use nova_core::ids::InstanceUuid;
use nova_core::model::{Address, Diagnostics, NodeInventory, PowerState};
use nova_core::rpc::{InstanceSpec, Nic};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The instance is not on this host.
    #[error("instance {0} not found on this host")]
    NotFound(InstanceUuid),
    /// The request cannot work on this driver (an image of the wrong type, say).
    #[error("{0}")]
    Invalid(String),
    /// The hypervisor, engine or BMC failed.
    #[error("{0}")]
    Backend(String),
}

impl DriverError {
    /// What the server's project may be told of the failure (the fault's message, an event's
    /// details). A backend's own words (a hypervisor's, an engine's, a BMC's: paths, addresses,
    /// internal states) are not for it: they go in the fault's details and the event's traceback,
    /// which only admins see, as Nova shows them.
    pub fn public_message(&self) -> String {
        match self {
            DriverError::NotFound(uuid) => {
                format!("Instance {uuid} could not be found on its host.")
            }
            DriverError::Invalid(message) => message.clone(),
            DriverError::Backend(_) => {
                "The compute host could not carry out the request (a driver error).".into()
            }
        }
    }

    /// The failure in full, when it says more than [`Self::public_message`].
    pub fn internal_details(&self) -> Option<String> {
        match self {
            DriverError::Backend(message) => Some(message.clone()),
            _ => None,
        }
    }
}

/// Soft asks the guest to restart; hard resets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootKind {
    Soft,
    Hard,
}

/// The image data a spawn boots from, each a file in the host's image cache: the server's
/// image, and the kernel and ramdisk it names when it boots them directly
/// ([`InstanceSpec::kernel`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootImages {
    pub disk: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub ramdisk: Option<PathBuf>,
}

impl BootImages {
    /// The server's image alone.
    pub fn disk(path: impl Into<PathBuf>) -> Self {
        Self {
            disk: Some(path.into()),
            ..Self::default()
        }
    }
}

/// An instance as the driver sees it on its host.
#[derive(Clone, Debug, PartialEq)]
pub struct DriverInstance {
    pub uuid: InstanceUuid,
    pub node: String,
    pub power_state: PowerState,
    /// Where the instance is reachable (from a spawn; a listing need not tell).
    pub addresses: Vec<Address>,
}

#[async_trait]
pub trait Compute: Send + Sync + 'static {
    /// The nodes this driver offers, with their type and capacity. A VM or container host has
    /// one; a bare-metal pool has one per machine.
    async fn inventory(&self) -> Result<Vec<NodeInventory>, DriverError>;

    /// Creates and starts the instance on `spec.node` from `images`, each image's data in the
    /// host's image cache (verified against its hash; shared with other instances, so never
    /// written to). Idempotent.
    async fn spawn(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
    ) -> Result<DriverInstance, DriverError>;

    /// Stops and removes the instance and everything it created on the host. Idempotent:
    /// a missing instance is not an error.
    async fn destroy(&self, uuid: InstanceUuid) -> Result<(), DriverError>;

    /// Builds the instance again from `spec` (its image may be new; its NICs, MACs and
    /// addresses are the same ports'), discarding its disk (Nova's `rebuild`): a destroy and a
    /// spawn. Drivers that can keep more of the instance override it.
    async fn rebuild(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
    ) -> Result<DriverInstance, DriverError> {
        self.destroy(spec.uuid).await?;
        self.spawn(spec, images).await
    }

    /// Shuts the instance down, gracefully within `timeout`, then forcibly.
    async fn power_off(&self, uuid: InstanceUuid, timeout: Duration) -> Result<(), DriverError>;

    async fn power_on(&self, uuid: InstanceUuid) -> Result<(), DriverError>;

    async fn reboot(&self, uuid: InstanceUuid, kind: RebootKind) -> Result<(), DriverError>;

    /// Freezes the running guest where it is, its memory kept on the host (Nova's `pause`);
    /// a paused guest stays paused. Drivers that cannot answer as Nova's do without it (the
    /// API refuses the action for their node type first: `TaskKind::unsupported_on`).
    async fn pause(&self, _uuid: InstanceUuid) -> Result<(), DriverError> {
        Err(not_supported("pause"))
    }

    /// Lets a paused guest run on; a running one is left as it is.
    async fn unpause(&self, _uuid: InstanceUuid) -> Result<(), DriverError> {
        Err(not_supported("unpause"))
    }

    /// Saves the guest's memory to the host's disk and stops it (Nova's `suspend`); a
    /// suspended guest stays suspended.
    async fn suspend(&self, _uuid: InstanceUuid) -> Result<(), DriverError> {
        Err(not_supported("suspend"))
    }

    /// Restores a suspended guest from what `suspend` saved; a running one is left as it is.
    async fn resume(&self, _uuid: InstanceUuid) -> Result<(), DriverError> {
        Err(not_supported("resume"))
    }

    /// Gives the instance `flavor`'s vCPUs, memory and root disk on its host (Nova's resize,
    /// on one host), keeping what [`Compute::revert_resize`] needs to give back the old ones;
    /// the instance runs after as it ran before. Idempotent: a second call with the same
    /// flavor changes nothing. A failure leaves the instance as it was (Nova's
    /// InstanceFaultRollback). Drivers that cannot answer as Nova's Ironic driver does (the
    /// API refuses it for their node type first).
    async fn resize(
        &self,
        _uuid: InstanceUuid,
        _flavor: &nova_core::model::Flavor,
    ) -> Result<(), DriverError> {
        Err(not_supported("resize"))
    }

    /// Lets go of what [`Compute::resize`] kept for a revert (Nova's `confirm_migration`).
    async fn confirm_resize(&self, _uuid: InstanceUuid) -> Result<(), DriverError> {
        Ok(())
    }

    /// Gives the instance its old `flavor` back, with what the resize kept (its disk as it
    /// was before the resize); it runs after as it ran before. Idempotent.
    async fn revert_resize(
        &self,
        _uuid: InstanceUuid,
        _flavor: &nova_core::model::Flavor,
    ) -> Result<(), DriverError> {
        Err(not_supported("revert resize"))
    }

    /// Writes the instance's disk (a VM's, flattened to qcow2) or filesystem (a container's, as
    /// a `docker save` archive) to the file `into`, consistent as of one moment (Nova's
    /// `snapshot`); the instance runs on as it ran. Drivers that cannot answer as Nova's
    /// Ironic driver does (the API refuses it for their node type first).
    async fn snapshot(
        &self,
        _uuid: InstanceUuid,
        _into: &std::path::Path,
    ) -> Result<(), DriverError> {
        Err(not_supported("snapshot"))
    }

    /// Shuts the guest down (cleanly within `timeout`) and boots it from `spec`'s image, the
    /// rescue image (`images`, in the host's cache), with its own disk attached as the second
    /// (Nova's `rescue`) — or, for a `stable` device rescue, with its own devices where they
    /// were and the rescue disk added after them as that device on that bus, booted first;
    /// what [`Compute::unrescue`] needs to put it back is kept. Idempotent: a rescued instance
    /// is left rescued (and running). A failure leaves the instance as it was. Drivers that
    /// cannot answer as Nova's do without it (the API refuses it for their node type first).
    async fn rescue(
        &self,
        _spec: &InstanceSpec,
        _images: &BootImages,
        _stable: Option<nova_core::rpc::StableRescue>,
        _timeout: Duration,
    ) -> Result<(), DriverError> {
        Err(not_supported("rescue"))
    }

    /// Whether the instance is (or may be) left rescued: booting a rescue image, or with
    /// what [`Compute::unrescue`] needs to put it back, as a rescue that could not be put back
    /// leaves it. An unrescue then makes it whole.
    async fn rescued(&self, _uuid: InstanceUuid) -> Result<bool, DriverError> {
        Ok(false)
    }

    /// The rescue guest gone and the instance booted from its own disk, running (Nova's
    /// `unrescue`). Idempotent: an instance that is not rescued is started. `own` is the
    /// instance's own image, for a driver that boots it again from there (a bare-metal
    /// machine, whose rescue replaced its virtual media); the others keep what they need.
    async fn unrescue(
        &self,
        _uuid: InstanceUuid,
        _own: Option<&nova_core::rpc::OwnImage>,
    ) -> Result<(), DriverError> {
        Err(not_supported("unrescue"))
    }

    /// The power state of one instance; `NotFound` when it is gone.
    async fn power_state(&self, uuid: InstanceUuid) -> Result<PowerState, DriverError>;

    /// Every instance this driver manages on the host (for the power-state sync and for
    /// re-adoption after an agent restart).
    async fn list_instances(&self) -> Result<Vec<DriverInstance>, DriverError>;

    /// The instance's console log: its last [`MAX_CONSOLE_BYTES`] at most, and of those the
    /// last `lines` lines when given (Nova's `length`).
    async fn console_output(
        &self,
        uuid: InstanceUuid,
        lines: Option<usize>,
    ) -> Result<String, DriverError>;

    /// What the driver can read about the running instance (Nova's
    /// `get_instance_diagnostics`). `Invalid` where the driver cannot tell (Nova's
    /// NotImplementedError).
    async fn diagnostics(&self, uuid: InstanceUuid) -> Result<Diagnostics, DriverError>;

    /// Plugs a NIC into the instance on `backend` (the network as the host knows it) with the
    /// port's MAC and addresses (Nova's `attach_interface`); a NIC on that network already
    /// there is left as it is. Drivers that cannot answer as Nova's do without it.
    async fn attach_interface(
        &self,
        _uuid: InstanceUuid,
        _backend: &str,
        _nic: &Nic,
    ) -> Result<(), DriverError> {
        Err(DriverError::Invalid(
            "Network driver does not support this function.".into(),
        ))
    }

    /// Unplugs the instance's NIC of that port; one that is gone already is fine.
    async fn detach_interface(
        &self,
        _uuid: InstanceUuid,
        _backend: &str,
        _nic: &Nic,
    ) -> Result<(), DriverError> {
        Err(DriverError::Invalid(
            "Network driver does not support this function.".into(),
        ))
    }

    /// The packet filters of the ports bound to this host, the whole of them (a port not
    /// listed is not filtered any more): its security groups, enforced by the hypervisor's
    /// or the host's packet filter. Drivers with nothing to filter (fake, bare metal, whose
    /// machines' switch ports are not the host's) have nothing to do.
    async fn sync_firewall(
        &self,
        _ports: &[nova_core::firewall::PortFirewall],
    ) -> Result<(), DriverError> {
        Ok(())
    }

    /// Instances whose state the hypervisor says changed (libvirt's lifecycle events), for the
    /// agent to read and report at once; the periodic sync stays the backstop. `None`: the
    /// driver has no such events.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<InstanceUuid>> {
        None
    }

    /// Whether the hypervisor answers now. The agent heartbeats only while it does, so that
    /// the host's service goes down (and the scheduler passes it by) when its hypervisor
    /// hangs or stops.
    async fn healthy(&self) -> Result<(), DriverError> {
        Ok(())
    }
}

/// A driver's answer to a call it has no way to carry out (Nova's NotImplementedError).
fn not_supported(action: &str) -> DriverError {
    DriverError::Invalid(format!(
        "Action {action} is not supported by this host's driver."
    ))
}

/// The most of a console log that is returned, its end (Nova's libvirt driver keeps the same
/// 100 KiB): a log is otherwise unbounded, and it travels in one message over the bus.
pub const MAX_CONSOLE_BYTES: usize = 100 * 1024;

/// The end of `bytes`, at most `max` long, starting on a character boundary if it is UTF-8.
pub fn last_bytes(bytes: &[u8], max: usize) -> &[u8] {
    let mut start = bytes.len().saturating_sub(max);
    // Skip UTF-8 continuation bytes (0b10xx_xxxx) so the cut does not split a character.
    while start < bytes.len() && start > 0 && bytes[start] & 0xC0 == 0x80 {
        start += 1;
    }
    &bytes[start..]
}

/// The last `lines` lines of `text` (all of it for `None`), as `os-getConsoleOutput` returns.
/// As Nova's `_tail_log`, the text is split at each newline, so the empty piece after a final
/// newline counts as a line: clients (Tempest) count lines the same way.
pub fn tail_lines(text: &str, lines: Option<usize>) -> String {
    match lines {
        None => text.to_owned(),
        Some(0) => String::new(),
        Some(n) => {
            let all: Vec<&str> = text.split('\n').collect();
            all[all.len().saturating_sub(n)..].join("\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_bytes_keeps_the_end_on_a_character_boundary() {
        assert_eq!(last_bytes(b"abcdef", 3), b"def");
        assert_eq!(last_bytes(b"ab", 3), b"ab");
        // "é" is two bytes; a cut inside it starts after it.
        let text = "aébc".as_bytes();
        assert_eq!(last_bytes(text, 4), "ébc".as_bytes());
        assert_eq!(last_bytes(text, 3), b"bc");
    }

    #[test]
    fn tail_lines_counts_from_the_end() {
        assert_eq!(tail_lines("a\nb\nc\n", Some(3)), "b\nc\n");
        assert_eq!(tail_lines("a\nb\nc\n", Some(2)), "c\n");
        assert_eq!(tail_lines("a\nb", Some(5)), "a\nb");
        assert_eq!(tail_lines("a\nb", Some(0)), "");
        assert_eq!(tail_lines("a\nb\nc", None), "a\nb\nc");
    }
}
