//! State changes: the transitions a user action starts (compare-and-set inside one
//! transaction with its action and task) and the compare-and-set updates the conductor applies.
//! Every update names the state it expects, so a late or duplicated message cannot move a
//! server backwards.

use crate::actions::{self, Requester};
use crate::{corrupt, on_pool, on_tx, tasks, Db, DbError, DbResult, Tx};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::model::{Address, Fault, PowerState, TaskState, VmState};
use nova_core::rpc::TaskKind;
use nova_core::time::now_ms;

/// Which states a user action may start from, and the task state it sets.
#[derive(Clone, Copy, Debug)]
pub struct TransitionRule {
    pub from_vm_states: &'static [VmState],
    pub task_state: TaskState,
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("instance not found")]
    NotFound,
    #[error("instance is in vm_state {vm_state} and task_state {task_state:?}")]
    Conflict {
        vm_state: VmState,
        task_state: Option<TaskState>,
    },
    /// The server is locked and the caller may not override the lock (Nova's
    /// `check_instance_lock`).
    #[error("instance is locked")]
    Locked,
    /// The server's node type cannot do the action (Nova's drivers raise
    /// NotImplementedError): why, as [`TaskKind::unsupported_on`] says.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// A stop or start of a server that has no host (its build was never placed): Nova's
    /// `check_instance_host`, InstanceNotReady.
    #[error("instance has no host")]
    NotReady,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A user action begun: its task, and, when its caller sends the task's command to the
/// server's host itself ([`TaskKind::host_command`]), the host and the command (the task is
/// written dispatched). None: the task waits for the conductor (written pending).
#[derive(Clone, Debug)]
pub struct Begun {
    pub task: TaskId,
    pub to_host: Option<(String, nova_core::rpc::ComputeCommand)>,
}

/// Starts a user action: sets the task state if the server is in one of the rule's vm states
/// with no task running, and writes the action and task rows, all in one transaction.
/// `project` limits the lookup to one project (`None`: any, for admins); a locked server
/// refuses unless `lock_override` (admins, as Nova).
pub async fn begin_action(
    db: &Db,
    uuid: InstanceUuid,
    project: Option<&str>,
    lock_override: bool,
    rule: TransitionRule,
    kind: TaskKind,
    who: &Requester<'_>,
) -> Result<Begun, TransitionError> {
    let mut tx = db.begin().await?;
    let current = lock_current(&mut tx, uuid, project).await?;
    let Some(Current {
        vm_state,
        task_state,
        locked,
        host,
        node_type,
    }) = current
    else {
        return Err(TransitionError::NotFound);
    };
    if locked && !lock_override {
        return Err(TransitionError::Locked);
    }
    // Nova checks the host of a stop or start after the lock and before the state.
    if matches!(kind, TaskKind::Stop | TaskKind::Start) && host.is_none() {
        return Err(TransitionError::NotReady);
    }
    // Delete may interrupt any task but another delete (Nova allows deleting a server that is
    // building, stopping, …); every other action needs the server idle.
    let idle_ok = task_state.is_none()
        || (rule.task_state == TaskState::Deleting && task_state != Some(TaskState::Deleting));
    if !rule.from_vm_states.contains(&vm_state) || !idle_ok {
        return Err(TransitionError::Conflict {
            vm_state,
            task_state,
        });
    }
    // What its node type cannot do is refused once the action could begin (Nova reaches its
    // driver only then: a server in the wrong state gets the 409), before anything is written.
    if let Some(reason) = kind.unsupported_on(node_type) {
        return Err(TransitionError::Unsupported(reason));
    }
    // A soft delete sets when the server is reclaimed. (A restore leaves it: a restore that
    // fails leaves the server SOFT_DELETED, to be reclaimed still; once restored, the time
    // means nothing, as only SOFT_DELETED servers are reclaimed.)
    let (touch_reclaim, reclaim_at) = match kind {
        TaskKind::SoftDelete { reclaim_at } => (true, Some(reclaim_at)),
        _ => (false, None),
    };
    on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE instances SET task_state = $2, updated_at = $3, \
             reclaim_at = CASE WHEN $4 THEN $5 ELSE reclaim_at END WHERE uuid = $1",
        )
        .bind(uuid.0)
        .bind(rule.task_state.as_str())
        .bind(now_ms())
        .bind(touch_reclaim)
        .bind(reclaim_at)
        .execute(&mut *c)
        .await
        .map_err(DbError::from)?;
    });
    let action_id = actions::start(&mut tx, uuid, kind.action_name(), who).await?;
    let host = host.filter(|_| kind.goes_to_the_host());
    let state = if host.is_some() {
        tasks::TaskState::Dispatched
    } else {
        tasks::TaskState::Pending
    };
    let task = tasks::insert_as(&mut tx, uuid, kind, who.request_id, action_id, state).await?;
    tx.commit().await?;
    let to_host = host.and_then(|h| Some((h, kind.host_command(task, uuid)?)));
    Ok(Begun { task, to_host })
}

/// A shelved server's placement, given up or undone: its host and node cleared and its shelved
/// image recorded (`Some`) or kept (`None`), in `tx` (the caller's transition says the states).
pub async fn set_offloaded(
    tx: &mut Tx,
    uuid: InstanceUuid,
    shelved_image: Option<&str>,
) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET host = NULL, node = NULL, \
             shelved_image_id = COALESCE($2, shelved_image_id), updated_at = $3 WHERE uuid = $1",
        )
        .bind(uuid.0)
        .bind(shelved_image)
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Writes where a server asks to be placed: its availability zone (`None`: any) and its
/// scheduler hints (an unshelve's zone and host, as Nova's request spec takes them).
pub async fn set_placement(
    db: &Db,
    uuid: InstanceUuid,
    availability_zone: Option<&str>,
    hints: &nova_core::model::SchedulerHints,
) -> DbResult<()> {
    let hints = serde_json::to_string(hints).map_err(|e| corrupt(e.to_string()))?;
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE instances SET availability_zone = $2, scheduler_hints = $3, updated_at = $4 \
             WHERE uuid = $1",
        )
        .bind(uuid.0)
        .bind(availability_zone)
        .bind(hints)
        .bind(now_ms())
        .execute(p)
        .await?;
    });
    Ok(())
}

/// Forgets a server's shelved image (unshelved).
pub async fn clear_shelved_image(tx: &mut Tx, uuid: InstanceUuid) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query("UPDATE instances SET shelved_image_id = NULL WHERE uuid = $1")
            .bind(uuid.0)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// The image a shelved server is unshelved from.
pub async fn shelved_image(db: &Db, uuid: InstanceUuid) -> DbResult<Option<String>> {
    let row: Option<(Option<String>,)> = on_pool!(db, p => {
        sqlx::query_as("SELECT shelved_image_id FROM instances WHERE uuid = $1")
            .bind(uuid.0)
            .fetch_optional(p)
            .await?
    });
    Ok(row.and_then(|(i,)| i))
}

/// Starts the reclaim of a SOFT_DELETED server whose time has passed (Nova's
/// `_reclaim_queued_deletes`): in one transaction, only if it is still SOFT_DELETED with no task
/// running and its `reclaim_at` not after `now` (a restore begun meanwhile wins), the task state
/// `deleting`, a delete action as its owner's, and the task. `None` when it moved on.
pub async fn begin_reclaim(
    db: &Db,
    uuid: InstanceUuid,
    now: nova_core::time::Millis,
    who: &Requester<'_>,
) -> DbResult<Option<TaskId>> {
    let mut tx = db.begin().await?;
    let n = on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE instances SET task_state = $3, updated_at = $2 WHERE uuid = $1 \
             AND NOT deleted AND vm_state = $4 AND task_state IS NULL \
             AND reclaim_at IS NOT NULL AND reclaim_at <= $2",
        )
        .bind(uuid.0)
        .bind(now)
        .bind(TaskState::Deleting.as_str())
        .bind(VmState::SoftDeleted.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if n != 1 {
        return Ok(None);
    }
    let kind = TaskKind::Delete;
    let action_id = actions::start(&mut tx, uuid, kind.action_name(), who).await?;
    let task = tasks::insert(&mut tx, uuid, kind, who.request_id, action_id).await?;
    tx.commit().await?;
    Ok(Some(task))
}

/// Reads the states (and whether it is locked) of a live instance inside `tx`; on PostgreSQL
/// the row is locked so that two concurrent actions cannot both pass the check (SQLite
/// serialises writers anyway).
/// What [`lock_current`] reads of a live instance.
struct Current {
    vm_state: VmState,
    task_state: Option<TaskState>,
    locked: bool,
    host: Option<String>,
    node_type: nova_core::model::NodeType,
}

async fn lock_current(
    tx: &mut Tx,
    uuid: InstanceUuid,
    project: Option<&str>,
) -> DbResult<Option<Current>> {
    let lock = if matches!(tx, Tx::Pg(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT vm_state, task_state, locked_by, host, node_type FROM instances WHERE uuid = $1 \
         AND NOT deleted AND ($2 IS NULL OR project_id = $2){lock}"
    );
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let row: Option<Row> = on_tx!(tx, c => {
        sqlx::query_as(&sql)
            .bind(uuid.0)
            .bind(project)
            .fetch_optional(&mut *c)
            .await?
    });
    let Some((vm, task, locked_by, host, node_type)) = row else {
        return Ok(None);
    };
    let vm = VmState::parse(&vm).ok_or_else(|| corrupt(format!("vm_state {vm}")))?;
    let task = match task {
        None => None,
        Some(t) => Some(TaskState::parse(&t).ok_or_else(|| corrupt(format!("task_state {t}")))?),
    };
    let node_type = nova_core::model::NodeType::parse(&node_type)
        .ok_or_else(|| corrupt(format!("node_type {node_type}")))?;
    Ok(Some(Current {
        vm_state: vm,
        task_state: task,
        locked: locked_by.is_some(),
        host,
        node_type,
    }))
}

/// The states an update expects to find; a mismatch makes it a no-op.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub vm_state: Option<VmState>,
    pub task_state: Option<TaskState>,
}

/// The states an update sets.
#[derive(Clone, Debug)]
pub struct SetStates {
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: Option<PowerState>,
    /// Sets `launched_at` to now (a build or a start finished).
    pub launched: bool,
    /// Replaces the server's addresses (a build finished).
    pub addresses: Option<Vec<Address>>,
}

/// Compare-and-set of the states of a live instance; true when it matched and changed.
pub async fn transition(
    tx: &mut Tx,
    uuid: InstanceUuid,
    expect: Expect,
    set: SetStates,
) -> DbResult<bool> {
    let now = now_ms();
    let addresses = match &set.addresses {
        Some(a) => Some(serde_json::to_string(a).map_err(|e| corrupt(e.to_string()))?),
        None => None,
    };
    let n = on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET vm_state = $2, task_state = $3, \
             power_state = COALESCE($4, power_state), \
             launched_at = CASE WHEN $5 THEN $6 ELSE launched_at END, updated_at = $6, \
             addresses = COALESCE($9, addresses) \
             WHERE uuid = $1 AND NOT deleted \
             AND ($7 IS NULL OR vm_state = $7) AND ($8 IS NULL OR task_state = $8)",
        )
        .bind(uuid.0)
        .bind(set.vm_state.as_str())
        .bind(set.task_state.map(|t| t.as_str()))
        .bind(set.power_state.map(PowerState::code))
        .bind(set.launched)
        .bind(now)
        .bind(expect.vm_state.map(|v| v.as_str()))
        .bind(expect.task_state.map(|t| t.as_str()))
        .bind(&addresses)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Records where the scheduler placed a building instance and moves it to spawning; false when
/// it is no longer building/scheduling (deleted meanwhile, or a duplicate message).
pub async fn assign_host(
    tx: &mut Tx,
    uuid: InstanceUuid,
    host: &str,
    node: &str,
) -> DbResult<bool> {
    assign_host_from(
        tx,
        uuid,
        host,
        node,
        (VmState::Building, TaskState::Scheduling),
    )
    .await
}

/// [`assign_host`] for an instance placed from other states (an unshelve's).
pub async fn assign_host_from(
    tx: &mut Tx,
    uuid: InstanceUuid,
    host: &str,
    node: &str,
    (vm_state, task_state): (VmState, TaskState),
) -> DbResult<bool> {
    let n = on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET host = $2, node = $3, task_state = $4, updated_at = $5 \
             WHERE uuid = $1 AND NOT deleted AND vm_state = $6 AND task_state = $7",
        )
        .bind(uuid.0)
        .bind(host)
        .bind(node)
        .bind(TaskState::Spawning.as_str())
        .bind(now_ms())
        .bind(vm_state.as_str())
        .bind(task_state.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Puts a live instance in ERROR with a fault. The fault is written only when the state
/// changed, so a duplicate failure report does not pile up faults.
pub async fn set_error(
    tx: &mut Tx,
    uuid: InstanceUuid,
    expect: Expect,
    fault: &Fault,
    host: Option<&str>,
) -> DbResult<bool> {
    let set = SetStates {
        vm_state: VmState::Error,
        task_state: None,
        power_state: None,
        launched: false,
        addresses: None,
    };
    if !transition(tx, uuid, expect, set).await? {
        return Ok(false);
    }
    add_fault(tx, uuid, fault, host).await?;
    Ok(true)
}

/// Records a fault without changing states (a failed stop keeps the server ACTIVE, as Nova).
pub async fn add_fault(
    tx: &mut Tx,
    uuid: InstanceUuid,
    fault: &Fault,
    host: Option<&str>,
) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO instance_faults (instance_uuid, code, message, details, host, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid.0)
        .bind(fault.code)
        .bind(&fault.message)
        .bind(&fault.details)
        .bind(host)
        .bind(fault.created_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Marks an instance deleted (soft delete, as Nova keeps the row); false if it already was.
pub async fn mark_deleted(tx: &mut Tx, uuid: InstanceUuid) -> DbResult<bool> {
    let now = now_ms();
    let n = on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET vm_state = $2, task_state = NULL, deleted = $3, \
             deleted_at = $4, terminated_at = $4, updated_at = $4 WHERE uuid = $1 AND NOT deleted",
        )
        .bind(uuid.0)
        .bind(VmState::Deleted.as_str())
        .bind(true)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// An admin's `os-resetState`: the server's vm state becomes `vm_state` and its task state is
/// cleared, whatever they were (Nova's reset_state); false when there is no such live server.
pub async fn reset_state(db: &Db, uuid: InstanceUuid, vm_state: VmState) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "UPDATE instances SET vm_state = $2, task_state = NULL, updated_at = $3 \
             WHERE uuid = $1 AND NOT deleted",
        )
        .bind(uuid.0)
        .bind(vm_state.as_str())
        .bind(now_ms())
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Replaces the addresses of a live server on `host` with no task running (seen on its host
/// after the build); the conditions are checked in the write itself.
pub async fn set_addresses(
    db: &Db,
    uuid: InstanceUuid,
    host: &str,
    addresses: &[Address],
) -> DbResult<()> {
    let text = serde_json::to_string(addresses).map_err(|e| corrupt(e.to_string()))?;
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE instances SET addresses = $2, updated_at = $3 WHERE uuid = $1 AND NOT deleted \
             AND host = $4 AND task_state IS NULL AND vm_state IN ('active', 'stopped')",
        )
        .bind(uuid.0)
        .bind(&text)
        .bind(now_ms())
        .bind(host)
        .execute(p)
        .await?;
    });
    Ok(())
}

/// Records the power state the sync loop observed.
pub async fn set_power_state(db: &Db, uuid: InstanceUuid, power: PowerState) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("UPDATE instances SET power_state = $2, updated_at = $3 WHERE uuid = $1")
            .bind(uuid.0)
            .bind(power.code())
            .bind(now_ms())
            .execute(p)
            .await?;
    });
    Ok(())
}

/// Replaces what a server's networks are (an interface attached or detached), with the
/// addresses that follow from them, for a live server with no task running.
pub async fn set_networks(
    db: &Db,
    uuid: InstanceUuid,
    networks: &nova_core::model::NetworkRequest,
    addresses: &[Address],
) -> DbResult<bool> {
    let text = serde_json::to_string(addresses).map_err(|e| corrupt(e.to_string()))?;
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE instances SET networks = $2, addresses = $3, updated_at = $4 \
             WHERE uuid = $1 AND NOT deleted AND task_state IS NULL",
        )
        .bind(uuid.0)
        .bind(networks.to_column())
        .bind(&text)
        .bind(now_ms())
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}
