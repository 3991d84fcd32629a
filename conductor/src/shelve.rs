//! Shelving (Nova's `shelve` with `shelved_offload_time` 0, its default, and `unshelve`): the
//! server snapshotted into an image and let go of its host and claim (SHELVED_OFFLOADED, its
//! ports kept unbound), then placed again, anywhere its type runs, and spawned from that image,
//! which goes once the server runs.

use crate::scheduler::Placement;
use crate::{Conductor, Result};
use nova_core::model::{Fault, Instance, PowerState, TaskState, VmState};
use nova_core::rpc::{ComputeCommand, Outcome, TaskKind};
use nova_core::time::now_ms;
use nova_db::tasks::{Task, TaskState as RowState};
use nova_db::{instances, nodes, ports};

impl Conductor {
    /// What a host's result of a shelve or unshelve leaves the server in.
    pub(crate) async fn apply_shelve_result(
        &self,
        task: &Task,
        instance: &Instance,
        outcome: Outcome,
        host: &str,
    ) -> Result<()> {
        match (task.kind, outcome) {
            (TaskKind::Shelve { image }, Outcome::Done { .. }) => {
                let set = instances::SetStates {
                    vm_state: VmState::ShelvedOffloaded,
                    task_state: None,
                    power_state: Some(PowerState::NoState),
                    launched: false,
                    addresses: None,
                };
                let expect = instances::Expect {
                    vm_state: Some(instance.vm_state),
                    task_state: Some(TaskState::Shelving),
                };
                let mut tx = self.db.begin().await?;
                if !instances::transition(&mut tx, instance.uuid, expect, set).await? {
                    drop(tx);
                    return self.close_task(task, RowState::Failed).await;
                }
                let uuid = instance.uuid.0.to_string();
                instances::set_offloaded(&mut tx, instance.uuid, Some(&image.to_string())).await?;
                nodes::release(&mut tx, instance.uuid).await?;
                ports::unbind_from_host(&mut tx, &uuid).await?;
                self.close_in(&mut tx, task, RowState::Done, None, host)
                    .await?;
                tx.commit().await?;
                nova_db::firewall::bump(&self.db).await?;
                tracing::info!("shelved and offloaded");
                Ok(())
            }
            // The snapshot or its upload failed (the guest is still there): the server as it
            // was, the image deleted.
            (TaskKind::Shelve { .. }, Outcome::Failed { message, details }) => {
                self.drop_snapshot_image(task).await?;
                let vm_state = instance.vm_state;
                self.end_with_fault(task, instance, vm_state, None, message, details, host)
                    .await
            }
            (
                TaskKind::Unshelve,
                Outcome::Done {
                    power_state,
                    addresses,
                },
            ) => {
                let addresses = self.with_port_addresses(instance, addresses).await?;
                let set = instances::SetStates {
                    vm_state: VmState::Active,
                    task_state: None,
                    power_state: Some(power_state),
                    launched: true,
                    addresses: Some(addresses),
                };
                let expect = instances::Expect {
                    vm_state: Some(VmState::ShelvedOffloaded),
                    task_state: Some(TaskState::Spawning),
                };
                let shelved = instances::shelved_image(&self.db, instance.uuid).await?;
                let mut tx = self.db.begin().await?;
                if !instances::transition(&mut tx, instance.uuid, expect, set).await? {
                    drop(tx);
                    return self.close_task(task, RowState::Failed).await;
                }
                instances::clear_shelved_image(&mut tx, instance.uuid).await?;
                self.close_in(&mut tx, task, RowState::Done, None, host)
                    .await?;
                tx.commit().await?;
                tracing::info!("unshelved");
                // As Nova's unshelve: the shelved image goes once the server runs again —
                // through the image service (its data too), by the host's credential. Only
                // now: a result lost before this commit is answered again from the host's
                // journal, and the spawn it re-sends needs the image.
                if let Some(image_id) = shelved {
                    self.send_to_host(host, ComputeCommand::DeleteImage { image_id }, None)
                        .await?;
                }
                Ok(())
            }
            (TaskKind::Unshelve, Outcome::Failed { message, details }) => {
                self.fail_unshelve(task, instance, message, details).await
            }
            (kind, outcome) => {
                tracing::warn!(?kind, ?outcome, "result does not fit its task; closing it");
                self.close_task(task, RowState::Failed).await
            }
        }
    }

    /// A submitted unshelve: the server placed again (a new claim, its ports bound to the new
    /// host) and spawned there from its shelved image; no host for it, or no image, leaves it
    /// SHELVED_OFFLOADED with a fault, as Nova's.
    pub(crate) async fn unshelve(&self, task: &Task, instance: &Instance) -> Result<()> {
        if instance.deleted
            || instance.vm_state != VmState::ShelvedOffloaded
            || instance.task_state != Some(TaskState::Unshelving)
        {
            return self.close_task(task, RowState::Failed).await;
        }
        let placed = self
            .scheduler
            .place_from(
                &self.db,
                instance,
                task.id,
                self.alive_since(),
                self.settings.claim_attempts,
                (VmState::ShelvedOffloaded, TaskState::Unshelving),
            )
            .await?;
        match placed {
            Placement::Placed { host, node } => {
                tracing::info!(%host, %node, "unshelve scheduled");
                let mut placed = instance.clone();
                placed.host = Some(host.clone());
                placed.node = Some(node);
                placed.task_state = Some(TaskState::Spawning);
                match self.unshelve_command(task, &placed).await? {
                    Some(command) => {
                        self.send_to_host(&host, command, Some(task.request_id.clone()))
                            .await?;
                        Ok(())
                    }
                    None => {
                        let message = format!(
                            "The shelved image of instance {} can no longer be used.",
                            instance.uuid
                        );
                        self.fail_unshelve(task, &placed, message, None).await
                    }
                }
            }
            Placement::NoValidHost => {
                let message =
                    "No valid host was found. There are not enough hosts available.".to_owned();
                self.fail_unshelve(task, instance, message, None).await
            }
            Placement::Superseded => Ok(()),
        }
    }

    /// The spawn of a placed unshelve: the server's spec with its shelved image as its image.
    pub(crate) async fn unshelve_command(
        &self,
        task: &Task,
        instance: &Instance,
    ) -> Result<Option<ComputeCommand>> {
        let Some(image) = instances::shelved_image(&self.db, instance.uuid).await? else {
            return Ok(None);
        };
        let mut from = instance.clone();
        from.image_ref = image.clone();
        // Its ports, bound to the new host.
        if let Some(host) = &from.host {
            ports::bind_to_host(&self.db, &from.uuid.0.to_string(), host).await?;
        }
        let Some(spec) = crate::tasks::spec_on_its_node(&self.db, &from).await? else {
            return Ok(None);
        };
        Ok(Some(ComputeCommand::Unshelve {
            task_id: task.id,
            spec,
            shelved_image: image,
        }))
    }

    /// An unshelve that did not make the server run: back to SHELVED_OFFLOADED with the fault,
    /// its new claim and host given up, its ports unbound (Nova's unshelve failure).
    pub(crate) async fn fail_unshelve(
        &self,
        task: &Task,
        instance: &Instance,
        message: String,
        details: Option<String>,
    ) -> Result<()> {
        // Only an unshelve still under way (a delete that interrupted it is left to finish).
        if !matches!(
            instance.task_state,
            Some(TaskState::Unshelving | TaskState::Spawning)
        ) {
            return self.close_task(task, RowState::Failed).await;
        }
        tracing::warn!(%message, "unshelve failed");
        let fault = Fault {
            code: 500,
            message: message.clone(),
            details,
            created_at: now_ms(),
        };
        let set = instances::SetStates {
            vm_state: VmState::ShelvedOffloaded,
            task_state: None,
            power_state: Some(PowerState::NoState),
            launched: false,
            addresses: None,
        };
        let expect = instances::Expect {
            vm_state: Some(VmState::ShelvedOffloaded),
            task_state: instance.task_state,
        };
        let mut tx = self.db.begin().await?;
        let changed = instances::transition(&mut tx, instance.uuid, expect, set).await?;
        if changed {
            instances::add_fault(&mut tx, instance.uuid, &fault, instance.host.as_deref()).await?;
            instances::set_offloaded(&mut tx, instance.uuid, None).await?;
            nodes::release(&mut tx, instance.uuid).await?;
            ports::unbind_from_host(&mut tx, &instance.uuid.0.to_string()).await?;
        }
        let host = instance.host.as_deref().unwrap_or_default();
        self.close_in(
            &mut tx,
            task,
            RowState::Failed,
            Some((&fault, &message)),
            host,
        )
        .await?;
        tx.commit().await?;
        if changed {
            // Its ports left their host: the filters there change.
            nova_db::firewall::bump(&self.db).await?;
        }
        Ok(())
    }

    /// Closes `task` in `tx` with its action's event (its error, when given).
    async fn close_in(
        &self,
        tx: &mut nova_db::Tx,
        task: &Task,
        to: RowState,
        failure: Option<(&Fault, &str)>,
        host: &str,
    ) -> Result<()> {
        let closed =
            nova_db::tasks::advance(tx, task.id, &[RowState::Pending, RowState::Dispatched], to)
                .await?;
        if let (true, Some(action)) = (closed, task.action_id) {
            let (error, traceback) = match failure {
                Some((fault, message)) => (Some(message), fault.details.as_deref()),
                None => (None, None),
            };
            nova_db::actions::record_event(
                tx,
                action,
                crate::tasks::event_name(task.kind),
                task.created_at,
                error,
                traceback,
                Some(host),
            )
            .await?;
        }
        Ok(())
    }
}

/// The image a shelve task makes (for its clean-up when it fails or is cut short).
pub(crate) fn image_of(kind: TaskKind) -> Option<uuid::Uuid> {
    match kind {
        TaskKind::Snapshot { image, .. } | TaskKind::Shelve { image } => Some(image),
        _ => None,
    }
}
