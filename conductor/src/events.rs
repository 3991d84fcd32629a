//! Applying what the agents report: registrations, heartbeats, results of commands, and power
//! states the sync loop observed.

use crate::tasks::{event_name, host_task_states};
use crate::{Conductor, Result};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::model::{Fault, Instance, PowerState, TaskState, VmState};
use nova_core::rpc::{AgentEvent, ComputeCommand, Outcome, TaskKind};
use nova_core::time::now_ms;
use nova_db::tasks::{self as task_rows, Task, TaskState as RowState};
use nova_db::{actions, instances, nodes};

impl Conductor {
    pub(crate) async fn handle_event(&self, event: AgentEvent) -> Result<()> {
        tracing::debug!("event received");
        match event {
            AgentEvent::Register {
                host,
                binary,
                nodes: inventory,
                host_ip,
                node_drivers,
            } => {
                nodes::register(&self.db, &host, &binary, &inventory).await?;
                nodes::set_node_drivers(&self.db, &host, &binary, &node_drivers).await?;
                if !node_drivers.is_empty() {
                    // A bare-metal agent (re)starting learns its machines at once.
                    crate::baremetal::sync_power(self).await?;
                }
                if let Some(ip) = host_ip {
                    nodes::set_host_ip(&self.db, &host, &binary, &ip).await?;
                }
                // An agent (re)starting learns its ports' filters at once.
                crate::firewall::push_host(self, &host).await?;
                tracing::info!(%host, nodes = inventory.len(), "service registered");
                Ok(())
            }
            AgentEvent::Heartbeat { host, running } => {
                if !nodes::heartbeat(&self.db, &host, nova_core::model::COMPUTE_BINARY).await? {
                    tracing::warn!(%host, "heartbeat from an unregistered service");
                }
                // A task whose command still runs is not stuck: the reconciler leaves it be.
                task_rows::keep_alive(&self.db, &running).await?;
                Ok(())
            }
            AgentEvent::TaskResult {
                host,
                task_id,
                instance,
                outcome,
            } => self.apply_result(&host, task_id, instance, outcome).await,
            AgentEvent::PowerObserved {
                host,
                instance,
                power_state,
            } => self.apply_observed(&host, instance, power_state).await,
            AgentEvent::AddressesObserved {
                host,
                instance,
                addresses,
            } => self.apply_addresses(&host, instance, addresses).await,
            AgentEvent::NodeStep(report) => self.apply_node_step(report).await,
            AgentEvent::NodeOperationEnded(report) => self.apply_node_end(report).await,
            AgentEvent::NodePowerObserved(report) => self.apply_node_power(report).await,
        }
    }

    /// Addresses a host saw its instance take after the build (a DHCP lease): shown under the
    /// names of the server's networks, for a live server on that host with no task running.
    async fn apply_addresses(
        &self,
        host: &str,
        uuid: InstanceUuid,
        addresses: Vec<nova_core::model::Address>,
    ) -> Result<()> {
        let Some(instance) = instances::get_any(&self.db, uuid).await? else {
            return Ok(());
        };
        if instance.deleted
            || instance.host.as_deref() != Some(host)
            || instance.task_state.is_some()
            || !matches!(
                instance.vm_state,
                VmState::Active
                    | VmState::Stopped
                    | VmState::Paused
                    | VmState::Suspended
                    | VmState::Rescued
            )
        {
            return Ok(());
        }
        // The NICs reported replace their own addresses; the others' stay (a lease that
        // lapsed on one NIC does not take the address of the others).
        let macs: Vec<Option<String>> = addresses.iter().map(|a| a.mac.clone()).collect();
        let mut named: Vec<nova_core::model::Address> = instance
            .addresses
            .iter()
            .filter(|a| a.mac.is_none() || !macs.contains(&a.mac))
            .cloned()
            .collect();
        named.extend(addresses.into_iter().map(|mut a| {
            if let nova_core::model::NetworkRequest::Chosen(chosen) = &instance.networks {
                if let Some(n) = chosen.iter().find(|n| n.backend == a.network) {
                    a.network = n.name.clone();
                }
            }
            a
        }));
        let mut named = self.with_port_addresses(&instance, named).await?;
        let key = |a: &nova_core::model::Address| (a.network.clone(), a.addr.clone());
        named.sort_by_key(key);
        let mut before = instance.addresses.clone();
        before.sort_by_key(key);
        if named != before {
            instances::set_addresses(&self.db, uuid, host, &named).await?;
            tracing::info!(%uuid, "addresses observed on the host");
        }
        Ok(())
    }

    /// A server's addresses: its ports' ([`nova_db::ports::server_addresses`]), then what
    /// its host reported of its other NICs.
    pub(crate) async fn with_port_addresses(
        &self,
        instance: &nova_core::model::Instance,
        reported: Vec<nova_core::model::Address>,
    ) -> Result<Vec<nova_core::model::Address>> {
        let chosen = match &instance.networks {
            nova_core::model::NetworkRequest::Chosen(chosen) => chosen.as_slice(),
            _ => &[],
        };
        Ok(nova_db::ports::server_addresses(
            &self.db,
            &instance.uuid.0.to_string(),
            chosen,
            reported,
        )
        .await?)
    }

    async fn apply_result(
        &self,
        host: &str,
        task_id: Option<TaskId>,
        uuid: InstanceUuid,
        outcome: Outcome,
    ) -> Result<()> {
        // The task and the instance are read together: a result for an open task needs both,
        // and neither read depends on the other (one round trip less on every boot).
        let task = async {
            match task_id {
                Some(id) => task_rows::get(&self.db, id).await,
                None => Ok(None),
            }
        };
        let (task, read) = tokio::join!(task, instances::get_any(&self.db, uuid));
        let task = task?;
        let closed_kind = task
            .as_ref()
            .filter(|t| !matches!(t.state, RowState::Pending | RowState::Dispatched))
            .map(|t| t.kind);
        let given_up = task.as_ref().is_some_and(|t| t.state == RowState::Failed);
        let Some(task) =
            task.filter(|t| matches!(t.state, RowState::Pending | RowState::Dispatched))
        else {
            // A clean-up the conductor ordered itself, a duplicate result, or the late result
            // of a task that was superseded (a build the user deleted meanwhile, or one given
            // up at the build timeout): whatever now runs for an instance that is gone, or
            // that its build no longer stands for, must go.
            tracing::debug!(?outcome, "result without an open task");
            if let Outcome::Done { power_state, .. } = outcome {
                self.settle_late_done(host, uuid, closed_kind).await?;
                if given_up {
                    self.settle_late_rescue(host, uuid, closed_kind, power_state)
                        .await?;
                }
            }
            return Ok(());
        };
        let Some(instance) = read? else {
            return self.close_task(&task, RowState::Failed).await;
        };
        match (task.kind, outcome) {
            (TaskKind::Delete, Outcome::Destroyed) => {
                self.finish_delete(&task, &instance, Some(host)).await
            }
            (TaskKind::Shelve { .. } | TaskKind::Unshelve, outcome) => {
                self.apply_shelve_result(&task, &instance, outcome, host)
                    .await
            }
            (kind, outcome) if crate::tasks::resizes(kind) => {
                self.apply_resize_result(&task, &instance, outcome, host)
                    .await
            }
            (
                TaskKind::Build,
                Outcome::Done {
                    power_state,
                    addresses,
                },
            ) => {
                let addresses = self.with_port_addresses(&instance, addresses).await?;
                let set = instances::SetStates {
                    vm_state: VmState::Active,
                    task_state: None,
                    power_state: Some(power_state),
                    launched: true,
                    addresses: Some(addresses),
                };
                let expect = instances::Expect {
                    vm_state: Some(VmState::Building),
                    task_state: Some(TaskState::Spawning),
                };
                let applied = self.finish(&task, expect, set, None, host).await?;
                if applied == Applied::TaskClosedMeanwhile {
                    // A copy of this result (or a timeout, or a delete) closed the task first:
                    // decide as for any result of a closed task. Destroying here took the
                    // container of the server that the first copy had just made ACTIVE.
                    return self
                        .settle_late_done(host, uuid, Some(TaskKind::Build))
                        .await;
                }
                if applied == Applied::Unchanged {
                    // Timed out, or deleted while it was built: make sure nothing stays behind
                    // unless a delete is already on its way to the host.
                    if instance.task_state != Some(TaskState::Deleting) {
                        tracing::info!("a build finished too late; removing it from the host");
                        let command = ComputeCommand::Destroy {
                            task_id: None,
                            instance: uuid,
                        };
                        self.send_to_host(host, command, Some(task.request_id.clone()))
                            .await?;
                    }
                } else {
                    tracing::info!("active");
                    if instance.node_type == nova_core::model::NodeType::Baremetal {
                        let power = if power_state == PowerState::Running {
                            "power on"
                        } else {
                            "power off"
                        };
                        nova_db::baremetal::activate(&self.db, uuid, power, now_ms()).await?;
                    }
                }
                Ok(())
            }
            (TaskKind::Build, Outcome::Failed { message, details }) => {
                let event = event_name(TaskKind::Build);
                self.fail_build(&task, &instance, event, message, details, Some(host))
                    .await
            }
            // As Nova's `_update_instance_after_spawn`: the guest launched anew, and its
            // addresses as the host reports them (a container on the host's network may get
            // a new one).
            (
                TaskKind::Rebuild { stopped },
                Outcome::Done {
                    power_state,
                    addresses,
                },
            ) => {
                let addresses = self.with_port_addresses(&instance, addresses).await?;
                let set = instances::SetStates {
                    vm_state: if stopped {
                        VmState::Stopped
                    } else {
                        VmState::Active
                    },
                    task_state: None,
                    power_state: Some(power_state),
                    launched: true,
                    addresses: Some(addresses),
                };
                let expect = instances::Expect {
                    vm_state: None,
                    task_state: Some(TaskState::Rebuilding),
                };
                self.finish(&task, expect, set, None, host)
                    .await
                    .map(|_| ())
            }
            (kind, Outcome::Done { power_state, .. }) if host_task_states(kind).is_some() => {
                let Some((expect_task, vm_state)) = host_task_states(kind) else {
                    return Ok(()); // (the guard)
                };
                let set = instances::SetStates {
                    vm_state,
                    task_state: None,
                    power_state: Some(power_state),
                    launched: false,
                    addresses: None,
                };
                let expect = instances::Expect {
                    vm_state: None,
                    task_state: Some(expect_task),
                };
                self.finish(&task, expect, set, None, host)
                    .await
                    .map(|_| ())
            }
            // A snapshot leaves the server in the state it was in (its image has its data).
            (TaskKind::Snapshot { .. }, Outcome::Done { power_state, .. }) => {
                let set = instances::SetStates {
                    vm_state: instance.vm_state,
                    task_state: None,
                    power_state: Some(power_state),
                    launched: false,
                    addresses: None,
                };
                let expect = instances::Expect {
                    vm_state: Some(instance.vm_state),
                    task_state: Some(TaskState::ImageSnapshot),
                };
                self.finish(&task, expect, set, None, host)
                    .await
                    .map(|_| ())
            }
            // As Nova's: a failed snapshot's image is deleted, the server as it was.
            (TaskKind::Snapshot { .. }, Outcome::Failed { message, details }) => {
                self.drop_snapshot_image(&task).await?;
                let vm_state = instance.vm_state;
                self.end_with_fault(&task, &instance, vm_state, None, message, details, host)
                    .await
            }
            // As Nova's rebuild: the old guest is gone, so a failure leaves the server in ERROR
            // (its claim and ports stay: it can be rebuilt again or deleted).
            (TaskKind::Rebuild { .. }, Outcome::Failed { message, details }) => {
                // (No guest is left: its power state with it.)
                let power = Some(PowerState::NoState);
                self.end_with_fault(
                    &task,
                    &instance,
                    VmState::Error,
                    power,
                    message,
                    details,
                    host,
                )
                .await
            }
            // As Nova's @reverts_task_state: the task state goes back to none, the vm state
            // stays, and the failure is recorded as a fault and in the action.
            (_, Outcome::Failed { message, details }) => {
                let vm_state = instance.vm_state;
                self.end_with_fault(&task, &instance, vm_state, None, message, details, host)
                    .await
            }
            (kind, outcome) => {
                tracing::warn!(
                    ?kind,
                    ?outcome,
                    "result does not fit its task; closing the task"
                );
                self.close_task(&task, RowState::Failed).await
            }
        }
    }

    /// A `Done` result for a task already closed: a clean-up the conductor ordered itself, a
    /// copy of a result applied already, or the late result of a task that was superseded (a
    /// build the user deleted meanwhile, or one given up at the build timeout). Whatever now
    /// runs for an instance that is gone, or that its build no longer stands for, must go;
    /// an instance that this very build made ACTIVE on `host` stays.
    async fn settle_late_done(
        &self,
        host: &str,
        uuid: InstanceUuid,
        closed_kind: Option<TaskKind>,
    ) -> Result<()> {
        // Read again, after the task: an instance read before may predate the delete that
        // closed the task, and would hide that the server is gone.
        let current = instances::get_any(&self.db, uuid).await?;
        let gone = current.as_ref().is_none_or(|i| i.deleted);
        // A build that succeeded after it was given up: the server is in ERROR and its claim
        // was freed, so what now runs on the host is an orphan, however late. (A server the
        // build made ACTIVE and the user stopped, paused or suspended since is no orphan: a
        // late copy of that build's result must leave it be.)
        let abandoned_build = closed_kind == Some(TaskKind::Build)
            && current
                .as_ref()
                .is_some_and(|i| i.vm_state == VmState::Error || i.host.as_deref() != Some(host));
        // Likewise an unshelve given up (the server SHELVED_OFFLOADED again, or elsewhere).
        let abandoned_unshelve = closed_kind == Some(TaskKind::Unshelve)
            && current.as_ref().is_some_and(|i| {
                i.vm_state == VmState::ShelvedOffloaded || i.host.as_deref() != Some(host)
            });
        let abandoned_build = abandoned_build || abandoned_unshelve;
        if gone || abandoned_build {
            if abandoned_build {
                tracing::warn!(%uuid, %host, "a build finished after it was given up; removing it");
            }
            let command = ComputeCommand::Destroy {
                task_id: None,
                instance: uuid,
            };
            self.send_to_host(host, command, None).await?;
        }
        Ok(())
    }

    /// A rescue or an unrescue that was given up (its server left as it was, with a fault)
    /// and then done on the host after all: the server is told as its guest now is — RESCUED
    /// or ACTIVE — when nothing was done to it since (no other result would ever say so, and
    /// the power sync cannot see a rescue).
    async fn settle_late_rescue(
        &self,
        host: &str,
        uuid: InstanceUuid,
        closed_kind: Option<TaskKind>,
        power_state: PowerState,
    ) -> Result<()> {
        let (from, to): (&[VmState], VmState) = match closed_kind {
            Some(TaskKind::Rescue { .. }) => (
                &[VmState::Active, VmState::Stopped, VmState::Error],
                VmState::Rescued,
            ),
            Some(TaskKind::Unrescue) => (&[VmState::Rescued], VmState::Active),
            _ => return Ok(()),
        };
        let Some(instance) = instances::get_any(&self.db, uuid).await? else {
            return Ok(());
        };
        if instance.deleted
            || instance.host.as_deref() != Some(host)
            || instance.task_state.is_some()
            || !from.contains(&instance.vm_state)
        {
            return Ok(());
        }
        let expect = instances::Expect {
            vm_state: Some(instance.vm_state),
            task_state: None,
        };
        let set = instances::SetStates {
            vm_state: to,
            task_state: None,
            power_state: Some(power_state),
            launched: false,
            addresses: None,
        };
        let mut tx = self.db.begin().await?;
        instances::transition(&mut tx, uuid, expect, set).await?;
        tx.commit().await?;
        tracing::warn!(%uuid, vm_state = %to, "a given-up rescue or unrescue was done on the host after all");
        Ok(())
    }

    /// Ends `task` with a fault: the server's task state cleared, its vm state (and power
    /// state, when given) as said, the fault recorded and the action's event an error; only if
    /// the server is still in the states it was read in.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn end_with_fault(
        &self,
        task: &Task,
        instance: &Instance,
        vm_state: VmState,
        power_state: Option<PowerState>,
        message: String,
        details: Option<String>,
        host: &str,
    ) -> Result<()> {
        let fault = Fault {
            code: 500,
            message: message.clone(),
            details,
            created_at: now_ms(),
        };
        let set = instances::SetStates {
            vm_state,
            task_state: None,
            power_state,
            launched: false,
            addresses: None,
        };
        let expect = instances::Expect {
            vm_state: Some(instance.vm_state),
            task_state: instance.task_state,
        };
        self.finish(task, expect, set, Some((&fault, &message)), host)
            .await
            .map(|_| ())
    }

    /// Applies the result of a task in one transaction: the state change (compare-and-set),
    /// the fault if any, the task row, the action event. Says whether the instance changed, or
    /// was not in the expected state (the task is closed as failed then), or whether the task
    /// had been closed meanwhile: by a copy of this very result, applied first (the agent
    /// answers a re-sent command with its recorded outcome, and both results may be handled at
    /// once), or by a timeout or a delete.
    pub(crate) async fn finish(
        &self,
        task: &Task,
        expect: instances::Expect,
        set: instances::SetStates,
        failure: Option<(&Fault, &str)>,
        host: &str,
    ) -> Result<Applied> {
        self.finish_with(task, expect, set, failure, host, None)
            .await
    }

    /// [`Self::finish`], with a resize's migration moved on in the same transaction when the
    /// instance changed.
    pub(crate) async fn finish_with(
        &self,
        task: &Task,
        expect: instances::Expect,
        set: instances::SetStates,
        failure: Option<(&Fault, &str)>,
        host: &str,
        step: Option<&crate::resize::MigrationStep>,
    ) -> Result<Applied> {
        let mut tx = self.db.begin().await?;
        let changed = instances::transition(&mut tx, task.instance, expect, set).await?;
        if let Some(step) = step.filter(|_| changed) {
            if !step.apply(&mut tx, task.instance).await? {
                // The migration moved on first (a copy of this result, or the reconciler):
                // nothing of this result is applied.
                drop(tx);
                tracing::info!("the resize's migration moved on; result not applied");
                self.close_task(task, RowState::Failed).await?;
                return Ok(Applied::Unchanged);
            }
        }
        let to = if changed && failure.is_none() {
            RowState::Done
        } else {
            RowState::Failed
        };
        if let Some((fault, _)) = failure.filter(|_| changed) {
            instances::add_fault(&mut tx, task.instance, fault, Some(host)).await?;
        }
        let closed = task_rows::advance(
            &mut tx,
            task.id,
            &[RowState::Pending, RowState::Dispatched],
            to,
        )
        .await?;
        if closed {
            if let Some(action) = task.action_id {
                let (error, traceback) = match (changed, failure) {
                    (_, Some((fault, message))) => (Some(message), fault.details.as_deref()),
                    (false, None) => (Some("the instance changed while the task ran"), None),
                    (true, None) => (None, None),
                };
                actions::record_event(
                    &mut tx,
                    action,
                    event_name(task.kind),
                    task.created_at,
                    error,
                    traceback,
                    Some(host),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(match (changed, closed) {
            (true, _) => Applied::Changed,
            (false, true) => Applied::Unchanged,
            (false, false) => Applied::TaskClosedMeanwhile,
        })
    }

    /// The power-state sync, as Nova's `_sync_instance_power_state`: instances with a task in
    /// flight are left alone; an active or paused instance found shut down becomes SHUTOFF;
    /// one that vanished from its host becomes ERROR with a fault; a deleted one still running
    /// is reaped.
    async fn apply_observed(
        &self,
        host: &str,
        uuid: InstanceUuid,
        observed: Option<PowerState>,
    ) -> Result<()> {
        let Some(instance) = instances::get_any(&self.db, uuid).await? else {
            tracing::warn!(%host, %uuid, "host runs an instance the service does not know");
            return Ok(());
        };
        if instance.deleted {
            if observed.is_some() {
                tracing::info!(%host, %uuid, "reaping an instance that was deleted");
                let command = ComputeCommand::Destroy {
                    task_id: None,
                    instance: uuid,
                };
                self.send_to_host(host, command, None).await?;
            }
            return Ok(());
        }
        if instance.host.as_deref() != Some(host) || instance.task_state.is_some() {
            return Ok(());
        }
        let expect = instances::Expect {
            vm_state: Some(instance.vm_state),
            task_state: None,
        };
        match (instance.vm_state, observed) {
            (
                VmState::Active
                | VmState::Stopped
                | VmState::Paused
                | VmState::Suspended
                | VmState::Resized
                | VmState::Rescued,
                None,
            ) => {
                let fault = Fault {
                    code: 500,
                    message: format!("Instance {uuid} is missing on its host {host}"),
                    details: None,
                    created_at: now_ms(),
                };
                let mut tx = self.db.begin().await?;
                instances::set_error(&mut tx, uuid, expect, &fault, Some(host)).await?;
                tx.commit().await?;
                tracing::warn!("instance vanished from its host");
            }
            // As Nova, a paused guest that shut down is stopped too. (A suspended one is shut
            // off by its suspend; one that an outsider paused is left as it is.)
            (
                VmState::Active | VmState::Paused,
                Some(p @ (PowerState::Shutdown | PowerState::Crashed)),
            ) => {
                let set = instances::SetStates {
                    vm_state: VmState::Stopped,
                    task_state: None,
                    power_state: Some(p),
                    launched: false,
                    addresses: None,
                };
                let mut tx = self.db.begin().await?;
                instances::transition(&mut tx, uuid, expect, set).await?;
                tx.commit().await?;
                tracing::info!("instance shut down outside the service; now SHUTOFF");
            }
            (_, Some(p)) if p != instance.power_state => {
                instances::set_power_state(&self.db, uuid, p).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// What applying a task's result did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The instance changed as the result says, and the task closed.
    Changed,
    /// The instance was not in the expected state: the task closed as failed.
    Unchanged,
    /// The task was closed before this result was applied; nothing changed.
    TaskClosedMeanwhile,
}
