//! Resizes (Nova's `resize`, `confirmResize`, `revertResize`): the claim that moves with the
//! flavor, the calls to the server's host, and what each result leaves the server and its
//! migration in. A resize stays on the server's own host (Nova with
//! `allow_resize_to_same_host`): a move to another host waits for the multi-host work.

use crate::{Conductor, Result};
use nova_core::model::{Fault, Flavor, Instance, PowerState, TaskState, VmState};
use nova_core::rpc::{ComputeCommand, Outcome, TaskKind};
use nova_core::time::now_ms;
use nova_db::migrations::{self, status, Migration, ResizeClaim};
use nova_db::tasks::{self as task_rows, Task, TaskState as RowState};
use nova_db::{instances, Tx};

/// What a resize's step does to its migration, in the transaction that changes the server.
pub(crate) enum MigrationStep {
    /// The host gave the server its new flavor: the migration `finished`, the server's flavor
    /// the new one.
    Finished { id: i64, flavor: Box<Flavor> },
    /// Confirmed: the old flavor's claim let go.
    Confirmed { id: i64 },
    /// Reverted: the old flavor and its claim back.
    Reverted { id: i64, flavor: Box<Flavor> },
    /// The resize ended without the new flavor (no room, the host failed): the migration in
    /// `error`, and the old claim and flavor back if the new one had been claimed.
    Failed { id: i64, flavor: Box<Flavor> },
    /// A confirm or revert that could not be sent: the migration `finished` again, for the
    /// user to try again.
    Unstarted { id: i64 },
    /// A confirm that failed on the host: the migration in `error`, the old claim let go (the
    /// server has the new flavor).
    ConfirmFailed { id: i64 },
}

impl MigrationStep {
    /// Applies the step in `tx`; false (and nothing moved) when the migration is no longer
    /// in the status the step starts from (another result, or the reconciler, moved it first).
    pub(crate) async fn apply(
        &self,
        tx: &mut Tx,
        instance: nova_core::ids::InstanceUuid,
    ) -> Result<bool> {
        let moved = match self {
            Self::Finished { id, flavor } => {
                let moved =
                    migrations::set_status(tx, *id, &[status::MIGRATING], status::FINISHED).await?;
                if moved {
                    migrations::set_flavor(tx, instance, flavor).await?;
                }
                moved
            }
            Self::Confirmed { id } => {
                let moved =
                    migrations::set_status(tx, *id, &[status::CONFIRMING], status::CONFIRMED)
                        .await?;
                if moved {
                    migrations::release_held_of(tx, *id).await?;
                }
                moved
            }
            Self::Reverted { id, flavor } => {
                let moved =
                    migrations::set_status(tx, *id, &[status::REVERTING], status::REVERTED).await?;
                if moved {
                    migrations::restore_held(tx, *id).await?;
                    migrations::set_flavor(tx, instance, flavor).await?;
                }
                moved
            }
            Self::Failed { id, flavor } => {
                let moved =
                    migrations::set_status(tx, *id, status::IN_PROGRESS, status::ERROR).await?;
                if moved {
                    migrations::restore_held(tx, *id).await?;
                    migrations::set_flavor(tx, instance, flavor).await?;
                }
                moved
            }
            Self::Unstarted { id } => {
                let from = [status::CONFIRMING, status::REVERTING];
                migrations::set_status(tx, *id, &from, status::FINISHED).await?
            }
            Self::ConfirmFailed { id } => {
                let moved =
                    migrations::set_status(tx, *id, status::IN_PROGRESS, status::ERROR).await?;
                if moved {
                    migrations::release_held_of(tx, *id).await?;
                }
                moved
            }
        };
        Ok(moved)
    }
}

/// Nova's message when no host can take the server (NoValidHost).
const NO_VALID_HOST: &str = "No valid host was found. There are not enough hosts available.";

impl Conductor {
    /// A submitted resize: the new flavor claimed on the server's node beside the old one, and
    /// the resize sent to its host; without room, the server back to its state with a fault.
    pub(crate) async fn resize(&self, task: &Task, instance: &Instance) -> Result<()> {
        if instance.deleted {
            return self.close_task(task, RowState::Failed).await;
        }
        let migration = migrations::current(&self.db, instance.uuid).await?;
        let Some(migration) = migration
            .filter(|m| matches!(m.status.as_str(), status::PRE_MIGRATING | status::MIGRATING))
        else {
            return self.abort_host_task(task, instance).await;
        };
        let Some(host) = instance.host.clone() else {
            return self.abort_host_task(task, instance).await;
        };
        if migration.status == status::PRE_MIGRATING {
            match migrations::claim(&self.db, &migration).await? {
                ResizeClaim::Claimed => {}
                ResizeClaim::NoRoom => {
                    tracing::info!("no room for the new flavor");
                    let step = MigrationStep::Failed {
                        id: migration.id,
                        flavor: Box::new(migration.old_flavor.clone()),
                    };
                    let failure = (NO_VALID_HOST.to_owned(), None);
                    return self
                        .end_resize(task, instance, instance.vm_state, None, Some(failure), step)
                        .await;
                }
                // The server moved on (deleted, or its state reset), or holds no claim (its
                // build failed): the resize ends without the new flavor (a no-op when the
                // server is no longer in the states read).
                ResizeClaim::Superseded => return self.abort_host_task(task, instance).await,
            }
        }
        let mut tx = self.db.begin().await?;
        let moved =
            task_rows::advance(&mut tx, task.id, &[RowState::Pending], RowState::Dispatched)
                .await?;
        tx.commit().await?;
        if moved {
            let command = ComputeCommand::Resize {
                task_id: task.id,
                instance: instance.uuid,
                flavor: Box::new(migration.new_flavor),
            };
            self.send_to_host(&host, command, Some(task.request_id.clone()))
                .await?;
        }
        Ok(())
    }

    /// The command of a resize, confirm or revert under way (for a dispatch or a re-send);
    /// `None` when its migration is not where the task needs it.
    pub(crate) async fn resize_command(
        db: &nova_db::Db,
        task: &Task,
        instance: &Instance,
    ) -> Result<Option<ComputeCommand>> {
        let Some(m) = migrations::current(db, instance.uuid).await? else {
            return Ok(None);
        };
        let (task_id, uuid) = (task.id, instance.uuid);
        Ok(match (task.kind, m.status.as_str()) {
            (TaskKind::Resize, status::MIGRATING) => Some(ComputeCommand::Resize {
                task_id,
                instance: uuid,
                flavor: Box::new(m.new_flavor),
            }),
            (TaskKind::ConfirmResize, status::CONFIRMING) => Some(ComputeCommand::ConfirmResize {
                task_id,
                instance: uuid,
            }),
            (TaskKind::RevertResize, status::REVERTING) => Some(ComputeCommand::RevertResize {
                task_id,
                instance: uuid,
                flavor: Box::new(m.old_flavor),
                stopped: m.old_vm_state == VmState::Stopped,
            }),
            _ => None,
        })
    }

    /// What a host's result of a resize, confirm or revert leaves the server and its migration
    /// in.
    pub(crate) async fn apply_resize_result(
        &self,
        task: &Task,
        instance: &Instance,
        outcome: Outcome,
        host: &str,
    ) -> Result<()> {
        let Some(m) = migrations::current(&self.db, instance.uuid).await? else {
            return self.close_task(task, RowState::Failed).await;
        };
        let (id, old_flavor) = (m.id, Box::new(m.old_flavor.clone()));
        // Where the server returns after a confirm or a revert: as it was before the resize,
        // or off if its guest is off now (Nova's confirm looks at the power state).
        let settled = |power: PowerState| {
            if m.old_vm_state == VmState::Stopped || power == PowerState::Shutdown {
                VmState::Stopped
            } else {
                VmState::Active
            }
        };
        let expect_task = |t: Option<TaskState>| instances::Expect {
            vm_state: None,
            task_state: t,
        };
        match (task.kind, outcome) {
            (TaskKind::Resize, Outcome::Done { power_state, .. }) => {
                let step = MigrationStep::Finished {
                    id,
                    flavor: Box::new(m.new_flavor.clone()),
                };
                let set = states(VmState::Resized, Some(power_state));
                let expect = expect_task(Some(TaskState::ResizeMigrating));
                self.finish_with(task, expect, set, None, host, Some(&step))
                    .await?;
            }
            // The driver put back what it changed (Nova's InstanceFaultRollback): the server
            // as it was, on its old flavor and claim.
            (TaskKind::Resize, Outcome::Failed { message, details }) => {
                let step = MigrationStep::Failed {
                    id,
                    flavor: old_flavor,
                };
                let failure = Some((message, details));
                return self
                    .end_resize(task, instance, m.old_vm_state, None, failure, step)
                    .await;
            }
            (TaskKind::ConfirmResize, Outcome::Done { power_state, .. }) => {
                let step = MigrationStep::Confirmed { id };
                let set = states(settled(power_state), Some(power_state));
                let expect = instances::Expect {
                    vm_state: Some(VmState::Resized),
                    task_state: None,
                };
                self.finish_with(task, expect, set, None, host, Some(&step))
                    .await?;
            }
            (TaskKind::RevertResize, Outcome::Done { power_state, .. }) => {
                let step = MigrationStep::Reverted {
                    id,
                    flavor: old_flavor,
                };
                let set = states(settled(power_state), Some(power_state));
                let expect = expect_task(Some(TaskState::ResizeReverting));
                self.finish_with(task, expect, set, None, host, Some(&step))
                    .await?;
            }
            // As Nova's: a confirm or revert that fails on the host leaves the server in
            // ERROR with a fault (its claims as the step leaves them: the flavor it now has).
            (TaskKind::ConfirmResize, Outcome::Failed { message, details }) => {
                let step = MigrationStep::ConfirmFailed { id };
                let failure = Some((message, details));
                return self
                    .end_resize(task, instance, VmState::Error, None, failure, step)
                    .await;
            }
            (TaskKind::RevertResize, Outcome::Failed { message, details }) => {
                let step = MigrationStep::Failed {
                    id,
                    flavor: old_flavor,
                };
                let failure = Some((message, details));
                return self
                    .end_resize(task, instance, VmState::Error, None, failure, step)
                    .await;
            }
            (kind, outcome) => {
                tracing::warn!(?kind, ?outcome, "result does not fit its task; closing it");
                return self.close_task(task, RowState::Failed).await;
            }
        }
        Ok(())
    }

    /// A resize, confirm or revert that cannot be sent to the host: a resize ends without the
    /// new flavor; a confirm or a revert is not started (the server waits in VERIFY_RESIZE).
    pub(crate) async fn abort_resize(&self, task: &Task, instance: &Instance) -> Result<()> {
        let message = format!(
            "The {} of instance {} could not be started on its host (its host or node is no \
             longer there).",
            task.kind.action_name(),
            instance.uuid
        );
        tracing::warn!(%message);
        let current = migrations::current(&self.db, instance.uuid).await?;
        let Some(m) = current else {
            return self
                .end_with_fault(task, instance, instance.vm_state, None, message, None, "")
                .await;
        };
        let step = match task.kind {
            TaskKind::Resize => MigrationStep::Failed {
                id: m.id,
                flavor: Box::new(m.old_flavor),
            },
            _ => MigrationStep::Unstarted { id: m.id },
        };
        self.end_resize(
            task,
            instance,
            instance.vm_state,
            None,
            Some((message, None)),
            step,
        )
        .await
    }

    /// Ends a resize's task: the server's task state cleared, its vm state as said, the
    /// migration moved on by `step`, and the failure (if any) as a fault and the action's
    /// error; only if the server is still in the states it was read in.
    async fn end_resize(
        &self,
        task: &Task,
        instance: &Instance,
        vm_state: VmState,
        power_state: Option<PowerState>,
        failure: Option<(String, Option<String>)>,
        step: MigrationStep,
    ) -> Result<()> {
        let fault = failure.as_ref().map(|(message, details)| Fault {
            code: 500,
            message: message.clone(),
            details: details.clone(),
            created_at: now_ms(),
        });
        let expect = instances::Expect {
            vm_state: Some(instance.vm_state),
            task_state: instance.task_state,
        };
        let failure = fault.as_ref().map(|f| (f, f.message.as_str()));
        let host = instance.host.as_deref().unwrap_or_default();
        self.finish_with(
            task,
            expect,
            states(vm_state, power_state),
            failure,
            host,
            Some(&step),
        )
        .await
        .map(|_| ())
    }

    /// Confirms the resizes that have waited longer than `resize_confirm_window_s` (Nova's
    /// `_poll_unconfirmed_resizes`), as the user who asked for each.
    pub(crate) async fn confirm_unconfirmed(&self) -> Result<()> {
        let window = self.settings.resize_confirm_window_s;
        if window == 0 {
            return Ok(());
        }
        let before = now_ms() - i64::try_from(window.saturating_mul(1000)).unwrap_or(i64::MAX);
        for m in migrations::finished_before(&self.db, before).await? {
            self.confirm_as_owner(&m).await?;
        }
        Ok(())
    }

    async fn confirm_as_owner(&self, m: &Migration) -> Result<()> {
        let request_id = format!("req-{}", uuid::Uuid::new_v4());
        let who = nova_db::actions::Requester {
            request_id: &request_id,
            project_id: &m.project_id,
            user_id: &m.user_id,
        };
        let begun =
            migrations::begin_resize_end(&self.db, m.instance, None, true, &who, true, Some(m.id))
                .await;
        match begun {
            Ok(task) => {
                tracing::info!(instance = %m.instance, "confirming a resize past its window");
                let env = nova_core::rpc::Envelope::new(
                    Some(request_id.clone()),
                    nova_core::rpc::TaskSubmitted {
                        task_id: task,
                        instance: m.instance,
                    },
                );
                self.bus
                    .publish(&self.queues.conductor_tasks(), env.encode())
                    .await?;
            }
            Err(migrations::ResizeRefused::State(instances::TransitionError::Db(e))) => {
                return Err(e.into())
            }
            // The server is no longer waiting for this resize (its state was reset, it went
            // to ERROR, another resize followed): as Nova's `_poll_unconfirmed_resizes`, the
            // migration ends in error, and the old claim it holds goes.
            Err(_) => {
                tracing::warn!(instance = %m.instance, "an unconfirmed resize whose server moved on; migration in error");
                let mut tx = self.db.begin().await?;
                if migrations::set_status(&mut tx, m.id, &[status::FINISHED], status::ERROR).await?
                {
                    migrations::release_held_of(&mut tx, m.id).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

/// What giving up a resize's task (its host never answered) does to its migration.
pub(crate) async fn given_up(db: &nova_db::Db, task: &Task) -> Result<Option<MigrationStep>> {
    if !crate::tasks::resizes(task.kind) {
        return Ok(None);
    }
    let Some(m) = migrations::current(db, task.instance).await? else {
        return Ok(None);
    };
    Ok(Some(match task.kind {
        TaskKind::Resize => MigrationStep::Failed {
            id: m.id,
            flavor: Box::new(m.old_flavor),
        },
        _ => MigrationStep::Unstarted { id: m.id },
    }))
}

fn states(vm_state: VmState, power_state: Option<PowerState>) -> instances::SetStates {
    instances::SetStates {
        vm_state,
        task_state: None,
        power_state,
        launched: false,
        addresses: None,
    }
}
