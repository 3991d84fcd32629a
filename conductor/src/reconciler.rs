//! The reconciler: on a timer, it ends builds that outlived the build timeout, sends again the
//! messages of tasks that stopped moving, and notices compute services that went silent.

use crate::tasks::event_name;
use crate::{Conductor, Result};
use nova_core::model::{Fault, Instance, VmState, COMPUTE_BINARY, CONDUCTOR_BINARY};
use nova_core::rpc::{ComputeCommand, TaskKind};
use nova_core::time::now_ms;
use nova_db::tasks::{self as task_rows, TaskState as RowState};
use nova_db::{actions, instances, leases, nodes};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The lease that lets one conductor of many reconcile at a time.
const LEASE: &str = "conductor.reconciler";

pub async fn run(conductor: Arc<Conductor>) {
    let period = Duration::from_millis(conductor.settings.reconcile_interval_ms.max(50));
    let mut tick = tokio::time::interval(period);
    let mut down: HashSet<String> = HashSet::new();
    loop {
        tick.tick().await;
        if let Err(e) = pass(&conductor, &mut down).await {
            tracing::warn!(error = %e, "reconciler pass failed");
        }
    }
}

/// Gives the reconciler's lease up (a conductor that stops), so that another takes over
/// without waiting for it to expire.
pub async fn release(c: &Conductor) {
    if let Err(e) = leases::release(&c.db, LEASE, &c.replica).await {
        tracing::warn!(error = %e, "reconciler lease not released");
    }
}

/// One reconciler pass, as the timer runs it; false when another conductor holds the lease
/// (then this one only heartbeats).
pub async fn pass_once(c: &Conductor) -> Result<bool> {
    pass(c, &mut HashSet::new()).await
}

async fn pass(c: &Conductor, down: &mut HashSet<String>) -> Result<bool> {
    let now = now_ms();
    // The conductor's own heartbeat; registered again if an admin deleted its service.
    if !nodes::heartbeat(&c.db, &c.settings.host, CONDUCTOR_BINARY).await? {
        nodes::register(&c.db, &c.settings.host, CONDUCTOR_BINARY, &[]).await?;
    }
    // Replicas would otherwise each re-send every stale task (twice the messages, twice the
    // attempts counted). The lease outlives a few missed passes, then another takes over.
    let ttl = i64::try_from(c.settings.reconcile_interval_ms.max(50).saturating_mul(3))
        .unwrap_or(i64::MAX)
        .max(1000);
    let mut lease = Lease::take(c, ttl).await?;
    if !lease.held {
        return Ok(false);
    }
    // One item that fails (its row, its host's queue) is logged and left for the next pass;
    // the others go on. A pass that outlives half its lease renews it, and stops if another
    // conductor has taken it meanwhile.
    for instance in
        instances::builds_started_before(&c.db, now - c.settings.build_timeout_ms()).await?
    {
        if !lease.renew_if_due(c).await? {
            return Ok(false);
        }
        if let Err(e) = time_out_build(c, &instance).await {
            tracing::warn!(instance = %instance.uuid, error = %e, "build not timed out; next pass");
        }
    }
    let stale_before = now - c.settings.redrive_after_ms();
    for task in task_rows::stale(&c.db, stale_before, 200).await? {
        if !lease.renew_if_due(c).await? {
            return Ok(false);
        }
        if let Err(e) = redrive(c, &task, stale_before).await {
            tracing::warn!(task = %task.id, error = %e, "task not re-driven; next pass");
        }
    }
    crate::baremetal::time_out_operations(c, now).await?;
    if let Err(e) = c.confirm_unconfirmed().await {
        tracing::warn!(error = %e, "unconfirmed resizes not confirmed; next pass");
    }
    for instance in instances::due_for_reclaim(&c.db, now).await? {
        if let Err(e) = reclaim(c, &instance).await {
            tracing::warn!(instance = %instance.uuid, error = %e, "not reclaimed; next pass");
        }
    }
    if c.node_sync_due(now) {
        crate::baremetal::sync_power(c).await?;
    }
    report_services(c, now, down).await?;
    Ok(true)
}

/// The reconciler's lease as this pass holds it.
struct Lease {
    held: bool,
    ttl_ms: i64,
    taken: std::time::Instant,
}

impl Lease {
    async fn take(c: &Conductor, ttl_ms: i64) -> Result<Self> {
        Ok(Self {
            held: leases::acquire(&c.db, LEASE, &c.replica, ttl_ms).await?,
            ttl_ms,
            taken: std::time::Instant::now(),
        })
    }

    /// Renews the lease once half of it has passed; false when it is lost.
    async fn renew_if_due(&mut self, c: &Conductor) -> Result<bool> {
        let half = Duration::from_millis(u64::try_from(self.ttl_ms / 2).unwrap_or(0));
        if self.taken.elapsed() >= half {
            *self = Self::take(c, self.ttl_ms).await?;
            if !self.held {
                tracing::warn!("the reconciler's lease was taken over; pass ended");
            }
        }
        Ok(self.held)
    }
}

/// Sends a stale task's message again, or gives it up after its attempts — unless it is no
/// longer as stale as it was found.
async fn redrive(c: &Conductor, task: &task_rows::Task, stale_before: i64) -> Result<()> {
    let limit = i32::try_from(c.settings.task_attempts).unwrap_or(i32::MAX);
    if task.kind != TaskKind::Build && task.attempts >= limit {
        return give_up(c, task).await;
    }
    if !task_rows::touch(&c.db, task.id, stale_before).await? {
        return Ok(());
    }
    match task.state {
        RowState::Pending => c.resubmit(task).await,
        RowState::Dispatched => c.redispatch(task).await,
        RowState::Done | RowState::Failed => Ok(()),
    }
}

/// Logs compute services that went silent or came back.
async fn report_services(c: &Conductor, now: i64, down: &mut HashSet<String>) -> Result<()> {
    for service in nodes::services(&c.db).await? {
        if service.binary != COMPUTE_BINARY {
            continue;
        }
        let up = service.is_up(now, c.settings.service_down_ms());
        if !up && down.insert(service.host.clone()) {
            tracing::warn!(host = %service.host, last_seen_at = ?service.last_seen_at, "compute service is down");
        } else if up && down.remove(&service.host) {
            tracing::info!(host = %service.host, "compute service is up again");
        }
    }
    Ok(())
}

/// Ends a task sent `conductor.task_attempts` times without an answer, rather than sending it
/// for ever: its server gets a fault and its task state back, as Nova's `reverts_task_state`
/// leaves it (a delete: ERROR, so that the user sees it and can delete again), and the action
/// records the failure.
async fn give_up(c: &Conductor, task: &task_rows::Task) -> Result<()> {
    let instance = instances::get_any(&c.db, task.instance).await?;
    let message = format!(
        "{} of instance {} was sent {} times without an answer from its host; given up",
        event_name(task.kind),
        task.instance,
        task.attempts
    );
    if task.kind == TaskKind::Unshelve {
        // An unshelve its host never answered: back to SHELVED_OFFLOADED, its claim given up.
        if let Some(instance) = instances::get_any(&c.db, task.instance)
            .await?
            .filter(|i| !i.deleted)
        {
            let message = format!(
                "{} of instance {} was sent {} times without an answer from its host; given up",
                event_name(task.kind),
                task.instance,
                task.attempts
            );
            return c.fail_unshelve(task, &instance, message, None).await;
        }
    }
    // (Read before the transaction: SQLite's pool may have one connection.)
    let resize_step = crate::resize::given_up(&c.db, task).await?;
    // A snapshot given up uploads nothing: its image goes (never queued for ever).
    c.drop_snapshot_image(task).await?;
    let mut tx = c.db.begin().await?;
    if !task_rows::advance(
        &mut tx,
        task.id,
        &[RowState::Pending, RowState::Dispatched],
        RowState::Failed,
    )
    .await?
    {
        return Ok(());
    }
    let host = instance.as_ref().and_then(|i| i.host.clone());
    if let Some(instance) = instance.filter(|i| !i.deleted) {
        let fault = Fault {
            code: 500,
            message: message.clone(),
            details: None,
            created_at: now_ms(),
        };
        let expect = instances::Expect {
            vm_state: Some(instance.vm_state),
            task_state: instance.task_state,
        };
        if task.kind == TaskKind::Delete {
            instances::set_error(&mut tx, instance.uuid, expect, &fault, host.as_deref()).await?;
        } else {
            let set = instances::SetStates {
                vm_state: instance.vm_state,
                task_state: None,
                power_state: None,
                launched: false,
                addresses: None,
            };
            if instances::transition(&mut tx, instance.uuid, expect, set).await? {
                instances::add_fault(&mut tx, instance.uuid, &fault, host.as_deref()).await?;
                // A resize's migration ends too: a resize without the new flavor, a confirm
                // or revert left for the user to ask again.
                if let Some(step) = &resize_step {
                    // (Not moved: a result moved it first; the server's state above stands.)
                    step.apply(&mut tx, instance.uuid).await?;
                }
            }
        }
    }
    if let Some(action) = task.action_id {
        actions::record_event(
            &mut tx,
            action,
            event_name(task.kind),
            task.created_at,
            Some(&message),
            None,
            host.as_deref(),
        )
        .await?;
    }
    tx.commit().await?;
    tracing::warn!(instance = %task.instance, kind = ?task.kind, attempts = task.attempts, "task given up");
    Ok(())
}

/// Deletes a SOFT_DELETED server whose time has come (Nova's `_reclaim_queued_deletes`): a
/// delete as its owner's, recorded as an action.
async fn reclaim(c: &Conductor, instance: &Instance) -> Result<()> {
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let who = nova_db::actions::Requester {
        request_id: &request_id,
        project_id: &instance.project_id,
        user_id: &instance.user_id,
    };
    let Some(task) = instances::begin_reclaim(&c.db, instance.uuid, now_ms(), &who).await? else {
        return Ok(()); // restored or deleted meanwhile
    };
    tracing::info!(instance = %instance.uuid, "reclaiming a soft-deleted server");
    let env = nova_core::rpc::Envelope::new(
        Some(request_id.clone()),
        nova_core::rpc::TaskSubmitted {
            task_id: task,
            instance: instance.uuid,
        },
    );
    c.bus
        .publish(&c.queues.conductor_tasks(), env.encode())
        .await?;
    Ok(())
}

async fn time_out_build(c: &Conductor, instance: &Instance) -> Result<()> {
    let message = format!(
        "Build of instance {} aborted: it did not finish within {} seconds",
        instance.uuid, c.settings.build_timeout_s
    );
    let fault = Fault {
        code: 500,
        message: message.clone(),
        details: None,
        created_at: now_ms(),
    };
    let expect = instances::Expect {
        vm_state: Some(VmState::Building),
        task_state: None,
    };
    let mut tx = c.db.begin().await?;
    let changed = instances::set_error(
        &mut tx,
        instance.uuid,
        expect,
        &fault,
        instance.host.as_deref(),
    )
    .await?;
    nodes::release(&mut tx, instance.uuid).await?;
    let released = c.release_machine(&mut tx, instance.uuid).await?;
    for task in task_rows::open_for_tx(&mut tx, instance.uuid).await? {
        if task.kind == TaskKind::Build {
            task_rows::advance(
                &mut tx,
                task.id,
                &[RowState::Pending, RowState::Dispatched],
                RowState::Failed,
            )
            .await?;
            if let Some(action) = task.action_id {
                actions::record_event(
                    &mut tx,
                    action,
                    event_name(task.kind),
                    task.created_at,
                    Some(&message),
                    None,
                    instance.host.as_deref(),
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    c.send_clean(released).await?;
    if changed {
        tracing::warn!(instance = %instance.uuid, "build timed out");
        if let Some(host) = &instance.host {
            // Whatever the host half-built must go; the destroy is idempotent.
            let command = ComputeCommand::Destroy {
                task_id: None,
                instance: instance.uuid,
            };
            c.send_to_host(host, command, None).await?;
        }
    }
    Ok(())
}
