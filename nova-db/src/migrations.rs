//! Migrations (Nova's `migrations` records): a server's resize from its request to its confirm
//! or revert, and the claims that move with it. While the server waits in VERIFY_RESIZE it
//! holds the new flavor's claim (its `allocations` row) and its migration holds the old
//! flavor's (`held_*`), as Nova's migration record consumes the old allocation in Placement on
//! a same-host resize: the node has room for both until the user decides.

use crate::actions::{self, Requester};
use crate::instances::{lock_live, TransitionError};
use crate::{corrupt, on_pool, on_tx, DbError, DbResult, Tx};
use nova_core::ids::{InstanceUuid, NodeUuid, TaskId};
use nova_core::model::{Flavor, Instance, TaskState, VmState};
use nova_core::rpc::TaskKind;
use nova_core::time::{now_ms, Millis};
use uuid::Uuid;

/// Nova's migration statuses, as far as a resize goes.
pub mod status {
    pub const PRE_MIGRATING: &str = "pre-migrating";
    pub const MIGRATING: &str = "migrating";
    pub const FINISHED: &str = "finished";
    pub const CONFIRMING: &str = "confirming";
    pub const CONFIRMED: &str = "confirmed";
    pub const REVERTING: &str = "reverting";
    pub const REVERTED: &str = "reverted";
    pub const ERROR: &str = "error";
    /// Those of a migration still under way (Nova's "in progress" ones for a resize).
    pub const IN_PROGRESS: &[&str] = &[PRE_MIGRATING, MIGRATING, FINISHED, CONFIRMING, REVERTING];
}

/// One migration record.
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    pub id: i64,
    pub uuid: Uuid,
    pub instance: InstanceUuid,
    pub project_id: String,
    pub user_id: String,
    pub migration_type: String,
    pub status: String,
    pub source_compute: Option<String>,
    pub source_node: Option<String>,
    pub dest_compute: Option<String>,
    pub dest_node: Option<String>,
    pub old_flavor: Flavor,
    pub new_flavor: Flavor,
    /// What the server returns to after a confirm or a revert: active or stopped.
    pub old_vm_state: VmState,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const COLUMNS: &str = "id, uuid, instance_uuid, project_id, user_id, migration_type, status, \
     source_compute, source_node, dest_compute, dest_node, old_flavor, new_flavor, old_vm_state, \
     created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    uuid: Uuid,
    instance_uuid: Uuid,
    project_id: String,
    user_id: String,
    migration_type: String,
    status: String,
    source_compute: Option<String>,
    source_node: Option<String>,
    dest_compute: Option<String>,
    dest_node: Option<String>,
    old_flavor: String,
    new_flavor: String,
    old_vm_state: String,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    fn into_model(self) -> DbResult<Migration> {
        let flavor = |s: &str| -> DbResult<Flavor> {
            serde_json::from_str(s).map_err(|e| corrupt(format!("migration flavor: {e}")))
        };
        Ok(Migration {
            id: self.id,
            uuid: self.uuid,
            instance: InstanceUuid(self.instance_uuid),
            old_flavor: flavor(&self.old_flavor)?,
            new_flavor: flavor(&self.new_flavor)?,
            old_vm_state: VmState::parse(&self.old_vm_state)
                .ok_or_else(|| corrupt(format!("old_vm_state {}", self.old_vm_state)))?,
            project_id: self.project_id,
            user_id: self.user_id,
            migration_type: self.migration_type,
            status: self.status,
            source_compute: self.source_compute,
            source_node: self.source_node,
            dest_compute: self.dest_compute,
            dest_node: self.dest_node,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Why a resize (or its confirm or revert) cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ResizeRefused<E> {
    #[error(transparent)]
    State(#[from] TransitionError),
    /// Confirm or revert of a server with no finished resize (Nova's MigrationNotFound).
    #[error("instance has not been resized")]
    NotResized,
    /// The caller's own check refused it.
    #[error("refused")]
    Check(E),
}

impl<E> From<DbError> for ResizeRefused<E> {
    fn from(e: DbError) -> Self {
        Self::State(TransitionError::Db(e))
    }
}

/// Starts a resize (Nova's `resize`): in one transaction, with the server's row locked on
/// PostgreSQL, checks that it is ACTIVE or SHUTOFF with no task running (and not locked, unless
/// `lock_override`), asks `check` for the new flavor (its own refusals: the flavor, the quota),
/// writes the migration (`pre-migrating`), sets the task state `resize_prep`, and writes the
/// action and the task. The server's `auto_disk_config` becomes `auto_disk_config`, as Nova's
/// resize sets it (false when the request names none).
#[allow(clippy::too_many_arguments)]
pub async fn begin_resize<E, F>(
    db: &crate::Db,
    uuid: InstanceUuid,
    project: Option<&str>,
    lock_override: bool,
    who: &Requester<'_>,
    auto_disk_config: bool,
    check: F,
) -> Result<TaskId, ResizeRefused<E>>
where
    F: FnOnce(&Instance) -> Result<Flavor, E>,
{
    let mut tx = db.begin().await?;
    let instance = live(&mut tx, uuid, project, lock_override).await?;
    if !matches!(instance.vm_state, VmState::Active | VmState::Stopped)
        || instance.task_state.is_some()
    {
        return Err(TransitionError::Conflict {
            vm_state: instance.vm_state,
            task_state: instance.task_state,
        }
        .into());
    }
    let new_flavor = check(&instance).map_err(ResizeRefused::Check)?;
    let now = now_ms();
    let flavors = (
        serde_json::to_string(&instance.flavor).map_err(|e| corrupt(e.to_string()))?,
        serde_json::to_string(&new_flavor).map_err(|e| corrupt(e.to_string()))?,
    );
    on_tx!(&mut tx, c => {
        sqlx::query(
            "INSERT INTO migrations (uuid, instance_uuid, project_id, user_id, migration_type, \
             status, source_compute, source_node, old_flavor, new_flavor, old_vm_state, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'resize', $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(Uuid::new_v4())
        .bind(uuid.0)
        .bind(&instance.project_id)
        .bind(&instance.user_id)
        .bind(status::PRE_MIGRATING)
        .bind(&instance.host)
        .bind(&instance.node)
        .bind(&flavors.0)
        .bind(&flavors.1)
        .bind(instance.vm_state.as_str())
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(DbError::from)?;
        sqlx::query(
            "UPDATE instances SET task_state = $2, updated_at = $3, auto_disk_config = $4 \
             WHERE uuid = $1",
        )
            .bind(uuid.0)
            .bind(TaskState::ResizePrep.as_str())
            .bind(now)
            .bind(auto_disk_config)
            .execute(&mut *c)
            .await
            .map_err(DbError::from)?;
    });
    let kind = TaskKind::Resize;
    let action = actions::start(&mut tx, uuid, kind.action_name(), who).await?;
    let task = crate::tasks::insert(&mut tx, uuid, kind, who.request_id, action).await?;
    tx.commit().await?;
    Ok(task)
}

/// Starts the confirm or the revert of a server's finished resize (Nova's `confirm_resize`
/// and `revert_resize`): as Nova checks them, the lock and the state first (VERIFY_RESIZE with
/// no task running), then a `finished` migration (else [`ResizeRefused::NotResized`]; with
/// `only`, that migration). A confirm marks the migration `confirming` and leaves the task
/// state empty, as Nova's; a revert marks it `reverting` and sets the task state
/// `resize_reverting`.
pub async fn begin_resize_end(
    db: &crate::Db,
    uuid: InstanceUuid,
    project: Option<&str>,
    lock_override: bool,
    who: &Requester<'_>,
    confirm: bool,
    only: Option<i64>,
) -> Result<TaskId, ResizeRefused<std::convert::Infallible>> {
    let mut tx = db.begin().await?;
    let instance = live(&mut tx, uuid, project, lock_override).await?;
    if instance.vm_state != VmState::Resized || instance.task_state.is_some() {
        return Err(TransitionError::Conflict {
            vm_state: instance.vm_state,
            task_state: instance.task_state,
        }
        .into());
    }
    let finished = in_progress(&mut tx, uuid)
        .await?
        .filter(|m| m.status == status::FINISHED && only.is_none_or(|id| id == m.id));
    let Some(migration) = finished else {
        return Err(ResizeRefused::NotResized);
    };
    let (to, task_state, kind) = if confirm {
        (status::CONFIRMING, None, TaskKind::ConfirmResize)
    } else {
        (
            status::REVERTING,
            Some(TaskState::ResizeReverting),
            TaskKind::RevertResize,
        )
    };
    set_status(&mut tx, migration.id, &[status::FINISHED], to).await?;
    if let Some(t) = task_state {
        on_tx!(&mut tx, c => {
            sqlx::query("UPDATE instances SET task_state = $2, updated_at = $3 WHERE uuid = $1")
                .bind(uuid.0)
                .bind(t.as_str())
                .bind(now_ms())
                .execute(&mut *c)
                .await
                .map_err(DbError::from)?;
        });
    }
    let action = actions::start(&mut tx, uuid, kind.action_name(), who).await?;
    let task = crate::tasks::insert(&mut tx, uuid, kind, who.request_id, action).await?;
    tx.commit().await?;
    Ok(task)
}

/// The live server, checked against its lock.
async fn live(
    tx: &mut Tx,
    uuid: InstanceUuid,
    project: Option<&str>,
    lock_override: bool,
) -> Result<Instance, TransitionError> {
    let row = lock_live(tx, uuid, project).await?;
    let Some(row) = row else {
        return Err(TransitionError::NotFound);
    };
    let instance = row.into_model(None)?;
    if instance.locked_by.is_some() && !lock_override {
        return Err(TransitionError::Locked);
    }
    Ok(instance)
}

/// The migration of `instance` still under way, if any (there is one at most: a resize starts
/// only from ACTIVE or SHUTOFF, which a migration under way leaves the server out of).
pub async fn in_progress(tx: &mut Tx, instance: InstanceUuid) -> DbResult<Option<Migration>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migrations WHERE instance_uuid = $1 \
         AND status IN ($2, $3, $4, $5, $6) ORDER BY id DESC LIMIT 1"
    );
    let row: Option<Row> = on_tx!(tx, c => {
        let mut q = sqlx::query_as(&sql).bind(instance.0);
        for s in status::IN_PROGRESS {
            q = q.bind(*s);
        }
        q.fetch_optional(&mut *c).await?
    });
    row.map(Row::into_model).transpose()
}

/// [`in_progress`] outside a transaction.
pub async fn current(db: &crate::Db, instance: InstanceUuid) -> DbResult<Option<Migration>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migrations WHERE instance_uuid = $1 \
         AND status IN ($2, $3, $4, $5, $6) ORDER BY id DESC LIMIT 1"
    );
    let row: Option<Row> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql).bind(instance.0);
        for s in status::IN_PROGRESS {
            q = q.bind(*s);
        }
        q.fetch_optional(p).await?
    });
    row.map(Row::into_model).transpose()
}

/// Moves a migration from one of `from` to `to`; false when it was in none of them.
pub async fn set_status(tx: &mut Tx, id: i64, from: &[&str], to: &str) -> DbResult<bool> {
    let sql = format!(
        "UPDATE migrations SET status = $2, updated_at = $3 WHERE id = $1 AND status IN ({})",
        crate::placeholders(4, from.len())
    );
    let n = on_tx!(tx, c => {
        let mut q = sqlx::query(&sql).bind(id).bind(to).bind(now_ms());
        for s in from {
            q = q.bind(*s);
        }
        q.execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// How a resize's claim went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeClaim {
    /// The server holds the new flavor on its node, its migration the old one; the migration
    /// is `migrating` and the server `resize_migrating`.
    Claimed,
    /// The node has no room for the new flavor beside the old one: nothing changed.
    NoRoom,
    /// The migration or the server moved on (a duplicate message, a delete): nothing changed.
    Superseded,
}

/// Claims the new flavor for a `pre-migrating` resize on the server's own node, in one
/// transaction: the server's claim moves to its migration (held), the new one is made beside it
/// if the node has room for it, and the migration and the server move on. (The scheduler does
/// not look at other hosts: a move between hosts waits for the multi-host work.)
pub async fn claim(db: &crate::Db, migration: &Migration) -> DbResult<ResizeClaim> {
    let mut tx = db.begin().await?;
    if !set_status(
        &mut tx,
        migration.id,
        &[status::PRE_MIGRATING],
        status::MIGRATING,
    )
    .await?
    {
        return Ok(ResizeClaim::Superseded);
    }
    let held: Option<(Uuid, i64, i64, i64)> = on_tx!(&mut tx, c => {
        sqlx::query_as(
            "DELETE FROM allocations WHERE instance_uuid = $1 \
             RETURNING node_uuid, vcpus, memory_mb, disk_gb",
        )
        .bind(migration.instance.0)
        .fetch_optional(&mut *c)
        .await?
    });
    let Some((node, vcpus, memory_mb, disk_gb)) = held else {
        // A server without a claim (its build failed) has nothing to resize.
        return Ok(ResizeClaim::Superseded);
    };
    let new = &migration.new_flavor;
    let now = now_ms();
    let outcome = on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE migrations SET held_node_uuid = $2, held_vcpus = $3, held_memory_mb = $4, \
             held_disk_gb = $5, dest_compute = source_compute, dest_node = source_node \
             WHERE id = $1",
        )
        .bind(migration.id)
        .bind(node)
        .bind(vcpus)
        .bind(memory_mb)
        .bind(disk_gb)
        .execute(&mut *c)
        .await?;
        let room = sqlx::query(
            "UPDATE compute_nodes SET vcpus_used = vcpus_used + $2, \
             memory_mb_used = memory_mb_used + $3, local_gb_used = local_gb_used + $4, \
             generation = generation + 1, updated_at = $5 \
             WHERE uuid = $1 \
             AND vcpus_used + $2 <= vcpus * cpu_allocation_ratio \
             AND memory_mb_used + $3 <= memory_mb * ram_allocation_ratio \
             AND local_gb_used + $4 <= local_gb * disk_allocation_ratio",
        )
        .bind(node)
        .bind(new.vcpus)
        .bind(new.memory_mb)
        .bind(new.root_gb + new.ephemeral_gb)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if room != 1 {
            ResizeClaim::NoRoom
        } else {
            sqlx::query(
                "INSERT INTO allocations (instance_uuid, node_uuid, vcpus, memory_mb, disk_gb, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(migration.instance.0)
            .bind(node)
            .bind(new.vcpus)
            .bind(new.memory_mb)
            .bind(new.root_gb + new.ephemeral_gb)
            .bind(now)
            .execute(&mut *c)
            .await?;
            let moved = sqlx::query(
                "UPDATE instances SET task_state = $2, updated_at = $3 \
                 WHERE uuid = $1 AND NOT deleted AND task_state = $4",
            )
            .bind(migration.instance.0)
            .bind(TaskState::ResizeMigrating.as_str())
            .bind(now)
            .bind(TaskState::ResizePrep.as_str())
            .execute(&mut *c)
            .await?
            .rows_affected();
            if moved == 1 {
                ResizeClaim::Claimed
            } else {
                ResizeClaim::Superseded
            }
        }
    });
    if outcome != ResizeClaim::Claimed {
        // Rolled back: the server keeps its claim, the migration stays pre-migrating for the
        // caller to end.
        return Ok(outcome);
    }
    tx.commit().await?;
    Ok(ResizeClaim::Claimed)
}

/// Lets go of the old flavor's claim a migration holds (a confirm, or the server's delete).
pub async fn release_held(tx: &mut Tx, instance: InstanceUuid) -> DbResult<()> {
    let held: Vec<(i64,)> = on_tx!(tx, c => {
        sqlx::query_as(
            "SELECT id FROM migrations WHERE instance_uuid = $1 AND held_node_uuid IS NOT NULL",
        )
        .bind(instance.0)
        .fetch_all(&mut *c)
        .await?
    });
    for (id,) in held {
        release_held_of(tx, id).await?;
    }
    Ok(())
}

/// Lets go of the old flavor's claim one migration holds (a resize that will never be
/// confirmed or reverted: its server moved on).
pub async fn release_held_of(tx: &mut Tx, migration_id: i64) -> DbResult<()> {
    let now = now_ms();
    on_tx!(tx, c => {
        let held: Option<(Uuid, i64, i64, i64)> = sqlx::query_as(
            "SELECT held_node_uuid, held_vcpus, held_memory_mb, held_disk_gb \
             FROM migrations WHERE id = $1 AND held_node_uuid IS NOT NULL",
        )
        .bind(migration_id)
        .fetch_optional(&mut *c)
        .await?;
        if let Some((node, vcpus, memory_mb, disk_gb)) = held {
            sqlx::query(crate::nodes::GIVE_BACK)
            .bind(node)
            .bind(vcpus)
            .bind(memory_mb)
            .bind(disk_gb)
            .bind(now)
            .execute(&mut *c)
            .await?;
            sqlx::query(CLEAR_HELD).bind(migration_id).execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Ends the migrations under way of a server being deleted (their claims go with the
/// server's): a finished or confirming resize counts as confirmed, as Nova's
/// `_confirm_resize_on_deleting`; any other ends in `error`.
pub async fn end_with_server(tx: &mut Tx, instance: InstanceUuid) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query(
            "UPDATE migrations SET status = CASE WHEN status IN ($2, $3) THEN $4 ELSE $5 END, \
             updated_at = $6 WHERE instance_uuid = $1 AND status IN ($7, $8, $9, $10, $11)",
        )
        .bind(instance.0)
        .bind(status::FINISHED)
        .bind(status::CONFIRMING)
        .bind(status::CONFIRMED)
        .bind(status::ERROR)
        .bind(now_ms())
        .bind(status::IN_PROGRESS[0])
        .bind(status::IN_PROGRESS[1])
        .bind(status::IN_PROGRESS[2])
        .bind(status::IN_PROGRESS[3])
        .bind(status::IN_PROGRESS[4])
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Gives the server back the old flavor's claim its migration holds, in place of the new one
/// (a revert, or a resize that failed on its host). A no-op when nothing is held.
pub async fn restore_held(tx: &mut Tx, migration_id: i64) -> DbResult<()> {
    let now = now_ms();
    on_tx!(tx, c => {
        let held: Option<(Uuid, Uuid, i64, i64, i64)> = sqlx::query_as(
            "SELECT instance_uuid, held_node_uuid, held_vcpus, held_memory_mb, held_disk_gb \
             FROM migrations WHERE id = $1 AND held_node_uuid IS NOT NULL",
        )
        .bind(migration_id)
        .fetch_optional(&mut *c)
        .await?;
        if let Some((instance, node, vcpus, memory_mb, disk_gb)) = held {
            // The new flavor's claim goes (the node's usage with it); the held one was never
            // taken off the node, so it only changes hands.
            let gone: Option<(Uuid, i64, i64, i64)> = sqlx::query_as(
                "DELETE FROM allocations WHERE instance_uuid = $1 \
                 RETURNING node_uuid, vcpus, memory_mb, disk_gb",
            )
            .bind(instance)
            .fetch_optional(&mut *c)
            .await?;
            if let Some((n, v, m, d)) = gone {
                sqlx::query(crate::nodes::GIVE_BACK)
                .bind(n)
                .bind(v)
                .bind(m)
                .bind(d)
                .bind(now)
                .execute(&mut *c)
                .await?;
            }
            sqlx::query(
                "INSERT INTO allocations (instance_uuid, node_uuid, vcpus, memory_mb, disk_gb, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(instance)
            .bind(node)
            .bind(vcpus)
            .bind(memory_mb)
            .bind(disk_gb)
            .bind(now)
            .execute(&mut *c)
            .await?;
            sqlx::query(CLEAR_HELD).bind(migration_id).execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Empties a migration's held claim (bound: its id).
const CLEAR_HELD: &str = "UPDATE migrations SET held_node_uuid = NULL, held_vcpus = NULL, \
     held_memory_mb = NULL, held_disk_gb = NULL WHERE id = $1";

/// Gives the server `flavor` (its snapshot and the columns quotas count), in `tx`.
pub async fn set_flavor(tx: &mut Tx, instance: InstanceUuid, flavor: &Flavor) -> DbResult<()> {
    let json = serde_json::to_string(flavor).map_err(|e| corrupt(e.to_string()))?;
    on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET flavor = $2, flavor_id = $3, vcpus = $4, memory_mb = $5, \
             updated_at = $6 WHERE uuid = $1",
        )
        .bind(instance.0)
        .bind(&json)
        .bind(&flavor.flavorid)
        .bind(flavor.vcpus)
        .bind(flavor.memory_mb)
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Resizes that have waited in `finished` since before `before`, for the conductor to confirm
/// (Nova's `resize_confirm_window`): the server and who asked for the resize.
pub async fn finished_before(db: &crate::Db, before: Millis) -> DbResult<Vec<Migration>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migrations WHERE status = $1 AND updated_at < $2 ORDER BY id"
    );
    let rows: Vec<Row> = on_pool!(db, p => {
        sqlx::query_as(&sql)
            .bind(status::FINISHED)
            .bind(before)
            .fetch_all(p)
            .await?
    });
    rows.into_iter().map(Row::into_model).collect()
}

/// The migrations of a project's (or, `None`, every) server, newest first, for
/// `os-migrations`.
pub async fn list(db: &crate::Db, project: Option<&str>) -> DbResult<Vec<Migration>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migrations WHERE ($1 IS NULL OR project_id = $1) ORDER BY id DESC"
    );
    let rows: Vec<Row> = on_pool!(db, p => sqlx::query_as(&sql).bind(project).fetch_all(p).await?);
    rows.into_iter().map(Row::into_model).collect()
}

/// The node a migration holds the old claim on, if any (tests check that claims move).
pub async fn held(db: &crate::Db, id: i64) -> DbResult<Option<NodeUuid>> {
    let row: Option<(Option<Uuid>,)> = on_pool!(db, p => {
        sqlx::query_as("SELECT held_node_uuid FROM migrations WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await?
    });
    Ok(row.and_then(|(n,)| n).map(NodeUuid))
}
