//! Edits: what a user may change of a live server — name, description, hostname, metadata,
//! tags, lock — applied inside one transaction, and the hostnames of old rows filled in.

use super::query::get;
use crate::actions::{self, Requester};
use crate::rows::{InstanceRow, INSTANCE_COLUMNS};
use crate::{corrupt, on_pool, on_tx, Db, DbError, DbResult, Tx};
use nova_core::ids::InstanceUuid;
use nova_core::model::{Instance, LockedBy};
use nova_core::time::now_ms;
use uuid::Uuid;

/// Whether an edit by [`modify`] is recorded as an instance action (with its one
/// `api_<action>` event), as Nova records lock and unlock.
#[derive(Clone, Copy, Debug)]
pub enum Record<'a> {
    /// Never (renames, metadata, tags).
    No,
    /// When it changed something: Nova's lock records nothing for an owner's second lock.
    IfChanged(&'a str, &'a Requester<'a>),
    /// Always: Nova's unlock records even an unlocked server's.
    Always(&'a str, &'a Requester<'a>),
}

/// Changes what a user may edit of a live server — name, description, metadata, tags, lock —
/// by applying `edit` to it inside one transaction (row locked on PostgreSQL), so that
/// concurrent edits do not lose each other's changes. `None` when there is no such server (in
/// `project`, if given); an error of `edit` aborts and changes nothing. An edit that changes
/// nothing writes nothing (Nova saves changed fields only); `record` says when it is an action.
pub async fn modify<E, F>(
    db: &Db,
    uuid: InstanceUuid,
    project: Option<&str>,
    record: Record<'_>,
    edit: F,
) -> Result<Option<Instance>, E>
where
    E: From<DbError>,
    F: FnOnce(&mut Instance) -> Result<(), E>,
{
    let mut tx = db.begin().await?;
    let row = lock_live(&mut tx, uuid, project).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut instance = row.into_model(None)?;
    let before = instance.clone();
    edit(&mut instance)?;
    let changed = instance != before;
    let action = match record {
        Record::Always(action, who) => Some((action, who)),
        Record::IfChanged(action, who) if changed => Some((action, who)),
        Record::IfChanged(..) | Record::No => None,
    };
    if !changed && action.is_none() {
        // Nothing to write: the transaction ends (rolled back) before the server is read
        // again, as SQLite has one connection.
        drop(tx);
        return Ok(get(db, uuid).await?);
    }
    if changed {
        instance.updated_at = now_ms();
    }
    let metadata = serde_json::to_string(&instance.metadata).map_err(|e| corrupt(e.to_string()))?;
    let tags = serde_json::to_string(&instance.tags).map_err(|e| corrupt(e.to_string()))?;
    on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE instances SET name = $2, description = $3, metadata = $4, tags = $5, \
             locked_by = $6, locked_reason = $7, updated_at = $8, hostname = $9, \
             access_ip_v4 = $10, access_ip_v6 = $11, auto_disk_config = $12 WHERE uuid = $1",
        )
        .bind(uuid.0)
        .bind(&instance.name)
        .bind(&instance.description)
        .bind(&metadata)
        .bind(&tags)
        .bind(instance.locked_by.map(LockedBy::as_str))
        .bind(&instance.locked_reason)
        .bind(instance.updated_at)
        .bind(&instance.hostname)
        .bind(&instance.access_ip_v4)
        .bind(&instance.access_ip_v6)
        .bind(instance.auto_disk_config)
        .execute(&mut *c)
        .await
        .map_err(DbError::from)?;
    });
    if let Some((action, who)) = action {
        let id = actions::start(&mut tx, uuid, action, who).await?;
        let event = format!("api_{action}");
        actions::record_event(&mut tx, id, &event, now_ms(), None, None, None).await?;
    }
    tx.commit().await?;
    Ok(get(db, uuid).await?)
}

/// A live server's row (in `project`, if given), locked for the rest of `tx` on PostgreSQL
/// (SQLite has one writer).
pub(crate) async fn lock_live(
    tx: &mut Tx,
    uuid: InstanceUuid,
    project: Option<&str>,
) -> DbResult<Option<InstanceRow>> {
    let lock = if matches!(tx, Tx::Pg(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE uuid = $1 AND NOT deleted \
         AND ($2 IS NULL OR project_id = $2){lock}"
    );
    Ok(on_tx!(tx, c => {
        sqlx::query_as(&sql)
            .bind(uuid.0)
            .bind(project)
            .fetch_optional(&mut *c)
            .await?
    }))
}

/// Gives servers from before hostnames were kept (migration 0010 left them NULL) the hostname
/// they have been shown with since, made from their name, so that `sort_key=hostname` orders
/// and pages them like the others. Run at start-up; a no-op once done.
pub async fn backfill_hostnames(db: &Db) -> DbResult<u64> {
    let rows: Vec<(Uuid, String)> = on_pool!(db, p => {
        sqlx::query_as("SELECT uuid, name FROM instances WHERE hostname IS NULL")
            .fetch_all(p)
            .await?
    });
    for (uuid, name) in &rows {
        let hostname = nova_core::model::sanitize_hostname(name);
        on_pool!(db, p => {
            sqlx::query("UPDATE instances SET hostname = $2 WHERE uuid = $1 AND hostname IS NULL")
                .bind(uuid)
                .bind(&hostname)
                .execute(p)
                .await?;
        });
    }
    Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
}

/// Starts a rebuild (Nova's `rebuild`): in one transaction, with the row locked on
/// PostgreSQL, checks that the server is ACTIVE, SHUTOFF or ERROR with no task running (and not
/// locked, unless `lock_override`), applies `edit` (the new image and whatever else the request
/// changes), sets the task state `rebuilding`, and writes the action and the task (which
/// remembers whether the server was SHUTOFF). The server as it now is, and the task.
pub async fn begin_rebuild<E, F>(
    db: &Db,
    uuid: InstanceUuid,
    project: Option<&str>,
    lock_override: bool,
    who: &Requester<'_>,
    edit: F,
) -> Result<(Instance, nova_core::ids::TaskId), E>
where
    E: From<DbError> + From<super::TransitionError>,
    F: FnOnce(&mut Instance) -> Result<(), E>,
{
    use nova_core::model::{TaskState, VmState};
    use nova_core::rpc::TaskKind;
    let mut tx = db.begin().await?;
    let row = lock_live(&mut tx, uuid, project).await?;
    let Some(row) = row else {
        return Err(super::TransitionError::NotFound.into());
    };
    let mut instance = row.into_model(None)?;
    if instance.locked_by.is_some() && !lock_override {
        return Err(super::TransitionError::Locked.into());
    }
    if !matches!(
        instance.vm_state,
        VmState::Active | VmState::Stopped | VmState::Error
    ) || instance.task_state.is_some()
    {
        return Err(super::TransitionError::Conflict {
            vm_state: instance.vm_state,
            task_state: instance.task_state,
        }
        .into());
    }
    edit(&mut instance)?;
    instance.task_state = Some(TaskState::Rebuilding);
    instance.updated_at = now_ms();
    let metadata = serde_json::to_string(&instance.metadata).map_err(|e| corrupt(e.to_string()))?;
    let trusted = match &instance.trusted_image_certificates {
        Some(t) => Some(serde_json::to_string(t).map_err(|e| corrupt(e.to_string()))?),
        None => None,
    };
    on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE instances SET image_ref = $2, name = $3, description = $4, metadata = $5, \
             key_name = $6, key_data = $7, user_data = $8, hostname = $9, access_ip_v4 = $10, \
             access_ip_v6 = $11, auto_disk_config = $12, trusted_image_certificates = $13, \
             task_state = $14, updated_at = $15 WHERE uuid = $1",
        )
        .bind(uuid.0)
        .bind(&instance.image_ref)
        .bind(&instance.name)
        .bind(&instance.description)
        .bind(&metadata)
        .bind(&instance.key_name)
        .bind(&instance.key_data)
        .bind(&instance.user_data)
        .bind(&instance.hostname)
        .bind(&instance.access_ip_v4)
        .bind(&instance.access_ip_v6)
        .bind(instance.auto_disk_config)
        .bind(&trusted)
        .bind(TaskState::Rebuilding.as_str())
        .bind(instance.updated_at)
        .execute(&mut *c)
        .await
        .map_err(DbError::from)?;
    });
    let kind = TaskKind::Rebuild {
        stopped: instance.vm_state == VmState::Stopped,
    };
    let action_id = actions::start(&mut tx, uuid, kind.action_name(), who).await?;
    let task = crate::tasks::insert(&mut tx, uuid, kind, who.request_id, action_id).await?;
    tx.commit().await?;
    Ok((instance, task))
}
