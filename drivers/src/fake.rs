//! A stateful fake driver: it keeps its instances in memory, follows the same contract as the
//! real drivers (idempotent spawn/destroy, power states), and can be told to fail or hang at a
//! given step for a given instance ([`Rule`]), or to stop a call at a [`Gate`] that the test
//! then releases or fails — so that tests of the control plane can walk every path, and wait
//! for a call to arrive instead of for a span of time. It is the only fake in the project;
//! tests that are about a driver use the real one.

use crate::{BootImages, Compute, DriverError, DriverInstance, RebootKind};
use async_trait::async_trait;
use nova_core::ids::{InstanceUuid, NodeUuid};
use nova_core::model::{
    CpuDiagnostics, Diagnostics, DiskDiagnostics, Flavor, NicDiagnostics, NodeInventory, NodeType,
    PowerState, Resources,
};
use nova_core::rpc::InstanceSpec;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The driver calls a rule can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Spawn,
    Destroy,
    PowerOff,
    PowerOn,
    Reboot,
    Pause,
    Unpause,
    Suspend,
    Resume,
    Resize,
    RevertResize,
    Snapshot,
    Rescue,
    Unrescue,
}

/// What a rule makes the driver do instead of its work.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misbehaviour {
    /// Fail with this message.
    Fail(String),
    /// Never return (until the call is dropped).
    Hang,
}

/// Which instances a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Any,
    /// Instances whose server name contains this text.
    NameContains(String),
    Instance(InstanceUuid),
}

#[derive(Clone, Debug, Deserialize)]
pub struct Rule {
    pub step: Step,
    pub target: Target,
    pub misbehaviour: Misbehaviour,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct FakeSettings {
    pub node_type: NodeType,
    /// How many nodes the host exposes (more than one acts like a bare-metal pool).
    pub nodes: u32,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    /// Misbehaviours active from the start (the all-in-one's config can set them too).
    pub rules: Vec<Rule>,
}

impl Default for FakeSettings {
    fn default() -> Self {
        Self {
            node_type: NodeType::Vm,
            nodes: 1,
            vcpus: 1000,
            memory_mb: 8 * 1024 * 1024,
            disk_gb: 1024 * 1024,
            cpu_allocation_ratio: 16.0,
            ram_allocation_ratio: 1.5,
            disk_allocation_ratio: 1.0,
            rules: Vec::new(),
        }
    }
}

/// A guest's vCPUs and memory (MiB).
pub type Sizes = (i64, i64);

struct FakeInstance {
    name: String,
    node: String,
    power_state: PowerState,
    /// The cached image data it was spawned from.
    image: Option<PathBuf>,
    /// The public key the spec carried (the server's key pair).
    key_data: Option<String>,
    /// What a listing shows of its addresses, keyed by the host's networks (none until a
    /// test says: as a driver that tells addresses at spawn only).
    listed_addresses: Vec<nova_core::model::Address>,
    console: String,
    vcpus: i64,
    memory_mb: i64,
    /// The vCPUs and memory from before a resize, until it is confirmed or reverted.
    before_resize: Option<Sizes>,
    /// The rescue image's data while it is rescued (it boots from that then).
    rescue_image: Option<PathBuf>,
    /// The fake NICs' MACs (one per chosen network).
    macs: Vec<String>,
    started: std::time::Instant,
}

/// What a test decided for the calls held at a gate.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    Release,
    Fail(String),
}

/// A gate on a driver call ([`FakeDriver::hold`]): the calls it matches stop there until the
/// test releases them (they do their work) or fails them (they fail with its message); calls
/// after the decision meet it at once.
pub struct Gate {
    state: Arc<GateState>,
}

struct GateState {
    step: Step,
    target: Target,
    /// How many calls have reached the gate.
    reached: tokio::sync::watch::Sender<u64>,
    decision: tokio::sync::watch::Sender<Option<Decision>>,
}

impl Gate {
    /// Waits until a call has reached the gate, for at most `within`.
    pub async fn reached(&self, within: Duration) -> Result<(), DriverError> {
        let mut rx = self.state.reached.subscribe();
        tokio::time::timeout(within, rx.wait_for(|n| *n > 0))
            .await
            .map_err(|_| {
                DriverError::Backend(format!(
                    "no {:?} call reached the gate within {within:?}",
                    self.state.step
                ))
            })?
            .map_err(|_| DriverError::Backend("gate closed".into()))?;
        Ok(())
    }

    /// Lets the held calls (and later ones) do their work.
    pub fn release(&self) {
        self.state.decision.send_replace(Some(Decision::Release));
    }

    /// Fails the held calls (and later ones) with `message`.
    pub fn fail(&self, message: &str) {
        self.state
            .decision
            .send_replace(Some(Decision::Fail(message.to_owned())));
    }
}

pub struct FakeDriver {
    host: String,
    settings: FakeSettings,
    instances: Mutex<HashMap<InstanceUuid, FakeInstance>>,
    rules: Mutex<Vec<Rule>>,
    gates: Mutex<Vec<Arc<GateState>>>,
    spawn_calls: Mutex<u64>,
    /// The packet filters of the last firewall sync (nothing is filtered here: recorded for
    /// the tests of what the conductor sends).
    firewall: Mutex<Vec<nova_core::firewall::PortFirewall>>,
    /// Spawns that did their work (the instance is on the fake's books), as it changes.
    spawns_done: tokio::sync::watch::Sender<u64>,
}

impl FakeDriver {
    pub fn new(host: &str, settings: FakeSettings) -> Self {
        let rules = settings.rules.clone();
        Self {
            host: host.to_owned(),
            settings,
            instances: Mutex::new(HashMap::new()),
            rules: Mutex::new(rules),
            gates: Mutex::new(Vec::new()),
            spawn_calls: Mutex::new(0),
            firewall: Mutex::new(Vec::new()),
            spawns_done: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Adds a misbehaviour; it applies to every matching call until cleared.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.rules).push(rule);
    }

    pub fn clear_rules(&self) {
        lock(&self.rules).clear();
    }

    /// Holds the calls of `step` for `target` at a gate, which the test then releases or
    /// fails. A call matching several gates stops at the first one set.
    pub fn hold(&self, step: Step, target: Target) -> Gate {
        let state = Arc::new(GateState {
            step,
            target,
            reached: tokio::sync::watch::Sender::new(0),
            decision: tokio::sync::watch::Sender::new(None),
        });
        lock(&self.gates).push(state.clone());
        Gate { state }
    }

    /// Changes an instance's power state behind the service's back (a guest that shut itself
    /// down), for the power-state sync.
    pub fn set_power_state_externally(&self, uuid: InstanceUuid, power: PowerState) {
        if let Some(i) = lock(&self.instances).get_mut(&uuid) {
            i.power_state = power;
        }
    }

    /// Makes the listing show these addresses for the instance (a DHCP lease the guest took
    /// after the build), each keyed by the host's network name.
    pub fn set_addresses_externally(
        &self,
        uuid: InstanceUuid,
        addresses: Vec<nova_core::model::Address>,
    ) {
        if let Some(i) = lock(&self.instances).get_mut(&uuid) {
            i.listed_addresses = addresses;
        }
    }

    /// Removes an instance behind the service's back.
    pub fn remove_externally(&self, uuid: InstanceUuid) {
        lock(&self.instances).remove(&uuid);
    }

    pub fn instance_count(&self) -> usize {
        lock(&self.instances).len()
    }

    /// The power state the fake holds for an instance, if it has it.
    pub async fn list_power(&self, uuid: InstanceUuid) -> Option<PowerState> {
        lock(&self.instances).get(&uuid).map(|i| i.power_state)
    }

    pub fn has_instance(&self, uuid: InstanceUuid) -> bool {
        lock(&self.instances).contains_key(&uuid)
    }

    /// The image file the instance was spawned from.
    pub fn image_of(&self, uuid: InstanceUuid) -> Option<PathBuf> {
        lock(&self.instances).get(&uuid)?.image.clone()
    }

    /// The public key the instance was spawned with.
    pub fn key_of(&self, uuid: InstanceUuid) -> Option<String> {
        lock(&self.instances).get(&uuid)?.key_data.clone()
    }

    /// How many times spawn ran its work (idempotent repeats included).
    /// The ports' filters of the last firewall sync.
    pub fn firewall(&self) -> Vec<nova_core::firewall::PortFirewall> {
        lock(&self.firewall).clone()
    }

    /// The rescue image's data the instance boots from while it is rescued.
    pub fn rescue_image_of(&self, uuid: InstanceUuid) -> Option<PathBuf> {
        lock(&self.instances).get(&uuid)?.rescue_image.clone()
    }

    /// The vCPUs and memory the instance has now, and those a resize kept for a revert.
    pub fn sizes_of(&self, uuid: InstanceUuid) -> Option<(Sizes, Option<Sizes>)> {
        lock(&self.instances)
            .get(&uuid)
            .map(|i| ((i.vcpus, i.memory_mb), i.before_resize))
    }

    pub fn spawn_calls(&self) -> u64 {
        *lock(&self.spawn_calls)
    }

    /// How many spawns have done their work, as it changes (a test waits for a held spawn to
    /// finish with it).
    pub fn spawns_done(&self) -> tokio::sync::watch::Receiver<u64> {
        self.spawns_done.subscribe()
    }

    fn node_name(&self, i: u32) -> String {
        if self.settings.nodes <= 1 {
            self.host.clone()
        } else {
            format!("{}-{i}", self.host)
        }
    }

    /// Applies the first matching rule, if any.
    async fn misbehave(
        &self,
        step: Step,
        uuid: InstanceUuid,
        name: Option<&str>,
    ) -> Result<(), DriverError> {
        let name = match name {
            Some(n) => Some(n.to_owned()),
            None => lock(&self.instances).get(&uuid).map(|i| i.name.clone()),
        };
        let matches = |target: &Target| match target {
            Target::Any => true,
            Target::Instance(u) => *u == uuid,
            Target::NameContains(s) => name.as_deref().is_some_and(|n| n.contains(s)),
        };
        let gate = lock(&self.gates)
            .iter()
            .find(|g| g.step == step && matches(&g.target))
            .cloned();
        if let Some(gate) = gate {
            let mut decision = gate.decision.subscribe();
            gate.reached.send_modify(|n| *n += 1);
            tracing::info!(%uuid, ?step, "fake driver call held at a gate");
            let decided = decision
                .wait_for(Option::is_some)
                .await
                .map(|d| d.clone())
                .map_err(|_| DriverError::Backend("gate dropped".into()))?;
            if let Some(Decision::Fail(message)) = decided {
                return Err(DriverError::Backend(message));
            }
        }
        let hit = lock(&self.rules)
            .iter()
            .find(|r| r.step == step && matches(&r.target))
            .map(|r| r.misbehaviour.clone());
        match hit {
            None => Ok(()),
            Some(Misbehaviour::Fail(msg)) => Err(DriverError::Backend(msg)),
            Some(Misbehaviour::Hang) => {
                tracing::info!(%uuid, ?step, "fake driver hangs as told");
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }

    fn with_instance<T>(
        &self,
        uuid: InstanceUuid,
        f: impl FnOnce(&mut FakeInstance) -> T,
    ) -> Result<T, DriverError> {
        lock(&self.instances)
            .get_mut(&uuid)
            .map(f)
            .ok_or(DriverError::NotFound(uuid))
    }
}

/// For each chosen network, its port's MAC and addresses when the port has some (as a real
/// driver sets them); otherwise an address in 10.0.0.0/8 and a MAC, the same every time for
/// the same instance and network (as a host network's own DHCP would give).
fn fake_addresses(spec: &InstanceSpec) -> Vec<nova_core::model::Address> {
    let nova_core::model::NetworkRequest::Chosen(networks) = &spec.networks else {
        return Vec::new();
    };
    networks
        .iter()
        .zip(spec.nics_by_choice())
        .enumerate()
        .flat_map(|(n, (network, nic))| match nic {
            Some(nic) if !nic.ips.is_empty() => nic
                .ips
                .iter()
                .map(|ip| nova_core::model::Address {
                    network: network.name.clone(),
                    addr: ip.address.clone(),
                    version: ip.version,
                    mac: Some(nic.mac.clone()),
                })
                .collect::<Vec<_>>(),
            _ => vec![host_address(spec, n, network)],
        })
        .collect()
}

/// A host network's address for the `n`th chosen network (a port without addresses).
fn host_address(
    spec: &InstanceSpec,
    n: usize,
    network: &nova_core::model::ChosenNetwork,
) -> nova_core::model::Address {
    let b = spec.uuid.0.as_bytes();
    let host = [
        b[13],
        b[14],
        b[15].wrapping_add(u8::try_from(n).unwrap_or(0)),
    ];
    nova_core::model::Address {
        network: network.name.clone(),
        addr: format!("10.{}.{}.{}", host[0], host[1], host[2].max(2)),
        version: 4,
        mac: Some(format!(
            "fa:16:3e:{:02x}:{:02x}:{:02x}",
            host[0], host[1], host[2]
        )),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Compute for FakeDriver {
    async fn sync_firewall(
        &self,
        ports: &[nova_core::firewall::PortFirewall],
    ) -> Result<(), DriverError> {
        *lock(&self.firewall) = ports.to_vec();
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<NodeInventory>, DriverError> {
        let s = &self.settings;
        Ok((0..s.nodes.max(1))
            .map(|i| {
                let name = self.node_name(i);
                NodeInventory {
                    // Stable across restarts: the same host and node name give the same uuid.
                    uuid: NodeUuid(uuid::Uuid::new_v5(
                        &uuid::Uuid::NAMESPACE_OID,
                        format!("fake-node:{}:{name}", self.host).as_bytes(),
                    )),
                    name,
                    node_type: s.node_type,
                    hypervisor_type: "fake".into(),
                    // Nova's fake driver reports 1000.
                    hypervisor_version: 1000,
                    total: Resources {
                        vcpus: s.vcpus,
                        memory_mb: s.memory_mb,
                        disk_gb: s.disk_gb,
                    },
                    cpu_allocation_ratio: s.cpu_allocation_ratio,
                    ram_allocation_ratio: s.ram_allocation_ratio,
                    disk_allocation_ratio: s.disk_allocation_ratio,
                }
            })
            .collect())
    }

    async fn spawn(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
    ) -> Result<DriverInstance, DriverError> {
        let image = images.disk.as_deref();
        *lock(&self.spawn_calls) += 1;
        self.misbehave(Step::Spawn, spec.uuid, Some(&spec.name))
            .await?;
        // Boots nothing, but insists on what a real driver needs: the image's data on disk.
        if let Some(path) = image {
            if !path.is_file() {
                return Err(DriverError::Invalid(format!(
                    "image data {} is missing",
                    path.display()
                )));
            }
        }
        let mut instances = lock(&self.instances);
        let i = instances.entry(spec.uuid).or_insert_with(|| FakeInstance {
            name: spec.name.clone(),
            node: spec.node.clone(),
            power_state: PowerState::Running,
            image: image.map(Path::to_path_buf),
            key_data: spec.key_data.clone(),
            listed_addresses: Vec::new(),
            console: format!(
                // Like a guest's serial console: lines, the last one (a prompt) unterminated.
                "fake: booting {} ({})\nfake: kernel started\nfake: init started\nfake: login: ",
                spec.name, spec.uuid
            ),
            vcpus: spec.flavor.vcpus,
            memory_mb: spec.flavor.memory_mb,
            before_resize: None,
            rescue_image: None,
            macs: fake_addresses(spec)
                .into_iter()
                .filter_map(|a| a.mac)
                .collect(),
            started: std::time::Instant::now(),
        });
        let done = DriverInstance {
            uuid: spec.uuid,
            node: i.node.clone(),
            power_state: i.power_state,
            // It connects nothing, but reports an address on each network the server chose,
            // made from the instance and the network (as Nova's fake driver reports fake
            // network information), so that address views have something to show.
            addresses: fake_addresses(spec),
        };
        drop(instances);
        self.spawns_done.send_modify(|n| *n += 1);
        Ok(done)
    }

    async fn destroy(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.misbehave(Step::Destroy, uuid, None).await?;
        lock(&self.instances).remove(&uuid);
        Ok(())
    }

    async fn power_off(&self, uuid: InstanceUuid, _timeout: Duration) -> Result<(), DriverError> {
        self.misbehave(Step::PowerOff, uuid, None).await?;
        self.with_instance(uuid, |i| {
            i.power_state = PowerState::Shutdown;
            i.console.push_str("\nfake: powered off");
        })
    }

    async fn power_on(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.misbehave(Step::PowerOn, uuid, None).await?;
        self.with_instance(uuid, |i| {
            i.power_state = PowerState::Running;
            i.console.push_str("\nfake: powered on");
        })
    }

    async fn reboot(&self, uuid: InstanceUuid, kind: RebootKind) -> Result<(), DriverError> {
        self.misbehave(Step::Reboot, uuid, None).await?;
        self.with_instance(uuid, |i| {
            i.power_state = PowerState::Running;
            i.console.push_str(&format!("\nfake: {kind:?} reboot"));
        })
    }

    async fn pause(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.misbehave(Step::Pause, uuid, None).await?;
        self.with_instance(uuid, |i| i.power_state = PowerState::Paused)
    }

    async fn unpause(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.misbehave(Step::Unpause, uuid, None).await?;
        self.with_instance(uuid, |i| i.power_state = PowerState::Running)
    }

    /// As Nova's fake driver: SUSPENDED (a real hypervisor's saved guest is shut off).
    async fn suspend(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.misbehave(Step::Suspend, uuid, None).await?;
        self.with_instance(uuid, |i| i.power_state = PowerState::Suspended)
    }

    async fn resume(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.misbehave(Step::Resume, uuid, None).await?;
        self.with_instance(uuid, |i| i.power_state = PowerState::Running)
    }

    /// The flavor's sizes taken; the old ones kept for a revert (a second resize keeps the
    /// first old ones, as a real driver keeps the disk from before the first).
    async fn resize(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        self.misbehave(Step::Resize, uuid, None).await?;
        self.with_instance(uuid, |i| {
            i.before_resize.get_or_insert((i.vcpus, i.memory_mb));
            i.vcpus = flavor.vcpus;
            i.memory_mb = flavor.memory_mb;
        })
    }

    /// The image data it was spawned from (what a real guest's disk starts as), or a line
    /// naming it when it booted from none.
    async fn snapshot(&self, uuid: InstanceUuid, into: &Path) -> Result<(), DriverError> {
        self.misbehave(Step::Snapshot, uuid, None).await?;
        let image = self.with_instance(uuid, |i| i.image.clone())?;
        let written = match image {
            Some(from) => tokio::fs::copy(&from, into).await.map(|_| ()),
            None => tokio::fs::write(into, format!("fake snapshot of {uuid}\n")).await,
        };
        written.map_err(|e| DriverError::Backend(format!("snapshot: {e}")))
    }

    /// Booted from the rescue image's data (which must be there, as for a spawn), running.
    async fn rescue(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
        _stable: Option<nova_core::rpc::StableRescue>,
        _timeout: Duration,
    ) -> Result<(), DriverError> {
        self.misbehave(Step::Rescue, spec.uuid, None).await?;
        let image = images
            .disk
            .clone()
            .filter(|path| path.is_file())
            .ok_or_else(|| {
                DriverError::Invalid(format!("rescue image data {:?} is missing", images.disk))
            })?;
        self.with_instance(spec.uuid, |i| {
            i.rescue_image = Some(image);
            i.power_state = PowerState::Running;
            i.console.push_str("\nfake: booted the rescue image");
        })
    }

    async fn rescued(&self, uuid: InstanceUuid) -> Result<bool, DriverError> {
        self.with_instance(uuid, |i| i.rescue_image.is_some())
    }

    async fn unrescue(
        &self,
        uuid: InstanceUuid,
        _own: Option<&nova_core::rpc::OwnImage>,
    ) -> Result<(), DriverError> {
        self.misbehave(Step::Unrescue, uuid, None).await?;
        self.with_instance(uuid, |i| {
            i.rescue_image = None;
            i.power_state = PowerState::Running;
            i.console.push_str("\nfake: booted its own disk again");
        })
    }

    async fn confirm_resize(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.with_instance(uuid, |i| i.before_resize = None)
    }

    async fn revert_resize(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        self.misbehave(Step::RevertResize, uuid, None).await?;
        self.with_instance(uuid, |i| {
            i.before_resize = None;
            i.vcpus = flavor.vcpus;
            i.memory_mb = flavor.memory_mb;
        })
    }

    async fn power_state(&self, uuid: InstanceUuid) -> Result<PowerState, DriverError> {
        self.with_instance(uuid, |i| i.power_state)
    }

    async fn list_instances(&self) -> Result<Vec<DriverInstance>, DriverError> {
        Ok(lock(&self.instances)
            .iter()
            .map(|(uuid, i)| DriverInstance {
                uuid: *uuid,
                node: i.node.clone(),
                power_state: i.power_state,
                addresses: i.listed_addresses.clone(),
            })
            .collect())
    }

    async fn console_output(
        &self,
        uuid: InstanceUuid,
        lines: Option<usize>,
    ) -> Result<String, DriverError> {
        self.with_instance(uuid, |i| {
            let end = crate::last_bytes(i.console.as_bytes(), crate::MAX_CONSOLE_BYTES);
            crate::tail_lines(&String::from_utf8_lossy(end), lines)
        })
    }

    /// A NIC is its MAC in the instance's list (diagnostics show it); one there already is kept.
    async fn attach_interface(
        &self,
        uuid: InstanceUuid,
        _backend: &str,
        nic: &nova_core::rpc::Nic,
    ) -> Result<(), DriverError> {
        self.with_instance(uuid, |i| {
            if !i.macs.contains(&nic.mac) {
                i.macs.push(nic.mac.clone());
            }
        })
    }

    async fn detach_interface(
        &self,
        uuid: InstanceUuid,
        _backend: &str,
        nic: &nova_core::rpc::Nic,
    ) -> Result<(), DriverError> {
        self.with_instance(uuid, |i| i.macs.retain(|m| *m != nic.mac))
    }

    /// Made up from the flavor and the fake NICs, as Nova's fake driver makes up a libvirt
    /// guest's diagnostics (it names itself `libvirt`, so that 2.48's format can show it).
    async fn diagnostics(&self, uuid: InstanceUuid) -> Result<Diagnostics, DriverError> {
        self.with_instance(uuid, |i| Diagnostics {
            driver: Some("libvirt".into()),
            power_state: Some(i.power_state),
            hypervisor: Some("fake".into()),
            hypervisor_os: Some("linux".into()),
            uptime_s: i64::try_from(i.started.elapsed().as_secs()).ok(),
            memory_max_mb: Some(i.memory_mb),
            memory_used_mb: Some(0),
            cpus: (0..i.vcpus)
                .map(|id| CpuDiagnostics {
                    id: Some(id),
                    time_ns: Some(0),
                    utilisation: Some(0),
                })
                .collect(),
            nics: i
                .macs
                .iter()
                .enumerate()
                .map(|(n, mac)| NicDiagnostics {
                    name: format!("eth{n}"),
                    mac_address: Some(mac.clone()),
                    rx_octets: Some(0),
                    rx_errors: Some(0),
                    rx_drop: Some(0),
                    rx_packets: Some(0),
                    tx_octets: Some(0),
                    tx_errors: Some(0),
                    tx_drop: Some(0),
                    tx_packets: Some(0),
                })
                .collect(),
            disks: vec![DiskDiagnostics {
                name: "vda".into(),
                read_bytes: Some(0),
                read_requests: Some(0),
                write_bytes: Some(0),
                write_requests: Some(0),
                errors_count: Some(0),
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nova_core::model::Flavor;

    fn spec(name: &str) -> InstanceSpec {
        InstanceSpec {
            uuid: InstanceUuid::new_v4(),
            name: name.into(),
            project_id: "p".into(),
            user_id: "u".into(),
            node: "h".into(),
            flavor: Flavor {
                flavorid: "1".into(),
                name: "f".into(),
                memory_mb: 1,
                vcpus: 1,
                root_gb: 1,
                ephemeral_gb: 0,
                swap: 0,
                rxtx_factor: 1.0,
                is_public: true,
                disabled: false,
                description: None,
                extra_specs: Default::default(),
            },
            image_ref: "img".into(),
            image: None,
            metadata: Default::default(),
            user_data: None,
            key_name: None,
            key_data: None,
            hostname: None,
            networks: nova_core::model::NetworkRequest::None,
            config_drive: false,
            kernel: None,
            ramdisk: None,
            os_command_line: None,
            bmc: None,
            nics: Vec::new(),
        }
    }

    #[tokio::test]
    async fn spawn_and_destroy_are_idempotent() {
        let d = FakeDriver::new("h", FakeSettings::default());
        let s = spec("a");
        d.spawn(&s, &BootImages::default()).await.unwrap();
        d.power_off(s.uuid, Duration::ZERO).await.unwrap();
        // A second spawn finds the instance as it is, it does not make another.
        let again = d.spawn(&s, &BootImages::default()).await.unwrap();
        assert_eq!(again.power_state, PowerState::Shutdown);
        assert_eq!(d.instance_count(), 1);
        d.destroy(s.uuid).await.unwrap();
        d.destroy(s.uuid).await.unwrap();
        assert_eq!(d.instance_count(), 0);
        assert!(matches!(
            d.power_state(s.uuid).await,
            Err(DriverError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn rules_fail_or_hang_the_matching_step_only() {
        let d = FakeDriver::new("h", FakeSettings::default());
        d.add_rule(Rule {
            step: Step::Spawn,
            target: Target::NameContains("bad".into()),
            misbehaviour: Misbehaviour::Fail("no luck".into()),
        });
        d.add_rule(Rule {
            step: Step::Spawn,
            target: Target::NameContains("slow".into()),
            misbehaviour: Misbehaviour::Hang,
        });
        assert!(d.spawn(&spec("good"), &BootImages::default()).await.is_ok());
        let err = d
            .spawn(&spec("bad-1"), &BootImages::default())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no luck");
        let hung = tokio::time::timeout(
            Duration::from_millis(50),
            d.spawn(&spec("slow"), &BootImages::default()),
        )
        .await;
        assert!(hung.is_err(), "the call should still be hanging");
        assert_eq!(d.instance_count(), 1);
    }

    #[tokio::test]
    async fn console_output_keeps_the_last_lines() {
        let d = FakeDriver::new("h", FakeSettings::default());
        let s = spec("a");
        d.spawn(&s, &BootImages::default()).await.unwrap();
        d.power_off(s.uuid, Duration::ZERO).await.unwrap();
        d.power_on(s.uuid).await.unwrap();
        let out = d.console_output(s.uuid, Some(2)).await.unwrap();
        assert_eq!(out, "fake: powered off\nfake: powered on");
    }
}
