//! The bare-metal pool's side of [`Compute`]: the instances on enrolled machines.
//!
//! Deploying an instance onto a machine (the ISO through the BMC's virtual media) is not here
//! yet, so the pool offers no node to the scheduler: its inventory is empty and nothing is ever
//! placed on it. A command that reaches it anyway is refused with the reason, and its machines'
//! own operations (verify, power, clean) run through [`crate::nodes::NodeManagement`].

use crate::{Compute, DriverError, DriverInstance, RebootKind};
use async_trait::async_trait;
use nova_core::ids::InstanceUuid;
use nova_core::model::{Diagnostics, NodeInventory, PowerState};
use nova_core::rpc::InstanceSpec;
use std::time::Duration;

/// A bare-metal pool that runs no instances yet.
#[derive(Debug, Default)]
pub struct BaremetalPool;

const NO_DEPLOY: &str =
    "Servers on bare-metal machines are not deployed by this service yet: the pool offers no \
     machine to the scheduler.";

#[async_trait]
impl Compute for BaremetalPool {
    async fn inventory(&self) -> Result<Vec<NodeInventory>, DriverError> {
        Ok(Vec::new())
    }

    async fn spawn(
        &self,
        _spec: &InstanceSpec,
        _images: &crate::BootImages,
    ) -> Result<DriverInstance, DriverError> {
        Err(DriverError::Invalid(NO_DEPLOY.into()))
    }

    async fn destroy(&self, _uuid: InstanceUuid) -> Result<(), DriverError> {
        // Nothing was ever deployed here: there is nothing to remove.
        Ok(())
    }

    async fn power_off(&self, uuid: InstanceUuid, _timeout: Duration) -> Result<(), DriverError> {
        Err(DriverError::NotFound(uuid))
    }

    async fn power_on(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        Err(DriverError::NotFound(uuid))
    }

    async fn reboot(&self, uuid: InstanceUuid, _kind: RebootKind) -> Result<(), DriverError> {
        Err(DriverError::NotFound(uuid))
    }

    async fn power_state(&self, uuid: InstanceUuid) -> Result<PowerState, DriverError> {
        Err(DriverError::NotFound(uuid))
    }

    async fn list_instances(&self) -> Result<Vec<DriverInstance>, DriverError> {
        Ok(Vec::new())
    }

    async fn console_output(
        &self,
        uuid: InstanceUuid,
        _lines: Option<usize>,
    ) -> Result<String, DriverError> {
        Err(DriverError::NotFound(uuid))
    }

    async fn diagnostics(&self, uuid: InstanceUuid) -> Result<Diagnostics, DriverError> {
        Err(DriverError::NotFound(uuid))
    }
}
