//! Compute services, compute nodes and the resource claims on them.
//!
//! A claim is optimistic: it reads a node's `generation`, then updates the node only if the
//! generation is unchanged and the capacity still fits, in the same transaction as the
//! allocation row. A lost race changes nothing and the caller retries, as Placement does.

use crate::rows::{NodeRow, ServiceRow, NODE_COLUMNS};
use crate::{on_pool, on_tx, Db, DbResult, Tx};
use nova_core::ids::{InstanceUuid, NodeUuid};
use nova_core::model::{ComputeNode, NodeInventory, NodeType, Resources, Service};
use nova_core::time::{now_ms, Millis};
use uuid::Uuid;

const SERVICE_COLUMNS: &str = "id, uuid, binary_name, host, host_ip, disabled, \
    disabled_reason, forced_down, last_seen_at, created_at, updated_at";

/// Records the address a service reported for its host.
pub async fn set_host_ip(db: &Db, host: &str, binary: &str, ip: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("UPDATE services SET host_ip = $3 WHERE host = $1 AND binary_name = $2")
            .bind(host)
            .bind(binary)
            .bind(ip)
            .execute(p)
            .await?;
    });
    Ok(())
}

/// Registers (or refreshes) a service and its nodes, and counts as a heartbeat.
pub async fn register(db: &Db, host: &str, binary: &str, nodes: &[NodeInventory]) -> DbResult<()> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, c => {
        sqlx::query(
            "INSERT INTO services (uuid, binary_name, host, last_seen_at, report_count, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $4, $4) \
             ON CONFLICT (host, binary_name) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
             report_count = services.report_count + 1, updated_at = excluded.updated_at",
        )
        .bind(Uuid::new_v4())
        .bind(binary)
        .bind(host)
        .bind(now)
        .execute(&mut *c)
        .await?;
        for n in nodes {
            // Capacity may change (a host gained memory); what is used stays, it is the sum
            // of the allocations.
            sqlx::query(
                "INSERT INTO compute_nodes (uuid, host, name, node_type, hypervisor_type, vcpus, \
                 memory_mb, local_gb, cpu_allocation_ratio, ram_allocation_ratio, \
                 disk_allocation_ratio, generation, created_at, updated_at, hypervisor_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $12, $13) \
                 ON CONFLICT (uuid) DO UPDATE SET node_type = excluded.node_type, \
                 hypervisor_type = excluded.hypervisor_type, vcpus = excluded.vcpus, \
                 hypervisor_version = excluded.hypervisor_version, \
                 memory_mb = excluded.memory_mb, local_gb = excluded.local_gb, \
                 cpu_allocation_ratio = excluded.cpu_allocation_ratio, \
                 ram_allocation_ratio = excluded.ram_allocation_ratio, \
                 disk_allocation_ratio = excluded.disk_allocation_ratio, \
                 generation = compute_nodes.generation + 1, updated_at = excluded.updated_at",
            )
            .bind(n.uuid.0)
            .bind(host)
            .bind(&n.name)
            .bind(n.node_type.as_str())
            .bind(&n.hypervisor_type)
            .bind(n.total.vcpus)
            .bind(n.total.memory_mb)
            .bind(n.total.disk_gb)
            .bind(n.cpu_allocation_ratio)
            .bind(n.ram_allocation_ratio)
            .bind(n.disk_allocation_ratio)
            .bind(now)
            .bind(n.hypervisor_version)
            .execute(&mut *c)
            .await?;
        }
    });
    tx.commit().await
}

/// Records a heartbeat; false when the service is not registered (the agent must register).
pub async fn heartbeat(db: &Db, host: &str, binary: &str) -> DbResult<bool> {
    let now = now_ms();
    let n = on_pool!(db, p => {
        sqlx::query(
            "UPDATE services SET last_seen_at = $3, report_count = report_count + 1, \
             updated_at = $3 WHERE host = $1 AND binary_name = $2",
        )
        .bind(host)
        .bind(binary)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

pub async fn service(db: &Db, host: &str, binary: &str) -> DbResult<Option<Service>> {
    let sql =
        format!("SELECT {SERVICE_COLUMNS} FROM services WHERE host = $1 AND binary_name = $2");
    let row: Option<ServiceRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(host).bind(binary).fetch_optional(p).await?);
    Ok(row.map(ServiceRow::into_model))
}

pub async fn services(db: &Db) -> DbResult<Vec<Service>> {
    let sql = format!("SELECT {SERVICE_COLUMNS} FROM services ORDER BY id");
    let rows: Vec<ServiceRow> = on_pool!(db, p => sqlx::query_as(&sql).fetch_all(p).await?);
    Ok(rows.into_iter().map(ServiceRow::into_model).collect())
}

/// Nodes of `node_type` whose compute service is enabled and heard from since `alive_since`
/// and that have room for `need`, roomiest (by free RAM) first.
pub async fn candidates(
    db: &Db,
    node_type: NodeType,
    need: Resources,
    alive_since: Millis,
) -> DbResult<Vec<ComputeNode>> {
    let sql = format!(
        "SELECT {NODE_COLUMNS} FROM compute_nodes n JOIN services s \
         ON s.host = n.host AND s.binary_name = $1 \
         WHERE n.node_type = $2 AND NOT s.disabled AND NOT s.forced_down \
         AND s.last_seen_at >= $3 \
         AND n.vcpus_used + $4 <= n.vcpus * n.cpu_allocation_ratio \
         AND n.memory_mb_used + $5 <= n.memory_mb * n.ram_allocation_ratio \
         AND n.local_gb_used + $6 <= n.local_gb * n.disk_allocation_ratio \
         ORDER BY (n.memory_mb * n.ram_allocation_ratio - n.memory_mb_used) DESC, n.uuid"
    );
    let rows: Vec<NodeRow> = on_pool!(db, p => {
        sqlx::query_as(&sql)
            .bind(nova_core::model::COMPUTE_BINARY)
            .bind(node_type.as_str())
            .bind(alive_since)
            .bind(need.vcpus)
            .bind(need.memory_mb)
            .bind(need.disk_gb)
            .fetch_all(p)
            .await?
    });
    rows.into_iter().map(NodeRow::into_model).collect()
}

/// The free machines of a bare-metal class, as compute nodes: available, not in maintenance,
/// no instance, no operation, nothing claimed, on a live enabled agent; at most `limit`, in one
/// indexed query (the scheduler takes the first it can claim, so it never reads them all).
pub async fn free_machines(
    db: &Db,
    placement_class: &str,
    alive_since: Millis,
    limit: i64,
) -> DbResult<Vec<ComputeNode>> {
    let sql = format!(
        "SELECT {NODE_COLUMNS} FROM baremetal_nodes b \
         JOIN compute_nodes n ON n.name = b.uuid AND n.node_type = $1 \
         JOIN services s ON s.host = n.host AND s.binary_name = $2 \
         WHERE b.placement_class = $3 AND b.provision_state = $4 AND b.maintenance = $5 \
         AND b.instance_uuid IS NULL AND b.operation IS NULL \
         AND NOT s.disabled AND NOT s.forced_down AND s.last_seen_at >= $6 \
         AND n.vcpus_used = 0 AND n.memory_mb_used = 0 AND n.local_gb_used = 0 \
         ORDER BY b.uuid LIMIT $7"
    );
    let rows: Vec<NodeRow> = on_pool!(db, p => {
        sqlx::query_as(&sql)
            .bind(NodeType::Baremetal.as_str())
            .bind(nova_core::model::COMPUTE_BINARY)
            .bind(placement_class)
            .bind(nova_core::baremetal::state::AVAILABLE)
            .bind(false)
            .bind(alive_since)
            .bind(limit)
            .fetch_all(p)
            .await?
    });
    rows.into_iter().map(NodeRow::into_model).collect()
}

pub async fn node(db: &Db, uuid: NodeUuid) -> DbResult<Option<ComputeNode>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM compute_nodes n WHERE n.uuid = $1");
    let row: Option<NodeRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(uuid.0).fetch_optional(p).await?);
    row.map(NodeRow::into_model).transpose()
}

pub async fn nodes(db: &Db) -> DbResult<Vec<ComputeNode>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM compute_nodes n ORDER BY n.host, n.name");
    let rows: Vec<NodeRow> = on_pool!(db, p => sqlx::query_as(&sql).fetch_all(p).await?);
    rows.into_iter().map(NodeRow::into_model).collect()
}

/// Claims `need` on `node` for `instance` if the node is still at `generation` and has room:
/// the node update and the allocation row go in `tx` together. False on a lost race.
pub async fn claim(
    tx: &mut Tx,
    node: NodeUuid,
    generation: i64,
    instance: InstanceUuid,
    need: Resources,
) -> DbResult<bool> {
    let now = now_ms();
    let claimed = on_tx!(tx, c => {
        let n = sqlx::query(
            "UPDATE compute_nodes SET vcpus_used = vcpus_used + $3, \
             memory_mb_used = memory_mb_used + $4, local_gb_used = local_gb_used + $5, \
             generation = generation + 1, updated_at = $6 \
             WHERE uuid = $1 AND generation = $2 \
             AND vcpus_used + $3 <= vcpus * cpu_allocation_ratio \
             AND memory_mb_used + $4 <= memory_mb * ram_allocation_ratio \
             AND local_gb_used + $5 <= local_gb * disk_allocation_ratio",
        )
        .bind(node.0)
        .bind(generation)
        .bind(need.vcpus)
        .bind(need.memory_mb)
        .bind(need.disk_gb)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if n == 1 {
            sqlx::query(
                "INSERT INTO allocations (instance_uuid, node_uuid, vcpus, memory_mb, disk_gb, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(instance.0)
            .bind(node.0)
            .bind(need.vcpus)
            .bind(need.memory_mb)
            .bind(need.disk_gb)
            .bind(now)
            .execute(&mut *c)
            .await?;
        }
        n == 1
    });
    Ok(claimed)
}

/// Gives a claim's resources back to its node (bound: the node, vCPUs, MiB, GiB, now).
pub(crate) const GIVE_BACK: &str = "UPDATE compute_nodes SET vcpus_used = vcpus_used - $2, \
     memory_mb_used = memory_mb_used - $3, local_gb_used = local_gb_used - $4, \
     generation = generation + 1, updated_at = $5 WHERE uuid = $1";

/// Gives back what `instance` claimed, and what a resize of it holds of its old flavor; a no-op
/// when it holds nothing (idempotent).
pub async fn release(tx: &mut Tx, instance: InstanceUuid) -> DbResult<bool> {
    crate::migrations::release_held(tx, instance).await?;
    let now = now_ms();
    on_tx!(tx, c => {
        let gone: Option<(Uuid, i64, i64, i64)> = sqlx::query_as(
            "DELETE FROM allocations WHERE instance_uuid = $1 \
             RETURNING node_uuid, vcpus, memory_mb, disk_gb",
        )
        .bind(instance.0)
        .fetch_optional(&mut *c)
        .await?;
        let Some((node, vcpus, memory_mb, disk_gb)) = gone else { return Ok(false) };
        sqlx::query(GIVE_BACK)
        .bind(node)
        .bind(vcpus)
        .bind(memory_mb)
        .bind(disk_gb)
        .bind(now)
        .execute(&mut *c)
        .await?;
        Ok(true)
    })
}

/// What `instance` holds, if anything.
pub async fn allocation(
    db: &Db,
    instance: InstanceUuid,
) -> DbResult<Option<(NodeUuid, Resources)>> {
    let row: Option<(Uuid, i64, i64, i64)> = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT node_uuid, vcpus, memory_mb, disk_gb FROM allocations WHERE instance_uuid = $1",
        )
        .bind(instance.0)
        .fetch_optional(p)
        .await?
    });
    Ok(row.map(|(n, vcpus, memory_mb, disk_gb)| {
        (
            NodeUuid(n),
            Resources {
                vcpus,
                memory_mb,
                disk_gb,
            },
        )
    }))
}

/// How many allocations exist in all (tests check that nothing leaks).
pub async fn allocation_count(db: &Db) -> DbResult<i64> {
    let (n,): (i64,) =
        on_pool!(db, p => sqlx::query_as("SELECT COUNT(*) FROM allocations").fetch_one(p).await?);
    Ok(n)
}

/// How the API names a service: by id (before 2.53), by uuid (from 2.53), or by host and
/// binary (the older `enable`/`disable` routes).
#[derive(Clone, Copy, Debug)]
pub enum ServiceKey<'a> {
    Id(i64),
    Uuid(Uuid),
    HostBinary(&'a str, &'a str),
}

impl ServiceKey<'_> {
    fn condition(&self) -> &'static str {
        match self {
            ServiceKey::Id(_) => "id = $1",
            ServiceKey::Uuid(_) => "uuid = $1",
            ServiceKey::HostBinary(..) => "host = $1 AND binary_name = $2",
        }
    }
}

/// Binds a key's values in the order [`ServiceKey::condition`] names them.
macro_rules! bind_key {
    ($q:expr, $key:expr) => {
        match $key {
            ServiceKey::Id(id) => $q.bind(id),
            ServiceKey::Uuid(u) => $q.bind(u),
            ServiceKey::HostBinary(h, b) => $q.bind(h).bind(b),
        }
    };
}

pub async fn service_by(db: &Db, key: ServiceKey<'_>) -> DbResult<Option<Service>> {
    let sql = format!(
        "SELECT {SERVICE_COLUMNS} FROM services WHERE {}",
        key.condition()
    );
    let row: Option<ServiceRow> = on_pool!(db, p => {
        let q = sqlx::query_as(&sql);
        bind_key!(q, key).fetch_optional(p).await?
    });
    Ok(row.map(ServiceRow::into_model))
}

/// What an admin changes of a service; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ServiceChange {
    pub disabled: Option<bool>,
    /// Written whenever `disabled` is given: the reason when disabling, cleared when enabling.
    pub disabled_reason: Option<String>,
    pub forced_down: Option<bool>,
}

/// Applies `change` to a service; the service as it is afterwards, `None` if there is none.
pub async fn update_service(
    db: &Db,
    key: ServiceKey<'_>,
    change: &ServiceChange,
) -> DbResult<Option<Service>> {
    let offset = match key {
        ServiceKey::HostBinary(..) => 2,
        _ => 1,
    };
    let sql = format!(
        "UPDATE services SET disabled = COALESCE(${a}, disabled), \
         disabled_reason = CASE WHEN ${a} IS NULL THEN disabled_reason ELSE ${b} END, \
         forced_down = COALESCE(${c}, forced_down), updated_at = ${d} WHERE {}",
        key.condition(),
        a = offset + 1,
        b = offset + 2,
        c = offset + 3,
        d = offset + 4,
    );
    let n = on_pool!(db, p => {
        let q = sqlx::query(&sql);
        bind_key!(q, key)
            .bind(change.disabled)
            .bind(&change.disabled_reason)
            .bind(change.forced_down)
            .bind(now_ms())
            .execute(p)
            .await?
            .rows_affected()
    });
    if n == 0 {
        return Ok(None);
    }
    service_by(db, key).await
}

#[derive(Debug, PartialEq, Eq)]
pub enum ServiceDeletion {
    Deleted,
    NotFound,
    /// A compute service whose host still has live servers (Nova refuses, 409).
    HostsInstances,
}

/// Deletes a service; for a compute service also its nodes, unless servers still live there.
pub async fn delete_service(db: &Db, key: ServiceKey<'_>) -> DbResult<ServiceDeletion> {
    let Some(service) = service_by(db, key).await? else {
        return Ok(ServiceDeletion::NotFound);
    };
    let mut tx = db.begin().await?;
    let outcome = on_tx!(&mut tx, c => {
        if service.binary == nova_core::model::COMPUTE_BINARY {
            let (live,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM instances WHERE host = $1 AND NOT deleted",
            )
            .bind(&service.host)
            .fetch_one(&mut *c)
            .await?;
            if live > 0 {
                return Ok(ServiceDeletion::HostsInstances);
            }
            // Allocations of deleted servers may still name the nodes.
            sqlx::query(
                "DELETE FROM allocations WHERE node_uuid IN \
                 (SELECT uuid FROM compute_nodes WHERE host = $1)",
            )
            .bind(&service.host)
            .execute(&mut *c)
            .await?;
            sqlx::query("DELETE FROM compute_nodes WHERE host = $1")
                .bind(&service.host)
                .execute(&mut *c)
                .await?;
            // As Nova: the host leaves its aggregates (and so its zone).
            sqlx::query("DELETE FROM aggregate_hosts WHERE host = $1")
                .bind(&service.host)
                .execute(&mut *c)
                .await?;
        }
        sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(service.id)
            .execute(&mut *c)
            .await?;
        ServiceDeletion::Deleted
    });
    tx.commit().await?;
    Ok(outcome)
}

/// Records the enrolment drivers a service runs machines of (a bare-metal agent's `redfish`).
pub async fn set_node_drivers(
    db: &Db,
    host: &str,
    binary: &str,
    drivers: &[String],
) -> DbResult<()> {
    let list = (!drivers.is_empty()).then(|| serde_json::to_string(drivers).unwrap_or_default());
    on_pool!(db, p => {
        sqlx::query("UPDATE services SET node_drivers = $3 WHERE host = $1 AND binary_name = $2")
            .bind(host)
            .bind(binary)
            .bind(list)
            .execute(p)
            .await?;
    });
    Ok(())
}

/// The hosts whose enabled, live (heard from since `alive_since`) services run machines of
/// `driver`, each with the number of nodes it runs, fewest first.
pub async fn node_driver_hosts(
    db: &Db,
    driver: &str,
    alive_since: Millis,
) -> DbResult<Vec<(String, i64)>> {
    let pattern = format!("%\"{}\"%", driver.replace(['"', '%', '_', '\\'], ""));
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT s.host, (SELECT COUNT(*) FROM baremetal_nodes b WHERE b.conductor = s.host) \
             AS n FROM services s WHERE s.node_drivers LIKE $1 AND s.disabled = $2 \
             AND s.forced_down = $2 AND s.last_seen_at >= $3 ORDER BY n, s.host",
        )
        .bind(&pattern)
        .bind(false)
        .bind(alive_since)
        .fetch_all(p)
        .await?
    }))
}
