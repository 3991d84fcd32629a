//! Carrying out a task the API wrote: build, delete, and the calls to the server's host
//! (rebuild, resize, snapshots, shelve, rescue; stop, start, reboot, pause, unpause, suspend
//! and resume when the API could not send them to the host itself, and again when the
//! reconciler finds them stuck).

use crate::scheduler::Placement;
use crate::{Conductor, Result};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::model::{Fault, Instance, TaskState, VmState, COMPUTE_BINARY};
use nova_core::rpc::{
    ComputeCommand, Envelope, ImageSpec, InstanceSpec, Nic, TaskKind, TaskSubmitted,
};
use nova_core::time::now_ms;
use nova_db::ports::{self, NicRequest};
use nova_db::tasks::{self as task_rows, Task, TaskState as RowState};
use nova_db::{actions, images, instances, nodes, Db};

/// Nova's event names in the instance-action record.
pub(crate) fn event_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Build => "compute__do_build_and_run_instance",
        TaskKind::Delete => "compute_terminate_instance",
        TaskKind::Stop => "compute_stop_instance",
        TaskKind::Start => "compute_start_instance",
        TaskKind::Reboot { .. } => "compute_reboot_instance",
        TaskKind::Pause => "compute_pause_instance",
        TaskKind::Unpause => "compute_unpause_instance",
        TaskKind::Suspend => "compute_suspend_instance",
        TaskKind::Resume => "compute_resume_instance",
        TaskKind::Rebuild { .. } => "compute_rebuild_instance",
        TaskKind::Resize => "compute_resize_instance",
        TaskKind::ConfirmResize => "compute_confirm_resize",
        TaskKind::RevertResize => "compute_revert_resize",
        TaskKind::SoftDelete { .. } => "compute_soft_delete_instance",
        TaskKind::Restore => "compute_restore_instance",
        TaskKind::Snapshot { backup: None, .. } => "compute_snapshot_instance",
        TaskKind::Snapshot {
            backup: Some(_), ..
        } => "compute_backup_instance",
        TaskKind::Shelve { .. } => "compute_shelve_instance",
        TaskKind::Unshelve => "compute_unshelve_instance",
        TaskKind::Rescue { .. } => "compute_rescue_instance",
        TaskKind::Unrescue => "compute_unrescue_instance",
    }
}

/// What a task done on the server's host leaves it in: the task state it runs under, and the
/// vm state it ends in (Nova's compute manager sets the same). `None` for the tasks that are
/// not one call to the host (build, delete), and for the resize's, whose states come from
/// their migration (`crate::resize`).
pub(crate) fn host_task_states(kind: TaskKind) -> Option<(TaskState, VmState)> {
    Some(match kind {
        TaskKind::Build | TaskKind::Delete => return None,
        TaskKind::Resize | TaskKind::ConfirmResize | TaskKind::RevertResize => return None,
        // The server stays in its vm state, or its states are the shelve's (see `events` and
        // `shelve`).
        TaskKind::Snapshot { .. } | TaskKind::Shelve { .. } | TaskKind::Unshelve => return None,
        TaskKind::Stop => (TaskState::PoweringOff, VmState::Stopped),
        TaskKind::Start => (TaskState::PoweringOn, VmState::Active),
        TaskKind::Reboot { hard: true } => (TaskState::RebootingHard, VmState::Active),
        TaskKind::Reboot { hard: false } => (TaskState::Rebooting, VmState::Active),
        TaskKind::Pause => (TaskState::Pausing, VmState::Paused),
        TaskKind::Unpause => (TaskState::Unpausing, VmState::Active),
        TaskKind::Suspend => (TaskState::Suspending, VmState::Suspended),
        TaskKind::Resume => (TaskState::Resuming, VmState::Active),
        TaskKind::Rebuild { stopped: true } => (TaskState::Rebuilding, VmState::Stopped),
        TaskKind::Rebuild { stopped: false } => (TaskState::Rebuilding, VmState::Active),
        TaskKind::SoftDelete { .. } => (TaskState::SoftDeleting, VmState::SoftDeleted),
        TaskKind::Restore => (TaskState::Restoring, VmState::Active),
        TaskKind::Rescue { .. } => (TaskState::Rescuing, VmState::Rescued),
        TaskKind::Unrescue => (TaskState::Unrescuing, VmState::Active),
    })
}

/// Whether a task is one call to the server's host whose failure ends as a host task's: the
/// task state cleared, a fault (the resize's and the snapshot's, whose states are their own).
pub(crate) fn on_host(kind: TaskKind) -> bool {
    host_task_states(kind).is_some()
        || resizes(kind)
        || matches!(kind, TaskKind::Snapshot { .. } | TaskKind::Shelve { .. })
}

/// Whether a task is a resize's (its migration says what it does).
pub(crate) fn resizes(kind: TaskKind) -> bool {
    matches!(
        kind,
        TaskKind::Resize | TaskKind::ConfirmResize | TaskKind::RevertResize
    )
}

const SCHEDULE_EVENT: &str = "conductor_schedule_and_build_instances";

impl Conductor {
    /// Carries out a submitted task. The message names the instance too, so that the task
    /// and the instance are read together; the task's own record is what counts.
    pub(crate) async fn handle_task(&self, id: TaskId, instance: InstanceUuid) -> Result<()> {
        tracing::debug!("task received");
        let (task, read) = tokio::join!(
            task_rows::get(&self.db, id),
            instances::get_any(&self.db, instance)
        );
        let Some(task) = task? else {
            tracing::warn!("task not found; ignoring");
            return Ok(());
        };
        match task.state {
            RowState::Done | RowState::Failed => return Ok(()), // a duplicate
            RowState::Dispatched => return self.redispatch(&task).await,
            RowState::Pending => {}
        }
        let read = read?.filter(|i| i.uuid == task.instance);
        let instance = match read {
            Some(i) => i,
            // A message whose instance is not the task's: read the task's own.
            None => match instances::get_any(&self.db, task.instance).await? {
                Some(i) => i,
                None => {
                    tracing::warn!("task for an unknown instance; ignoring");
                    return Ok(());
                }
            },
        };
        match task.kind {
            TaskKind::Build => self.build(&task, &instance).await,
            TaskKind::Delete => self.delete(&task, &instance).await,
            TaskKind::Resize => self.resize(&task, &instance).await,
            TaskKind::Unshelve => self.unshelve(&task, &instance).await,
            _ => self.host_action(&task, &instance).await,
        }
    }

    async fn build(&self, task: &Task, instance: &Instance) -> Result<()> {
        if instance.deleted
            || instance.vm_state != VmState::Building
            || instance.task_state != Some(TaskState::Scheduling)
        {
            return self.close_task(task, RowState::Failed).await;
        }
        // The image's records are read while the scheduler places the server: the two do not
        // depend on each other, and the spawn needs both.
        let place = self.scheduler.place(
            &self.db,
            instance,
            task.id,
            self.alive_since(),
            self.settings.claim_attempts,
        );
        // The server's ports are made while it is scheduled (bound to its host once it has
        // one), where the database writes both at once: neither depends on the other, and a
        // build waited for both one after the other. (SQLite has one writer: there the two
        // would only queue. A user's port is bound with the host: after.)
        let requests = nic_requests(instance);
        let early = self.db.writes_side_by_side()
            && !requests.is_empty()
            && requests.iter().all(|r| r.port_id.is_none());
        let ports = async {
            if early {
                Some(allocate_ports(&self.db, instance, None, &requests).await)
            } else {
                None
            }
        };
        let image = async {
            let image = images::get(&self.db, &instance.image_ref).await?;
            let direct = direct_boot(&self.db, &instance.project_id, image.as_ref()).await?;
            Ok::<_, crate::ConductorError>((image, direct))
        };
        let (placement, image, made) = tokio::join!(place, image, ports);
        match placement? {
            Placement::Placed { host, node } => {
                tracing::info!(%host, %node, "scheduled");
                let (image, direct) = image?;
                let allocated = match made {
                    Some(made) => match made? {
                        Ok(made) => {
                            // The NICs' filters do not depend on the host: beside the binding.
                            let uuid = instance.uuid.0.to_string();
                            let (_, nics) = tokio::try_join!(
                                ports::bind_to_host(&self.db, &uuid, &host),
                                nova_db::firewall::nics_of(&self.db, &made)
                            )?;
                            Ok(nics)
                        }
                        Err(refused) => Err(refused),
                    },
                    None => allocate_requested(&self.db, instance, Some(&host), &requests).await?,
                };
                let nics = match allocated {
                    Ok(nics) => nics,
                    Err((message, details)) => {
                        return self
                            .fail_build(
                                task,
                                instance,
                                event_name(TaskKind::Build),
                                message,
                                Some(details),
                                None,
                            )
                            .await
                    }
                };
                let spec = match spec_from(instance, &node, image, direct, nics) {
                    Ok(mut spec) => {
                        spec.bmc = machine_bmc(&self.db, instance, &node).await?;
                        spec
                    }
                    Err(message) => {
                        return self
                            .fail_build(task, instance, SCHEDULE_EVENT, message, None, None)
                            .await
                    }
                };
                let command = ComputeCommand::Spawn {
                    task_id: task.id,
                    spec: Box::new(spec),
                };
                self.send_to_host(&host, command, Some(task.request_id.clone()))
                    .await?;
                Ok(())
            }
            Placement::NoValidHost => {
                tracing::info!("no valid host");
                // Nova's message for NoValidHost.
                let message =
                    "No valid host was found. There are not enough hosts available.".to_owned();
                self.fail_build(task, instance, SCHEDULE_EVENT, message, None, None)
                    .await
            }
            // Another handler took the task (a duplicate message), or the instance moved on.
            Placement::Superseded => Ok(()),
        }
    }

    /// Ends a build in ERROR with a fault, gives back its claim and closes its task.
    pub(crate) async fn fail_build(
        &self,
        task: &Task,
        instance: &Instance,
        event: &str,
        message: String,
        details: Option<String>,
        host: Option<&str>,
    ) -> Result<()> {
        let fault = Fault {
            code: 500,
            message: message.clone(),
            details,
            created_at: now_ms(),
        };
        let expect = instances::Expect {
            vm_state: Some(VmState::Building),
            task_state: None,
        };
        let mut tx = self.db.begin().await?;
        instances::set_error(&mut tx, instance.uuid, expect, &fault, host).await?;
        nodes::release(&mut tx, instance.uuid).await?;
        // As Nova when a build is not rescheduled: its ports go (the user's are unbound).
        ports::release_for_instance(&mut tx, &instance.uuid.0.to_string()).await?;
        let released = self.release_machine(&mut tx, instance.uuid).await?;
        if task_rows::advance(
            &mut tx,
            task.id,
            &[RowState::Pending, RowState::Dispatched],
            RowState::Failed,
        )
        .await?
        {
            if let Some(action) = task.action_id {
                actions::record_event(
                    &mut tx,
                    action,
                    event,
                    task.created_at,
                    Some(&message),
                    fault.details.as_deref(),
                    host,
                )
                .await?;
            }
        }
        tx.commit().await?;
        // Its ports are gone: the filters of the groups it was in change.
        nova_db::firewall::bump(&self.db).await?;
        self.send_clean(released).await?;
        Ok(())
    }

    async fn delete(&self, task: &Task, instance: &Instance) -> Result<()> {
        if instance.deleted {
            return self.close_task(task, RowState::Done).await;
        }
        let host_up = match &instance.host {
            None => None,
            Some(host) => Some((host.clone(), self.host_is_up(host).await?)),
        };
        match host_up {
            Some((host, true)) => {
                let mut tx = self.db.begin().await?;
                let moved = task_rows::advance(
                    &mut tx,
                    task.id,
                    &[RowState::Pending],
                    RowState::Dispatched,
                )
                .await?;
                tx.commit().await?;
                if moved {
                    let command = ComputeCommand::Destroy {
                        task_id: Some(task.id),
                        instance: instance.uuid,
                    };
                    self.send_to_host(&host, command, Some(task.request_id.clone()))
                        .await?;
                }
                Ok(())
            }
            // Never placed, or its host is down: delete locally, as Nova does when the
            // compute service is down.
            other => {
                if let Some((host, _)) = other {
                    tracing::warn!(%host, "compute service is down; deleting locally");
                }
                self.finish_delete(task, instance, None).await
            }
        }
    }

    /// Marks the instance deleted, gives back its claim, closes the task.
    pub(crate) async fn finish_delete(
        &self,
        task: &Task,
        instance: &Instance,
        host: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        instances::mark_deleted(&mut tx, instance.uuid).await?;
        // A resize under way ends with it (its claims go with the server's below).
        nova_db::migrations::end_with_server(&mut tx, instance.uuid).await?;
        nodes::release(&mut tx, instance.uuid).await?;
        ports::release_for_instance(&mut tx, &instance.uuid.0.to_string()).await?;
        let released = self.release_machine(&mut tx, instance.uuid).await?;
        task_rows::advance(
            &mut tx,
            task.id,
            &[RowState::Pending, RowState::Dispatched],
            RowState::Done,
        )
        .await?;
        // A delete supersedes whatever else was open (a build that never finished, say); a
        // snapshot it cut short leaves no queued image.
        for open in task_rows::open_for_tx(&mut tx, instance.uuid).await? {
            if let Some(image) = crate::shelve::image_of(open.kind) {
                images::drop_pending(&mut tx, &image.to_string()).await?;
            }
        }
        task_rows::finish_open(&mut tx, instance.uuid, RowState::Failed).await?;
        if let Some(action) = task.action_id {
            actions::record_event(
                &mut tx,
                action,
                event_name(task.kind),
                task.created_at,
                None,
                None,
                host,
            )
            .await?;
        }
        tx.commit().await?;
        nova_db::firewall::bump(&self.db).await?;
        self.send_clean(released).await?;
        tracing::info!("deleted");
        Ok(())
    }

    /// A task that is one call to the server's host (stop, start, reboot, pause, …).
    async fn host_action(&self, task: &Task, instance: &Instance) -> Result<()> {
        if instance.deleted {
            return self.close_task(task, RowState::Failed).await;
        }
        let Some(host) = instance.host.clone() else {
            return self.abort_host_task(task, instance).await;
        };
        if self.soft_deleted_locally(task, &host).await? {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        let moved =
            task_rows::advance(&mut tx, task.id, &[RowState::Pending], RowState::Dispatched)
                .await?;
        tx.commit().await?;
        if moved {
            match command_for(&self.db, task, instance).await? {
                Some(command) => {
                    self.send_to_host(&host, command, Some(task.request_id.clone()))
                        .await?
                }
                None => return self.abort_host_task(task, instance).await,
            }
        }
        Ok(())
    }

    /// Ends a host task that cannot be sent — the server has no host, or the command cannot
    /// be made (a rebuild's image deleted since the API took it, say) — as Nova's
    /// `reverts_task_state` ends one that failed before it changed anything: the task state
    /// cleared, the vm state kept, a fault, and the action's event an error. (A task state
    /// left behind would refuse every action but delete for ever.)
    pub(crate) async fn abort_host_task(&self, task: &Task, instance: &Instance) -> Result<()> {
        if resizes(task.kind) {
            return self.abort_resize(task, instance).await;
        }
        self.drop_snapshot_image(task).await?;
        let message = format!(
            "The {} of instance {} could not be started on its host (its host, node or image \
             is no longer there).",
            task.kind.action_name(),
            instance.uuid
        );
        tracing::warn!(%message);
        let host = instance.host.as_deref().unwrap_or_default();
        self.end_with_fault(task, instance, instance.vm_state, None, message, None, host)
            .await
    }

    /// Deletes the queued image of a snapshot task that will not upload it (Nova deletes the
    /// image of a snapshot that failed).
    pub(crate) async fn drop_snapshot_image(&self, task: &Task) -> Result<()> {
        if let Some(image) = crate::shelve::image_of(task.kind) {
            let mut tx = self.db.begin().await?;
            images::drop_pending(&mut tx, &image.to_string()).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Sends the command of a dispatched task again (the reconciler found it stuck; the agent's
    /// handlers are idempotent).
    pub(crate) async fn redispatch(&self, task: &Task) -> Result<()> {
        let Some(instance) = instances::get_any(&self.db, task.instance).await? else {
            return Ok(());
        };
        if task.kind == TaskKind::Delete && !instance.deleted {
            let up = match &instance.host {
                Some(host) => self.host_is_up(host).await?,
                None => false,
            };
            if !up {
                // The host died with the destroy in flight: delete locally, as Nova does.
                return self.finish_delete(task, &instance, None).await;
            }
        }
        if let Some(host) = instance.host.as_deref().filter(|_| !instance.deleted) {
            if self.soft_deleted_locally(task, host).await? {
                return Ok(());
            }
        }
        // An unshelve placed and sent (dispatched): its spawn again, on its new host.
        if task.kind == TaskKind::Unshelve && !instance.deleted {
            let command = match &instance.host {
                Some(_) if instance.task_state == Some(TaskState::Spawning) => {
                    self.unshelve_command(task, &instance).await?
                }
                _ => None,
            };
            return match (command, instance.host.as_deref()) {
                (Some(command), Some(host)) => {
                    self.send_to_host(host, command, Some(task.request_id.clone()))
                        .await?;
                    Ok(())
                }
                _ => {
                    let message = format!(
                        "The unshelve of instance {} could not be started on a host.",
                        instance.uuid
                    );
                    self.fail_unshelve(task, &instance, message, None).await
                }
            };
        }
        match (
            &instance.host,
            command_for(&self.db, task, &instance).await?,
        ) {
            (Some(host), Some(command)) if !instance.deleted => {
                tracing::info!(%host, "re-sending the command of a stuck task");
                self.send_to_host(host, command, Some(task.request_id.clone()))
                    .await?;
                Ok(())
            }
            _ if !instance.deleted && on_host(task.kind) => {
                self.abort_host_task(task, &instance).await
            }
            _ => self.close_task(task, RowState::Failed).await,
        }
    }

    /// A soft delete whose host is down is done in the database alone, as Nova's soft delete
    /// is when the compute service is down (the guest is reaped by the power sync when the
    /// host comes back and the server is gone; restored, it is powered on). Whether it was.
    async fn soft_deleted_locally(&self, task: &Task, host: &str) -> Result<bool> {
        if !matches!(task.kind, TaskKind::SoftDelete { .. }) || self.host_is_up(host).await? {
            return Ok(false);
        }
        tracing::warn!(%host, "compute service is down; soft-deleting locally");
        let set = instances::SetStates {
            vm_state: VmState::SoftDeleted,
            task_state: None,
            power_state: None,
            launched: false,
            addresses: None,
        };
        let expect = instances::Expect {
            vm_state: None,
            task_state: Some(TaskState::SoftDeleting),
        };
        self.finish(task, expect, set, None, host).await?;
        Ok(true)
    }

    /// Whether the compute service on `host` is heard from (Nova's servicegroup check).
    pub(crate) async fn host_is_up(&self, host: &str) -> Result<bool> {
        let service = nodes::service(&self.db, host, COMPUTE_BINARY).await?;
        Ok(service.is_some_and(|s| s.is_up(now_ms(), self.settings.service_down_ms())))
    }

    /// Sends a pending task's message again (the API's publish may have been lost).
    pub(crate) async fn resubmit(&self, task: &Task) -> Result<()> {
        let env = Envelope::new(
            Some(task.request_id.clone()),
            TaskSubmitted {
                task_id: task.id,
                instance: task.instance,
            },
        );
        self.bus
            .publish(&self.queues.conductor_tasks(), env.encode())
            .await?;
        Ok(())
    }

    pub(crate) async fn close_task(&self, task: &Task, to: RowState) -> Result<()> {
        let mut tx = self.db.begin().await?;
        task_rows::advance(
            &mut tx,
            task.id,
            &[RowState::Pending, RowState::Dispatched],
            to,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The command that carries out `task` on the instance's host; `None` when there is none to
/// send (the build moved on, or its image is gone: the build timeout then ends it).
pub(crate) async fn command_for(
    db: &Db,
    task: &Task,
    instance: &Instance,
) -> Result<Option<ComputeCommand>> {
    let (task_id, uuid) = (task.id, instance.uuid);
    if let Some(command) = task.kind.host_command(task_id, uuid) {
        return Ok(Some(command));
    }
    Ok(Some(match task.kind {
        TaskKind::Build => {
            if instance.vm_state != VmState::Building {
                return Ok(None);
            }
            let Some(spec) = spec_on_its_node(db, instance).await? else {
                return Ok(None);
            };
            ComputeCommand::Spawn { task_id, spec }
        }
        TaskKind::Delete => ComputeCommand::Destroy {
            task_id: Some(task_id),
            instance: uuid,
        },
        // As Nova's compute manager for a driver without soft_delete and restore (none of
        // Nova's in-tree drivers but one has them): a power off, and a power on.
        TaskKind::SoftDelete { .. } => ComputeCommand::PowerOff {
            task_id,
            instance: uuid,
        },
        TaskKind::Restore => ComputeCommand::PowerOn {
            task_id,
            instance: uuid,
        },
        // (Unreachable: their commands are the host's own, returned above.)
        TaskKind::Stop
        | TaskKind::Start
        | TaskKind::Reboot { .. }
        | TaskKind::Pause
        | TaskKind::Unpause
        | TaskKind::Suspend
        | TaskKind::Resume => return Ok(None),
        TaskKind::Resize | TaskKind::ConfirmResize | TaskKind::RevertResize => {
            return Conductor::resize_command(db, task, instance).await;
        }
        TaskKind::Shelve { image } => ComputeCommand::Shelve {
            task_id,
            instance: uuid,
            image_id: image.to_string(),
        },
        // Placed by the conductor first (see `shelve`): sent from there.
        TaskKind::Unshelve => return Ok(None),
        TaskKind::Snapshot { image, backup } => {
            let image_id = image.to_string();
            let rotate_out = match backup {
                Some(rotation) => rotated_out(db, instance, &image_id, rotation).await?,
                None => Vec::new(),
            };
            ComputeCommand::Snapshot {
                task_id,
                instance: uuid,
                image_id,
                rotate_out,
            }
        }
        // The spec as a build's (its ports found again), with the rescue image as its image:
        // the one asked for, or the server's own (Nova's default without a configured rescue
        // image). Its kernel and ramdisk are the rescue image's own (Nova's libvirt driver
        // boots any rescue image with the server's; a whole-disk rescue image boots as it is
        // here).
        TaskKind::Rescue { image } => {
            let Some(node) = instance.node.as_deref() else {
                return Ok(None);
            };
            let mut rescued = instance.clone();
            if let Some(image) = image {
                rescued.image_ref = image.to_string();
            }
            let Ok(mut spec) = spec(db, &rescued, node).await? else {
                return Ok(None);
            };
            // A machine boots the rescue image through its BMC (its ISO is not the host's).
            spec.bmc = machine_bmc(db, instance, node).await?;
            // A stable device rescue when the rescue image asks for one (the API checked its
            // properties; an image changed since is rescued the legacy way).
            let stable = images::get(db, &rescued.image_ref)
                .await?
                .and_then(|i| serde_json::from_str(&i.properties).ok())
                .and_then(|p| nova_core::rpc::StableRescue::of_properties(&p).ok())
                .flatten();
            ComputeCommand::Rescue {
                task_id,
                spec: Box::new(spec),
                stable,
            }
        }
        // A machine's own ISO deployed again through its BMC. Only its image is needed (no
        // check that it is still active, no ports found again: an unrescue must not be
        // refused for them; an image gone since is the BMC's failure to fetch, a fault).
        TaskKind::Unrescue if instance.node_type == nova_core::model::NodeType::Baremetal => {
            let Some(node) = instance.node.clone() else {
                return Ok(None);
            };
            let bmc = machine_bmc(db, instance, &node).await?;
            ComputeCommand::Unrescue {
                task_id,
                instance: uuid,
                own: Some(nova_core::rpc::OwnImage {
                    image_id: instance.image_ref.clone(),
                    node,
                    bmc,
                }),
            }
        }
        TaskKind::Unrescue => ComputeCommand::Unrescue {
            task_id,
            instance: uuid,
            own: None,
        },
        // The spec as a build's (its ports found again, not made), from the new image.
        TaskKind::Rebuild { stopped } => {
            let Some(spec) = spec_on_its_node(db, instance).await? else {
                return Ok(None);
            };
            ComputeCommand::Rebuild {
                task_id,
                spec,
                stopped,
            }
        }
    }))
}

/// The backups of `instance` of the new backup's type that its rotation leaves out once the
/// new one is made (Nova's `_rotate_backups`: the newest `rotation` kept, the new one
/// included; with 0, the new one goes too).
async fn rotated_out(
    db: &Db,
    instance: &Instance,
    new: &str,
    rotation: u32,
) -> Result<Vec<String>> {
    let Some(image) = images::get(db, new).await? else {
        return Ok(Vec::new());
    };
    let property = |i: &images::Image, key: &str| {
        serde_json::from_str::<serde_json::Value>(&i.properties)
            .ok()
            .and_then(|p| p.get(key).and_then(|v| v.as_str()).map(str::to_owned))
    };
    let backup_type = property(&image, "backup_type");
    let uuid = instance.uuid.0.to_string();
    // Only the new backup's owner's: anyone may give an image these properties, and the host
    // deletes with its own credential (Nova rotates with the user's, which can delete only
    // what the user may).
    let mut older: Vec<images::Image> = images::with_property(db, "instance_uuid", &uuid)
        .await?
        .into_iter()
        .filter(|i| {
            i.id != new
                && i.owner == image.owner
                && property(i, "instance_uuid").as_deref() == Some(uuid.as_str())
                && property(i, "image_type").as_deref() == Some("backup")
                && property(i, "backup_type") == backup_type
        })
        .collect();
    older.sort_by_key(|i| std::cmp::Reverse((i.created_at, i.id.clone())));
    let keep = usize::try_from(rotation)
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    let mut out: Vec<String> = older.into_iter().skip(keep).map(|i| i.id).collect();
    if rotation == 0 {
        out.push(new.to_owned());
    }
    Ok(out)
}

/// What the agent needs to build `instance` on the node it holds (with the machine's BMC for
/// bare metal); `None` when it has no node or its image can no longer be used.
pub(crate) async fn spec_on_its_node(
    db: &Db,
    instance: &Instance,
) -> Result<Option<Box<InstanceSpec>>> {
    let Some(node) = instance.node.as_deref() else {
        return Ok(None);
    };
    let Ok(mut spec) = spec(db, instance, node).await? else {
        return Ok(None);
    };
    spec.bmc = machine_bmc(db, instance, node).await?;
    Ok(Some(Box::new(spec)))
}

/// The BMC of the bare-metal machine `node` a server of `instance`'s type deploys onto (none
/// for other types).
async fn machine_bmc(
    db: &Db,
    instance: &Instance,
    node: &str,
) -> Result<Option<nova_core::rpc::BmcInfo>> {
    if instance.node_type != nova_core::model::NodeType::Baremetal {
        return Ok(None);
    }
    Ok(nova_db::baremetal::get(db, node).await?.and_then(|n| {
        nova_core::baremetal::bmc_info(&n.driver_info, n.bmc_password.as_deref()).ok()
    }))
}

/// What the agent needs to build `instance` on `node`, or the fault message when its image
/// can no longer be used (deleted or deactivated since the server was asked for; Nova fails
/// the build the same way).
async fn spec(
    db: &Db,
    instance: &Instance,
    node: &str,
) -> Result<std::result::Result<InstanceSpec, String>> {
    let image = async {
        let image = images::get(db, &instance.image_ref).await?;
        let direct = direct_boot(db, &instance.project_id, image.as_ref()).await?;
        Ok((image, direct))
    };
    // Allocated again (made before: used again), for a build whose first dispatch may have
    // stopped before its ports were made. Beside the image's reads: the build's latency
    // counts, and neither waits on the other.
    let host = instance.host.as_deref();
    let ((image, direct), nics) = tokio::try_join!(image, allocate_nics(db, instance, host))?;
    let nics = match nics {
        Ok(nics) => nics,
        Err((message, _)) => return Ok(Err(message)),
    };
    Ok(spec_from(instance, node, image, direct, nics))
}

/// Gives the server its ports on its chosen networks on `host` (Nova's allocate_for_instance;
/// again for a build handed out again: the ports made before are used), or the build's fault
/// (Nova's words, and the networking service's as its details) when the networking service
/// refuses.
async fn allocate_nics(
    db: &Db,
    instance: &Instance,
    host: Option<&str>,
) -> Result<std::result::Result<Vec<Nic>, (String, String)>> {
    let requests = nic_requests(instance);
    allocate_requested(db, instance, host, &requests).await
}

/// [`allocate_nics`] for these requests.
async fn allocate_requested(
    db: &Db,
    instance: &Instance,
    host: Option<&str>,
    requests: &[NicRequest],
) -> Result<std::result::Result<Vec<Nic>, (String, String)>> {
    if requests.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    Ok(match allocate_ports(db, instance, host, requests).await? {
        // Each NIC with its filter, which the host puts in place before the NIC carries
        // traffic.
        Ok(made) => Ok(nova_db::firewall::nics_of(db, &made).await?),
        Err(refused) => Err(refused),
    })
}

/// The ports of [`allocate_requested`], or the build's fault.
async fn allocate_ports(
    db: &Db,
    instance: &Instance,
    host: Option<&str>,
    requests: &[NicRequest],
) -> Result<std::result::Result<Vec<ports::Allocated>, (String, String)>> {
    match ports::allocate_for_instance(db, instance, host, requests).await? {
        Ok(made) => Ok(Ok(made)),
        Err((i, refusal)) => {
            tracing::info!(kind = refusal.kind, message = %refusal.message, "ports refused");
            let uuid = instance.uuid.0;
            let message = if refusal.kind == "IpAddressGenerationFailure" {
                format!(
                    "Build of instance {uuid} aborted: Failed to allocate the network(s) \
                     with error No fixed IP addresses available for network: {}, not \
                     rescheduling.",
                    requests[i].network_id
                )
            } else {
                format!(
                    "Build of instance {uuid} aborted: Failed to allocate the network(s), \
                     not rescheduling."
                )
            };
            Ok(Err((
                message,
                format!("{}: {}", refusal.kind, refusal.message),
            )))
        }
    }
}

/// The ports a server's chosen networks ask for, in order.
fn nic_requests(instance: &Instance) -> Vec<NicRequest> {
    let nova_core::model::NetworkRequest::Chosen(chosen) = &instance.networks else {
        return Vec::new();
    };
    chosen.iter().map(NicRequest::of).collect()
}

/// The kernel and ramdisk an image names in its `kernel_id` and `ramdisk_id` properties (a VM
/// boots them directly, as Nova's libvirt driver does), and its `os_command_line`; each image
/// as read now (`None` inside: named but gone).
#[derive(Default)]
struct DirectBoot {
    kernel: Option<(String, Option<images::Image>)>,
    ramdisk: Option<(String, Option<images::Image>)>,
    os_command_line: Option<String>,
}

async fn direct_boot(
    db: &Db,
    project_id: &str,
    image: Option<&images::Image>,
) -> Result<DirectBoot> {
    let Some(image) = image else {
        return Ok(DirectBoot::default());
    };
    let boot = nova_core::model::DirectBoot::of_properties(&image.properties);
    let (kernel, ramdisk) = (boot.kernel_id, boot.ramdisk_id);
    let mut direct = DirectBoot {
        os_command_line: boot.os_command_line,
        ..Default::default()
    };
    // As the project sees them now: the image's properties may have been changed since the
    // API checked them, and a project must not boot another's private image as its kernel.
    // (An admin's server in its own project is held to that project's view too.)
    let viewer = nova_db::Viewer {
        project: project_id,
        admin: false,
    };
    // The ramdisk only with a kernel, as Nova's libvirt driver fetches it.
    if let Some(id) = kernel {
        direct.kernel = Some((id.clone(), images::get_visible(db, &id, viewer).await?));
        if let Some(id) = ramdisk {
            direct.ramdisk = Some((id.clone(), images::get_visible(db, &id, viewer).await?));
        }
    }
    Ok(direct)
}

/// An image record as the agent needs it, or the fault message when it cannot be booted.
fn image_spec(image: Option<images::Image>, id: &str) -> std::result::Result<ImageSpec, String> {
    let image = match image {
        Some(i) if i.status == "active" => i,
        _ => return Err(format!("Image {id} could not be found.")),
    };
    let (Some(hash_algo), Some(hash_value), Some(size)) =
        (image.os_hash_algo, image.os_hash_value, image.size)
    else {
        return Err(format!("Image {id} has no data to boot from."));
    };
    Ok(ImageSpec {
        id: image.id,
        container_format: image.container_format,
        disk_format: image.disk_format,
        size: u64::try_from(size).unwrap_or(0),
        hash_algo,
        hash_value,
    })
}

/// [`spec`] with the image's record (`None`: deleted) already read.
fn spec_from(
    instance: &Instance,
    node: &str,
    image: Option<images::Image>,
    direct: DirectBoot,
    nics: Vec<Nic>,
) -> std::result::Result<InstanceSpec, String> {
    let image = image_spec(image, &instance.image_ref)?;
    let kernel = match direct.kernel {
        Some((id, kernel)) => Some(image_spec(kernel, &id)?),
        None => None,
    };
    let ramdisk = match direct.ramdisk {
        Some((id, ramdisk)) => Some(image_spec(ramdisk, &id)?),
        None => None,
    };
    Ok(InstanceSpec {
        uuid: instance.uuid,
        name: instance.name.clone(),
        project_id: instance.project_id.clone(),
        user_id: instance.user_id.clone(),
        node: node.to_owned(),
        flavor: instance.flavor.clone(),
        image_ref: instance.image_ref.clone(),
        image: Some(image),
        metadata: instance.metadata.clone(),
        user_data: instance.user_data.clone(),
        key_name: instance.key_name.clone(),
        key_data: instance.key_data.clone(),
        hostname: Some(instance.hostname.clone()),
        networks: instance.networks.clone(),
        config_drive: instance.config_drive,
        kernel,
        ramdisk,
        os_command_line: direct.os_command_line,
        bmc: None,
        nics,
    })
}
