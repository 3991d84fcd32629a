//! Task rows: one user request the conductor carries out. The message on the bus only points
//! at the row; the row says what to do and how far it got.

use crate::{corrupt, on_pool, on_tx, Db, DbResult, Tx};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::rpc::TaskKind;
use nova_core::time::{now_ms, Millis};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Written by the API; no conductor has acted on it yet.
    Pending,
    /// The conductor sent the command to a host and waits for its result.
    Dispatched,
    Done,
    Failed,
}

impl TaskState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dispatched => "dispatched",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "dispatched" => Self::Dispatched,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub instance: InstanceUuid,
    pub kind: TaskKind,
    pub state: TaskState,
    pub request_id: String,
    pub action_id: Option<i64>,
    pub attempts: i32,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: Uuid,
    instance_uuid: Uuid,
    kind: String,
    state: String,
    request_id: String,
    action_id: Option<i64>,
    attempts: i32,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str =
    "id, instance_uuid, kind, state, request_id, action_id, attempts, created_at, updated_at";

impl TaskRow {
    fn into_model(self) -> DbResult<Task> {
        Ok(Task {
            id: TaskId(self.id),
            instance: InstanceUuid(self.instance_uuid),
            kind: serde_json::from_str(&self.kind)
                .map_err(|e| corrupt(format!("task kind {}: {e}", self.kind)))?,
            state: TaskState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("task state {}", self.state)))?,
            request_id: self.request_id,
            action_id: self.action_id,
            attempts: self.attempts,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub(crate) async fn insert(
    tx: &mut Tx,
    instance: InstanceUuid,
    kind: TaskKind,
    request_id: &str,
    action_id: i64,
) -> DbResult<TaskId> {
    insert_as(
        tx,
        instance,
        kind,
        request_id,
        action_id,
        TaskState::Pending,
    )
    .await
}

/// [`insert`] in `state`: dispatched, for a task whose command its writer sends to the host
/// itself (the reconciler sends it again if it stops moving, as any dispatched task).
pub(crate) async fn insert_as(
    tx: &mut Tx,
    instance: InstanceUuid,
    kind: TaskKind,
    request_id: &str,
    action_id: i64,
    state: TaskState,
) -> DbResult<TaskId> {
    let id = TaskId::new_v4();
    let now = now_ms();
    let kind = serde_json::to_string(&kind).map_err(|e| corrupt(e.to_string()))?;
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO tasks (id, instance_uuid, kind, state, request_id, action_id, attempts, \
             created_at, updated_at) VALUES ($1, $2, $3, $7, $4, $5, $8, $6, $6)",
        )
        .bind(id.0)
        .bind(instance.0)
        .bind(kind)
        .bind(request_id)
        .bind(action_id)
        .bind(now)
        .bind(state.as_str())
        // A task written dispatched is sent once already (as the conductor's dispatch counts
        // one): the reconciler gives up after as many sends either way.
        .bind(i32::from(state == TaskState::Dispatched))
        .execute(&mut *c)
        .await?;
    });
    Ok(id)
}

pub async fn get(db: &Db, id: TaskId) -> DbResult<Option<Task>> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
    let row: Option<TaskRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(id.0).fetch_optional(p).await?);
    row.map(TaskRow::into_model).transpose()
}

/// Moves the task from `from` to `to`; false when it was not in `from` (another conductor
/// got there first, or the task is finished).
pub async fn advance(tx: &mut Tx, id: TaskId, from: &[TaskState], to: TaskState) -> DbResult<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    // At most four states; an IN list keeps the SQL the same on both backends.
    let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "UPDATE tasks SET state = $2, updated_at = $3, attempts = attempts + 1 \
         WHERE id = $1 AND state IN ({})",
        placeholders.join(", ")
    );
    let done = on_tx!(tx, c => {
        let mut q = sqlx::query(&sql).bind(id.0).bind(to.as_str()).bind(now_ms());
        for s in &from {
            q = q.bind(*s);
        }
        q.execute(&mut *c).await?.rows_affected()
    });
    Ok(done == 1)
}

/// Finishes every open task of an instance (a delete or a failure supersedes them).
pub async fn finish_open(tx: &mut Tx, instance: InstanceUuid, to: TaskState) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query(
            "UPDATE tasks SET state = $2, updated_at = $3 \
             WHERE instance_uuid = $1 AND state IN ('pending', 'dispatched')",
        )
        .bind(instance.0)
        .bind(to.as_str())
        .bind(now_ms())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Open tasks that have not moved since `before`: their message may have been lost.
pub async fn stale(db: &Db, before: Millis, limit: i64) -> DbResult<Vec<Task>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE state IN ('pending', 'dispatched') \
         AND updated_at < $1 ORDER BY updated_at LIMIT $2"
    );
    let rows: Vec<TaskRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(before).bind(limit).fetch_all(p).await?);
    rows.into_iter().map(TaskRow::into_model).collect()
}

/// Marks the task as re-driven now (an attempt more), so that the reconciler waits again —
/// if it is still as stale as it was found (`updated_at` before `before`). False when
/// something touched it since (its agent said it runs, another pass re-drove it): then it is
/// not re-driven.
pub async fn touch(db: &Db, id: TaskId, before: Millis) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE tasks SET updated_at = $2, attempts = attempts + 1 \
         WHERE id = $1 AND updated_at < $3",
    )
    .bind(id.0)
    .bind(now_ms())
    .bind(before)
    .execute(p)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Marks dispatched tasks as heard from now, without counting an attempt (their agent says
/// their commands are running).
pub async fn keep_alive(db: &Db, ids: &[TaskId]) -> DbResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    for id in ids {
        on_pool!(db, p => {
            sqlx::query(
                "UPDATE tasks SET updated_at = $2 WHERE id = $1 AND state = 'dispatched'",
            )
            .bind(id.0)
            .bind(now)
            .execute(p)
            .await?;
        });
    }
    Ok(())
}

/// The open task of an instance, if any (tests and the API's conflict messages use it).
pub async fn open_for(db: &Db, instance: InstanceUuid) -> DbResult<Vec<Task>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE instance_uuid = $1 \
         AND state IN ('pending', 'dispatched') ORDER BY created_at"
    );
    let rows: Vec<TaskRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(instance.0).fetch_all(p).await?);
    rows.into_iter().map(TaskRow::into_model).collect()
}

/// The open tasks of an instance, read inside a transaction.
pub async fn open_for_tx(tx: &mut Tx, instance: InstanceUuid) -> DbResult<Vec<Task>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE instance_uuid = $1 \
         AND state IN ('pending', 'dispatched') ORDER BY created_at"
    );
    let rows: Vec<TaskRow> =
        on_tx!(tx, c => sqlx::query_as(&sql).bind(instance.0).fetch_all(&mut *c).await?);
    rows.into_iter().map(TaskRow::into_model).collect()
}
