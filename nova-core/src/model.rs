//! Domain types: the states of a server as Nova names them, flavors, nodes, services, faults.

use crate::ids::{InstanceUuid, NodeUuid};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Declares a string-valued enum whose strings are the ones Nova stores and shows.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $s)] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// `vm_state`: what the server is, stable between tasks (nova/compute/vm_states.py).
    VmState {
        Building => "building",
        Active => "active",
        Stopped => "stopped",
        Paused => "paused",
        Suspended => "suspended",
        Rescued => "rescued",
        Resized => "resized",
        SoftDeleted => "soft-delete",
        Deleted => "deleted",
        Error => "error",
        Shelved => "shelved",
        ShelvedOffloaded => "shelved_offloaded",
    }
);

string_enum!(
    /// `task_state`: what is being done to the server right now (nova/compute/task_states.py).
    TaskState {
        Scheduling => "scheduling",
        BlockDeviceMapping => "block_device_mapping",
        Networking => "networking",
        Spawning => "spawning",
        PoweringOff => "powering-off",
        PoweringOn => "powering-on",
        Rebooting => "rebooting",
        RebootingHard => "rebooting_hard",
        Pausing => "pausing",
        Unpausing => "unpausing",
        Suspending => "suspending",
        Resuming => "resuming",
        Rebuilding => "rebuilding",
        ResizePrep => "resize_prep",
        ResizeMigrating => "resize_migrating",
        ResizeMigrated => "resize_migrated",
        ResizeFinish => "resize_finish",
        ResizeReverting => "resize_reverting",
        ResizeConfirming => "resize_confirming",
        ImageSnapshot => "image_snapshot",
        Shelving => "shelving",
        Unshelving => "unshelving",
        Rescuing => "rescuing",
        Unrescuing => "unrescuing",
        SoftDeleting => "soft-deleting",
        Restoring => "restoring",
        Deleting => "deleting",
    }
);

string_enum!(
    /// What a server group asks of its members' hosts (Nova's four policies).
    ServerGroupPolicy {
        Affinity => "affinity",
        AntiAffinity => "anti-affinity",
        SoftAffinity => "soft-affinity",
        SoftAntiAffinity => "soft-anti-affinity",
    }
);

string_enum!(
    /// The kind of compute node; a flavor's `node:type` extra spec names the one it needs.
    NodeType {
        Vm => "vm",
        Container => "container",
        Baremetal => "baremetal",
    }
);

impl NodeType {
    /// Whether an image of these formats boots on this node type: a `docker save` archive on a
    /// container node, a disk image (`bare`/`ovf` with a disk format) on a VM, an ISO on a
    /// bare-metal machine (booted through its BMC's virtual media, as Ironic's ramdisk deploy).
    pub fn boots(self, container_format: &str, disk_format: &str) -> bool {
        match self {
            NodeType::Container => container_format == "docker",
            NodeType::Vm => {
                matches!(container_format, "bare" | "ovf")
                    && matches!(
                        disk_format,
                        "qcow2" | "raw" | "vmdk" | "vdi" | "vhd" | "vhdx" | "iso"
                    )
            }
            NodeType::Baremetal => container_format == "bare" && disk_format == "iso",
        }
    }
}

/// The extra spec that names the node type a flavor needs; absent means [`NodeType::Vm`].
pub const NODE_TYPE_EXTRA_SPEC: &str = "node:type";

/// `power_state` as Nova stores it (nova/compute/power_state.py).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i32", try_from = "i32")]
pub enum PowerState {
    NoState,
    Running,
    Paused,
    Shutdown,
    Crashed,
    Suspended,
}

impl PowerState {
    pub fn code(self) -> i32 {
        match self {
            Self::NoState => 0,
            Self::Running => 1,
            Self::Paused => 3,
            Self::Shutdown => 4,
            Self::Crashed => 6,
            Self::Suspended => 7,
        }
    }
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::NoState,
            1 => Self::Running,
            3 => Self::Paused,
            4 => Self::Shutdown,
            6 => Self::Crashed,
            7 => Self::Suspended,
            _ => return None,
        })
    }
}

impl From<PowerState> for i32 {
    fn from(p: PowerState) -> i32 {
        p.code()
    }
}

impl TryFrom<i32> for PowerState {
    type Error = String;
    fn try_from(code: i32) -> Result<Self, String> {
        Self::from_code(code).ok_or_else(|| format!("unknown power state {code}"))
    }
}

/// The API `status` of a server, derived from its states with Nova's mapping
/// (nova/api/openstack/common.py `_STATE_MAP`). Deleting and powering-off keep the status.
pub fn api_status(vm: VmState, task: Option<TaskState>) -> &'static str {
    use TaskState as T;
    use VmState as V;
    match (vm, task) {
        (V::Active | V::Stopped | V::Error, Some(T::Rebuilding)) => "REBUILD",
        (V::Active, Some(T::Rebooting)) => "REBOOT",
        (V::Active, Some(T::RebootingHard)) => "HARD_REBOOT",
        (
            V::Active | V::Stopped,
            Some(T::ResizePrep | T::ResizeMigrating | T::ResizeMigrated | T::ResizeFinish),
        ) => "RESIZE",
        (V::Resized, Some(T::ResizeReverting)) => "REVERT_RESIZE",
        (V::Active, _) => "ACTIVE",
        (V::Building, _) => "BUILD",
        (V::Stopped, _) => "SHUTOFF",
        (V::Resized, _) => "VERIFY_RESIZE",
        (V::Paused, _) => "PAUSED",
        (V::Suspended, _) => "SUSPENDED",
        (V::Rescued, _) => "RESCUE",
        (V::Error, _) => "ERROR",
        (V::Deleted, _) => "DELETED",
        (V::SoftDeleted, _) => "SOFT_DELETED",
        (V::Shelved, _) => "SHELVED",
        (V::ShelvedOffloaded, _) => "SHELVED_OFFLOADED",
    }
}

/// A flavor as the API and the scheduler see it. Instances keep a copy (the flavor snapshot)
/// so that a later change of the flavor does not change servers built from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    pub flavorid: String,
    pub name: String,
    pub memory_mb: i64,
    pub vcpus: i64,
    pub root_gb: i64,
    pub ephemeral_gb: i64,
    pub swap: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub disabled: bool,
    pub description: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
}

impl Flavor {
    /// The node type this flavor asks for: its `node:type` extra spec; without one, `baremetal`
    /// when it asks for a custom resource class (as flavors for Nova's Ironic driver do), else
    /// `vm`.
    pub fn node_type(&self) -> Result<NodeType, String> {
        match self.extra_specs.get(NODE_TYPE_EXTRA_SPEC) {
            None if self.baremetal_class().is_some() => Ok(NodeType::Baremetal),
            None => Ok(NodeType::Vm),
            Some(v) => NodeType::parse(v).ok_or_else(|| {
                format!(
                    "Flavor {} has an unknown {NODE_TYPE_EXTRA_SPEC} '{v}'",
                    self.flavorid
                )
            }),
        }
    }

    /// The resource class of the bare-metal machine this flavor asks for, as Nova's flavors for
    /// Ironic ask for one: `resources:CUSTOM_<CLASS>=1` (the class as Placement names it,
    /// [`resource_class_name`]).
    pub fn baremetal_class(&self) -> Option<&str> {
        self.extra_specs.iter().find_map(|(k, v)| {
            k.strip_prefix("resources:")
                .filter(|class| class.starts_with("CUSTOM_") && v.trim() == "1")
        })
    }

    /// The resources a server of this flavor claims on a node.
    pub fn resources(&self) -> Resources {
        Resources {
            vcpus: self.vcpus,
            memory_mb: self.memory_mb,
            disk_gb: self.root_gb + self.ephemeral_gb,
        }
    }
}

/// A bare-metal node's resource class as Placement names it, and as a flavor asks for it:
/// each run of characters other than ASCII letters and digits (`_` included) made one `_`,
/// upper case, `CUSTOM_` in front (os-resource-classes' `normalize_name`, which Nova's Ironic
/// driver applies to the node's `resource_class`).
pub fn resource_class_name(class: &str) -> String {
    let mut normalized = String::with_capacity(class.len() + 7);
    normalized.push_str("CUSTOM_");
    let mut in_run = false;
    for c in class.chars() {
        if c.is_ascii_alphanumeric() {
            normalized.push(c.to_ascii_uppercase());
            in_run = false;
        } else if !in_run {
            normalized.push('_');
            in_run = true;
        }
    }
    normalized
}

/// An amount of the resources a node offers and an instance claims.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
}

/// A recorded failure of a server, shown as `fault` while it is in ERROR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub code: i32,
    pub message: String,
    pub details: Option<String>,
    pub created_at: Millis,
}

/// A server and everything the API shows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub uuid: InstanceUuid,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    pub host: Option<String>,
    pub node: Option<String>,
    pub node_type: NodeType,
    pub flavor: Flavor,
    pub image_ref: String,
    pub metadata: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub availability_zone: Option<String>,
    pub launched_at: Option<Millis>,
    pub terminated_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted: bool,
    pub fault: Option<Fault>,
    /// The user's description (2.19).
    pub description: Option<String>,
    /// The key pair named at create and its public key as it was then (Nova keeps both, so
    /// deleting the key pair later does not change the server).
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    /// Who locked the server, if it is locked, and why (2.73).
    pub locked_by: Option<LockedBy>,
    pub locked_reason: Option<String>,
    /// The server's tags (2.26), in the order they were set.
    pub tags: Vec<String>,
    /// The guest's hostname: chosen at create or update (2.90), else made from the name at
    /// create ([`sanitize_hostname`]); a rename does not change it, as in Nova.
    pub hostname: String,
    /// What the create asked of networks.
    pub networks: NetworkRequest,
    /// Where the server is reachable, as its driver reported at the end of the build.
    pub addresses: Vec<Address>,
    /// The create's scheduler hints that placement honours.
    pub scheduler_hints: SchedulerHints,
    /// The addresses the user says the server is reached at (`accessIPv4`, `accessIPv6`), as
    /// given; Nova shows them and does nothing else with them.
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
    /// Whether the create asked for a config drive.
    pub config_drive: bool,
    /// The trusted image certificate ids the create gave (2.63); kept and shown, as Nova with
    /// image signature verification off does nothing else with them.
    pub trusted_image_certificates: Option<Vec<String>>,
    /// `OS-DCF:diskConfig`: AUTO (true) or MANUAL (false). One disk configuration is done
    /// here whichever is chosen; the choice is kept and shown, as Nova shows it.
    pub auto_disk_config: bool,
}

/// Nova's scheduler hints: `same_host` and `different_host` (its SameHostFilter and
/// DifferentHostFilter: servers whose host a new server must share, or avoid), `group`, and
/// the admin's requested destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerHints {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_host: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub different_host: Vec<String>,
    /// The compute host an admin asked the server to be built on (2.74's `host`; Nova's
    /// requested destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The compute node an admin asked for (2.74's `hypervisor_hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The server group the server is a member of (the `group` hint: its uuid), whose policy
    /// placement follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl SchedulerHints {
    pub fn is_empty(&self) -> bool {
        self.same_host.is_empty()
            && self.different_host.is_empty()
            && self.host.is_none()
            && self.node.is_none()
            && self.group.is_none()
    }
}

/// What a server create asked of networks (Nova's `networks`): none at all, whatever the
/// deployment gives a server (`auto`; an empty list too, as the openstack CLI sends it), or
/// networks chosen by id, in the order asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkRequest {
    None,
    #[default]
    Auto,
    Chosen(Vec<ChosenNetwork>),
}

/// A network a server create chose, as it was then: its name keys the server's addresses, and
/// `backend` is the network as the compute host knows it (for Docker, an engine network).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChosenNetwork {
    pub id: String,
    pub name: String,
    pub backend: String,
    /// The user's own port the server is to use on it (`networks: [{"port": …}]`): bound at
    /// build, unbound (not deleted) with the server, as Nova does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The address asked for on it (`networks: [{"uuid": …, "fixed_ip": …}]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
    /// The security groups (ids) the create asked for, for the port made on it; none: the
    /// project's default group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

impl NetworkRequest {
    /// `none` or `auto`, as a create names them.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(NetworkRequest::None),
            "auto" => Some(NetworkRequest::Auto),
            _ => None,
        }
    }

    /// The request as the `instances.networks` column keeps it: `none`, `auto`, or the chosen
    /// networks as a JSON list.
    pub fn to_column(&self) -> String {
        match self {
            NetworkRequest::None => "none".into(),
            NetworkRequest::Auto => "auto".into(),
            NetworkRequest::Chosen(networks) => {
                serde_json::to_string(networks).unwrap_or_else(|_| "[]".into())
            }
        }
    }

    /// The request from the column's text; `None` when the text is none of its forms.
    pub fn from_column(s: &str) -> Option<Self> {
        Self::parse(s).or_else(|| serde_json::from_str(s).ok().map(NetworkRequest::Chosen))
    }
}

/// A server's address on one network, as its driver found it when the server started (Nova's
/// fixed IP of a port): shown in `addresses` and `/ips`, keyed by the network's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub network: String,
    pub addr: String,
    /// 4 or 6.
    pub version: u8,
    pub mac: Option<String>,
}

/// Who locked a server: its owner may unlock their own lock; only an admin undoes an admin's
/// (Nova's `locked_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockedBy {
    Owner,
    Admin,
}

impl LockedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            LockedBy::Owner => "owner",
            LockedBy::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(LockedBy::Owner),
            "admin" => Some(LockedBy::Admin),
            _ => None,
        }
    }
}

/// What one compute node offers, as its agent reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInventory {
    pub uuid: NodeUuid,
    /// The node's name (`hypervisor_hostname`); unique on its host.
    pub name: String,
    pub node_type: NodeType,
    pub hypervisor_type: String,
    /// The hypervisor's version in Nova's integer encoding ([`version_to_int`]); 0 unknown.
    #[serde(default)]
    pub hypervisor_version: i64,
    pub total: Resources,
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
}

/// What an image's properties (a JSON object, as the image service keeps them) say of a
/// direct boot, as Nova reads them (`_handle_kernel_and_ramdisk`, the libvirt driver's
/// `os_command_line`): `kernel_id` and `ramdisk_id`, each checked on its own at create;
/// `kernel_id` `nokernel` names neither. (A VM boots the ramdisk only with a kernel.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectBoot {
    pub kernel_id: Option<String>,
    pub ramdisk_id: Option<String>,
    pub os_command_line: Option<String>,
}

impl DirectBoot {
    pub fn of_properties(properties: &str) -> Self {
        let properties: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(properties).unwrap_or_default();
        let text = |key: &str| {
            properties
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let os_command_line = text("os_command_line");
        match text("kernel_id") {
            Some(k) if k == "nokernel" => Self {
                os_command_line,
                ..Self::default()
            },
            kernel_id => Self {
                kernel_id,
                ramdisk_id: text("ramdisk_id"),
                os_command_line,
            },
        }
    }
}

/// A dotted version (`20.10.24+dfsg1`, `9.0.0`) in Nova's integer encoding
/// (oslo's `convert_version_to_int`: major * 1,000,000 + minor * 1,000 + patch); anything
/// after the numbers is ignored, 0 when there are none.
pub fn version_to_int(version: &str) -> i64 {
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    });
    let mut total = 0i64;
    for weight in [1_000_000, 1_000, 1] {
        let n: i64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        total += n.min(999) * weight;
    }
    total
}

/// A compute node as the database holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct ComputeNode {
    /// The integer id the API shows below microversion 2.53.
    pub api_id: i64,
    pub inventory: NodeInventory,
    pub host: String,
    pub used: Resources,
    pub generation: i64,
}

impl ComputeNode {
    /// What can still be claimed, allocation ratios applied.
    pub fn free(&self) -> Resources {
        let inv = &self.inventory;
        // Ratios are small positive numbers; flooring matches Placement's integer capacity.
        #[allow(clippy::cast_possible_truncation)]
        let cap = |total: i64, ratio: f64| (total as f64 * ratio).floor() as i64;
        Resources {
            vcpus: cap(inv.total.vcpus, inv.cpu_allocation_ratio) - self.used.vcpus,
            memory_mb: cap(inv.total.memory_mb, inv.ram_allocation_ratio) - self.used.memory_mb,
            disk_gb: cap(inv.total.disk_gb, inv.disk_allocation_ratio) - self.used.disk_gb,
        }
    }
}

/// A registered service (`nova-compute` on a host, say) and its liveness.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub id: i64,
    /// The id the API shows from microversion 2.53.
    pub uuid: String,
    pub binary: String,
    pub host: String,
    /// The address the host's agent reported.
    pub host_ip: Option<String>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub forced_down: bool,
    pub last_seen_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Service {
    /// Up when not forced down and the last heartbeat is younger than `down_after_ms`,
    /// as Nova's DB servicegroup driver decides.
    pub fn is_up(&self, now: Millis, down_after_ms: i64) -> bool {
        !self.forced_down && self.last_seen_at.is_some_and(|t| now - t <= down_after_ms)
    }
}

/// What a driver can tell about a running instance (Nova's `Diagnostics` object): shown by
/// `GET /servers/{id}/diagnostics`. Counters a driver cannot read are `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Nova's name for the kind of driver (`libvirt`, `ironic`, …) when it is one of Nova's;
    /// `None` for the others (a container engine), which 2.48's format cannot show.
    pub driver: Option<String>,
    pub power_state: Option<PowerState>,
    pub hypervisor: Option<String>,
    pub hypervisor_os: Option<String>,
    pub uptime_s: Option<i64>,
    pub memory_max_mb: Option<i64>,
    pub memory_used_mb: Option<i64>,
    pub cpus: Vec<CpuDiagnostics>,
    pub nics: Vec<NicDiagnostics>,
    pub disks: Vec<DiskDiagnostics>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuDiagnostics {
    pub id: Option<i64>,
    /// CPU time used, in nanoseconds.
    pub time_ns: Option<i64>,
    /// Percent.
    pub utilisation: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NicDiagnostics {
    /// The interface's name in the guest or on the host (legacy view keys).
    pub name: String,
    pub mac_address: Option<String>,
    pub rx_octets: Option<i64>,
    pub rx_errors: Option<i64>,
    pub rx_drop: Option<i64>,
    pub rx_packets: Option<i64>,
    pub tx_octets: Option<i64>,
    pub tx_errors: Option<i64>,
    pub tx_drop: Option<i64>,
    pub tx_packets: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskDiagnostics {
    pub name: String,
    pub read_bytes: Option<i64>,
    pub read_requests: Option<i64>,
    pub write_bytes: Option<i64>,
    pub write_requests: Option<i64>,
    pub errors_count: Option<i64>,
}

/// The binary name under which compute agents register, as Nova's does.
pub const COMPUTE_BINARY: &str = "nova-compute";

/// The binary name under which conductors register (Nova's `nova-conductor`, which os-services
/// and os-hosts list in the `internal` zone).
pub const CONDUCTOR_BINARY: &str = "nova-conductor";

#[cfg(test)]
mod tests {
    use super::*;

    /// As os-resource-classes' `normalize_name`: runs of other characters, `_` included,
    /// become one `_`.
    #[test]
    fn resource_classes_are_named_as_placement_names_them() {
        for (class, name) in [
            ("baremetal-small", "CUSTOM_BAREMETAL_SMALL"),
            ("BAREMETAL_SMALL", "CUSTOM_BAREMETAL_SMALL"),
            ("gpu__large", "CUSTOM_GPU_LARGE"),
            ("bm-.gold", "CUSTOM_BM_GOLD"),
            ("bm.gold_", "CUSTOM_BM_GOLD_"),
            ("été", "CUSTOM__T_"),
        ] {
            assert_eq!(resource_class_name(class), name, "{class}");
        }
    }

    #[test]
    fn direct_boot_reads_the_properties_as_nova_does() {
        let boot = DirectBoot::of_properties(
            r#"{"kernel_id": "k", "ramdisk_id": " r ", "os_command_line": "console=ttyS0"}"#,
        );
        assert_eq!(boot.kernel_id.as_deref(), Some("k"));
        assert_eq!(boot.ramdisk_id.as_deref(), Some("r"));
        assert_eq!(boot.os_command_line.as_deref(), Some("console=ttyS0"));
        let none = DirectBoot::of_properties(r#"{"kernel_id": "nokernel", "ramdisk_id": "r"}"#);
        assert_eq!((none.kernel_id, none.ramdisk_id), (None, None));
        // A ramdisk alone is still checked at create (Nova checks each on its own).
        let ramdisk = DirectBoot::of_properties(r#"{"ramdisk_id": "r", "kernel_id": ""}"#);
        assert_eq!(
            (ramdisk.kernel_id, ramdisk.ramdisk_id.as_deref()),
            (None, Some("r"))
        );
        assert_eq!(DirectBoot::of_properties("not json"), DirectBoot::default());
    }

    #[test]
    fn status_follows_novas_map() {
        assert_eq!(
            api_status(VmState::Building, Some(TaskState::Scheduling)),
            "BUILD"
        );
        assert_eq!(api_status(VmState::Active, None), "ACTIVE");
        assert_eq!(
            api_status(VmState::Active, Some(TaskState::PoweringOff)),
            "ACTIVE"
        );
        assert_eq!(
            api_status(VmState::Active, Some(TaskState::Deleting)),
            "ACTIVE"
        );
        assert_eq!(
            api_status(VmState::Active, Some(TaskState::Rebooting)),
            "REBOOT"
        );
        assert_eq!(
            api_status(VmState::Active, Some(TaskState::RebootingHard)),
            "HARD_REBOOT"
        );
        assert_eq!(api_status(VmState::Stopped, None), "SHUTOFF");
        assert_eq!(api_status(VmState::Error, None), "ERROR");
    }

    #[test]
    fn versions_are_encoded_as_nova_does() {
        assert_eq!(version_to_int("20.10.24+dfsg1"), 20_010_024);
        assert_eq!(version_to_int("9.0"), 9_000_000);
        assert_eq!(version_to_int("unknown"), 0);
    }

    #[test]
    fn power_state_round_trips_through_json_as_a_number() {
        let json = serde_json::to_string(&PowerState::Shutdown).unwrap();
        assert_eq!(json, "4");
        let back: PowerState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, PowerState::Shutdown);
        assert!(serde_json::from_str::<PowerState>("2").is_err());
    }

    #[test]
    fn free_capacity_applies_ratios() {
        let node = ComputeNode {
            api_id: 1,
            inventory: NodeInventory {
                uuid: NodeUuid::new_v4(),
                name: "n".into(),
                node_type: NodeType::Vm,
                hypervisor_type: "fake".into(),
                hypervisor_version: 0,
                total: Resources {
                    vcpus: 4,
                    memory_mb: 1000,
                    disk_gb: 10,
                },
                cpu_allocation_ratio: 4.0,
                ram_allocation_ratio: 1.5,
                disk_allocation_ratio: 1.0,
            },
            host: "h".into(),
            used: Resources {
                vcpus: 2,
                memory_mb: 500,
                disk_gb: 1,
            },
            generation: 0,
        };
        assert_eq!(
            node.free(),
            Resources {
                vcpus: 14,
                memory_mb: 1000,
                disk_gb: 9
            }
        );
    }
}

/// Nova's `sanitize_hostname`: lower case, spaces and underscores to hyphens, other characters
/// outside `[a-z0-9.-]` dropped, at most 63 characters, no leading or trailing `.`/`-`.
pub fn sanitize_hostname(name: &str) -> String {
    let mapped: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '_' { '-' } else { c })
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    let cut: String = mapped.chars().take(63).collect();
    let trimmed = cut.trim_matches(|c| c == '.' || c == '-');
    if trimmed.is_empty() {
        "server".into()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod hostname_tests {
    use super::*;

    #[test]
    fn hostnames_are_sanitised_as_nova_does() {
        assert_eq!(sanitize_hostname("My Server_1"), "my-server-1");
        assert_eq!(sanitize_hostname("--a.b--"), "a.b");
        assert_eq!(sanitize_hostname("ünïcode!"), "ncode");
        assert_eq!(sanitize_hostname("***"), "server");
        assert_eq!(sanitize_hostname(&"x".repeat(100)).len(), 63);
    }
}

#[cfg(test)]
mod network_request_tests {
    use super::*;

    #[test]
    fn a_network_request_survives_its_column_and_old_messages() {
        let chosen = NetworkRequest::Chosen(vec![ChosenNetwork {
            id: "5a0c6f7e-1b7e-4c35-8d3c-2f4bb7b3d0a1".into(),
            name: "front".into(),
            backend: "br-front".into(),
            port: None,
            fixed_ip: Some("10.0.0.5".into()),
            security_groups: Vec::new(),
        }]);
        // A column from before ports and fixed IPs reads as none of either.
        let old = r#"[{"id":"n","name":"front","backend":"br-front"}]"#;
        assert!(matches!(NetworkRequest::from_column(old),
            Some(NetworkRequest::Chosen(c)) if c[0].port.is_none() && c[0].fixed_ip.is_none()));
        for request in [NetworkRequest::None, NetworkRequest::Auto, chosen] {
            assert_eq!(
                NetworkRequest::from_column(&request.to_column()),
                Some(request.clone())
            );
            let json = serde_json::to_string(&request).unwrap_or_default();
            assert_eq!(
                serde_json::from_str::<NetworkRequest>(&json).ok(),
                Some(request)
            );
        }
        // Messages from before networks could be chosen say "none" or "auto".
        assert_eq!(
            serde_json::from_str::<NetworkRequest>("\"none\"").ok(),
            Some(NetworkRequest::None)
        );
        assert_eq!(NetworkRequest::from_column("bogus"), None);
    }
}
