//! Row types as the tables hold them, and their conversion to domain types.

use crate::{corrupt, DbResult};
use nova_core::ids::{InstanceUuid, NodeUuid};
use nova_core::model::{
    ComputeNode, Fault, Flavor, Instance, LockedBy, NetworkRequest, NodeInventory, NodeType,
    PowerState, Resources, Service, TaskState, VmState,
};
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub(super) struct InstanceRow {
    pub uuid: Uuid,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub vm_state: String,
    pub task_state: Option<String>,
    pub power_state: i32,
    pub host: Option<String>,
    pub node: Option<String>,
    pub node_type: String,
    pub flavor: String,
    pub image_ref: String,
    pub metadata: String,
    pub user_data: Option<String>,
    pub availability_zone: Option<String>,
    pub launched_at: Option<i64>,
    pub terminated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted: bool,
    pub description: Option<String>,
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    pub locked_by: Option<String>,
    pub locked_reason: Option<String>,
    pub tags: String,
    pub hostname: Option<String>,
    pub networks: Option<String>,
    pub addresses: String,
    pub scheduler_hints: String,
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
    pub config_drive: bool,
    pub trusted_image_certificates: Option<String>,
    pub auto_disk_config: bool,
}

/// The column list matching [`InstanceRow`], for `SELECT`s.
pub(super) const INSTANCE_COLUMNS: &str = "uuid, name, project_id, user_id, vm_state, \
    task_state, power_state, host, node, node_type, flavor, image_ref, metadata, user_data, \
    availability_zone, launched_at, terminated_at, created_at, updated_at, deleted, \
    description, key_name, key_data, locked_by, locked_reason, tags, hostname, networks, \
    addresses, scheduler_hints, access_ip_v4, access_ip_v6, config_drive, \
    trusted_image_certificates, auto_disk_config";

impl InstanceRow {
    pub fn into_model(self, fault: Option<Fault>) -> DbResult<Instance> {
        let vm_state = VmState::parse(&self.vm_state)
            .ok_or_else(|| corrupt(format!("vm_state {}", self.vm_state)))?;
        let task_state = match self.task_state.as_deref() {
            None => None,
            Some(t) => Some(TaskState::parse(t).ok_or_else(|| corrupt(format!("task_state {t}")))?),
        };
        let hostname = self
            .hostname
            .unwrap_or_else(|| nova_core::model::sanitize_hostname(&self.name));
        Ok(Instance {
            uuid: InstanceUuid(self.uuid),
            name: self.name,
            project_id: self.project_id,
            user_id: self.user_id,
            vm_state,
            task_state,
            power_state: PowerState::from_code(self.power_state)
                .ok_or_else(|| corrupt(format!("power_state {}", self.power_state)))?,
            host: self.host,
            node: self.node,
            node_type: NodeType::parse(&self.node_type)
                .ok_or_else(|| corrupt(format!("node_type {}", self.node_type)))?,
            flavor: serde_json::from_str(&self.flavor)
                .map_err(|e| corrupt(format!("flavor snapshot: {e}")))?,
            image_ref: self.image_ref,
            metadata: serde_json::from_str(&self.metadata)
                .map_err(|e| corrupt(format!("metadata: {e}")))?,
            user_data: self.user_data,
            availability_zone: self.availability_zone,
            launched_at: self.launched_at,
            terminated_at: self.terminated_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted: self.deleted,
            fault,
            description: self.description,
            key_name: self.key_name,
            key_data: self.key_data,
            locked_by: match self.locked_by.as_deref() {
                None => None,
                Some(l) => {
                    Some(LockedBy::parse(l).ok_or_else(|| corrupt(format!("locked_by {l}")))?)
                }
            },
            locked_reason: self.locked_reason,
            tags: serde_json::from_str(&self.tags).map_err(|e| corrupt(format!("tags: {e}")))?,
            // Rows from before hostnames were kept: derived from the name, as then.
            hostname,
            networks: match self.networks.as_deref() {
                None => NetworkRequest::Auto,
                Some(n) => NetworkRequest::from_column(n)
                    .ok_or_else(|| corrupt(format!("networks {n}")))?,
            },
            addresses: serde_json::from_str(&self.addresses)
                .map_err(|e| corrupt(format!("addresses: {e}")))?,
            scheduler_hints: serde_json::from_str(&self.scheduler_hints)
                .map_err(|e| corrupt(format!("scheduler_hints: {e}")))?,
            access_ip_v4: self.access_ip_v4,
            access_ip_v6: self.access_ip_v6,
            config_drive: self.config_drive,
            trusted_image_certificates: match self.trusted_image_certificates.as_deref() {
                None => None,
                Some(t) => Some(
                    serde_json::from_str(t)
                        .map_err(|e| corrupt(format!("trusted_image_certificates: {e}")))?,
                ),
            },
            auto_disk_config: self.auto_disk_config,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct FaultRow {
    pub instance_uuid: Uuid,
    pub code: i32,
    pub message: String,
    pub details: Option<String>,
    pub created_at: i64,
}

impl FaultRow {
    pub fn into_model(self) -> Fault {
        Fault {
            code: self.code,
            message: self.message,
            details: self.details,
            created_at: self.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct FlavorRow {
    pub id: i64,
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
}

impl FlavorRow {
    pub fn into_model(self) -> Flavor {
        Flavor {
            flavorid: self.flavorid,
            name: self.name,
            memory_mb: self.memory_mb,
            vcpus: self.vcpus,
            root_gb: self.root_gb,
            ephemeral_gb: self.ephemeral_gb,
            swap: self.swap,
            rxtx_factor: self.rxtx_factor,
            is_public: self.is_public,
            disabled: self.disabled,
            description: self.description,
            extra_specs: Default::default(),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct NodeRow {
    pub uuid: Uuid,
    pub api_id: i64,
    pub host: String,
    pub name: String,
    pub node_type: String,
    pub hypervisor_type: String,
    pub hypervisor_version: i64,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub local_gb: i64,
    pub vcpus_used: i64,
    pub memory_mb_used: i64,
    pub local_gb_used: i64,
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    pub generation: i64,
}

pub(super) const NODE_COLUMNS: &str =
    "n.uuid, n.api_id, n.host, n.name, n.node_type, n.hypervisor_type, n.hypervisor_version, \
    n.vcpus, n.memory_mb, n.local_gb, n.vcpus_used, n.memory_mb_used, n.local_gb_used, \
    n.cpu_allocation_ratio, n.ram_allocation_ratio, n.disk_allocation_ratio, n.generation";

impl NodeRow {
    pub fn into_model(self) -> DbResult<ComputeNode> {
        Ok(ComputeNode {
            api_id: self.api_id,
            inventory: NodeInventory {
                uuid: NodeUuid(self.uuid),
                name: self.name,
                node_type: NodeType::parse(&self.node_type)
                    .ok_or_else(|| corrupt(format!("node_type {}", self.node_type)))?,
                hypervisor_type: self.hypervisor_type,
                hypervisor_version: self.hypervisor_version,
                total: Resources {
                    vcpus: self.vcpus,
                    memory_mb: self.memory_mb,
                    disk_gb: self.local_gb,
                },
                cpu_allocation_ratio: self.cpu_allocation_ratio,
                ram_allocation_ratio: self.ram_allocation_ratio,
                disk_allocation_ratio: self.disk_allocation_ratio,
            },
            host: self.host,
            used: Resources {
                vcpus: self.vcpus_used,
                memory_mb: self.memory_mb_used,
                disk_gb: self.local_gb_used,
            },
            generation: self.generation,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ServiceRow {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub binary_name: String,
    pub host: String,
    pub host_ip: Option<String>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub forced_down: bool,
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ServiceRow {
    pub fn into_model(self) -> Service {
        Service {
            id: self.id,
            uuid: self.uuid.to_string(),
            binary: self.binary_name,
            host: self.host,
            host_ip: self.host_ip,
            disabled: self.disabled,
            disabled_reason: self.disabled_reason,
            forced_down: self.forced_down,
            last_seen_at: self.last_seen_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}
