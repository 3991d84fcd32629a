//! What bare-metal agents report of operations on free machines (a step reached, an end), and
//! the deadline of those operations. The API started each on the node's row; this ends it
//! there, and only the operation the row names: a late end of one that timed out changes
//! nothing.

use crate::{Conductor, Result};
use nova_core::baremetal;
use nova_core::rpc::{
    ComputeCommand, Envelope, NodeBmc, NodeEndReport, NodeOutcome, NodePowerReport, NodeStepReport,
};
use nova_core::time::now_ms;
use nova_db::baremetal::{self as store, End};
use serde_json::{json, Value};

/// A machine freed by its instance, to clean: its node and the operation.
pub(crate) struct Released {
    node: String,
    operation: String,
}

impl Conductor {
    /// In `tx`, which releases `instance`'s claim: its machine, if it had one, starts cleaning
    /// ([`Self::send_clean`] sends it once `tx` committed).
    pub(crate) async fn release_machine(
        &self,
        tx: &mut nova_db::Tx,
        instance: nova_core::ids::InstanceUuid,
    ) -> Result<Option<Released>> {
        let now = now_ms();
        let timeout_ms =
            i64::try_from(self.settings.baremetal_clean_timeout_s.saturating_mul(1000))
                .unwrap_or(i64::MAX);
        let operation = uuid::Uuid::new_v4().to_string();
        let deadline = now.saturating_add(timeout_ms).saturating_add(30_000);
        Ok(
            store::release_machine(tx, instance, &operation, deadline, now)
                .await?
                .map(|node| Released { node, operation }),
        )
    }

    /// Sends the cleaning of a machine its instance freed to the machine's agent. One that
    /// cannot be sent ends at its deadline (`clean failed`), as an unanswered one does.
    pub(crate) async fn send_clean(&self, released: Option<Released>) -> Result<()> {
        let Some(Released { node, operation }) = released else {
            return Ok(());
        };
        let Some(row) = store::get(&self.db, &node).await? else {
            return Ok(());
        };
        let bmc = baremetal::bmc_info(&row.driver_info, row.bmc_password.as_deref());
        let (Some(host), Ok(bmc)) = (row.conductor.clone(), bmc) else {
            let end = End {
                provision_state: Some(baremetal::state::CLEAN_FAILED.to_owned()),
                last_error: Some("The machine has no agent or no BMC to clean it with.".into()),
                ..End::default()
            };
            store::end_operation(&self.db, &node, &operation, &end, now_ms()).await?;
            return Ok(());
        };
        let timeout_s = self.settings.baremetal_clean_timeout_s;
        let command = ComputeCommand::NodeOperation(Box::new(nova_core::rpc::NodeCommand {
            node: node.clone(),
            operation,
            kind: nova_core::rpc::NodeOperationKind::Clean,
            bmc,
            timeout_s,
            deadline_ms: row.operation_deadline.map(|d| d - 5_000),
        }));
        if let Err(e) = self
            .bus
            .publish(
                &self.queues.compute(&host),
                Envelope::new(None, command).encode(),
            )
            .await
        {
            tracing::warn!(%node, %host, error = %e, "cleaning not sent; it ends at its deadline");
        }
        Ok(())
    }

    /// A power sync's answer for one machine.
    pub(crate) async fn apply_node_power(&self, r: NodePowerReport) -> Result<()> {
        let now = now_ms();
        match r.power {
            Ok(power) => store::record_power(&self.db, &r.node, &power, r.asked_at, now).await?,
            Err(error) => {
                let max =
                    i32::try_from(self.settings.baremetal_sync_max_failures).unwrap_or(i32::MAX);
                // Ironic's words when its power sync gives up on a BMC.
                let reason = format!(
                    "During sync_power_state, max retries exceeded for node {}, node state \
                     None does not match expected state 'None'. Updating DB state to 'None' \
                     Switching node to maintenance mode. Error: {error}",
                    r.node
                );
                if store::record_power_failure(&self.db, &r.node, max, &reason, now).await? {
                    tracing::warn!(node = %r.node, host = %r.host, %error, "BMC not answering: node in maintenance");
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn apply_node_step(&self, r: NodeStepReport) -> Result<()> {
        // Ironic shows the running step as an object; this service's steps are named only.
        let step = json!({"step": r.step, "interface": "management", "priority": 0});
        store::set_step(&self.db, &r.node, &r.operation, &step.to_string(), now_ms()).await?;
        Ok(())
    }

    pub(crate) async fn apply_node_end(&self, r: NodeEndReport) -> Result<()> {
        let Some(node) = store::get(&self.db, &r.node).await? else {
            return Ok(());
        };
        if node.operation.as_deref() != Some(r.operation.as_str()) {
            tracing::info!(node = %r.node, "end of an operation that no longer runs; ignored");
            return Ok(());
        }
        let kind = node
            .operation_kind
            .as_deref()
            .and_then(baremetal::kind_named);
        let during = node.provision_state.as_str();
        let end = match (&r.outcome, kind) {
            (NodeOutcome::Done { power_state, facts }, Some(kind)) => End {
                provision_state: baremetal::success_state(kind, during).map(str::to_owned),
                power_state: power_state.clone(),
                last_error: None,
                properties: facts
                    .as_ref()
                    .map(|f| learned_properties(&node.properties, f)),
            },
            (NodeOutcome::Failed { message }, kind) => End {
                provision_state: kind
                    .and_then(|k| baremetal::failure_state(k, during))
                    .map(str::to_owned),
                power_state: None,
                last_error: Some(message.clone()),
                properties: None,
            },
            (NodeOutcome::Done { power_state, .. }, None) => End {
                power_state: power_state.clone(),
                ..End::default()
            },
        };
        let ended = store::end_operation(&self.db, &r.node, &r.operation, &end, now_ms()).await?;
        tracing::info!(node = %r.node, host = %r.host, ended, error = ?end.last_error, "node operation ended");
        Ok(())
    }
}

/// The node's properties with what the BMC told filled in where the admin gave none (Ironic's
/// inspection would overwrite them; an admin's own values win here).
fn learned_properties(current: &str, facts: &nova_core::rpc::NodeFactsReport) -> String {
    let mut props: serde_json::Map<String, Value> =
        serde_json::from_str(current).unwrap_or_default();
    let mut learn = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            props.entry(key.to_owned()).or_insert(v);
        }
    };
    learn("cpus", facts.cpus.map(|c| json!(c)));
    learn("memory_mb", facts.memory_mb.map(|m| json!(m)));
    learn("cpu_arch", facts.cpu_arch.clone().map(Value::String));
    Value::Object(props).to_string()
}

/// Ends the operations that outlived their deadline as failed, with Ironic's timeout wording.
pub(crate) async fn time_out_operations(c: &Conductor, now: i64) -> Result<()> {
    for node in store::overdue(&c.db, now, 200).await? {
        let Some(operation) = node.operation.as_deref() else {
            continue;
        };
        // An operation of a kind this build does not know still ends (a node is never locked
        // for good); only its failure state is unknown, and the provision state stays.
        let kind = node
            .operation_kind
            .as_deref()
            .and_then(baremetal::kind_named);
        let end = End {
            provision_state: kind
                .and_then(|k| baremetal::failure_state(k, &node.provision_state))
                .map(str::to_owned),
            last_error: Some(format!(
                "Timeout reached while waiting for the {} of node {} to end; the bare-metal \
                 agent {} did not report it.",
                node.operation_kind.as_deref().unwrap_or("operation"),
                node.uuid,
                node.conductor.as_deref().unwrap_or("(none)")
            )),
            ..End::default()
        };
        if store::end_operation(&c.db, &node.uuid, operation, &end, now).await? {
            tracing::warn!(node = %node.uuid, kind = ?node.operation_kind, "node operation timed out");
        }
    }
    Ok(())
}

/// Asks each bare-metal agent for the power of the machines it runs (Ironic's power-state
/// sync). The answers come back as [`NodePowerReport`]s.
pub(crate) async fn sync_power(c: &Conductor) -> Result<()> {
    let sent_at = now_ms();
    let mut by_host: std::collections::BTreeMap<String, Vec<NodeBmc>> = Default::default();
    for (node, read_power) in store::syncable(&c.db).await? {
        let (Some(host), Ok(bmc)) = (
            node.conductor.clone(),
            baremetal::bmc_info(&node.driver_info, node.bmc_password.as_deref()),
        ) else {
            continue;
        };
        by_host.entry(host).or_default().push(NodeBmc {
            node: node.uuid,
            bmc,
            instance: node.instance_uuid,
            read_power,
        });
    }
    for (host, nodes) in by_host {
        let command = ComputeCommand::SyncNodes { nodes, sent_at };
        if let Err(e) = c
            .bus
            .publish(
                &c.queues.compute(&host),
                Envelope::new(None, command).encode(),
            )
            .await
        {
            tracing::warn!(%host, error = %e, "node power sync not sent");
        }
    }
    Ok(())
}
