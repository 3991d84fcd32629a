//! Instance actions and their events: the record `os-instance-actions` shows.

use crate::{on_pool, on_tx, Db, DbResult, Tx};
use nova_core::ids::InstanceUuid;
use nova_core::time::{now_ms, Millis};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ActionEvent {
    pub event: String,
    pub start_time: Millis,
    pub finish_time: Option<Millis>,
    /// `Success` or `Error`, as Nova records it.
    pub result: Option<String>,
    pub host: Option<String>,
    /// What a project may read of a failure.
    pub details: Option<String>,
    /// The failure in full (Nova's traceback): for admins.
    pub traceback: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub id: i64,
    pub action: String,
    pub request_id: String,
    pub project_id: String,
    pub user_id: String,
    pub start_time: Millis,
    pub finish_time: Option<Millis>,
    pub message: Option<String>,
    pub events: Vec<ActionEvent>,
}

/// Who asked, for the action record.
#[derive(Clone, Debug)]
pub struct Requester<'a> {
    pub request_id: &'a str,
    pub project_id: &'a str,
    pub user_id: &'a str,
}

pub async fn start(
    tx: &mut Tx,
    instance: InstanceUuid,
    action: &str,
    who: &Requester<'_>,
) -> DbResult<i64> {
    on_tx!(tx, c => {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO instance_actions (instance_uuid, action, request_id, project_id, \
             user_id, start_time) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(instance.0)
        .bind(action)
        .bind(who.request_id)
        .bind(who.project_id)
        .bind(who.user_id)
        .bind(now_ms())
        .fetch_one(&mut *c)
        .await?;
        Ok(id)
    })
}

/// Records one finished event (`compute__do_build_and_run_instance`, …) and, when it failed,
/// the action's message, as Nova's "Error" action records do: `error` what a project may read,
/// `traceback` the failure in full (for admins).
pub async fn record_event(
    tx: &mut Tx,
    action_id: i64,
    event: &str,
    started: Millis,
    error: Option<&str>,
    traceback: Option<&str>,
    host: Option<&str>,
) -> DbResult<()> {
    let now = now_ms();
    let result = if error.is_some() { "Error" } else { "Success" };
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO instance_action_events (action_id, event, start_time, finish_time, \
             result, host, details, traceback) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(action_id)
        .bind(event)
        .bind(started)
        .bind(now)
        .bind(result)
        .bind(host)
        .bind(error)
        .bind(traceback)
        .execute(&mut *c)
        .await?;
        sqlx::query(
            "UPDATE instance_actions SET finish_time = $2, \
             message = COALESCE($3, message) WHERE id = $1",
        )
        .bind(action_id)
        .bind(now)
        .bind(error.map(|_| "Error"))
        .execute(&mut *c)
        .await?;
        Ok(())
    })
}

/// The actions of an instance, oldest first, with their events.
pub async fn list(db: &Db, instance: InstanceUuid) -> DbResult<Vec<Action>> {
    type ActionRow = (
        i64,
        String,
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<String>,
    );
    let rows: Vec<ActionRow> = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT id, action, request_id, project_id, user_id, start_time, finish_time, \
             message FROM instance_actions WHERE instance_uuid = $1 ORDER BY id",
        )
        .bind(instance.0)
        .fetch_all(p)
        .await?
    });
    let mut actions = Vec::with_capacity(rows.len());
    for (id, action, request_id, project_id, user_id, start_time, finish_time, message) in rows {
        let events: Vec<ActionEvent> = on_pool!(db, p => {
            sqlx::query_as(
                "SELECT event, start_time, finish_time, result, host, details, traceback \
                 FROM instance_action_events WHERE action_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(p)
            .await?
        });
        actions.push(Action {
            id,
            action,
            request_id,
            project_id,
            user_id,
            start_time,
            finish_time,
            message,
            events,
        });
    }
    Ok(actions)
}
