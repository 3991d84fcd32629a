//! The compute agent: one per host (or per bare-metal pool). It registers its service and nodes
//! with the conductor, heartbeats, consumes `compute.<host>`, runs the driver call each command
//! asks for, and reports every result and every power-state change back on the conductor's
//! event queue. It holds no database connection: the conductor writes.

pub mod credential;
pub mod finished_tasks;
pub mod image_cache;
pub mod node_operations;
pub mod settings;

use drivers::docker::DockerDriver;
use drivers::fake::FakeDriver;
use drivers::libvirt::LibvirtDriver;
use drivers::{Compute, DriverError, RebootKind};
use finished_tasks::{Finished, FinishedTasks};
use image_cache::ImageCache;
use nova_core::bus::{self, Bus, BusError, Delivery};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::model::{PowerState, COMPUTE_BINARY};
use nova_core::rpc::{
    AgentEvent, CallReply, ComputeCommand, Envelope, InstanceSpec, Outcome, Queues,
};
pub use settings::AgentSettings;
use settings::DriverKind;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// What an agent runs: its driver; the fake one again as itself, for tests that steer it;
/// and for a bare-metal pool, its machines' own operations.
pub struct Drivers {
    pub compute: Arc<dyn Compute>,
    pub fake: Option<Arc<FakeDriver>>,
    pub nodes: Option<node_operations::NodeManager>,
}

impl Drivers {
    fn only(compute: Arc<dyn Compute>) -> Self {
        Self {
            compute,
            fake: None,
            nodes: None,
        }
    }
}

/// The driver the settings name.
pub async fn driver_from_settings(settings: &AgentSettings) -> Result<Drivers, DriverError> {
    Ok(match settings.driver {
        DriverKind::Fake => {
            let fake = Arc::new(FakeDriver::new(&settings.host, settings.fake.clone()));
            Drivers {
                compute: fake.clone(),
                fake: Some(fake),
                nodes: None,
            }
        }
        DriverKind::Docker => Drivers::only(Arc::new(
            DockerDriver::connect(&settings.host, settings.docker.clone()).await?,
        )),
        DriverKind::Libvirt => Drivers::only(Arc::new(
            LibvirtDriver::connect(&settings.host, settings.libvirt.clone()).await?,
        )),
        DriverKind::Baremetal => {
            let pool = Arc::new(baremetal_pool(settings)?);
            Drivers {
                compute: pool.clone(),
                fake: None,
                nodes: Some(node_operations::NodeManager {
                    pool,
                    drivers: vec!["redfish".to_owned()],
                }),
            }
        }
        DriverKind::Auto => {
            return Err(DriverError::Invalid(
                "agent.driver = \"auto\" is for the all-in-one, which runs one agent per pool; \
                 a compute agent runs one driver: fake, docker, libvirt or baremetal"
                    .into(),
            ))
        }
    })
}

/// The bare-metal pool the settings describe: its key (which opens the BMC passwords and signs
/// the image URLs) and the image service as BMCs reach it.
fn baremetal_pool(
    settings: &AgentSettings,
) -> Result<drivers::baremetal::BaremetalPool, DriverError> {
    let b = &settings.baremetal;
    let Some(path) = &b.key_file else {
        return Err(DriverError::Invalid(
            "agent.baremetal.key_file is required for driver = \"baremetal\": the bare-metal \
             API's key, which opens the BMC passwords"
                .into(),
        ));
    };
    let bad_key = |e| DriverError::Invalid(format!("agent.baremetal.key_file: {e}"));
    // Made by the API (which seals the passwords), never here: an agent that made a key of its
    // own would open nothing it is sent.
    let key = nova_core::secret::SealingKey::load(path).map_err(bad_key)?;
    let signer = nova_core::secret::UrlSigner::load(path).map_err(bad_key)?;
    let Some(image_url) = b
        .image_url
        .clone()
        .or_else(|| settings.images.endpoint.clone())
    else {
        return Err(DriverError::Invalid(
            "agent.baremetal.image_url (or agent.images.endpoint) is required for driver = \
             \"baremetal\": the image service as the BMCs reach it"
                .into(),
        ));
    };
    Ok(drivers::baremetal::BaremetalPool::new(
        drivers::redfish::RedfishDriver::new(b.redfish.clone()),
        key,
        signer,
        image_url,
        Duration::from_secs(b.image_url_ttl_s.max(60)),
    ))
}

pub struct Agent {
    settings: AgentSettings,
    bus: Arc<dyn Bus>,
    queues: Queues,
    driver: Arc<dyn Compute>,
    images: Arc<ImageCache>,
    /// The power state of every instance as last reported to the conductor, by a command's
    /// result or by the sync loop; the sync loop reports only differences from it.
    reported: Mutex<HashMap<InstanceUuid, PowerState>>,
    /// The addresses last reported by the sync loop, per instance.
    addresses: Mutex<HashMap<InstanceUuid, Vec<nova_core::model::Address>>>,
    /// Tasks whose command is running here now. The conductor re-sends the command of a task
    /// that seems stuck; a copy that arrives while the first still runs is dropped, so that a
    /// driver never runs two spawns of one instance at once. Heartbeats name them.
    running: Mutex<HashSet<TaskId>>,
    /// The tasks this agent finished, durably: a command re-sent after it finished is
    /// answered from here, not run twice.
    finished: Arc<FinishedTasks>,
    /// How many commands run their driver calls at once (the bus prefetch).
    driver_slots: tokio::sync::Semaphore,
    /// How many power-state sync rounds have completed: a restarted agent has re-adopted what
    /// its driver runs once its first round is done, which tests wait for.
    sync_rounds: tokio::sync::watch::Sender<u64>,
    /// A bare-metal agent's operations on its free machines.
    nodes: Option<node_operations::NodeManager>,
    /// Whether a power sync of the machines runs now.
    syncing_nodes: std::sync::atomic::AtomicBool,
    /// The `sent_at` of the newest firewall sync applied.
    firewall_sent_at: tokio::sync::Mutex<i64>,
}

impl Agent {
    pub fn new(
        settings: AgentSettings,
        bus: Arc<dyn Bus>,
        queues: Queues,
        driver: Arc<dyn Compute>,
        images: Arc<ImageCache>,
    ) -> std::io::Result<Arc<Self>> {
        Self::with_nodes(settings, bus, queues, driver, images, None)
    }

    /// An agent that also runs operations on enrolled machines (a bare-metal pool).
    pub fn with_nodes(
        settings: AgentSettings,
        bus: Arc<dyn Bus>,
        queues: Queues,
        driver: Arc<dyn Compute>,
        images: Arc<ImageCache>,
        nodes: Option<node_operations::NodeManager>,
    ) -> std::io::Result<Arc<Self>> {
        let finished = Arc::new(FinishedTasks::open(
            &settings.state_dir.join("finished-tasks"),
        )?);
        Ok(Arc::new(Self {
            settings,
            bus,
            queues,
            driver,
            images,
            reported: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            finished,
            // Opened by `run`, which knows the prefetch.
            driver_slots: tokio::sync::Semaphore::new(0),
            sync_rounds: tokio::sync::watch::Sender::new(0),
            nodes,
            syncing_nodes: std::sync::atomic::AtomicBool::new(false),
            firewall_sent_at: tokio::sync::Mutex::new(0),
        }))
    }

    /// The number of completed power-state sync rounds, as it changes.
    pub fn sync_rounds(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sync_rounds.subscribe()
    }

    /// Registers, then serves commands, heartbeats and syncs power states until dropped.
    pub async fn run(self: Arc<Self>, prefetch: u16) -> anyhow::Result<()> {
        self.register().await?;
        let sub = self
            .bus
            .subscribe(&self.queues.compute(&self.settings.host), prefetch)
            .await?;
        tracing::info!(host = %self.settings.host, "compute agent serving");
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop());
        let sync = tokio::spawn(self.clone().sync_loop());
        let eviction = tokio::spawn(self.clone().eviction_loop());
        self.driver_slots.add_permits(usize::from(prefetch.max(1)));
        let me = self.clone();
        // Deliveries are taken (and commands acked) well beyond the driver slots: a delivery
        // left waiting unacked behind hung driver calls would outlive the broker's consumer
        // timeout.
        bus::consume(sub, usize::from(prefetch).saturating_mul(16), move |d| {
            let me = me.clone();
            async move { me.handle(d).await }
        })
        .await;
        heartbeat.abort();
        sync.abort();
        eviction.abort();
        Ok(())
    }

    async fn eviction_loop(self: Arc<Self>) {
        let every = Duration::from_secs(self.settings.images.eviction_interval_s.max(1));
        let age = Duration::from_secs(self.settings.images.max_unused_age_s);
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = self.images.evict(age).await {
                tracing::warn!(error = %e, "image cache eviction failed");
            }
            let retention = Duration::from_secs(self.settings.finished_task_retention_s);
            // A rewrite of the journal: off the async threads.
            let finished = self.finished.clone();
            match tokio::task::spawn_blocking(move || finished.prune(retention)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "finished-task records not pruned"),
                Err(e) => tracing::warn!(error = %e, "finished-task records not pruned"),
            }
        }
    }

    async fn report(&self, event: AgentEvent, request_id: Option<String>) -> Result<(), BusError> {
        let envelope = Envelope::new(request_id, event);
        self.bus
            .publish(&self.queues.conductor_events(), envelope.encode())
            .await
    }

    async fn register(&self) -> anyhow::Result<()> {
        let nodes = self.driver.inventory().await?;
        tracing::info!(host = %self.settings.host, nodes = nodes.len(), "registering");
        let event = AgentEvent::Register {
            host: self.settings.host.clone(),
            binary: COMPUTE_BINARY.to_owned(),
            nodes,
            host_ip: Some(self.settings.my_ip()),
            node_drivers: self
                .nodes
                .as_ref()
                .map(|n| n.drivers.clone())
                .unwrap_or_default(),
        };
        self.report(event, None).await?;
        Ok(())
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat_interval());
        let mut beats: u64 = 0;
        loop {
            tick.tick().await;
            beats += 1;
            // Re-register now and then so that a conductor that lost the service (a database
            // restored from backup, say) learns it again and inventory changes reach it.
            // No beat while the hypervisor does not answer: the service goes down after the
            // conductor's window, and builds go to other hosts (Nova's compute service stops
            // reporting in the same way when its driver hangs).
            if let Err(e) = self.driver.healthy().await {
                tracing::warn!(error = %e, "hypervisor not answering: heartbeat withheld");
                continue;
            }
            let result = if beats.is_multiple_of(60) {
                self.register().await.map_err(|e| e.to_string())
            } else {
                let event = AgentEvent::Heartbeat {
                    host: self.settings.host.clone(),
                    running: lock(&self.running).iter().copied().collect(),
                };
                self.report(event, None).await.map_err(|e| e.to_string())
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "heartbeat not sent");
            }
        }
    }

    /// Reports power states the service did not cause: on the first pass every instance the
    /// driver has (so that a restarted agent re-adopts what runs instead of rebuilding it),
    /// afterwards only changes and disappearances.
    async fn sync_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.sync_interval());
        let mut rounds: u64 = 0;
        let mut events = self.driver.events();
        loop {
            if let Some(rx) = events.as_mut() {
                tokio::select! {
                    _ = tick.tick() => {}
                    event = rx.recv() => {
                        match event {
                            Ok(instance) => self.sync_one(instance).await,
                            // Events were missed: a whole round finds what they said.
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                tick.reset_immediately();
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                events = None;
                            }
                        }
                        continue;
                    }
                }
            } else {
                tick.tick().await;
            }
            rounds += 1;
            // What was reported before the driver is asked: a command that finishes while the
            // list is being made updates `reported` with an instance the list may not show,
            // and must not be mistaken for one that vanished. Every 30th round reports every
            // state again: a report the conductor could not apply (dead-lettered through a
            // long database outage) is not lost for good.
            let before: HashMap<InstanceUuid, PowerState> = if rounds.is_multiple_of(30) {
                HashMap::new()
            } else {
                lock(&self.reported).clone()
            };
            let listed = match self.driver.list_instances().await {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(error = %e, "power-state sync: cannot list instances");
                    continue;
                }
            };
            self.sync_addresses(&listed, rounds.is_multiple_of(30))
                .await;
            let now: HashMap<InstanceUuid, PowerState> = listed
                .into_iter()
                .map(|i| (i.uuid, i.power_state))
                .collect();
            let mut changes: Vec<(InstanceUuid, Option<PowerState>)> = now
                .iter()
                .filter(|(u, p)| before.get(u) != Some(p))
                .map(|(u, p)| (*u, Some(*p)))
                .collect();
            for u in before.keys().filter(|u| !now.contains_key(u)) {
                // Gone from the list: asked once more, so that only an instance the driver
                // really lacks is reported missing.
                if let Err(DriverError::NotFound(_)) = self.driver.power_state(*u).await {
                    changes.push((*u, None));
                }
            }
            for (instance, power_state) in changes {
                let event = AgentEvent::PowerObserved {
                    host: self.settings.host.clone(),
                    instance,
                    power_state,
                };
                if let Err(e) = self.report(event, None).await {
                    tracing::warn!(error = %e, "power-state sync: report not sent");
                    break;
                }
                self.remember(instance, power_state);
            }
            self.sync_rounds.send_modify(|n| *n += 1);
        }
    }

    /// Reports the addresses a listing shows for an instance when they differ from those
    /// reported last (a DHCP lease that came after the build); `all`: every one again. A
    /// driver whose listing shows none (it tells them at spawn) reports nothing here.
    async fn sync_addresses(&self, listed: &[drivers::DriverInstance], all: bool) {
        let mut changed = Vec::new();
        {
            let mut known = lock(&self.addresses);
            known.retain(|u, _| listed.iter().any(|i| i.uuid == *u));
            for i in listed.iter().filter(|i| !i.addresses.is_empty()) {
                let mut addresses = i.addresses.clone();
                addresses.sort_by(|a, b| (&a.network, &a.addr).cmp(&(&b.network, &b.addr)));
                if all || known.get(&i.uuid) != Some(&addresses) {
                    known.insert(i.uuid, addresses.clone());
                    changed.push((i.uuid, addresses));
                }
            }
        }
        for (instance, addresses) in changed {
            let event = AgentEvent::AddressesObserved {
                host: self.settings.host.clone(),
                instance,
                addresses,
            };
            if let Err(e) = self.report(event, None).await {
                tracing::warn!(error = %e, "address sync: report not sent");
                // Tried again next round.
                lock(&self.addresses).remove(&instance);
            }
        }
    }

    /// Reports the state of one instance that the driver says changed, when it differs from
    /// what was reported last (the sync loop's rule, for one instance).
    async fn sync_one(&self, instance: InstanceUuid) {
        let before = lock(&self.reported).get(&instance).copied();
        let now = match self.driver.power_state(instance).await {
            Ok(p) => Some(p),
            // Gone: reported only when it had been reported as there.
            Err(DriverError::NotFound(_)) if before.is_some() => None,
            Err(DriverError::NotFound(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, %instance, "power-state event: state not read");
                return;
            }
        };
        if now == before {
            return;
        }
        let event = AgentEvent::PowerObserved {
            host: self.settings.host.clone(),
            instance,
            power_state: now,
        };
        // Not remembered as reported: the conductor drops a report while the instance has a
        // task open (a stop that crosses the guest's own power-off), so the next periodic
        // round reports it again, and the change is never lost to a report that raced a
        // command's result.
        if let Err(e) = self.report(event, None).await {
            tracing::warn!(error = %e, "power-state event: report not sent");
        }
    }

    /// The recorded end of `task`, read off the async threads.
    async fn finished_record(&self, task: TaskId) -> Option<Finished> {
        let finished = self.finished.clone();
        tokio::task::spawn_blocking(move || finished.get(task))
            .await
            .ok()
            .flatten()
    }

    fn remember(&self, instance: InstanceUuid, power_state: Option<PowerState>) {
        let mut reported = lock(&self.reported);
        match power_state {
            Some(p) => reported.insert(instance, p),
            None => reported.remove(&instance),
        };
    }

    async fn handle(self: Arc<Self>, mut delivery: Delivery) {
        let envelope = match Envelope::<ComputeCommand>::decode(&delivery.payload) {
            Ok(e) => e,
            Err(e) => {
                // Redelivering a message this build cannot read would loop forever.
                tracing::error!(error = %e, "dropping unreadable command");
                delivery.ack().await;
                return;
            }
        };
        let command = envelope.body;
        if let ComputeCommand::HostUptime = command {
            let reply = match host_uptime() {
                Ok(uptime) => CallReply::Uptime { uptime },
                Err(e) => CallReply::Failed {
                    message: format!("host uptime: {e}"),
                },
            };
            match serde_json::to_vec(&reply) {
                Ok(bytes) => delivery.reply(bytes).await,
                Err(e) => tracing::error!(error = %e, "uptime reply not encoded"),
            }
            delivery.ack().await;
            return;
        }
        if let ComputeCommand::ConsoleOutput { instance, .. }
        | ComputeCommand::Diagnostics { instance }
        | ComputeCommand::AttachInterface { instance, .. }
        | ComputeCommand::DetachInterface { instance, .. } = command
        {
            if delivery.call_expired() {
                // It waited behind tasks longer than its caller did.
                tracing::info!(%instance, "call expired before its turn; dropped");
                delivery.ack().await;
                return;
            }
            self.answer_instance_call(delivery, command).await;
            return;
        }
        if let ComputeCommand::DeleteImage { image_id } = &command {
            delivery.ack().await;
            if let Err(e) = self.images.delete_image(image_id).await {
                tracing::warn!(image = %image_id, error = %e, "image not deleted");
            }
            return;
        }
        if let ComputeCommand::SyncFirewall { ports, sent_at } = command {
            delivery.ack().await;
            // The newest wins: a sync overtaken by a newer one (a redelivery, two conductors)
            // is dropped rather than applied over it. One at a time (the lock is held while
            // it applies), so an older one cannot land after a newer one.
            let mut newest = self.firewall_sent_at.lock().await;
            if sent_at < *newest {
                return;
            }
            *newest = sent_at;
            if let Err(e) = self.driver.sync_firewall(&ports).await {
                tracing::warn!(error = %e, "packet filter not applied");
            }
            return;
        }
        if let ComputeCommand::SyncNodes { nodes, sent_at } = command {
            delivery.ack().await;
            if let Some(manager) = &self.nodes {
                manager.pool.learn(&nodes);
            }
            // One round at a time: a round that outlives the interval (dead BMCs take their
            // retries) makes the next one skip, not pile up behind it.
            use std::sync::atomic::Ordering;
            if self
                .syncing_nodes
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.sync_nodes(nodes, sent_at).await;
                self.syncing_nodes.store(false, Ordering::Release);
            } else {
                tracing::info!("a node power sync is still running; this one is skipped");
            }
            return;
        }
        if let ComputeCommand::NodeOperation(node_command) = command {
            // Acked at once: an operation runs for minutes, and the node row's deadline, not
            // a redelivery, ends one whose agent died.
            delivery.ack().await;
            self.run_node_operation(*node_command, envelope.request_id)
                .await;
            return;
        }
        let task = command.task_id();
        if let Some(task) = task {
            // Marked running before the record is read: the first copy records its end
            // before it stops running, so a copy sees one or the other, never neither.
            if !lock(&self.running).insert(task) {
                tracing::info!(%task, "command already running here; dropping the copy");
                delivery.ack().await;
                return;
            }
            if let Some(finished) = self.finished_record(task).await {
                lock(&self.running).remove(&task);
                tracing::info!(%task, "command finished here before; reporting its outcome again");
                let event = AgentEvent::TaskResult {
                    host: self.settings.host.clone(),
                    task_id: Some(task),
                    instance: finished.instance,
                    outcome: finished.outcome,
                };
                match self.report(event, envelope.request_id).await {
                    Ok(()) => delivery.ack().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "outcome not reported again; requeueing");
                        delivery.requeue().await;
                    }
                }
                return;
            }
        }
        // The command is this agent's now: its delivery is acked before the driver call, so
        // that a long call (a slow shutdown, a bare-metal deploy) never holds it past the
        // broker's consumer timeout. Were the agent to die before it reports, the task stays
        // dispatched and the conductor's reconciler sends it again; while it runs, heartbeats
        // tell the conductor so.
        delivery.ack().await;
        {
            // Accepted commands wait here, acked, for a driver slot; deliveries never wait
            // unacked behind slow driver calls.
            let _slot = self.driver_slots.acquire().await;
            self.clone()
                .handle_command(command, envelope.request_id)
                .await;
        }
        if let Some(task) = task {
            lock(&self.running).remove(&task);
        }
    }

    /// Answers a call about one instance (console output, diagnostics). A call is a question,
    /// not a task: it is acked once answered and never retried (the caller has a timeout).
    async fn answer_instance_call(&self, mut delivery: Delivery, command: ComputeCommand) {
        let limit = self.settings.operation_timeout();
        let answer = match command {
            ComputeCommand::ConsoleOutput { instance, length } => {
                bounded(limit, self.driver.console_output(instance, length))
                    .await
                    .map(|output| CallReply::ConsoleOutput { output })
            }
            ComputeCommand::Diagnostics { instance } => {
                bounded(limit, self.driver.diagnostics(instance))
                    .await
                    .map(|diagnostics| CallReply::Diagnostics { diagnostics })
            }
            ComputeCommand::AttachInterface {
                instance,
                backend,
                nic,
            } => {
                let done = bounded(
                    limit,
                    self.driver.attach_interface(instance, &backend, &nic),
                )
                .await
                .map(|()| CallReply::Done);
                // The next sync round reports the instance's addresses afresh.
                lock(&self.addresses).remove(&instance);
                done
            }
            ComputeCommand::DetachInterface {
                instance,
                backend,
                nic,
            } => {
                let done = bounded(
                    limit,
                    self.driver.detach_interface(instance, &backend, &nic),
                )
                .await
                .map(|()| CallReply::Done);
                lock(&self.addresses).remove(&instance);
                done
            }
            _ => Err(DriverError::Invalid("not a call about an instance".into())),
        };
        let reply = match answer {
            Ok(reply) => reply,
            Err(DriverError::NotFound(_)) => CallReply::NotFound,
            Err(DriverError::Invalid(message)) => CallReply::NotSupported { message },
            Err(DriverError::Backend(message)) => CallReply::Failed { message },
        };
        match serde_json::to_vec(&reply) {
            Ok(bytes) => delivery.reply(bytes).await,
            Err(e) => tracing::error!(error = %e, "call reply not encodable"),
        }
        delivery.ack().await;
    }

    /// Reads each machine's power from its BMC, a few at a time, and reports it (or why the
    /// BMC did not answer).
    async fn sync_nodes(&self, nodes: Vec<nova_core::rpc::NodeBmc>, asked_at: i64) {
        use futures::StreamExt as _;
        let Some(manager) = &self.nodes else {
            return;
        };
        let host = &self.settings.host;
        futures::stream::iter(nodes.into_iter().filter(|n| n.read_power))
            .for_each_concurrent(8, |n| async move {
                let power = manager.power(&n).await;
                let event = AgentEvent::NodePowerObserved(nova_core::rpc::NodePowerReport {
                    host: host.clone(),
                    node: n.node.clone(),
                    power,
                    asked_at,
                });
                if let Err(e) = self.report(event, None).await {
                    tracing::warn!(node = %n.node, error = %e, "node power not reported");
                }
            })
            .await;
    }

    async fn run_node_operation(
        &self,
        command: nova_core::rpc::NodeCommand,
        request_id: Option<String>,
    ) {
        let span = tracing::info_span!(
            "node_operation",
            request_id = request_id.as_deref().unwrap_or("-"),
            node = %command.node,
            kind = command.kind.name(),
        );
        let host = self.settings.host.clone();
        let outcome = match &self.nodes {
            None => nova_core::rpc::NodeOutcome::Failed {
                message: format!("The compute host {host} runs no bare-metal machines."),
            },
            Some(manager) => {
                // Steps are reported as they start; a lost one only makes the progress less
                // precise.
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let step = move |name: &str| {
                    let _ = tx.send(name.to_owned());
                };
                let reporter = async {
                    while let Some(name) = rx.recv().await {
                        let event = AgentEvent::NodeStep(node_operations::step_report(
                            &host, &command, &name,
                        ));
                        if let Err(e) = self.report(event, request_id.clone()).await {
                            tracing::warn!(error = %e, "node step not reported");
                        }
                    }
                };
                let run = async {
                    let outcome = manager.run(&command, &step).await;
                    drop(step);
                    outcome
                };
                let (outcome, ()) = tokio::join!(run, reporter);
                outcome
            }
        };
        if let nova_core::rpc::NodeOutcome::Failed { message } = &outcome {
            tracing::warn!(parent: &span, %message, "node operation failed");
        }
        let event = AgentEvent::NodeOperationEnded(node_operations::end_report(
            &self.settings.host,
            &command,
            outcome,
        ));
        // Not reported: the row's deadline ends the operation (as failed) instead.
        if let Err(e) = self.report(event, request_id).instrument(span).await {
            tracing::warn!(error = %e, "node operation's end not reported");
        }
    }

    async fn handle_command(self: Arc<Self>, command: ComputeCommand, request_id: Option<String>) {
        // Every command that runs as a task is about an instance; questions about the host
        // are answered in `handle`.
        let Some(instance) = command.instance() else {
            return;
        };
        let span = tracing::info_span!(
            "command",
            request_id = request_id.as_deref().unwrap_or("-"),
            instance = %instance,
        );
        let (task_id, outcome) = self.execute(&command).instrument(span.clone()).await;
        // What the conductor will know of the instance's power once this result reaches it.
        let observed = match &outcome {
            Outcome::Done { power_state, .. } => Some(Some(*power_state)),
            Outcome::Destroyed => Some(None),
            Outcome::Failed { .. } => None,
        };
        // Recorded (synced to disk) while it is reported, not before: the sync stays off the
        // path to ACTIVE. A copy of the command is sent only after the redrive interval, and
        // the task stays `running` (copies dropped) until the record is written; only a crash
        // between the report and the record's sync could let a copy run again.
        //
        // Synced only where a second run would do something (a reboot): a command that sets a
        // state runs again harmlessly, and an agent killed keeps what it wrote in the page
        // cache anyway. The syncs of every build competed with the database's own on the
        // disk: a tenth of the boot benchmark's burst throughput.
        let sync = !command.repeats_harmlessly();
        let record = async {
            let Some(task) = task_id else {
                return;
            };
            let finished = Finished {
                instance,
                outcome: outcome.clone(),
            };
            let journal = self.finished.clone();
            let recorded =
                tokio::task::spawn_blocking(move || journal.record(task, &finished, sync))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
            if let Err(e) = recorded {
                tracing::error!(%task, error = %e, "finished task not recorded");
            }
        };
        let event = AgentEvent::TaskResult {
            host: self.settings.host.clone(),
            task_id,
            instance,
            outcome: outcome.clone(),
        };
        // The conductor skips address reports while the instance's task runs (and a result
        // may set addresses): the next sync round reports the instance's addresses afresh.
        lock(&self.addresses).remove(&instance);
        let report = self.report(event, request_id).instrument(span.clone());
        let ((), reported) = tokio::join!(record.instrument(span), report);
        match reported {
            Ok(()) => {
                tracing::debug!("result reported");
                if let Some(p) = observed {
                    self.remember(instance, p);
                }
            }
            // The conductor sends the command again when it hears nothing; the record above
            // answers it then.
            Err(e) => tracing::warn!(error = %e, "result not reported"),
        }
    }

    /// The verified data of `image` in the host's cache, fetched if missing.
    async fn acquire(
        &self,
        image: Option<&nova_core::rpc::ImageSpec>,
        instance: InstanceUuid,
    ) -> Result<Option<std::path::PathBuf>, DriverError> {
        let Some(image) = image else {
            return Ok(None);
        };
        self.images
            .acquire(image, instance)
            .await
            .map(Some)
            // Nova's BuildAbortException message. Data that fails verification is the image's
            // (the project's) problem, told as it is; a failed fetch is the host's, its
            // details for admins.
            .map_err(|e| {
                let text = format!("Build of instance {instance} aborted: {e}");
                match e {
                    image_cache::CacheError::Verify { .. } => DriverError::Invalid(text),
                    _ => DriverError::Backend(text),
                }
            })
    }

    /// The image data a spawn of `spec` boots from, in the host's cache. A bare-metal
    /// machine's BMC fetches its image itself, by URL: none.
    async fn boot_images(&self, spec: &InstanceSpec) -> Result<drivers::BootImages, DriverError> {
        if spec.bmc.is_some() {
            return Ok(drivers::BootImages::default());
        }
        Ok(drivers::BootImages {
            disk: self.acquire(spec.image.as_ref(), spec.uuid).await?,
            kernel: self.acquire(spec.kernel.as_ref(), spec.uuid).await?,
            ramdisk: self.acquire(spec.ramdisk.as_ref(), spec.uuid).await?,
        })
    }

    async fn execute(&self, command: &ComputeCommand) -> (Option<nova_core::ids::TaskId>, Outcome) {
        let limit = self.settings.operation_timeout();
        let driver = &self.driver;
        let (task_id, result) = match command {
            ComputeCommand::Spawn { task_id, spec } => {
                tracing::info!(node = %spec.node, "spawning");
                let r = bounded(limit, async {
                    let images = self.boot_images(spec).await?;
                    tracing::debug!("image ready");
                    driver.spawn(spec, &images).await
                })
                .await
                .map(|i| (i.power_state, i.addresses));
                (Some(*task_id), r)
            }
            ComputeCommand::Rebuild {
                task_id,
                spec,
                stopped,
            } => {
                tracing::info!(node = %spec.node, image = %spec.image_ref, "rebuilding");
                let r = bounded(limit, async {
                    let images = self.boot_images(spec).await?;
                    let built = driver.rebuild(spec, &images).await?;
                    // The old image is this instance's no longer.
                    let now: Vec<&nova_core::rpc::ImageSpec> =
                        [&spec.image, &spec.kernel, &spec.ramdisk]
                            .into_iter()
                            .flatten()
                            .collect();
                    let kept = if spec.bmc.is_some() {
                        Ok(()) // (a machine's BMC fetched it: nothing in the cache)
                    } else {
                        self.images.keep_only(spec.uuid, &now)
                    };
                    if let Err(e) = kept {
                        tracing::warn!(error = %e, "image cache: old image not released");
                    }
                    if *stopped {
                        // As Nova: a server rebuilt while SHUTOFF is brought back to it.
                        driver.power_off(spec.uuid, Duration::ZERO).await?;
                        let power = driver.power_state(spec.uuid).await?;
                        return Ok((power, built.addresses));
                    }
                    Ok((built.power_state, built.addresses))
                })
                .await;
                (Some(*task_id), r)
            }
            ComputeCommand::Destroy { task_id, instance } => {
                tracing::info!("destroying");
                match bounded(limit, driver.destroy(*instance)).await {
                    Ok(()) => {
                        if let Err(e) = self.images.release(*instance) {
                            tracing::warn!(error = %e, "image cache: use not released");
                        }
                        return (*task_id, Outcome::Destroyed);
                    }
                    Err(e) => (*task_id, Err(e)),
                }
            }
            ComputeCommand::PowerOff { task_id, instance } => {
                let graceful = self.settings.graceful_shutdown_timeout();
                let r = bounded(limit, driver.power_off(*instance, graceful)).await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::PowerOn { task_id, instance } => {
                let r = bounded(limit, driver.power_on(*instance)).await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::Reboot {
                task_id,
                instance,
                hard,
            } => {
                let kind = if *hard {
                    RebootKind::Hard
                } else {
                    RebootKind::Soft
                };
                let r = bounded(limit, driver.reboot(*instance, kind)).await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::Pause { task_id, instance }
            | ComputeCommand::Unpause { task_id, instance }
            | ComputeCommand::Suspend { task_id, instance }
            | ComputeCommand::Resume { task_id, instance } => {
                // (The trait's calls are boxed futures of one type.)
                let call = match command {
                    ComputeCommand::Pause { .. } => driver.pause(*instance),
                    ComputeCommand::Unpause { .. } => driver.unpause(*instance),
                    ComputeCommand::Suspend { .. } => driver.suspend(*instance),
                    _ => driver.resume(*instance),
                };
                let r = bounded(limit, call).await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::Resize {
                task_id,
                instance,
                flavor,
            } => {
                tracing::info!(flavor = %flavor.flavorid, "resizing");
                let r = bounded(limit, driver.resize(*instance, flavor)).await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::Snapshot {
                task_id,
                instance,
                image_id,
                rotate_out,
            } => {
                tracing::info!(image = %image_id, "snapshotting");
                let file = self
                    .images
                    .dir()
                    .join("tmp")
                    .join(format!("snapshot-{image_id}"));
                let r = bounded(limit, async {
                    driver.snapshot(*instance, &file).await?;
                    self.images.upload(image_id, &file).await.map_err(|e| {
                        DriverError::Backend(format!("snapshot {image_id} not uploaded: {e}"))
                    })?;
                    // A backup's rotation, after the upload (Nova's `_rotate_backups`): what it
                    // cannot delete now stays, told in the log.
                    for old in rotate_out {
                        if let Err(e) = self.images.delete_image(old).await {
                            tracing::warn!(image = %old, error = %e, "backup not rotated out");
                        }
                    }
                    Ok(())
                })
                .await;
                let _ = tokio::fs::remove_file(&file).await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::Shelve {
                task_id,
                instance,
                image_id,
            } => {
                tracing::info!(image = %image_id, "shelving");
                let file = self
                    .images
                    .dir()
                    .join("tmp")
                    .join(format!("snapshot-{image_id}"));
                let graceful = self.settings.graceful_shutdown_timeout();
                let r = bounded(limit, async {
                    // As Nova's shelve: the guest shut down first (cleanly within the graceful
                    // timeout), so that its disk is whole.
                    let was = driver.power_state(*instance).await?;
                    driver.power_off(*instance, graceful).await?;
                    let saved = async {
                        driver.snapshot(*instance, &file).await?;
                        self.images.upload(image_id, &file).await.map_err(|e| {
                            DriverError::Backend(format!(
                                "shelved image {image_id} not uploaded: {e}"
                            ))
                        })
                    }
                    .await;
                    if let Err(e) = saved {
                        // Not shelved: the guest runs again if it ran (the server is left as
                        // it was).
                        if was == nova_core::model::PowerState::Running {
                            if let Err(e) = driver.power_on(*instance).await {
                                tracing::warn!(error = %e, "guest not started again after a failed shelve");
                            }
                        }
                        return Err(e);
                    }
                    // Offloaded: the guest goes, and the host's cached image is no longer its.
                    driver.destroy(*instance).await?;
                    if let Err(e) = self.images.release(*instance) {
                        tracing::warn!(error = %e, "image cache: use not released");
                    }
                    Ok((nova_core::model::PowerState::NoState, Vec::new()))
                })
                .await;
                let _ = tokio::fs::remove_file(&file).await;
                (Some(*task_id), r)
            }
            ComputeCommand::Unshelve {
                task_id,
                spec,
                shelved_image,
            } => {
                tracing::info!(node = %spec.node, image = %shelved_image, "unshelving");
                let r = bounded(limit, async {
                    let images = self.boot_images(spec).await?;
                    let built = driver.spawn(spec, &images).await?;
                    Ok((built.power_state, built.addresses))
                })
                .await;
                (Some(*task_id), r)
            }
            ComputeCommand::Rescue {
                task_id,
                spec,
                stable,
            } => {
                tracing::info!(image = %spec.image_ref, "rescuing");
                let graceful = self.settings.graceful_shutdown_timeout();
                let r = bounded(limit, async {
                    // What the server used before is kept aside first, so that the rescue
                    // image's use is recorded beside it and never in its place.
                    self.images
                        .begin_rescue(spec.uuid)
                        .map_err(|e| DriverError::Backend(format!("image cache: {e}")))?;
                    let rescued = async {
                        let images = self.boot_images(spec).await?;
                        driver.rescue(spec, &images, *stable, graceful).await
                    }
                    .await;
                    let Err(e) = rescued else {
                        return Ok(());
                    };
                    match driver.rescued(spec.uuid).await {
                        // Put back as it was: it uses what it used before.
                        Ok(false) => {
                            if let Err(e) = self.images.end_rescue(spec.uuid) {
                                tracing::warn!(error = %e, "image cache: rescue image not released");
                            }
                            Err(e)
                        }
                        // Left rescued (the driver could not put it back): the server is
                        // RESCUED, as it is, for an unrescue to make whole; its rescue image
                        // stays in use.
                        Ok(true) => {
                            tracing::warn!(error = %e, "rescue failed and could not be put back; the instance is left rescued");
                            Ok(())
                        }
                        // Not known: both records kept (nothing it may stand on is evicted).
                        Err(_) => Err(e),
                    }
                })
                .await;
                // Done (or left rescued) is what the server now is, whatever a power read
                // after it says: one that fails (a BMC that stopped answering mid-rescue)
                // shows no state until the power sync reads one, rather than failing a rescue
                // that changed the guest.
                let state = match r {
                    Ok(()) => Ok(self
                        .driver
                        .power_state(spec.uuid)
                        .await
                        .unwrap_or(nova_core::model::PowerState::NoState)),
                    Err(e) => Err(e),
                };
                (Some(*task_id), no_addresses(state))
            }
            ComputeCommand::Unrescue {
                task_id,
                instance,
                own,
            } => {
                tracing::info!("unrescuing");
                let r = bounded(limit, driver.unrescue(*instance, own.as_ref())).await;
                if r.is_ok() {
                    if let Err(e) = self.images.end_rescue(*instance) {
                        tracing::warn!(error = %e, "image cache: rescue image not released");
                    }
                }
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::ConfirmResize { task_id, instance } => {
                let r = bounded(limit, driver.confirm_resize(*instance)).await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            ComputeCommand::RevertResize {
                task_id,
                instance,
                flavor,
                stopped,
            } => {
                tracing::info!(flavor = %flavor.flavorid, "reverting a resize");
                let r = bounded(limit, async {
                    driver.revert_resize(*instance, flavor).await?;
                    // As Nova's finish_revert_resize: running again unless it was SHUTOFF.
                    if !*stopped {
                        driver.power_on(*instance).await?;
                    }
                    Ok(())
                })
                .await;
                (
                    Some(*task_id),
                    no_addresses(self.then_state(r, *instance).await),
                )
            }
            // Calls are answered in `handle` and never run as tasks.
            ComputeCommand::ConsoleOutput { .. }
            | ComputeCommand::HostUptime
            | ComputeCommand::Diagnostics { .. }
            | ComputeCommand::AttachInterface { .. }
            | ComputeCommand::DetachInterface { .. }
            | ComputeCommand::NodeOperation(_)
            | ComputeCommand::SyncNodes { .. }
            | ComputeCommand::SyncFirewall { .. }
            | ComputeCommand::DeleteImage { .. } => (
                None,
                Err(DriverError::Invalid("a call is not a task".into())),
            ),
        };
        let outcome = match result {
            Ok((power_state, addresses)) => Outcome::Done {
                power_state,
                addresses,
            },
            Err(e) => {
                tracing::warn!(error = %e, "driver call failed");
                Outcome::Failed {
                    message: e.public_message(),
                    details: e.internal_details(),
                }
            }
        };
        (task_id, outcome)
    }

    async fn then_state(
        &self,
        r: Result<(), DriverError>,
        instance: InstanceUuid,
    ) -> Result<PowerState, DriverError> {
        r?;
        self.driver.power_state(instance).await
    }
}

/// Bounds a driver call: a call that outlives `limit` counts as failed.
async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(DriverError::Backend(format!(
            "driver call timed out after {}s",
            limit.as_secs()
        )))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A step other than a build reports no addresses: those are the build's.
fn no_addresses(
    r: Result<PowerState, DriverError>,
) -> Result<(PowerState, Vec<nova_core::model::Address>), DriverError> {
    r.map(|p| (p, Vec::new()))
}

/// The host's uptime as `uptime` prints it (what Nova's drivers answer): the time, how long
/// the host has been up, and the load averages, from /proc.
fn host_uptime() -> std::io::Result<String> {
    let up = std::fs::read_to_string("/proc/uptime")?;
    let seconds = up
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(|| std::io::Error::other("unreadable /proc/uptime"))?;
    let load = std::fs::read_to_string("/proc/loadavg")?;
    let loads: Vec<&str> = load.split_whitespace().take(3).collect();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = seconds as u64;
    let (days, hours, minutes) = (total / 86_400, total % 86_400 / 3_600, total % 3_600 / 60);
    let since = if days > 0 {
        format!("{days} days, {hours:2}:{minutes:02}")
    } else {
        format!("{hours:2}:{minutes:02}")
    };
    Ok(format!(
        " {} up {since},  load average: {}",
        chrono::Utc::now().format("%H:%M:%S"),
        loads.join(", ")
    ))
}
