//! Ironic's node state machine, as far as this service runs it: the provision states, which
//! verb starts which operation from which states, and what an operation's end (or its timeout)
//! makes of the node. The API starts operations and the conductor ends them; both read it
//! here.

use crate::rpc::{BmcInfo, NodeOperationKind, VerifyCa};
use crate::secret::Sealed;
use serde_json::{Map, Value};

/// Ironic's provision states (ironic/common/states.py).
pub mod state {
    pub const ENROLL: &str = "enroll";
    pub const VERIFYING: &str = "verifying";
    pub const MANAGEABLE: &str = "manageable";
    pub const CLEANING: &str = "cleaning";
    pub const CLEAN_FAILED: &str = "clean failed";
    pub const AVAILABLE: &str = "available";
    pub const ACTIVE: &str = "active";
    pub const DEPLOYING: &str = "deploying";
    pub const DEPLOY_FAILED: &str = "deploy failed";
    pub const DELETING: &str = "deleting";
    pub const ERROR: &str = "error";
}

/// The states no operation moves the node out of by itself: where a power request may run.
pub const STABLE: &[&str] = &[
    state::ENROLL,
    state::MANAGEABLE,
    state::AVAILABLE,
    state::ACTIVE,
    state::CLEAN_FAILED,
    state::DEPLOY_FAILED,
    state::ERROR,
];

/// The states a node may be deleted in (Ironic's `DELETE_ALLOWED_STATES`, with `available` as
/// its `allow_deleting_available_nodes` default has it; `adopt failed` does not occur here).
pub const DELETABLE: &[&str] = &[state::MANAGEABLE, state::ENROLL, state::AVAILABLE];

/// The states in which a node's resource class, once set, may change (Ironic's
/// `allowed_update_states`, less the inspection states this service does not have): once a
/// server may hold the machine, Nova would keep its claim under the old class.
pub const CLASS_CHANGEABLE: &[&str] = &[state::ENROLL, state::MANAGEABLE, state::AVAILABLE];

/// What a provision verb does from where it may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Runs an operation: the node shows `during` (aiming at `target`) while it does, then
    /// `on_success` or `on_failure`.
    Operation {
        kind: NodeOperationKind,
        during: &'static str,
        target: &'static str,
        on_success: &'static str,
        on_failure: &'static str,
    },
    /// Changes the state at once, with nothing to ask of the machine.
    Immediate { to: &'static str },
}

/// The verb `verb` from `from`; `None` when Ironic's state machine has no such transition.
pub fn provision(verb: &str, from: &str) -> Option<Verb> {
    use state::*;
    Some(match (verb, from) {
        ("manage", ENROLL) => Verb::Operation {
            kind: NodeOperationKind::Verify,
            during: VERIFYING,
            target: MANAGEABLE,
            on_success: MANAGEABLE,
            on_failure: ENROLL,
        },
        // Ironic moves these back to manageable with no work on the machine.
        ("manage", AVAILABLE | CLEAN_FAILED) => Verb::Immediate { to: MANAGEABLE },
        // Automated cleaning, then available.
        ("provide", MANAGEABLE) => Verb::Operation {
            kind: NodeOperationKind::Clean,
            during: CLEANING,
            target: AVAILABLE,
            on_success: AVAILABLE,
            on_failure: CLEAN_FAILED,
        },
        _ => return None,
    })
}

/// The verbs Ironic has that this service does not run (yet): named so that the API can tell
/// "not here" from "no such verb".
pub const VERBS_NOT_SERVED: &[&str] = &[
    "active", "deleted", "rebuild", "inspect", "clean", "abort", "adopt", "rescue", "unrescue",
    "service", "unhold",
];

/// What the node shows when an operation of `kind` started in `from`: its failure state, for
/// a timeout or a failed end.
pub fn failure_state(kind: NodeOperationKind, during: &str) -> Option<&'static str> {
    match (kind, during) {
        (NodeOperationKind::Verify, state::VERIFYING) => Some(state::ENROLL),
        (NodeOperationKind::Clean, state::CLEANING) => Some(state::CLEAN_FAILED),
        _ => None,
    }
}

/// What the node shows when an operation of `kind` ended well.
pub fn success_state(kind: NodeOperationKind, during: &str) -> Option<&'static str> {
    match (kind, during) {
        (NodeOperationKind::Verify, state::VERIFYING) => Some(state::MANAGEABLE),
        (NodeOperationKind::Clean, state::CLEANING) => Some(state::AVAILABLE),
        _ => None,
    }
}

/// A power request's target (Ironic's `states/power` body) and the operation it runs.
pub fn power_target(target: &str) -> Option<NodeOperationKind> {
    Some(match target {
        "power on" => NodeOperationKind::PowerOn,
        "power off" => NodeOperationKind::PowerOff,
        "soft power off" => NodeOperationKind::SoftPowerOff,
        "rebooting" => NodeOperationKind::Reboot,
        "soft rebooting" => NodeOperationKind::SoftReboot,
        _ => return None,
    })
}

/// The operation kind a node row names.
pub fn kind_named(name: &str) -> Option<NodeOperationKind> {
    use NodeOperationKind::*;
    [
        Verify,
        Clean,
        PowerOn,
        PowerOff,
        SoftPowerOff,
        Reboot,
        SoftReboot,
    ]
    .into_iter()
    .find(|k| k.name() == name)
}

/// The driver_info keys a Redfish BMC needs here (Ironic treats `redfish_system_id` as
/// optional, for BMCs of one system; this service always names the system).
pub const REQUIRED_INFO: &[&str] = &["redfish_address", "redfish_system_id"];

/// Ironic's `redfish_verify_ca`: a boolean (or its spelling), or a path.
pub fn verify_ca(v: &Value) -> Option<VerifyCa> {
    match v {
        Value::Bool(b) => Some(VerifyCa::Flag(*b)),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(VerifyCa::Flag(true)),
            "false" | "0" | "no" | "off" => Some(VerifyCa::Flag(false)),
            _ if s.starts_with('/') => Some(VerifyCa::Bundle(s.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// Why a node's BMC cannot be reached as enrolled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BmcInfoError {
    /// The driver_info keys it lacks.
    Missing(Vec<&'static str>),
    /// No password was given.
    NoPassword,
}

/// A node's BMC as an operation needs it, from its stored `driver_info` (JSON) and sealed
/// password.
pub fn bmc_info(driver_info: &str, sealed_password: Option<&str>) -> Result<BmcInfo, BmcInfoError> {
    let info: Map<String, Value> = serde_json::from_str(driver_info).unwrap_or_default();
    let text = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let missing: Vec<&'static str> = REQUIRED_INFO
        .iter()
        .copied()
        .filter(|k| text(k).is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(BmcInfoError::Missing(missing));
    }
    let password = sealed_password.ok_or(BmcInfoError::NoPassword)?;
    Ok(BmcInfo {
        address: text("redfish_address"),
        system_id: text("redfish_system_id"),
        username: text("redfish_username"),
        password: Sealed(password.to_owned()),
        verify_ca: info
            .get("redfish_verify_ca")
            .and_then(verify_ca)
            .unwrap_or(VerifyCa::Flag(true)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verbs_follow_ironics_machine() {
        assert!(matches!(
            provision("manage", state::ENROLL),
            Some(Verb::Operation {
                during: state::VERIFYING,
                ..
            })
        ));
        assert_eq!(provision("provide", state::ENROLL), None);
        assert_eq!(
            failure_state(NodeOperationKind::Clean, state::CLEANING),
            Some(state::CLEAN_FAILED)
        );
        for k in ["verify", "clean", "power_on", "soft_rebooting"] {
            if let Some(kind) = kind_named(k) {
                assert_eq!(kind.name(), k);
            }
        }
        assert_eq!(
            kind_named("soft_reboot"),
            Some(NodeOperationKind::SoftReboot)
        );
    }
}
