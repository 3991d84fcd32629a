//! The messages the services exchange over the bus, and the queues they travel on.
//!
//! The broker is a wake-up signal, not the source of truth: a message names a task row and the
//! state it expects, and every handler checks the database before it acts, so a lost message is
//! re-driven by the reconciler and a duplicated one is a no-op.

use crate::ids::{InstanceUuid, TaskId};
use crate::model::{Address, Flavor, NetworkRequest, NodeInventory, NodeType, PowerState};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the message schema. A receiver rejects (and dead-letters by logging) messages of
/// a version it does not know instead of guessing at their meaning.
pub const RPC_VERSION: u16 = 1;

/// Every message on the bus: a version, the request id that started it (for the logs), a body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub version: u16,
    pub request_id: Option<String>,
    pub body: T,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message version {0} is not supported (this build speaks {RPC_VERSION})")]
    Version(u16),
}

impl<T: Serialize + DeserializeOwned> Envelope<T> {
    pub fn new(request_id: Option<String>, body: T) -> Self {
        Self {
            version: RPC_VERSION,
            request_id,
            body,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data types to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u16,
        }
        let v: VersionOnly = serde_json::from_slice(bytes)?;
        if v.version != RPC_VERSION {
            return Err(DecodeError::Version(v.version));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// What a task asks for. Stored in the task row; the conductor carries it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Build,
    Delete,
    Stop,
    Start,
    Reboot {
        hard: bool,
    },
    Pause,
    Unpause,
    Suspend,
    Resume,
    /// The server built again from its (new) image on its host; `stopped`: it was SHUTOFF,
    /// and is again after (as Nova brings it back to its state).
    Rebuild {
        stopped: bool,
    },
    /// The server given its migration's new flavor on its host (Nova's `resize`); it waits in
    /// VERIFY_RESIZE for a confirm or a revert. The flavors are the migration row's.
    Resize,
    /// The old flavor's resources let go of (Nova's `confirmResize`).
    ConfirmResize,
    /// The server given its old flavor back (Nova's `revertResize`).
    RevertResize,
    /// A delete deferred (Nova's soft delete, with `reclaim_instance_interval`): the guest
    /// powered off and the server SOFT_DELETED until `reclaim_at` (ms), when the conductor
    /// deletes it, unless it is restored first.
    SoftDelete {
        reclaim_at: i64,
    },
    /// A SOFT_DELETED server powered on again (Nova's `restore`).
    Restore,
    /// The server's disk (a VM's, flattened) or filesystem (a container's) uploaded as the data
    /// of the queued image `image` (Nova's `createImage`); the server stays as it is.
    Snapshot {
        image: uuid::Uuid,
        /// A backup's rotation (Nova's `createBackup`): how many of the server's backups of
        /// its type to keep, the new one included; `None` for a snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<u32>,
    },
    /// The server snapshotted into the queued image `image` and let go of its host (Nova's
    /// `shelve` with `shelved_offload_time` 0, its default): SHELVED_OFFLOADED, no claim.
    Shelve {
        image: uuid::Uuid,
    },
    /// A SHELVED_OFFLOADED server placed again and spawned from its shelved image (Nova's
    /// `unshelve`).
    Unshelve,
    /// The guest shut down and booted from a rescue image (`image`; `None`: the server's
    /// own), its own disk attached beside it (Nova's `rescue`): RESCUED.
    Rescue {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<uuid::Uuid>,
    },
    /// A RESCUED server booted from its own disk again (Nova's `unrescue`): ACTIVE.
    Unrescue,
}

impl TaskKind {
    /// Nova's instance-action name for this task (`os-instance-actions`).
    pub fn action_name(&self) -> &'static str {
        match self {
            Self::Build => "create",
            Self::Delete => "delete",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Reboot { .. } => "reboot",
            Self::Pause => "pause",
            Self::Unpause => "unpause",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Rebuild { .. } => "rebuild",
            Self::Resize => "resize",
            Self::ConfirmResize => "confirmResize",
            Self::RevertResize => "revertResize",
            // As Nova records them: a soft delete is a delete; a restore its own.
            Self::SoftDelete { .. } => "delete",
            Self::Restore => "restore",
            Self::Snapshot { backup: None, .. } => "createImage",
            Self::Snapshot {
                backup: Some(_), ..
            } => "createBackup",
            Self::Shelve { .. } => "shelve",
            Self::Unshelve => "unshelve",
            Self::Rescue { .. } => "rescue",
            Self::Unrescue => "unrescue",
        }
    }

    /// The command of a task that the server's host carries out with nothing but the server
    /// to go on (a power, pause or suspend action), none for the others. The API sends these
    /// to the host itself, as Nova's API casts them to nova-compute without its conductor:
    /// there is nothing to place, read or make first.
    pub fn host_command(&self, task_id: TaskId, instance: InstanceUuid) -> Option<ComputeCommand> {
        Some(match *self {
            Self::Stop => ComputeCommand::PowerOff { task_id, instance },
            Self::Start => ComputeCommand::PowerOn { task_id, instance },
            Self::Reboot { hard } => ComputeCommand::Reboot {
                task_id,
                instance,
                hard,
            },
            Self::Pause => ComputeCommand::Pause { task_id, instance },
            Self::Unpause => ComputeCommand::Unpause { task_id, instance },
            Self::Suspend => ComputeCommand::Suspend { task_id, instance },
            Self::Resume => ComputeCommand::Resume { task_id, instance },
            _ => return None,
        })
    }

    /// Whether [`Self::host_command`] has a command for this kind.
    pub fn goes_to_the_host(&self) -> bool {
        let nil = uuid::Uuid::nil();
        self.host_command(TaskId(nil), InstanceUuid(nil)).is_some()
    }

    /// Why servers of `node_type` cannot have this done, when they cannot: what their driver
    /// lacks (Nova's drivers raise NotImplementedError for it; the API answers 501, Nova's
    /// "The requested functionality is not supported", before anything changes).
    pub fn unsupported_on(&self, node_type: NodeType) -> Option<&'static str> {
        match (node_type, self) {
            // As Nova's Ironic driver, which implements neither.
            (NodeType::Baremetal, Self::Pause | Self::Unpause) => {
                Some("a bare-metal machine cannot be paused")
            }
            (NodeType::Baremetal, Self::Suspend | Self::Resume) => {
                Some("a bare-metal machine cannot be suspended")
            }
            // The engine can freeze a container (pause) but not save its memory and let go
            // of it: its checkpoints need CRIU, experimental and not on the hosts.
            (NodeType::Container, Self::Suspend | Self::Resume) => {
                Some("a container cannot be suspended (the engine cannot save its memory)")
            }
            // As Nova's Ironic driver, which cannot migrate a machine's disk: a machine is
            // what it is.
            (NodeType::Baremetal, Self::Resize | Self::ConfirmResize | Self::RevertResize) => {
                Some("a bare-metal machine cannot be resized")
            }
            // As Nova's Ironic driver, which has no snapshot: the machine's disk is not the
            // host's to read.
            (NodeType::Baremetal, Self::Snapshot { .. }) => {
                Some("a bare-metal machine cannot be snapshotted")
            }
            (NodeType::Baremetal, Self::Shelve { .. } | Self::Unshelve) => {
                Some("a bare-metal machine cannot be shelved (its disk cannot be snapshotted)")
            }
            // A container's filesystem is no disk to attach to another container.
            (NodeType::Container, Self::Rescue { .. } | Self::Unrescue) => {
                Some("a container cannot be rescued")
            }
            _ => None,
        }
    }
}

/// A bare-metal server's own image, which its unrescue deploys again through the machine's
/// BMC (the rescue replaced the machine's virtual media with the rescue image's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnImage {
    pub image_id: String,
    /// The machine (its node's uuid) and its BMC, for an agent that has not learnt its
    /// machines yet.
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcInfo>,
}

/// API → conductor: a task row is waiting to be carried out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskSubmitted {
    pub task_id: TaskId,
    pub instance: InstanceUuid,
}

/// What a compute agent needs to build a server; it has no database to look things up in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub uuid: InstanceUuid,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    /// The node on the agent's host that the claim was made against.
    pub node: String,
    pub flavor: Flavor,
    pub image_ref: String,
    /// The image's record, for the agent to fetch and verify its data; `None` for a server
    /// that boots from no image. Absent in messages from builds before images were delivered.
    #[serde(default)]
    pub image: Option<ImageSpec>,
    pub metadata: BTreeMap<String, String>,
    pub user_data: Option<String>,
    /// The key pair named at create and its public key, for the guest's `public_keys`.
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub key_data: Option<String>,
    /// The guest's hostname; absent in messages from before it was kept (then made from the
    /// name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// What the create asked of networks; absent in messages from before it was kept (then
    /// whatever the host gives, as it was).
    #[serde(default)]
    pub networks: NetworkRequest,
    /// Whether the create asked for a config drive (a driver that can writes one then, or
    /// always when its host is configured to).
    #[serde(default)]
    pub config_drive: bool,
    /// The kernel and ramdisk a VM boots directly, and its kernel command line: the image's
    /// `kernel_id`, `ramdisk_id` and `os_command_line` properties, as Nova's libvirt driver
    /// reads them. Absent for other images and in messages from before they were passed.
    #[serde(default)]
    pub kernel: Option<ImageSpec>,
    #[serde(default)]
    pub ramdisk: Option<ImageSpec>,
    #[serde(default)]
    pub os_command_line: Option<String>,
    /// The BMC of the bare-metal machine (`node`) the server deploys onto; absent for other
    /// node types.
    #[serde(default)]
    pub bmc: Option<BmcInfo>,
    /// The server's ports on its chosen networks, in the order chosen: the MAC and addresses
    /// the networking service gave each NIC, for the driver to set. A chosen network without
    /// subnets has a port without addresses (the host's network gives one, as before ports
    /// existed). Absent in messages from before ports.
    #[serde(default)]
    pub nics: Vec<Nic>,
}

/// A server's NIC on one network: its port, MAC and addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub network_id: String,
    pub port_id: String,
    pub mac: String,
    pub ips: Vec<NicIp>,
    /// The port's packet filter, in place before the NIC carries traffic. Absent in messages
    /// from before security groups were enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<crate::firewall::PortFirewall>,
}

/// One address of a NIC, with what its subnet says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicIp {
    pub address: String,
    /// The subnet's CIDR (canonical) and gateway.
    pub cidr: String,
    pub gateway: Option<String>,
    pub version: u8,
}

impl NicIp {
    pub fn prefix_len(&self) -> u8 {
        self.cidr
            .rsplit_once('/')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(if self.version == 4 { 32 } else { 128 })
    }
}

impl InstanceSpec {
    /// The port of each chosen network, in the choice's order (the guest's NICs), where it
    /// has one: a port the choice names is its own; otherwise each choice of a network takes
    /// the next of the server's ports there, so that two NICs on one network are two ports
    /// (as Nova's VIFs, one per port).
    pub fn nics_by_choice(&self) -> Vec<Option<&Nic>> {
        let NetworkRequest::Chosen(chosen) = &self.networks else {
            return Vec::new();
        };
        let mut used = vec![false; self.nics.len()];
        let mut picked: Vec<Option<usize>> = chosen
            .iter()
            .map(|c| {
                let port = c.port.as_deref()?;
                let k = self.nics.iter().position(|n| n.port_id == port)?;
                used[k] = true;
                Some(k)
            })
            .collect();
        for (c, pick) in chosen.iter().zip(picked.iter_mut()) {
            if pick.is_some() || c.port.is_some() {
                continue;
            }
            *pick = (0..self.nics.len()).find(|&k| !used[k] && self.nics[k].network_id == c.id);
            if let Some(k) = *pick {
                used[k] = true;
            }
        }
        picked
            .into_iter()
            .map(|k| k.map(|k| &self.nics[k]))
            .collect()
    }
}

/// An image as a compute host needs it: where to fetch it and how to check what it fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub id: String,
    pub container_format: Option<String>,
    pub disk_format: Option<String>,
    pub size: u64,
    /// Glance's `os_hash_algo` (always `sha512` here) and `os_hash_value`, hex.
    pub hash_algo: String,
    pub hash_value: String,
}

/// Conductor → agent on `compute.<host>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ComputeCommand {
    Spawn {
        task_id: TaskId,
        spec: Box<InstanceSpec>,
    },
    /// `task_id` is absent when the conductor cleans up on its own (a build that timed out).
    Destroy {
        task_id: Option<TaskId>,
        instance: InstanceUuid,
    },
    PowerOff {
        task_id: TaskId,
        instance: InstanceUuid,
    },
    PowerOn {
        task_id: TaskId,
        instance: InstanceUuid,
    },
    Reboot {
        task_id: TaskId,
        instance: InstanceUuid,
        hard: bool,
    },
    /// The guest frozen where it runs (its memory kept on the host), and thawed.
    Pause {
        task_id: TaskId,
        instance: InstanceUuid,
    },
    Unpause {
        task_id: TaskId,
        instance: InstanceUuid,
    },
    /// The guest's memory saved to the host's disk and its processes gone, and restored.
    Suspend {
        task_id: TaskId,
        instance: InstanceUuid,
    },
    Resume {
        task_id: TaskId,
        instance: InstanceUuid,
    },
    /// The instance destroyed and spawned again from `spec` (its image may be a new one), with
    /// the same ports; powered off after when `stopped`.
    Rebuild {
        task_id: TaskId,
        spec: Box<InstanceSpec>,
        stopped: bool,
    },
    /// The instance given `flavor`'s vCPUs, memory and disk on its host (Nova's
    /// `migrate_disk_and_power_off` and `finish_migration` on one host), what it had kept so
    /// that a revert can restore it; running again after when it was running.
    Resize {
        task_id: TaskId,
        instance: InstanceUuid,
        flavor: Box<Flavor>,
    },
    /// The instance's disk or filesystem written to a file and uploaded as the data of the
    /// queued image `image_id` (Nova's `snapshot`).
    Snapshot {
        task_id: TaskId,
        instance: InstanceUuid,
        image_id: String,
        /// Images to delete once the upload is done: a backup's older ones beyond its
        /// rotation (and its own with a rotation of 0), as Nova's compute rotates them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rotate_out: Vec<String>,
    },
    /// The instance snapshotted into the queued image `image_id` (as [`Self::Snapshot`]), then
    /// destroyed on the host (Nova's `shelve` and `shelve_offload`).
    Shelve {
        task_id: TaskId,
        instance: InstanceUuid,
        image_id: String,
    },
    /// The instance spawned from `spec`, whose image is the shelved one (Nova's `unshelve`).
    Unshelve {
        task_id: TaskId,
        spec: Box<InstanceSpec>,
        shelved_image: String,
    },
    /// The guest shut down and booted from `spec`'s image, the rescue image (its kernel and
    /// ramdisk when it names them), with its own disk attached as the second (Nova's
    /// `rescue`), or, for a stable device rescue, its own devices kept and the rescue disk
    /// added after them as `stable` says; idempotent.
    Rescue {
        task_id: TaskId,
        spec: Box<InstanceSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stable: Option<StableRescue>,
    },
    /// The rescue guest gone and the instance booted from its own disk again (Nova's
    /// `unrescue`); idempotent.
    Unrescue {
        task_id: TaskId,
        instance: InstanceUuid,
        /// What a machine boots again (a bare-metal server's); none for the other types,
        /// whose hosts keep what they need.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        own: Option<OwnImage>,
    },
    /// Conductor → agent: delete an image through the image service, with the agent's
    /// credential (a shelved image once its server was unshelved: only the image service
    /// deletes an image's data). No task and no answer; one lost leaves the image.
    DeleteImage { image_id: String },
    /// What the resize kept for a revert is let go of (Nova's `confirm_migration`).
    ConfirmResize {
        task_id: TaskId,
        instance: InstanceUuid,
    },
    /// The instance given its old `flavor` back, with what the resize kept (its disk as it
    /// was; Nova's `finish_revert_migration`); running after unless `stopped`.
    RevertResize {
        task_id: TaskId,
        instance: InstanceUuid,
        flavor: Box<Flavor>,
        stopped: bool,
    },
    /// API → agent, a call ([`crate::bus::Bus::call`]): the instance's console log, the last
    /// `length` lines when given. No task; the answer is a [`CallReply`].
    ConsoleOutput {
        instance: InstanceUuid,
        length: Option<usize>,
    },
    /// API → agent, a call: how long the host has been up, as `uptime` prints it (Nova's
    /// `get_host_uptime`). The answer is a [`CallReply::Uptime`].
    HostUptime,
    /// API → agent, a call: the instance's diagnostics (Nova's `get_instance_diagnostics`).
    /// The answer is a [`CallReply::Diagnostics`].
    Diagnostics { instance: InstanceUuid },
    /// API → agent, a call: plug a NIC on `backend` (the network as the host knows it) with
    /// the port's MAC and addresses (Nova's `attach_interface`). The answer is a
    /// [`CallReply::Done`].
    AttachInterface {
        instance: InstanceUuid,
        backend: String,
        nic: Nic,
    },
    /// API → agent, a call: unplug the NIC of that port (Nova's `detach_interface`).
    DetachInterface {
        instance: InstanceUuid,
        backend: String,
        nic: Nic,
    },
    /// API → bare-metal agent: run an operation on an enrolled machine that carries no
    /// instance. The node row names the operation; the agent reports
    /// [`AgentEvent::NodeStep`]s and one [`AgentEvent::NodeOperationEnded`], and the
    /// conductor's reconciler ends an operation that outlives its deadline.
    NodeOperation(Box<NodeCommand>),
    /// Conductor → bare-metal agent: the machines it runs, with their BMCs, whose power it is
    /// to read and report ([`AgentEvent::NodePowerObserved`]), as Ironic's power-state sync.
    SyncNodes {
        nodes: Vec<NodeBmc>,
        /// When the conductor sent it (ms): its answers are not newer than this.
        #[serde(default)]
        sent_at: i64,
    },
    /// Conductor → agent: the packet filters of every port bound to the host (the whole of
    /// them: a port not listed is not filtered any more). The newest `sent_at` wins.
    SyncFirewall {
        ports: Vec<crate::firewall::PortFirewall>,
        sent_at: i64,
    },
}

/// One machine and its BMC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBmc {
    pub node: String,
    pub bmc: BmcInfo,
    /// The instance deployed on it, if any.
    #[serde(default)]
    pub instance: Option<String>,
    /// Whether its power is to be read now (not for a node in maintenance, nor in `enroll`).
    #[serde(default = "yes")]
    pub read_power: bool,
}

fn yes() -> bool {
    true
}

/// A bare-metal node's BMC as the bus carries it: the password sealed with the key repository's
/// `baremetal.key` for the node's uuid (`nova_core::secret`), so that neither the broker's
/// store nor a log of messages holds it in clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmcInfo {
    pub address: String,
    pub system_id: String,
    pub username: String,
    pub password: crate::secret::Sealed,
    /// Ironic's `redfish_verify_ca`: `true`, `false` or a CA bundle's path.
    pub verify_ca: VerifyCa,
}

/// Ironic's `redfish_verify_ca`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VerifyCa {
    Flag(bool),
    Bundle(String),
}

/// What an operation on a free node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOperationKind {
    /// `manage`: the BMC answers and accepts the credentials.
    Verify,
    /// `provide`, or the end of an instance: the machine back to a clean free state.
    Clean,
    /// A power request (Ironic's `states/power` targets).
    PowerOn,
    PowerOff,
    SoftPowerOff,
    Reboot,
    SoftReboot,
}

impl NodeOperationKind {
    /// The name the node row keeps (`operation_kind`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Clean => "clean",
            Self::PowerOn => "power_on",
            Self::PowerOff => "power_off",
            Self::SoftPowerOff => "soft_power_off",
            Self::Reboot => "reboot",
            Self::SoftReboot => "soft_reboot",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCommand {
    pub node: String,
    /// The operation's id, as the node row holds it.
    pub operation: String,
    pub kind: NodeOperationKind,
    pub bmc: BmcInfo,
    /// How long the operation may take on the agent (the row's deadline is a little later).
    pub timeout_s: u64,
    /// The row's deadline (ms since the epoch): past it the operation has been failed, and an
    /// agent that receives the command only then (it was down, or busy) drops it.
    #[serde(default)]
    pub deadline_ms: Option<i64>,
}

/// How a node operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum NodeOutcome {
    /// It did what it asked; the machine's power as the BMC reports it (Ironic's words),
    /// and what the BMC told of the machine (a verify).
    Done {
        power_state: Option<String>,
        #[serde(default)]
        facts: Option<NodeFactsReport>,
    },
    Failed {
        message: String,
    },
}

/// What a BMC told of its machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFactsReport {
    pub cpus: Option<u32>,
    pub memory_mb: Option<u64>,
    pub cpu_arch: Option<String>,
}

/// An agent's answer to a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum CallReply {
    ConsoleOutput {
        output: String,
    },
    Uptime {
        uptime: String,
    },
    Diagnostics {
        diagnostics: crate::model::Diagnostics,
    },
    /// The change asked for is made.
    Done,
    /// The driver has no such instance on this host.
    NotFound,
    /// The driver cannot do it for this instance (Nova's NotImplementedError).
    NotSupported {
        message: String,
    },
    Failed {
        message: String,
    },
}

impl ComputeCommand {
    /// The task this command carries out (none for the conductor's own clean-ups).
    pub fn task_id(&self) -> Option<TaskId> {
        match self {
            Self::Spawn { task_id, .. }
            | Self::PowerOff { task_id, .. }
            | Self::PowerOn { task_id, .. }
            | Self::Reboot { task_id, .. }
            | Self::Pause { task_id, .. }
            | Self::Unpause { task_id, .. }
            | Self::Suspend { task_id, .. }
            | Self::Resume { task_id, .. }
            | Self::Rebuild { task_id, .. }
            | Self::Resize { task_id, .. }
            | Self::Snapshot { task_id, .. }
            | Self::Shelve { task_id, .. }
            | Self::Unshelve { task_id, .. }
            | Self::ConfirmResize { task_id, .. }
            | Self::RevertResize { task_id, .. }
            | Self::Rescue { task_id, .. }
            | Self::Unrescue { task_id, .. } => Some(*task_id),
            Self::Destroy { task_id, .. } => *task_id,
            Self::ConsoleOutput { .. }
            | Self::HostUptime
            | Self::Diagnostics { .. }
            | Self::AttachInterface { .. }
            | Self::DetachInterface { .. }
            | Self::NodeOperation(_)
            | Self::SyncNodes { .. }
            | Self::SyncFirewall { .. }
            | Self::DeleteImage { .. } => None,
        }
    }

    /// Whether running the command a second time changes nothing: it sets a state (built,
    /// gone, off, on, paused, suspended) that the driver's calls reach idempotently, as the
    /// `Compute` contract requires. A reboot is not: a second one reboots the guest again.
    pub fn repeats_harmlessly(&self) -> bool {
        match self {
            Self::Spawn { .. }
            | Self::Destroy { .. }
            | Self::PowerOff { .. }
            | Self::PowerOn { .. }
            | Self::Pause { .. }
            | Self::Unpause { .. }
            | Self::Suspend { .. }
            | Self::Resume { .. } => true,
            // The drivers set the flavor's sizes and keep (or restore, or drop) the old disk
            // once: a second run finds it done.
            Self::Resize { .. } | Self::ConfirmResize { .. } | Self::RevertResize { .. } => true,
            // A second rebuild would build the guest again, losing what it wrote since; a
            // second snapshot would find its image uploaded already.
            Self::Reboot { .. } | Self::Rebuild { .. } | Self::Snapshot { .. } => false,
            // A second shelve would find its image uploaded and the guest gone. An unshelve's
            // spawn is idempotent, but its result is answered from the journal: a re-sent
            // unshelve needs no image then.
            Self::Shelve { .. } | Self::Unshelve { .. } => false,
            // The drivers keep the guest's own definition once, and find it kept (or given
            // back) on a second run.
            Self::Rescue { .. } | Self::Unrescue { .. } => true,
            Self::DeleteImage { .. } => true,
            // Questions: nothing changes at all.
            Self::ConsoleOutput { .. } | Self::HostUptime | Self::Diagnostics { .. } => true,
            // The drivers plug and unplug idempotently (a NIC that is there is not added).
            Self::AttachInterface { .. } | Self::DetachInterface { .. } => true,
            // Not a task: the node row's operation id, not the finished-task journal, keeps
            // a result from counting twice.
            Self::NodeOperation(_) => false,
            Self::SyncNodes { .. } | Self::SyncFirewall { .. } => true,
        }
    }

    /// The instance the command is about (none for questions about the host).
    pub fn instance(&self) -> Option<InstanceUuid> {
        match self {
            Self::Spawn { spec, .. }
            | Self::Rebuild { spec, .. }
            | Self::Unshelve { spec, .. }
            | Self::Rescue { spec, .. } => Some(spec.uuid),
            Self::Destroy { instance, .. }
            | Self::PowerOff { instance, .. }
            | Self::PowerOn { instance, .. }
            | Self::Reboot { instance, .. }
            | Self::Pause { instance, .. }
            | Self::Unpause { instance, .. }
            | Self::Suspend { instance, .. }
            | Self::Resume { instance, .. }
            | Self::Resize { instance, .. }
            | Self::Snapshot { instance, .. }
            | Self::Shelve { instance, .. }
            | Self::ConfirmResize { instance, .. }
            | Self::RevertResize { instance, .. }
            | Self::Unrescue { instance, .. }
            | Self::ConsoleOutput { instance, .. }
            | Self::AttachInterface { instance, .. }
            | Self::DetachInterface { instance, .. }
            | Self::Diagnostics { instance } => Some(*instance),
            Self::HostUptime
            | Self::NodeOperation(_)
            | Self::SyncNodes { .. }
            | Self::SyncFirewall { .. }
            | Self::DeleteImage { .. } => None,
        }
    }
}

/// How a driver call ended, as the agent reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The step finished; the instance is now in `power_state`, reachable at `addresses` (a
    /// build's; absent from agents of earlier builds).
    Done {
        power_state: PowerState,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        addresses: Vec<Address>,
    },
    /// The instance no longer exists on the host.
    Destroyed,
    /// The driver call failed; `message` is meant for the user (it becomes the fault).
    Failed {
        message: String,
        details: Option<String>,
    },
}

/// Agent → conductor on the events queue. Agents report; the conductor writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// Sent at start and whenever the inventory changes: the service and its nodes.
    Register {
        host: String,
        binary: String,
        nodes: Vec<NodeInventory>,
        /// The host's address (Nova's `my_ip`); absent from agents of earlier builds.
        #[serde(default)]
        host_ip: Option<String>,
        /// The enrolment drivers whose machines this agent runs (`redfish` for a bare-metal
        /// agent); absent from agents of earlier builds and from the others.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        node_drivers: Vec<String>,
    },
    Heartbeat {
        host: String,
        /// The tasks whose commands run on the host now: the conductor does not send them
        /// again while they do (a long driver call is not a lost one).
        #[serde(default)]
        running: Vec<TaskId>,
    },
    /// A command from the conductor finished.
    TaskResult {
        host: String,
        task_id: Option<TaskId>,
        instance: InstanceUuid,
        outcome: Outcome,
    },
    /// The power-state sync loop saw something the service did not do (`None`: gone).
    PowerObserved {
        host: String,
        instance: InstanceUuid,
        power_state: Option<PowerState>,
    },
    /// The sync loop saw the instance's addresses change (a DHCP lease that came after the
    /// build). Each is keyed by the host's network (`ChosenNetwork::backend`); the conductor
    /// names them as the server's networks are named.
    AddressesObserved {
        host: String,
        instance: InstanceUuid,
        addresses: Vec<Address>,
    },
    /// A node operation reached a step.
    NodeStep(NodeStepReport),
    /// A node operation ended.
    NodeOperationEnded(NodeEndReport),
    /// A machine's power as its BMC told it in a sync, or why the BMC did not.
    NodePowerObserved(NodePowerReport),
}

/// What a power sync saw of one machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodePowerReport {
    pub host: String,
    pub node: String,
    /// Ironic's words (`power on`, `power off`), or the BMC's failure.
    pub power: Result<String, String>,
    /// The sync's `sent_at`.
    #[serde(default)]
    pub asked_at: i64,
}

/// The step a node operation has reached (its progress).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStepReport {
    pub host: String,
    pub node: String,
    pub operation: String,
    pub step: String,
}

/// A node operation ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeEndReport {
    pub host: String,
    pub node: String,
    pub operation: String,
    pub outcome: NodeOutcome,
}

/// The queue names. A prefix keeps deployments (and parallel tests) sharing a broker apart.
#[derive(Clone, Debug)]
pub struct Queues {
    prefix: String,
}

impl Queues {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// Tasks from the API, consumed by every conductor (competing consumers).
    pub fn conductor_tasks(&self) -> String {
        format!("{}conductor.tasks", self.prefix)
    }
    /// Events from agents, consumed by every conductor.
    pub fn conductor_events(&self) -> String {
        format!("{}conductor.events", self.prefix)
    }
    /// Commands for the agent on `host`.
    pub fn compute(&self, host: &str) -> String {
        format!("{}compute.{host}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_rejects_unknown_versions_and_garbage() {
        let e = Envelope::new(
            None,
            TaskSubmitted {
                task_id: TaskId::new_v4(),
                instance: InstanceUuid::new_v4(),
            },
        );
        let bytes = e.encode();
        assert!(Envelope::<TaskSubmitted>::decode(&bytes).is_ok());
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["version"] = 99.into();
        let err = Envelope::<TaskSubmitted>::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::Version(99)));
        assert!(Envelope::<TaskSubmitted>::decode(b"{").is_err());
    }
}

/// Nova's stable device rescue (`hw_rescue_device` / `hw_rescue_bus` on the rescue image): the
/// guest keeps its own devices in their places and the rescue disk is added after them, as
/// this device on this bus, and booted first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableRescue {
    pub device: RescueDevice,
    pub bus: RescueBus,
}

/// The rescue disk's device type (those of Nova's `BlockDeviceType` a QEMU guest takes here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RescueDevice {
    Disk,
    Cdrom,
}

/// The rescue disk's bus (those of Nova's `DiskBus` a QEMU guest takes here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RescueBus {
    Virtio,
    Scsi,
    Usb,
    Ide,
    Sata,
}

/// Nova's values for the two properties (`BlockDeviceType`, `DiskBus`): any other is not a
/// value Nova knows.
const NOVA_RESCUE_DEVICES: &[&str] = &["cdrom", "disk", "floppy", "fs", "lun"];
const NOVA_DISK_BUSES: &[&str] = &[
    "fdc", "ide", "sata", "scsi", "usb", "virtio", "xen", "lxc", "uml",
];

impl StableRescue {
    /// The stable device rescue an image's properties ask for: none without either property
    /// (Nova's `check_hw_rescue_props`); a missing one takes its default as Nova's libvirt
    /// driver does (a disk; the image's `hw_disk_bus` or `hw_cdrom_bus` for the device, else
    /// virtio for a disk, IDE for a CD-ROM on the `pc` machine). The error says why the
    /// properties cannot be honoured.
    pub fn of_properties(
        properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Self>, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match properties.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(v)) => Ok(Some(v.to_ascii_lowercase())),
                Some(other) => Err(format!("{key} {other} is not a string")),
            }
        };
        let (device, mut bus) = (text("hw_rescue_device")?, text("hw_rescue_bus")?);
        if device.is_none() && bus.is_none() {
            return Ok(None);
        }
        if bus.is_none() {
            bus = match device.as_deref() {
                Some("cdrom") => text("hw_cdrom_bus")?,
                _ => text("hw_disk_bus")?,
            };
        }
        let device = match device.as_deref() {
            None | Some("disk") => RescueDevice::Disk,
            Some("cdrom") => RescueDevice::Cdrom,
            Some(other) if NOVA_RESCUE_DEVICES.contains(&other) => {
                return Err(format!(
                    "the rescue device type '{other}' is not supported (disk or cdrom)"
                ))
            }
            Some(other) => {
                return Err(format!(
                    "hw_rescue_device '{other}' is not one of {NOVA_RESCUE_DEVICES:?}"
                ))
            }
        };
        let bus = match (bus.as_deref(), device) {
            (None, RescueDevice::Disk) | (Some("virtio"), _) => RescueBus::Virtio,
            (None, RescueDevice::Cdrom) | (Some("ide"), _) => RescueBus::Ide,
            (Some("scsi"), _) => RescueBus::Scsi,
            (Some("usb"), _) => RescueBus::Usb,
            (Some("sata"), _) => RescueBus::Sata,
            (Some(other), _) if NOVA_DISK_BUSES.contains(&other) => {
                return Err(format!(
                    "the rescue bus '{other}' is not supported (virtio, scsi, usb, ide or sata)"
                ))
            }
            (Some(other), _) => {
                return Err(format!(
                    "hw_rescue_bus '{other}' is not one of {NOVA_DISK_BUSES:?}"
                ))
            }
        };
        if device == RescueDevice::Cdrom && bus == RescueBus::Virtio {
            return Err("a CD-ROM cannot be on the virtio bus".into());
        }
        Ok(Some(Self { device, bus }))
    }
}

#[cfg(test)]
mod stable_rescue_tests {
    use super::*;
    use serde_json::json;

    fn of(v: serde_json::Value) -> Result<Option<StableRescue>, String> {
        StableRescue::of_properties(v.as_object().expect("an object"))
    }

    #[test]
    fn the_properties_ask_for_a_device_on_a_bus_with_novas_defaults() {
        assert_eq!(of(json!({"os_distro": "x"})), Ok(None));
        let disk = |bus| {
            Ok(Some(StableRescue {
                device: RescueDevice::Disk,
                bus,
            }))
        };
        assert_eq!(
            of(json!({"hw_rescue_bus": "virtio"})),
            disk(RescueBus::Virtio)
        );
        assert_eq!(
            of(json!({"hw_rescue_device": "disk"})),
            disk(RescueBus::Virtio)
        );
        assert_eq!(of(json!({"hw_rescue_bus": "SCSI"})), disk(RescueBus::Scsi));
        assert_eq!(of(json!({"hw_rescue_bus": "usb"})), disk(RescueBus::Usb));
        // Without a rescue bus, the image's bus for the device.
        assert_eq!(
            of(json!({"hw_rescue_device": "disk", "hw_disk_bus": "sata", "hw_cdrom_bus": "scsi"})),
            disk(RescueBus::Sata)
        );
        assert_eq!(
            of(
                json!({"hw_rescue_device": "cdrom", "hw_disk_bus": "virtio", "hw_cdrom_bus": "scsi"})
            ),
            Ok(Some(StableRescue {
                device: RescueDevice::Cdrom,
                bus: RescueBus::Scsi
            }))
        );
        assert_eq!(
            of(json!({"hw_rescue_bus": "usb", "hw_disk_bus": "scsi"})),
            disk(RescueBus::Usb)
        );
        assert_eq!(
            of(json!({"hw_disk_bus": "scsi"})),
            Ok(None),
            "no rescue asked"
        );
        assert_eq!(
            of(json!({"hw_rescue_device": "cdrom"})),
            Ok(Some(StableRescue {
                device: RescueDevice::Cdrom,
                bus: RescueBus::Ide
            }))
        );
        for refused in [
            json!({"hw_rescue_bus": "xen"}),
            json!({"hw_rescue_bus": "bogus"}),
            json!({"hw_rescue_device": "floppy"}),
            json!({"hw_rescue_device": "cdrom", "hw_rescue_bus": "virtio"}),
            json!({"hw_rescue_bus": 3}),
        ] {
            assert!(of(refused.clone()).is_err(), "{refused}");
        }
    }
}
