//! Creating servers: one request's servers, each with its `create` action and build task, in
//! one transaction that also admits the project's usage under its quota.

use super::{NewInstance, ServerUsage};
use crate::actions::{self, Requester};
use crate::{corrupt, on_tx, tasks, Db, DbError, DbResult, Tx};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::model::{Instance, PowerState, TaskState, VmState};
use nova_core::rpc::TaskKind;
use nova_core::time::now_ms;

/// Writes the servers of one create request (building/scheduling), each with its `create`
/// action and build task, all in one transaction, once `admit` has accepted the project's usage
/// as read inside that transaction. The project's creates are serialised there (an advisory
/// lock on PostgreSQL; SQLite has one writer), so concurrent requests cannot together go over a
/// quota that each alone fits; a refusal writes nothing. The caller publishes the tasks after
/// the commit.
///
/// With an `idempotency` key, the key is looked up under the project's serialisation, before
/// the quota is checked (a request that made its servers already must not be refused for the
/// usage they added), and recorded in the same transaction for the first server: a request
/// with a live key creates nothing and answers what the key made.
pub async fn create_with_build_tasks<E, F>(
    db: &Db,
    news: &[NewInstance],
    request_id: &str,
    idempotency: Option<&crate::idempotency::IdempotencyKey>,
    admit: F,
) -> Result<Created, E>
where
    E: From<DbError>,
    F: FnOnce(ServerUsage) -> Result<(), E>,
{
    // One request's servers are all of one project.
    let Some(project) = news.first().map(|n| n.project_id.as_str()) else {
        return Ok(Created::Servers(Vec::new()));
    };
    let mut tx = db.begin().await?;
    if let Tx::Pg(t) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(QUOTA_LOCK_CLASS)
            .bind(project)
            .execute(&mut **t)
            .await
            .map_err(DbError::from)?;
    }
    if let Some(key) = idempotency {
        if let Some(recorded) = crate::idempotency::lookup_tx(&mut tx, key).await? {
            return Ok(Created::Replay(recorded));
        }
    }
    let (instances, cores, ram): (i64, i64, i64) = on_tx!(&mut tx, c => {
        sqlx::query_as(crate::quotas::SERVER_USAGE_SQL)
        .bind(project)
        .bind(false)
        .fetch_one(&mut *c)
        .await
        .map_err(DbError::from)?
    });
    // The group the servers join, locked until the commit: its member count is the one the
    // quota is checked against, and a member placed meanwhile waits (see `server_groups`).
    let first = news.first();
    let group = first
        .and_then(|n| n.scheduler_hints.group.as_deref())
        .and_then(|g| uuid::Uuid::parse_str(g).ok());
    let group_members = match (group, first) {
        (Some(g), Some(n)) => {
            crate::server_groups::lock_for_members(&mut tx, g, &n.user_id).await?
        }
        _ => None,
    };
    let usage = ServerUsage {
        instances,
        cores,
        ram,
        group_members,
    };
    admit(usage)?;
    let mut created = Vec::with_capacity(news.len());
    for new in news {
        created.push(insert_with_build_task(&mut tx, new, request_id).await?);
    }
    if let (Some(g), Some(_)) = (group, group_members) {
        for (instance, _) in &created {
            crate::server_groups::add_member(&mut tx, g, instance.uuid.0).await?;
        }
    }
    if let (Some(key), Some((first, _))) = (idempotency, created.first()) {
        crate::idempotency::record(&mut tx, key, first.uuid).await?;
    }
    tx.commit().await?;
    Ok(Created::Servers(created))
}

/// What a create request's write did.
#[derive(Debug)]
pub enum Created {
    /// Its servers, each with its build task.
    Servers(Vec<(Instance, TaskId)>),
    /// Nothing: its idempotency key made servers before.
    Replay(crate::idempotency::Recorded),
}

/// The class of the PostgreSQL advisory locks that serialise one project's server creates
/// (the second key is the project's hash).
const QUOTA_LOCK_CLASS: i32 = 0x4e4f_5641; // "NOVA"

/// One server and its `create` action and build task, inside the caller's transaction.
async fn insert_with_build_task(
    tx: &mut Tx,
    new: &NewInstance,
    request_id: &str,
) -> DbResult<(Instance, TaskId)> {
    let uuid = InstanceUuid::new_v4();
    let now = now_ms();
    let flavor = serde_json::to_string(&new.flavor).map_err(|e| corrupt(e.to_string()))?;
    let metadata = serde_json::to_string(&new.metadata).map_err(|e| corrupt(e.to_string()))?;
    let tags = serde_json::to_string(&new.tags).map_err(|e| corrupt(e.to_string()))?;
    let hostname = new
        .hostname
        .clone()
        .unwrap_or_else(|| nova_core::model::sanitize_hostname(&new.name));
    let hints = serde_json::to_string(&new.scheduler_hints).map_err(|e| corrupt(e.to_string()))?;
    let trusted = match &new.trusted_image_certificates {
        None => None,
        Some(t) => Some(serde_json::to_string(t).map_err(|e| corrupt(e.to_string()))?),
    };
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO instances (uuid, name, project_id, user_id, vm_state, task_state, \
             power_state, node_type, flavor, image_ref, metadata, user_data, availability_zone, \
             created_at, updated_at, deleted, description, key_name, key_data, tags, vcpus, \
             memory_mb, hostname, networks, scheduler_hints, flavor_id, access_ip_v4, \
             access_ip_v6, config_drive, trusted_image_certificates, auto_disk_config) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)",
        )
        .bind(uuid.0)
        .bind(&new.name)
        .bind(&new.project_id)
        .bind(&new.user_id)
        .bind(VmState::Building.as_str())
        .bind(TaskState::Scheduling.as_str())
        .bind(PowerState::NoState.code())
        .bind(new.node_type.as_str())
        .bind(&flavor)
        .bind(&new.image_ref)
        .bind(&metadata)
        .bind(&new.user_data)
        .bind(&new.availability_zone)
        .bind(now)
        .bind(false)
        .bind(&new.description)
        .bind(&new.key_name)
        .bind(&new.key_data)
        .bind(&tags)
        .bind(new.flavor.vcpus)
        .bind(new.flavor.memory_mb)
        .bind(&hostname)
        .bind(new.networks.to_column())
        .bind(&hints)
        .bind(&new.flavor.flavorid)
        .bind(&new.access_ip_v4)
        .bind(&new.access_ip_v6)
        .bind(new.config_drive)
        .bind(&trusted)
        .bind(new.auto_disk_config)
        .execute(&mut *c)
        .await?;
    });
    let who = Requester {
        request_id,
        project_id: &new.project_id,
        user_id: &new.user_id,
    };
    let action_id = actions::start(tx, uuid, TaskKind::Build.action_name(), &who).await?;
    let task = tasks::insert(tx, uuid, TaskKind::Build, request_id, action_id).await?;
    let instance = Instance {
        uuid,
        name: new.name.clone(),
        project_id: new.project_id.clone(),
        user_id: new.user_id.clone(),
        vm_state: VmState::Building,
        task_state: Some(TaskState::Scheduling),
        power_state: PowerState::NoState,
        host: None,
        node: None,
        node_type: new.node_type,
        flavor: new.flavor.clone(),
        image_ref: new.image_ref.clone(),
        metadata: new.metadata.clone(),
        user_data: new.user_data.clone(),
        availability_zone: new.availability_zone.clone(),
        launched_at: None,
        terminated_at: None,
        created_at: now,
        updated_at: now,
        deleted: false,
        fault: None,
        description: new.description.clone(),
        key_name: new.key_name.clone(),
        key_data: new.key_data.clone(),
        locked_by: None,
        locked_reason: None,
        tags: new.tags.clone(),
        hostname,
        networks: new.networks.clone(),
        addresses: Vec::new(),
        scheduler_hints: new.scheduler_hints.clone(),
        access_ip_v4: new.access_ip_v4.clone(),
        access_ip_v6: new.access_ip_v6.clone(),
        config_drive: new.config_drive,
        trusted_image_certificates: new.trusted_image_certificates.clone(),
        auto_disk_config: new.auto_disk_config,
    };
    Ok((instance, task))
}
