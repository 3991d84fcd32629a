//! The bare-metal pool's side of [`Compute`]: servers on enrolled machines, deployed as
//! Ironic's `ramdisk` deploy interface does it with Redfish virtual media.
//!
//! - A spawn powers the machine off, inserts the server's ISO as virtual media from a signed
//!   URL the image service serves without a token (the BMC fetches it), sets a one-time boot
//!   from CD, and powers it on. A deploy that fails cleans the machine before it says so.
//! - A destroy cleans it: power off, media ejected, boot override reset.
//! - Power calls set the machine's power through its BMC.
//! - A rescue powers the machine off (cleanly within the timeout) and boots the rescue ISO
//!   the same way, its local disks as they are for the rescue system to reach (what Ironic's
//!   rescue gives: the same machine running a rescue system); an unrescue deploys the server's
//!   own ISO again, which the rescue did not change.
//!
//! The machine and its BMC come with the spawn ([`InstanceSpec::bmc`]); later calls find the
//! machine by the instance, from what spawns and the conductor's node lists
//! ([`BaremetalPool::learn`]) told. The scheduler's compute nodes for machines are the
//! conductor's (from the enrolment), so the pool's own inventory is empty.

use crate::nodes::{BmcAccess, BootDevice, NodeManagement, NodePower, PowerAction, TlsVerify};
use crate::redfish::RedfishDriver;
use crate::{Compute, DriverError, DriverInstance, RebootKind};
use async_trait::async_trait;
use nova_core::ids::InstanceUuid;
use nova_core::model::{Diagnostics, NodeInventory, PowerState};
use nova_core::rpc::{BmcInfo, InstanceSpec, NodeBmc, VerifyCa};
use nova_core::secret::{SealingKey, UrlSigner};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// What the pool knows of its machines.
#[derive(Default)]
struct Machines {
    /// Whether a node list from the conductor has arrived (before one has, an instance this
    /// agent has not deployed since it started may still be on one of its machines).
    listed: bool,
    /// The machine (node uuid and BMC) each instance is on.
    by_instance: HashMap<InstanceUuid, (String, BmcInfo)>,
    /// The instances whose machines a rescue powered off since this agent started: they run
    /// the rescue ISO, or nothing, until an unrescue deploys their own again.
    rescued: HashSet<InstanceUuid>,
}

/// A bare-metal pool: its machines' BMCs through Redfish.
pub struct BaremetalPool {
    redfish: RedfishDriver,
    key: SealingKey,
    signer: UrlSigner,
    /// The image service as BMCs reach it (`…/image`).
    image_url: String,
    url_ttl: Duration,
    machines: Mutex<Machines>,
}

impl std::fmt::Debug for BaremetalPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaremetalPool")
            .field("image_url", &self.image_url)
            .finish_non_exhaustive()
    }
}

impl BaremetalPool {
    pub fn new(
        redfish: RedfishDriver,
        key: SealingKey,
        signer: UrlSigner,
        image_url: String,
        url_ttl: Duration,
    ) -> Self {
        Self {
            redfish,
            key,
            signer,
            image_url: image_url.trim_end_matches('/').to_owned(),
            url_ttl,
            machines: Mutex::default(),
        }
    }

    /// The machines' own operations (verify, power, clean).
    pub fn nodes(&self) -> &RedfishDriver {
        &self.redfish
    }

    /// A BMC as the bus carries it, its password opened with the key repository's key.
    pub fn open(&self, node: &str, bmc: &BmcInfo) -> Result<BmcAccess, DriverError> {
        let password = self.key.open(&bmc.password, node).map_err(|e| {
            DriverError::Invalid(format!(
                "The BMC password of node {node} cannot be read on this host: {e}. Every \
                 process must use the same baremetal.key."
            ))
        })?;
        Ok(BmcAccess {
            address: bmc.address.clone(),
            system_id: bmc.system_id.clone(),
            username: bmc.username.clone(),
            password,
            verify: match &bmc.verify_ca {
                VerifyCa::Flag(true) => TlsVerify::System,
                VerifyCa::Flag(false) => TlsVerify::Off,
                VerifyCa::Bundle(path) => TlsVerify::CaBundle(path.into()),
            },
        })
    }

    /// The conductor's list of this pool's machines: which instance each carries (all of them,
    /// those in maintenance too: a server on one is still there).
    pub fn learn(&self, nodes: &[NodeBmc]) {
        let mut m = lock(&self.machines);
        m.listed = true;
        m.by_instance = nodes
            .iter()
            .filter_map(|n| {
                let instance = n.instance.as_deref()?.parse().ok()?;
                Some((InstanceUuid(instance), (n.node.clone(), n.bmc.clone())))
            })
            .collect();
    }

    /// The URL the BMC fetches `image` from: the image service's tokenless route, signed
    /// until the URL's time runs out.
    pub fn image_url(&self, image: &str) -> String {
        let ttl = i64::try_from(self.url_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = nova_core::time::now_ms().saturating_add(ttl);
        let signature = self.signer.sign(image, expires);
        format!(
            "{}/v2/bmc-images/{image}/{expires}/{signature}/image.iso",
            self.image_url
        )
    }

    /// The machine `uuid` is on: `NotFound` when it is on none this pool knows of once the
    /// conductor's list came; before that, a failure that the conductor's retry outlives.
    fn machine(&self, uuid: InstanceUuid) -> Result<(String, BmcAccess), DriverError> {
        let (listed, found) = {
            let m = lock(&self.machines);
            (m.listed, m.by_instance.get(&uuid).cloned())
        };
        match found {
            Some((node, bmc)) => Ok((node.clone(), self.open(&node, &bmc)?)),
            None if listed => Err(DriverError::NotFound(uuid)),
            None => Err(DriverError::Backend(format!(
                "the machine of instance {uuid} is not known yet: this agent has not received \
                 its node list since it started"
            ))),
        }
    }

    /// [`Self::machine`], or before the conductor's node list came, the machine and BMC a
    /// command names (learnt, as a spawn's): right after the agent starts, a rescue or an
    /// unrescue need not wait for the list. (Once the list came it is what counts.)
    fn machine_or(
        &self,
        uuid: InstanceUuid,
        named: Option<(&str, &BmcInfo)>,
    ) -> Result<(String, BmcAccess), DriverError> {
        match (self.machine(uuid), named) {
            (Err(DriverError::Backend(_)), Some((node, bmc))) => {
                let access = self.open(node, bmc)?;
                lock(&self.machines)
                    .by_instance
                    .insert(uuid, (node.to_owned(), bmc.clone()));
                Ok((node.to_owned(), access))
            }
            (found, _) => found,
        }
    }

    /// The deploy's steps on `bmc` (Ironic's ramdisk deploy with virtual media).
    async fn deploy(&self, bmc: &BmcAccess, url: &str) -> Result<NodePower, DriverError> {
        let limit = Duration::from_secs(300);
        self.redfish.set_power(bmc, PowerAction::Off, limit).await?;
        self.redfish.eject_media(bmc).await?;
        self.redfish.insert_media(bmc, url).await?;
        self.redfish.set_boot_once(bmc, BootDevice::Cd).await?;
        self.redfish.set_power(bmc, PowerAction::On, limit).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn power_state(p: NodePower) -> PowerState {
    match p {
        NodePower::On => PowerState::Running,
        NodePower::Off => PowerState::Shutdown,
    }
}

/// Nothing to report for a clean's steps here: a server's delete has no progress to show.
fn quiet(_: &str) {}

#[async_trait]
impl Compute for BaremetalPool {
    async fn inventory(&self) -> Result<Vec<NodeInventory>, DriverError> {
        Ok(Vec::new())
    }

    async fn spawn(
        &self,
        spec: &InstanceSpec,
        _images: &crate::BootImages,
    ) -> Result<DriverInstance, DriverError> {
        let Some(info) = &spec.bmc else {
            return Err(DriverError::Invalid(format!(
                "Node {} is not an enrolled machine with a BMC.",
                spec.node
            )));
        };
        let Some(image) = &spec.image else {
            return Err(DriverError::Invalid(
                "A bare-metal server boots an ISO image through its BMC: it needs an image.".into(),
            ));
        };
        let bmc = self.open(&spec.node, info)?;
        lock(&self.machines)
            .by_instance
            .insert(spec.uuid, (spec.node.clone(), info.clone()));
        let url = self.image_url(&image.id);
        tracing::info!(node = %spec.node, instance = %spec.uuid, "deploying");
        match self.deploy(&bmc, &url).await {
            Ok(power) => Ok(DriverInstance {
                uuid: spec.uuid,
                node: spec.node.clone(),
                power_state: power_state(power),
                addresses: Vec::new(),
            }),
            Err(e) => {
                // The machine goes back to the pool clean: off, no media, no override.
                if let Err(clean) = self.redfish.clean(&bmc, &quiet).await {
                    tracing::warn!(node = %spec.node, error = %clean, "machine not cleaned after a failed deploy");
                }
                lock(&self.machines).by_instance.remove(&spec.uuid);
                Err(match e {
                    DriverError::Backend(detail) => {
                        DriverError::Backend(format!("deploy on node {}: {detail}", spec.node))
                    }
                    other => other,
                })
            }
        }
    }

    async fn destroy(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let (node, bmc) = match self.machine(uuid) {
            Ok(found) => found,
            // On no machine: nothing to undeploy.
            Err(DriverError::NotFound(_)) => {
                lock(&self.machines).rescued.remove(&uuid);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        tracing::info!(%node, instance = %uuid, "undeploying");
        self.redfish.clean(&bmc, &quiet).await?;
        let mut m = lock(&self.machines);
        m.by_instance.remove(&uuid);
        m.rescued.remove(&uuid);
        Ok(())
    }

    async fn power_off(&self, uuid: InstanceUuid, timeout: Duration) -> Result<(), DriverError> {
        let (_, bmc) = self.machine(uuid)?;
        // As Nova's Ironic driver: a soft power off within the timeout, then a hard one.
        if self
            .redfish
            .set_power(&bmc, PowerAction::SoftOff, timeout)
            .await
            .is_err()
        {
            self.redfish
                .set_power(&bmc, PowerAction::Off, Duration::from_secs(120))
                .await?;
        }
        Ok(())
    }

    async fn power_on(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let (_, bmc) = self.machine(uuid)?;
        self.redfish
            .set_power(&bmc, PowerAction::On, Duration::from_secs(120))
            .await
            .map(drop)
    }

    async fn reboot(&self, uuid: InstanceUuid, kind: RebootKind) -> Result<(), DriverError> {
        let (_, bmc) = self.machine(uuid)?;
        let action = match kind {
            RebootKind::Soft => PowerAction::SoftReboot,
            RebootKind::Hard => PowerAction::Reboot,
        };
        self.redfish
            .set_power(&bmc, action, Duration::from_secs(300))
            .await
            .map(drop)
    }

    /// Boots the rescue ISO (`spec`'s image) through the BMC once the machine is off.
    async fn rescue(
        &self,
        spec: &InstanceSpec,
        _images: &crate::BootImages,
        _stable: Option<nova_core::rpc::StableRescue>,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let Some(image) = &spec.image else {
            return Err(DriverError::Invalid(
                "A bare-metal server is rescued from an ISO image: it needs one.".into(),
            ));
        };
        let named = spec.bmc.as_ref().map(|b| (spec.node.as_str(), b));
        let (node, bmc) = self.machine_or(spec.uuid, named)?;
        // Stopped as a stop does; a failure here leaves the server running as it was.
        self.power_off(spec.uuid, timeout).await?;
        // From here on the machine no longer runs the server's own ISO: a rescue that fails
        // later leaves it rescued, for an unrescue to make whole.
        lock(&self.machines).rescued.insert(spec.uuid);
        tracing::info!(%node, instance = %spec.uuid, "booting the rescue image");
        self.deploy(&bmc, &self.image_url(&image.id))
            .await
            .map(drop)
    }

    async fn rescued(&self, uuid: InstanceUuid) -> Result<bool, DriverError> {
        Ok(lock(&self.machines).rescued.contains(&uuid))
    }

    /// Deploys the server's own ISO again (`own`): the rescue system is powered off hard, as
    /// a deploy begins.
    async fn unrescue(
        &self,
        uuid: InstanceUuid,
        own: Option<&nova_core::rpc::OwnImage>,
    ) -> Result<(), DriverError> {
        let Some(own) = own else {
            return Err(DriverError::Backend(format!(
                "the unrescue of instance {uuid} came without its image to deploy again"
            )));
        };
        let named = own.bmc.as_ref().map(|b| (own.node.as_str(), b));
        let (node, bmc) = self.machine_or(uuid, named)?;
        tracing::info!(%node, instance = %uuid, "deploying its own image again");
        self.deploy(&bmc, &self.image_url(&own.image_id)).await?;
        lock(&self.machines).rescued.remove(&uuid);
        Ok(())
    }

    async fn power_state(&self, uuid: InstanceUuid) -> Result<PowerState, DriverError> {
        let (_, bmc) = self.machine(uuid)?;
        Ok(power_state(self.redfish.power_state(&bmc).await?))
    }

    async fn list_instances(&self) -> Result<Vec<DriverInstance>, DriverError> {
        let known: Vec<(InstanceUuid, String, BmcInfo)> = lock(&self.machines)
            .by_instance
            .iter()
            .map(|(i, (n, b))| (*i, n.clone(), b.clone()))
            .collect();
        let mut out = Vec::new();
        for (uuid, node, info) in known {
            // A BMC that does not answer leaves its instance out of this round: the node's
            // own power sync tells the admins.
            let Ok(bmc) = self.open(&node, &info) else {
                continue;
            };
            if let Ok(power) = self.redfish.power_state(&bmc).await {
                out.push(DriverInstance {
                    uuid,
                    node,
                    power_state: power_state(power),
                    addresses: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    async fn console_output(
        &self,
        _uuid: InstanceUuid,
        _lines: Option<usize>,
    ) -> Result<String, DriverError> {
        // Nova's Ironic driver has no console log either.
        Err(DriverError::Invalid(
            "The console log of a bare-metal server is not available.".into(),
        ))
    }

    async fn diagnostics(&self, _uuid: InstanceUuid) -> Result<Diagnostics, DriverError> {
        Err(DriverError::Invalid(
            "Diagnostics of a bare-metal server are not available.".into(),
        ))
    }
}
