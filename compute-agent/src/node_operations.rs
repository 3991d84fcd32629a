//! Operations on enrolled bare-metal machines that carry no instance (the
//! [`NodeManagement`] contract): verify a BMC, set a machine's power, clean it. The API starts
//! one on the node's row and sends it here; this runs it, reports each step as it starts and
//! the end, and the conductor writes what the node becomes.
//!
//! The BMC's password comes sealed (`nova_core::secret`) and is opened here, with the key
//! repository's `baremetal.key`, only to be sent to the BMC.

use drivers::baremetal::BaremetalPool;
use drivers::nodes::{BmcAccess, NodeManagement, PowerAction};
use drivers::DriverError;
use nova_core::rpc::{
    BmcInfo, NodeBmc, NodeCommand, NodeEndReport, NodeFactsReport, NodeOperationKind, NodeOutcome,
    NodeStepReport,
};
use std::sync::Arc;
use std::time::Duration;

/// What a bare-metal agent runs node operations with: its pool, whose BMC driver does them.
pub struct NodeManager {
    pub pool: Arc<BaremetalPool>,
    /// The enrolment drivers it runs machines of (`redfish`).
    pub drivers: Vec<String>,
}

impl NodeManager {
    /// The BMC of a command, its password opened.
    pub fn access(&self, node: &str, bmc: &BmcInfo) -> Result<BmcAccess, DriverError> {
        self.pool.open(node, bmc)
    }

    /// A machine's power as its BMC tells it (Ironic's words), or why it does not, within the
    /// driver's own request timeouts and retries.
    pub async fn power(&self, node: &NodeBmc) -> Result<String, String> {
        let bmc = self
            .access(&node.node, &node.bmc)
            .map_err(|e| e.to_string())?;
        match self.pool.nodes().power_state(&bmc).await {
            Ok(power) => Ok(power.ironic().to_owned()),
            Err(e) => Err(e.internal_details().unwrap_or_else(|| e.public_message())),
        }
    }

    /// Runs `command`, bounded by its timeout, reporting steps through `step`.
    pub async fn run(
        &self,
        command: &NodeCommand,
        step: &(dyn Fn(&str) + Send + Sync),
    ) -> NodeOutcome {
        let mut limit = Duration::from_secs(command.timeout_s.max(1));
        if let Some(deadline) = command.deadline_ms {
            // Ended already (the agent was down or busy when it was due): not run at all.
            let left = deadline - nova_core::time::now_ms();
            if left <= 0 {
                return NodeOutcome::Failed {
                    message: format!(
                        "The {} of the node reached the bare-metal agent after its deadline.",
                        command.kind.name()
                    ),
                };
            }
            limit = limit.min(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        }
        let work = async {
            let bmc = self.access(&command.node, &command.bmc)?;
            let power = |action| self.pool.nodes().set_power(&bmc, action, limit);
            Ok::<_, DriverError>(match command.kind {
                NodeOperationKind::Verify => {
                    let facts = self.pool.nodes().verify(&bmc).await?;
                    NodeOutcome::Done {
                        power_state: Some(facts.power.ironic().to_owned()),
                        facts: Some(NodeFactsReport {
                            cpus: facts.cpus,
                            memory_mb: facts.memory_mb,
                            cpu_arch: facts.cpu_arch,
                        }),
                    }
                }
                NodeOperationKind::Clean => {
                    self.pool.nodes().clean(&bmc, step).await?;
                    let power = self.pool.nodes().power_state(&bmc).await?;
                    NodeOutcome::Done {
                        power_state: Some(power.ironic().to_owned()),
                        facts: None,
                    }
                }
                kind => {
                    let action = match kind {
                        NodeOperationKind::PowerOn => PowerAction::On,
                        NodeOperationKind::PowerOff => PowerAction::Off,
                        NodeOperationKind::SoftPowerOff => PowerAction::SoftOff,
                        NodeOperationKind::Reboot => PowerAction::Reboot,
                        _ => PowerAction::SoftReboot,
                    };
                    let now = power(action).await?;
                    NodeOutcome::Done {
                        power_state: Some(now.ironic().to_owned()),
                        facts: None,
                    }
                }
            })
        };
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(outcome)) => outcome,
            // Ironic's last_error is for admins (only they see nodes): the BMC's own words
            // help them, and never hold the password (the driver's errors do not carry it).
            Ok(Err(e)) => NodeOutcome::Failed {
                message: match e.internal_details() {
                    Some(details) => details,
                    None => e.public_message(),
                },
            },
            Err(_) => NodeOutcome::Failed {
                message: format!(
                    "Timeout reached while waiting for the {} of the node to end ({} s).",
                    command.kind.name(),
                    limit.as_secs()
                ),
            },
        }
    }
}

/// The end of an operation, as reported.
pub fn end_report(host: &str, command: &NodeCommand, outcome: NodeOutcome) -> NodeEndReport {
    NodeEndReport {
        host: host.to_owned(),
        node: command.node.clone(),
        operation: command.operation.clone(),
        outcome,
    }
}

/// A step, as reported.
pub fn step_report(host: &str, command: &NodeCommand, step: &str) -> NodeStepReport {
    NodeStepReport {
        host: host.to_owned(),
        node: command.node.clone(),
        operation: command.operation.clone(),
        step: step.to_owned(),
    }
}
