//! Bare-metal machines enrolled through the bare-metal API (an Ironic v1 subset), and the one
//! operation that may run on each (Ironic's node reservation).
//!
//! States are Ironic's strings (`enroll`, `verifying`, `manageable`, `cleaning`, `available`,
//! …). Every state change is one conditional statement: an operation starts only where none
//! runs and the node is in a state it may start from; it ends only by the result that names
//! it. So two requests racing on one node cannot both start, and a late result of a timed-out
//! operation changes nothing.

use crate::listing::{self, Column, Kind, Listing};
use crate::{on_pool, on_tx, Db, DbResult, Tx};
use nova_core::ids::InstanceUuid;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Node {
    pub uuid: String,
    pub name: Option<String>,
    pub driver: String,
    /// JSON object, without the BMC password.
    pub driver_info: String,
    /// The BMC password, sealed (`nova_core::secret::Sealed`).
    pub bmc_password: Option<String>,
    /// JSON object.
    pub properties: String,
    /// JSON object.
    pub extra: String,
    pub resource_class: Option<String>,
    pub description: Option<String>,
    pub provision_state: String,
    pub target_provision_state: Option<String>,
    pub power_state: Option<String>,
    pub target_power_state: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    pub fault: Option<String>,
    pub last_error: Option<String>,
    pub instance_uuid: Option<String>,
    /// The bare-metal agent (a compute host) that runs the node's operations.
    pub conductor: Option<String>,
    pub operation: Option<String>,
    pub operation_kind: Option<String>,
    pub operation_deadline: Option<i64>,
    /// JSON of the step running now (Ironic's `clean_step`), or NULL.
    pub clean_step: Option<String>,
    /// Power syncs in a row whose BMC did not answer.
    pub power_failures: i32,
    /// When `power_state` was last set from what the BMC told.
    pub power_updated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub provision_updated_at: Option<i64>,
}

pub const COLUMNS: &str = "uuid, name, driver, driver_info, bmc_password, properties, extra, \
    resource_class, description, provision_state, target_provision_state, power_state, \
    target_power_state, maintenance, maintenance_reason, fault, last_error, instance_uuid, \
    conductor, operation, operation_kind, operation_deadline, clean_step, power_failures, \
    power_updated_at, created_at, updated_at, provision_updated_at";

/// Nodes as the list engine sees them.
pub const TABLE: listing::Table = listing::Table {
    name: "baremetal_nodes",
    columns: COLUMNS,
    id: Column {
        expr: "uuid",
        kind: Kind::Text,
    },
    tags: None,
};

/// Ironic's default order: enrolment.
pub const CREATED_AT: Column = crate::listing::CREATED_AT;

/// The node's class in placement's form, as flavors ask for it (`CUSTOM_BAREMETAL_SMALL`).
fn placement_class(n: &Node) -> Option<String> {
    n.resource_class
        .as_deref()
        .map(nova_core::model::resource_class_name)
}

/// Brings `placement_class` in line with `resource_class` for every node, at start: nodes
/// stored before the column existed (migration 0024), or by a binary that named classes
/// otherwise. The normalisation is the service's, not SQL's; there are few machines.
pub async fn backfill_placement_classes(db: &Db) -> DbResult<()> {
    let rows: Vec<(String, String, Option<String>)> = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT uuid, resource_class, placement_class FROM baremetal_nodes \
             WHERE resource_class IS NOT NULL",
        )
        .fetch_all(p)
        .await?
    });
    for (uuid, class, stored) in rows {
        let name = nova_core::model::resource_class_name(&class);
        if stored.as_deref() == Some(name.as_str()) {
            continue;
        }
        on_pool!(db, p => {
            sqlx::query(
                "UPDATE baremetal_nodes SET placement_class = $2 \
                 WHERE uuid = $1 AND resource_class = $3",
            )
            .bind(&uuid)
            .bind(&name)
            .bind(&class)
            .execute(p)
            .await?;
        });
    }
    Ok(())
}

/// Stores a new node; `false` when its name is taken.
pub async fn insert(db: &Db, n: &Node) -> DbResult<bool> {
    let sql = format!(
        "INSERT INTO baremetal_nodes ({COLUMNS}, placement_class) VALUES ($1, $2, $3, $4, $5, \
         $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
         $24, $25, $26, $27, $28, $29)"
    );
    let done = on_pool!(db, p => {
        sqlx::query(&sql)
            .bind(&n.uuid)
            .bind(&n.name)
            .bind(&n.driver)
            .bind(&n.driver_info)
            .bind(&n.bmc_password)
            .bind(&n.properties)
            .bind(&n.extra)
            .bind(&n.resource_class)
            .bind(&n.description)
            .bind(&n.provision_state)
            .bind(&n.target_provision_state)
            .bind(&n.power_state)
            .bind(&n.target_power_state)
            .bind(n.maintenance)
            .bind(&n.maintenance_reason)
            .bind(&n.fault)
            .bind(&n.last_error)
            .bind(&n.instance_uuid)
            .bind(&n.conductor)
            .bind(&n.operation)
            .bind(&n.operation_kind)
            .bind(n.operation_deadline)
            .bind(&n.clean_step)
            .bind(n.power_failures)
            .bind(n.power_updated_at)
            .bind(n.created_at)
            .bind(n.updated_at)
            .bind(n.provision_updated_at)
            .bind(placement_class(n))
            .execute(p)
            .await
            .map(|_| ())
    });
    match done {
        Ok(()) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(db: &Db, uuid: &str) -> DbResult<Option<Node>> {
    let sql = format!("SELECT {COLUMNS} FROM baremetal_nodes WHERE uuid = $1");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(uuid).fetch_optional(p).await?
    }))
}

/// A node by its uuid or, failing that, its name (Ironic's node identifier).
pub async fn find(db: &Db, ident: &str) -> DbResult<Option<Node>> {
    let sql = format!("SELECT {COLUMNS} FROM baremetal_nodes WHERE uuid = $1 OR name = $1");
    let rows: Vec<Node> = on_pool!(db, p => {
        sqlx::query_as(&sql).bind(ident).fetch_all(p).await?
    });
    Ok(rows
        .iter()
        .find(|n| n.uuid == ident)
        .or_else(|| rows.first())
        .cloned())
}

/// A page of a node listing.
pub async fn page(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Node>> {
    listing::page(db, listing).await
}

/// What an update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Updated {
    Yes,
    /// An operation runs on the node (Ironic's NodeLocked).
    Locked,
    NameTaken,
    Missing,
}

/// Writes the fields a PATCH may change, unless an operation runs on the node or its state
/// moved since the caller read it (the caller's checks were for that state): `Locked` then.
pub async fn update_fields(db: &Db, n: &Node) -> DbResult<Updated> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET name = $2, driver_info = $3, bmc_password = $4, \
             properties = $5, extra = $6, resource_class = $7, description = $8, \
             updated_at = $9, placement_class = $10 WHERE uuid = $1 AND operation IS NULL \
             AND provision_state = $11",
        )
        .bind(&n.uuid)
        .bind(&n.name)
        .bind(&n.driver_info)
        .bind(&n.bmc_password)
        .bind(&n.properties)
        .bind(&n.extra)
        .bind(&n.resource_class)
        .bind(&n.description)
        .bind(n.updated_at)
        .bind(placement_class(n))
        .bind(&n.provision_state)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    });
    match done {
        Ok(rows) if rows > 0 => Ok(Updated::Yes),
        Ok(_) => Ok(match get(db, &n.uuid).await? {
            Some(_) => Updated::Locked,
            None => Updated::Missing,
        }),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Updated::NameTaken),
        Err(e) => Err(e.into()),
    }
}

/// Sets or clears maintenance (and its reason), whatever runs on the node: Ironic allows it
/// on a locked node, since it is how an admin stops a node from being used.
pub async fn set_maintenance(
    db: &Db,
    uuid: &str,
    on: bool,
    reason: Option<&str>,
    now: i64,
) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET maintenance = $2, maintenance_reason = $3, \
             fault = CASE WHEN $2 THEN fault ELSE NULL END, updated_at = $4 WHERE uuid = $1",
        )
        .bind(uuid)
        .bind(on)
        .bind(reason)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// An operation to start on a node: what it is, the states it may start from, and what the
/// node shows while it runs.
#[derive(Clone, Debug)]
pub struct Start<'a> {
    pub operation: &'a str,
    pub kind: &'a str,
    /// The provision states it may start from.
    pub from: &'a [&'a str],
    /// The provision state while it runs, and the one it aims at (`None`: unchanged).
    pub provision_state: Option<&'a str>,
    pub target_provision_state: Option<&'a str>,
    /// The power it aims at (`None`: unchanged).
    pub target_power_state: Option<&'a str>,
    pub deadline: i64,
    pub now: i64,
}

/// What a start did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    Yes,
    /// Another operation runs on the node.
    Locked,
    /// The node is not in a state the operation starts from.
    WrongState,
    Missing,
}

/// Starts an operation on the node: one statement, so that of two racing requests one starts
/// and the other is told the node is locked.
pub async fn start_operation(db: &Db, uuid: &str, s: &Start<'_>) -> DbResult<Started> {
    // The states are Ironic's fixed words, never the caller's text: listing them in the
    // statement keeps it one round trip on both backends.
    let from = s
        .from
        .iter()
        .map(|st| format!("'{}'", st.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE baremetal_nodes SET operation = $2, operation_kind = $3, \
         operation_deadline = $4, \
         provision_state = COALESCE($5, provision_state), \
         target_provision_state = CASE WHEN $5 IS NULL THEN target_provision_state ELSE $6 END, \
         target_power_state = $7, last_error = NULL, updated_at = $8, \
         provision_updated_at = CASE WHEN $5 IS NULL THEN provision_updated_at ELSE $8 END \
         WHERE uuid = $1 AND operation IS NULL AND provision_state IN ({from})"
    );
    let done = on_pool!(db, p => {
        sqlx::query(&sql)
            .bind(uuid)
            .bind(s.operation)
            .bind(s.kind)
            .bind(s.deadline)
            .bind(s.provision_state)
            .bind(s.target_provision_state)
            .bind(s.target_power_state)
            .bind(s.now)
            .execute(p)
            .await?
            .rows_affected()
    });
    if done > 0 {
        return Ok(Started::Yes);
    }
    Ok(match get(db, uuid).await? {
        None => Started::Missing,
        Some(n) if n.operation.is_some() => Started::Locked,
        Some(_) => Started::WrongState,
    })
}

/// How an operation ended, as the node shows it afterwards.
#[derive(Clone, Debug, Default)]
pub struct End {
    pub provision_state: Option<String>,
    pub power_state: Option<String>,
    /// Ironic's `last_error` (`None` clears it).
    pub last_error: Option<String>,
    /// Facts the BMC told (`manage`), merged into the node's properties where it has none.
    pub properties: Option<String>,
}

/// Ends the operation `operation` on the node with `end`; `false` when it is not the one
/// running (it ended already, or timed out).
pub async fn end_operation(
    db: &Db,
    uuid: &str,
    operation: &str,
    end: &End,
    now: i64,
) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET operation = NULL, operation_kind = NULL, \
             operation_deadline = NULL, clean_step = NULL, \
             provision_state = COALESCE($3, provision_state), \
             target_provision_state = CASE WHEN $3 IS NULL THEN target_provision_state \
                 WHEN $3 LIKE '% failed' THEN target_provision_state ELSE NULL END, \
             power_state = COALESCE($4, power_state), target_power_state = NULL, \
             power_updated_at = CASE WHEN $4 IS NULL THEN power_updated_at ELSE $7 END, \
             last_error = $5, properties = COALESCE($6, properties), updated_at = $7, \
             provision_updated_at = CASE WHEN $3 IS NULL THEN provision_updated_at ELSE $7 END \
             WHERE uuid = $1 AND operation = $2",
        )
        .bind(uuid)
        .bind(operation)
        .bind(&end.provision_state)
        .bind(&end.power_state)
        .bind(&end.last_error)
        .bind(&end.properties)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// Records the step an operation has reached (progress), while it runs.
pub async fn set_step(db: &Db, uuid: &str, operation: &str, step: &str, now: i64) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET clean_step = $3, updated_at = $4 \
             WHERE uuid = $1 AND operation = $2",
        )
        .bind(uuid)
        .bind(operation)
        .bind(step)
        .bind(now)
        .execute(p)
        .await?;
    });
    Ok(())
}

/// Nodes whose operation has passed its deadline.
pub async fn overdue(db: &Db, now: i64, limit: i64) -> DbResult<Vec<Node>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM baremetal_nodes WHERE operation IS NOT NULL \
         AND operation_deadline < $1 ORDER BY operation_deadline LIMIT $2"
    );
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(p).await?
    }))
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    Locked,
    /// The node's provision state does not allow it (an `active` node).
    WrongState,
    Missing,
}

/// Deletes the node if it is in one of `from` (or in maintenance, in any state, as Ironic
/// allows), with no instance and nothing running on it.
pub async fn delete(db: &Db, uuid: &str, from: &[&str]) -> DbResult<Deleted> {
    let from_sql = from
        .iter()
        .map(|st| format!("'{}'", st.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "DELETE FROM baremetal_nodes WHERE uuid = $1 AND operation IS NULL \
         AND instance_uuid IS NULL AND (maintenance = $2 OR provision_state IN ({from_sql}))"
    );
    let done = on_pool!(db, p => {
        sqlx::query(&sql).bind(uuid).bind(true).execute(p).await?.rows_affected()
    });
    if done > 0 {
        return Ok(Deleted::Yes);
    }
    Ok(match get(db, uuid).await? {
        None => Deleted::Missing,
        Some(n) if n.operation.is_some() => Deleted::Locked,
        Some(_) => Deleted::WrongState,
    })
}

/// How many nodes each bare-metal agent runs, for placing a new node on the least loaded.
pub async fn count_by_conductor(db: &Db) -> DbResult<Vec<(String, i64)>> {
    Ok(on_pool!(db, p => {
        sqlx::query_as(
            "SELECT conductor, COUNT(*) FROM baremetal_nodes WHERE conductor IS NOT NULL \
             GROUP BY conductor",
        )
        .fetch_all(p)
        .await?
    }))
}

/// The fault of a node whose BMC stopped answering (Ironic's `power failure`).
pub const POWER_FAILURE: &str = "power failure";

/// The nodes each agent runs whose BMC can be asked (a sealed password stored), for the list
/// the agents are sent, each with whether its power is to be read in the power sync. As
/// Ironic's: not those in `enroll` (their credentials are not known to work: asking
/// again and again may lock the BMC's account), not those with an operation running (its end
/// tells), and of those in maintenance only the ones it put there for a power failure (to see
/// them answer again).
pub async fn syncable(db: &Db) -> DbResult<Vec<(Node, bool)>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM baremetal_nodes WHERE conductor IS NOT NULL \
         AND bmc_password IS NOT NULL ORDER BY conductor, uuid"
    );
    let nodes: Vec<Node> = on_pool!(db, p => sqlx::query_as(&sql).fetch_all(p).await?);
    Ok(nodes
        .into_iter()
        .map(|n| {
            let read = n.provision_state != nova_core::baremetal::state::ENROLL
                && n.operation.is_none()
                && (!n.maintenance || n.fault.as_deref() == Some(POWER_FAILURE));
            (n, read)
        })
        .collect())
}

/// A power sync's answer: the power, unless an operation runs (its end tells); the failure
/// count back to zero; and a node that maintenance took for a power failure back in service,
/// as Ironic does when its BMC answers again.
///
/// `asked_at` is when the sync was sent: an answer read before an operation set the power is
/// stale, and changes nothing.
pub async fn record_power(
    db: &Db,
    uuid: &str,
    power: &str,
    asked_at: i64,
    now: i64,
) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET power_state = $2, power_updated_at = $5, \
             power_failures = 0, \
             maintenance = CASE WHEN fault = $3 THEN $4 ELSE maintenance END, \
             maintenance_reason = CASE WHEN fault = $3 THEN NULL ELSE maintenance_reason END, \
             fault = CASE WHEN fault = $3 THEN NULL ELSE fault END, \
             updated_at = $5 WHERE uuid = $1 AND operation IS NULL \
             AND (power_updated_at IS NULL OR power_updated_at <= $6)",
        )
        .bind(uuid)
        .bind(power)
        .bind(POWER_FAILURE)
        .bind(false)
        .bind(now)
        .bind(asked_at)
        .execute(p)
        .await?;
    });
    Ok(())
}

/// A verb that changes the provision state at once (`manage` from `available`): one
/// statement, only from `from` and with no operation running; `false` otherwise.
pub async fn set_provision_state(
    db: &Db,
    uuid: &str,
    from: &str,
    to: &str,
    now: i64,
) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET provision_state = $3, target_provision_state = NULL, \
             provision_updated_at = $4, updated_at = $4 \
             WHERE uuid = $1 AND provision_state = $2 AND operation IS NULL",
        )
        .bind(uuid)
        .bind(from)
        .bind(to)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// Moves the node to the bare-metal agent `host` (its own died or was removed), unless an
/// operation runs on it.
pub async fn reassign(db: &Db, uuid: &str, host: &str, now: i64) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET conductor = $2, updated_at = $3 \
             WHERE uuid = $1 AND operation IS NULL",
        )
        .bind(uuid)
        .bind(host)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// A power sync the BMC did not answer: counted, and at `max` in a row the node goes into
/// maintenance with `reason` (fault `power failure`) and an unknown power. `true` when this
/// one put it there.
pub async fn record_power_failure(
    db: &Db,
    uuid: &str,
    max: i32,
    reason: &str,
    now: i64,
) -> DbResult<bool> {
    // One statement: the SET expressions all read the row as it was.
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET power_failures = power_failures + 1, \
             maintenance = CASE WHEN maintenance = $3 AND power_failures + 1 >= $4 \
                 THEN $5 ELSE maintenance END, \
             fault = CASE WHEN maintenance = $3 AND power_failures + 1 >= $4 \
                 THEN $6 ELSE fault END, \
             maintenance_reason = CASE WHEN maintenance = $3 AND power_failures + 1 >= $4 \
                 THEN $7 ELSE maintenance_reason END, \
             power_state = CASE WHEN maintenance = $3 AND power_failures + 1 >= $4 \
                 THEN NULL ELSE power_state END, \
             updated_at = $2 WHERE uuid = $1",
        )
        .bind(uuid)
        .bind(now)
        .bind(false)
        .bind(max)
        .bind(true)
        .bind(POWER_FAILURE)
        .bind(reason)
        .execute(p)
        .await?;
    });
    Ok(get(db, uuid)
        .await?
        .is_some_and(|n| n.power_failures == max && n.fault.as_deref() == Some(POWER_FAILURE)))
}

/// A whole number in a node's properties (the CLI sends `cpus=2` as a number; a string of
/// digits counts too), 0 when absent.
fn property(properties: &serde_json::Map<String, serde_json::Value>, key: &str) -> i64 {
    match properties.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Shows the node as a compute node of type `baremetal` on its agent's host (one hypervisor per
/// machine, named by its uuid, as Nova shows Ironic's nodes), its capacity from its properties;
/// or, once the node is gone, removes that compute node unless an instance still holds it.
/// Whether the scheduler may place a server on it is the node's own state
/// ([`crate::nodes::free_machines`]).
pub async fn sync_compute_node(db: &Db, uuid: &str) -> DbResult<()> {
    let Ok(id) = uuid::Uuid::parse_str(uuid) else {
        return Ok(());
    };
    let node = get(db, uuid).await?;
    let now = nova_core::time::now_ms();
    on_pool!(db, p => {
        match node.as_ref().and_then(|n| n.conductor.clone().map(|host| (n, host))) {
            Some((n, host)) => {
                let props: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&n.properties).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO compute_nodes (uuid, host, name, node_type, hypervisor_type, \
                     vcpus, memory_mb, local_gb, cpu_allocation_ratio, ram_allocation_ratio, \
                     disk_allocation_ratio, generation, created_at, updated_at, \
                     hypervisor_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1.0, 1.0, 1.0, \
                     0, $9, $9, 1) \
                     ON CONFLICT (uuid) DO UPDATE SET host = excluded.host, \
                     vcpus = excluded.vcpus, memory_mb = excluded.memory_mb, \
                     local_gb = excluded.local_gb, generation = compute_nodes.generation + 1, \
                     updated_at = excluded.updated_at",
                )
                .bind(id)
                .bind(&host)
                .bind(&n.uuid)
                .bind(nova_core::model::NodeType::Baremetal.as_str())
                .bind("ironic")
                .bind(property(&props, "cpus"))
                .bind(property(&props, "memory_mb"))
                .bind(property(&props, "local_gb"))
                .bind(now)
                .execute(p)
                .await?;
            }
            None => {
                sqlx::query(
                    "DELETE FROM compute_nodes WHERE uuid = $1 AND node_type = $2 \
                     AND NOT EXISTS (SELECT 1 FROM allocations WHERE node_uuid = $1)",
                )
                .bind(id)
                .bind(nova_core::model::NodeType::Baremetal.as_str())
                .execute(p)
                .await?;
            }
        }
    });
    Ok(())
}

/// Takes the machine for `instance` in the claim's transaction: only a free machine still of
/// the class asked for (a PATCH may have changed it since the scheduler read it), so that of
/// two claims racing for one, one wins and the other finds it taken. `false` then.
pub async fn take(
    tx: &mut Tx,
    node: &str,
    placement_class: &str,
    instance: InstanceUuid,
    now: i64,
) -> DbResult<bool> {
    let taken = on_tx!(tx, c => {
        sqlx::query(
            "UPDATE baremetal_nodes SET instance_uuid = $2, provision_state = $3, \
             target_provision_state = $4, provision_updated_at = $5, updated_at = $5 \
             WHERE uuid = $1 AND instance_uuid IS NULL AND provision_state = $6 \
             AND maintenance = $7 AND operation IS NULL AND placement_class = $8",
        )
        .bind(node)
        .bind(instance.0.to_string())
        .bind(nova_core::baremetal::state::DEPLOYING)
        .bind(nova_core::baremetal::state::ACTIVE)
        .bind(now)
        .bind(nova_core::baremetal::state::AVAILABLE)
        .bind(false)
        .bind(placement_class)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(taken == 1)
}

/// Frees the machine `instance` held, in the transaction that releases its claim (the server
/// is gone, or its deploy failed), and starts its cleaning as Ironic does after an instance
/// (`cleaning`, aiming at `available`): the operation `operation`, which the conductor sends
/// after the commit and which fails at `deadline`. The machine's node, if there was one.
pub async fn release_machine(
    tx: &mut Tx,
    instance: InstanceUuid,
    operation: &str,
    deadline: i64,
    now: i64,
) -> DbResult<Option<String>> {
    let released: Option<(String,)> = on_tx!(tx, c => {
        sqlx::query_as(
            "UPDATE baremetal_nodes SET instance_uuid = NULL, provision_state = $2, \
             target_provision_state = $3, operation = $4, operation_kind = $5, \
             operation_deadline = $6, last_error = NULL, target_power_state = NULL, \
             provision_updated_at = $7, updated_at = $7 WHERE instance_uuid = $1 \
             RETURNING uuid",
        )
        .bind(instance.0.to_string())
        .bind(nova_core::baremetal::state::CLEANING)
        .bind(nova_core::baremetal::state::AVAILABLE)
        .bind(operation)
        .bind(nova_core::rpc::NodeOperationKind::Clean.name())
        .bind(deadline)
        .bind(now)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(released.map(|(uuid,)| uuid))
}

/// The machine of `instance` is deployed: `active`.
pub async fn activate(db: &Db, instance: InstanceUuid, power: &str, now: i64) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE baremetal_nodes SET provision_state = $2, target_provision_state = NULL, \
             power_state = $3, last_error = NULL, provision_updated_at = $4, updated_at = $4 \
             WHERE instance_uuid = $1 AND provision_state = $5",
        )
        .bind(instance.0.to_string())
        .bind(nova_core::baremetal::state::ACTIVE)
        .bind(power)
        .bind(now)
        .bind(nova_core::baremetal::state::DEPLOYING)
        .execute(p)
        .await?;
    });
    Ok(())
}
