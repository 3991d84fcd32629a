//! The service under test, in its two shapes.

use crate::env;
use api_server::{ApiSettings, Backends};
use compute_agent::credential::StaticToken;
use compute_agent::image_cache::{ImageCache, ImageSettings};
use compute_agent::settings::DriverKind;
use compute_agent::{Agent, AgentSettings};
use conductor::{Conductor, ConductorSettings};
use drivers::docker::DockerSettings;
use drivers::fake::{FakeDriver, FakeSettings};
use drivers::libvirt::LibvirtSettings;
use drivers::Compute;
use keystone_auth::{AuthSettings, Identity, Strategy};

use nova_core::bus::amqp::AmqpBus;
use nova_core::rpc::Queues;
use nova_db::DatabaseSettings;
use nova_db::Db;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Timings short enough for tests; production defaults are in each settings type.
#[derive(Clone, Debug)]
pub struct Options {
    pub build_timeout_s: u64,
    pub heartbeat_ms: u64,
    pub sync_ms: u64,
    pub service_down_s: u64,
    pub reconcile_ms: u64,
    pub redrive_after_s: u64,
    pub fake: FakeSettings,
    /// `Fake` unless a test is about a real driver.
    pub driver: DriverKind,
    pub docker: DockerSettings,
    pub libvirt: LibvirtSettings,
    pub graceful_shutdown_s: u64,
    pub host: String,
    pub prefetch: u16,
    /// Identity; `None` is noauth2 (for tests about compute).
    pub auth: Option<AuthSettings>,
    /// The image service's size limit, when a test needs a small one.
    pub image_size_cap: Option<i64>,
    /// Where the image service keeps data, when not in the test's own directory.
    pub image_store: Option<image_api::store::StoreSettings>,
    /// The API's limit on reading a request body (`api.body_timeout_s`).
    pub body_timeout_s: u64,
    /// Sends of a task before the conductor gives it up (`conductor.task_attempts`).
    pub task_attempts: u32,
    /// The agent's bound on one driver call (`agent.operation_timeout_s`).
    pub operation_timeout_s: u64,
    /// How long a server create's `Idempotency-Key` lives (`api.idempotency_key_ttl_s`).
    pub idempotency_key_ttl_s: u64,
    /// The all-in-one runs a bare-metal pool beside its driver (`agent.baremetal.pool`).
    pub baremetal_pool: bool,
    /// How often the conductor has the machines' power read (`conductor.baremetal_sync_interval_s`).
    pub baremetal_sync_interval_s: u64,
    /// Resizes confirmed by the conductor after this long (`conductor.resize_confirm_window_s`;
    /// 0: never).
    pub resize_confirm_window_s: u64,
    /// Deletes deferred this long (`api.reclaim_instance_interval_s`; 0: none).
    pub reclaim_instance_interval_s: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            build_timeout_s: 60,
            heartbeat_ms: 200,
            sync_ms: 300,
            service_down_s: 3,
            reconcile_ms: 200,
            redrive_after_s: 5,
            fake: FakeSettings::default(),
            driver: DriverKind::Fake,
            docker: DockerSettings {
                firewall: crate::docker::no_firewall(),
                ..Default::default()
            },
            libvirt: LibvirtSettings::default(),
            graceful_shutdown_s: 60,
            host: "compute-1".into(),
            prefetch: 64,
            auth: None,
            image_size_cap: None,
            image_store: None,
            body_timeout_s: 30,
            task_attempts: 5,
            operation_timeout_s: 3600,
            idempotency_key_ttl_s: 86_400,
            baremetal_pool: false,
            // Power syncs cost nothing without machines; tests with one want them soon.
            baremetal_sync_interval_s: 1,
            resize_confirm_window_s: 0,
            reclaim_instance_interval_s: 0,
        }
    }
}

impl Options {
    fn conductor(&self) -> ConductorSettings {
        ConductorSettings {
            host: self.host.clone(),
            build_timeout_s: self.build_timeout_s,
            service_down_time_s: self.service_down_s,
            reconcile_interval_ms: self.reconcile_ms,
            redrive_after_s: self.redrive_after_s,
            task_attempts: self.task_attempts,
            baremetal_sync_interval_s: self.baremetal_sync_interval_s,
            resize_confirm_window_s: self.resize_confirm_window_s,
            ..Default::default()
        }
    }

    fn agent(&self) -> AgentSettings {
        AgentSettings {
            host: self.host.clone(),
            heartbeat_interval_ms: self.heartbeat_ms,
            sync_interval_ms: self.sync_ms,
            fake: self.fake.clone(),
            driver: self.driver,
            docker: self.docker.clone(),
            libvirt: self.libvirt.clone(),
            graceful_shutdown_timeout_s: self.graceful_shutdown_s,
            operation_timeout_s: self.operation_timeout_s,
            ..Default::default()
        }
    }

    /// The image service's settings, its data in `dir` unless the test chose a store.
    fn image(&self, dir: std::path::PathBuf) -> image_api::ImageSettings {
        let mut image = image_api::ImageSettings::default();
        if let Some(cap) = self.image_size_cap {
            image.size_cap = cap;
        }
        match &self.image_store {
            Some(store) => image.store = store.clone(),
            None => image.store.dir = dir,
        }
        image
    }

    fn api(&self) -> ApiSettings {
        ApiSettings {
            bind: "127.0.0.1:0".into(),
            public_url: None,
            workers: 2,
            service_down_time_s: self.service_down_s,
            body_timeout_s: self.body_timeout_s,
            idempotency_key_ttl_s: self.idempotency_key_ttl_s,
            reclaim_instance_interval_s: self.reclaim_instance_interval_s,
            ..ApiSettings::default()
        }
    }
}

/// These stacks are about compute, not identity: Nova's noauth2, chosen explicitly.
fn noauth2() -> AuthSettings {
    AuthSettings {
        strategy: Strategy::Noauth2,
        ..Default::default()
    }
}

/// The distributed shape's conductor, on a thread of its own.
fn spawn_conductor(database: DatabaseSettings, queues: Queues, options: &Options) -> Component {
    let (settings, prefetch) = (options.conductor(), options.prefetch);
    Component::spawn("conductor", move |stop| async move {
        let db = Db::connect(&database).await?;
        let bus = Arc::new(AmqpBus::connect(&env::amqp_url()).await?);
        until_stopped(
            Conductor::new(settings, db, bus, queues).run(prefetch),
            stop,
        )
        .await
    })
}

/// What a test needs of a running service, whatever its shape.
pub trait Stack: Send + Sync {
    fn api_url(&self) -> &str;
    /// The test's own connection to the service's database, for assertions.
    fn db(&self) -> &Db;
    /// The fake driver; panics on a stack that runs another (tests know which they run).
    fn driver(&self) -> &Arc<FakeDriver>;
    /// The driver the agent runs, whichever it is.
    fn compute(&self) -> Arc<dyn Compute>;
    /// The compute host's image cache.
    fn images(&self) -> &Arc<ImageCache>;
    /// The image service's store (a file per image, named by its id).
    fn image_store(&self) -> std::path::PathBuf;
}

/// One service on its own thread and tokio runtime; it stops when told or dropped.
pub struct Component {
    name: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Component {
    /// Runs `make(stop)` on a fresh runtime in a new thread. The future should end when `stop`
    /// resolves (it is also cut off when the runtime shuts down).
    pub fn spawn<F, Fut>(name: &str, make: F) -> Self
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(component = %thread_name, error = %e, "no runtime");
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                if let Err(e) = local.block_on(&rt, make(rx)) {
                    tracing::error!(component = %thread_name, error = %e, "component failed");
                }
                rt.shutdown_background();
            })
            .ok();
        Self {
            name: name.to_owned(),
            stop: Some(tx),
            thread,
        }
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!(component = %self.name, "component thread panicked");
            }
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Runs `fut` until it ends or `stop` fires.
async fn until_stopped(
    fut: impl Future<Output = anyhow::Result<()>>,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    tokio::select! {
        r = fut => r,
        _ = stop => Ok(()),
    }
}

/// The distributed shape: api, conductor and agent each on its own runtime, connected only
/// through RabbitMQ and PostgreSQL.
pub struct Distributed {
    api_url: String,
    db: Db,
    driver: Arc<dyn Compute>,
    fake: Option<Arc<FakeDriver>>,
    images: Arc<ImageCache>,
    store: std::path::PathBuf,
    pub db_url: String,
    pub queues: Queues,
    pub options: Options,
    agent: Option<Component>,
    /// The running agent's count of power-state sync rounds, once it has started.
    agent_rounds: Arc<std::sync::Mutex<Option<tokio::sync::watch::Receiver<u64>>>>,
    /// Agents on other hosts ([`Distributed::start_agent_on`]), with their hosts.
    more_agents: Vec<(String, Component)>,
    conductor: Option<Component>,
    api: Option<Component>,
    _images_dir: tempfile::TempDir,
}

impl Distributed {
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        crate::init_logging();
        let db_url = env::fresh_pg_database().await?;
        let database = DatabaseSettings {
            url: db_url.clone(),
            max_connections: 8,
        };
        // The test's own pool connects first and so runs the migrations once.
        let db = Db::connect(&database).await?;
        let images_dir = tempfile::tempdir()?;
        let store = images_dir.path().join("store");
        std::fs::create_dir_all(&store)?;
        let image = options.image(store.clone());
        env::register_test_images(&db, image_api::store::open(&image.store)?.as_ref()).await?;
        env::lift_quotas(&db).await?;
        let queues = Queues::new(&env::queue_prefix());
        let drivers = compute_agent::driver_from_settings(&options.agent()).await?;
        let (driver, fake) = (drivers.compute, drivers.fake);

        let conductor = spawn_conductor(database.clone(), queues.clone(), &options);

        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        // noauth2 unless the test asks for Keystone (whose keys live with the images).
        let mut auth = options.auth.clone().unwrap_or_else(noauth2);
        auth.key_repository = images_dir.path().join("keys");
        let api = {
            let settings = options.api();
            let image = image.clone();
            let (database, queues) = (database.clone(), queues.clone());
            Component::spawn("api", move |stop| async move {
                let db = Db::connect(&database).await?;
                let bus = Arc::new(AmqpBus::connect(&env::amqp_url()).await?);
                let identity = Identity::setup(&db, &auth)
                    .await
                    .map_err(anyhow::Error::msg)?;
                let api = api_server::start(
                    &settings,
                    &image,
                    Backends {
                        db,
                        bus,
                        queues,
                        identity,
                    },
                )?;
                addr_tx.send(api.addr)?;
                let handle = api.server.handle();
                tokio::select! {
                    r = api.server => r?,
                    _ = stop => handle.stop(false).await,
                }
                Ok(())
            })
        };
        let addr =
            tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(30)))
                .await??;
        // The agent fetches as an admin: with Keystone by the admin's password, as deployed;
        // under noauth2 with its admin token.
        let credential: Arc<dyn compute_agent::credential::Credential> =
            match options.auth.as_ref().and_then(|a| a.admin_password.clone()) {
                Some(password) => Arc::new(compute_agent::credential::KeystonePassword::new(
                    compute_agent::credential::PasswordSettings {
                        auth_url: format!("http://{addr}/identity/v3"),
                        username: "admin".into(),
                        password,
                        project_name: "admin".into(),
                        user_domain_name: "Default".into(),
                        project_domain_name: "Default".into(),
                        user_domain_id: None,
                        project_domain_id: None,
                    },
                )),
                None => Arc::new(StaticToken("admin:admin".into())),
            };
        let images = Arc::new(ImageCache::open(
            &ImageSettings {
                cache_dir: images_dir.path().join("cache"),
                endpoint: Some(format!("http://{addr}/image")),
                ..Default::default()
            },
            Some(credential),
        )?);
        let mut me = Self {
            api_url: format!("http://{addr}"),
            db,
            driver,
            fake,
            images,
            store,
            db_url,
            queues,
            options,
            agent: None,
            agent_rounds: Arc::default(),
            more_agents: Vec::new(),
            conductor: Some(conductor),
            api: Some(api),
            _images_dir: images_dir,
        };
        me.start_agent();
        me.wait_for_node().await?;
        Ok(me)
    }

    /// Starts a compute agent on the same host: after `stop_agent` this is an agent restart,
    /// and the driver still holds the instances it had (the fake keeps them in memory; the
    /// Docker driver keeps nothing of its own, the engine has them).
    pub fn start_agent(&mut self) {
        let (queues, mut settings, driver, images, prefetch) = (
            self.queues.clone(),
            self.options.agent(),
            self.driver.clone(),
            self.images.clone(),
            self.options.prefetch,
        );
        // The same state directory across restarts of this host's agent.
        settings.state_dir = self._images_dir.path().join("agent-state");
        let rounds = self.agent_rounds.clone();
        *rounds.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.agent = Some(Component::spawn("agent", move |stop| async move {
            let bus = Arc::new(AmqpBus::connect(&env::amqp_url()).await?);
            let agent = Agent::new(settings, bus, queues, driver, images)?;
            *rounds.lock().unwrap_or_else(|e| e.into_inner()) = Some(agent.sync_rounds());
            until_stopped(agent.run(prefetch), stop).await
        }));
    }

    /// How many power-state sync rounds the agent started last has completed (0 before it
    /// started).
    pub fn agent_sync_rounds(&self) -> u64 {
        self.agent_rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |rx| *rx.borrow())
    }

    /// Waits until the agent started last has completed `rounds` power-state sync rounds.
    pub async fn wait_for_agent_sync_rounds(
        &self,
        rounds: u64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let slot = self.agent_rounds.clone();
        tokio::time::timeout(within, async move {
            let mut rx = loop {
                let current = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
                match current {
                    Some(rx) => break rx,
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            rx.wait_for(|n| *n >= rounds).await.map(|_| ())
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!("the agent did not sync {rounds} times within {within:?}")
        })??;
        Ok(())
    }

    /// Starts a compute agent on another host, with a driver of its own, and waits until its
    /// node is registered (for tests about placement across hosts).
    pub async fn start_agent_on(&mut self, host: &str) -> anyhow::Result<()> {
        let mut settings = self.options.agent();
        settings.host = host.to_owned();
        settings.state_dir = self._images_dir.path().join(format!("agent-state-{host}"));
        let driver = compute_agent::driver_from_settings(&settings)
            .await?
            .compute;
        let (queues, images, prefetch) = (
            self.queues.clone(),
            self.images.clone(),
            self.options.prefetch,
        );
        let agent = Component::spawn("agent", move |stop| async move {
            let bus = Arc::new(AmqpBus::connect(&env::amqp_url()).await?);
            until_stopped(
                Agent::new(settings, bus, queues, driver, images)?.run(prefetch),
                stop,
            )
            .await
        });
        self.more_agents.push((host.to_owned(), agent));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let nodes = nova_db::nodes::nodes(&self.db).await?;
            if nodes.iter().any(|n| n.host == host) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("no compute node of {host} registered within 30 s")
    }

    /// Stops the conductor (its queues keep what arrives meanwhile).
    pub fn stop_conductor(&mut self) {
        if let Some(c) = self.conductor.take() {
            c.stop();
        }
    }

    /// Starts the conductor again, on the same database and queues.
    pub fn start_conductor(&mut self) {
        let database = DatabaseSettings {
            url: self.db_url.clone(),
            max_connections: 8,
        };
        self.conductor = Some(spawn_conductor(
            database,
            self.queues.clone(),
            &self.options,
        ));
    }

    pub fn stop_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.stop();
        }
    }

    /// Waits until the agent's node is registered (builds before that find no host).
    async fn wait_for_node(&self) -> anyhow::Result<()> {
        wait_for_node(&self.db).await
    }
}

async fn wait_for_node(db: &Db) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if !nova_db::nodes::nodes(db).await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("no compute node registered within 30 s")
}

impl Drop for Distributed {
    fn drop(&mut self) {
        // Stop in the order a deployment would: no new requests, then the workers.
        for c in [self.api.take(), self.conductor.take(), self.agent.take()]
            .into_iter()
            .flatten()
        {
            c.stop();
        }
        let mut queues = vec![
            self.queues.conductor_tasks(),
            self.queues.conductor_events(),
            self.queues.compute(&self.options.host),
        ];
        for (host, agent) in self.more_agents.drain(..) {
            agent.stop();
            queues.push(self.queues.compute(&host));
        }
        env::delete_queues(queues);
    }
}

impl Stack for Distributed {
    fn api_url(&self) -> &str {
        &self.api_url
    }
    fn db(&self) -> &Db {
        &self.db
    }
    fn driver(&self) -> &Arc<FakeDriver> {
        self.fake.as_ref().expect("this stack runs the fake driver")
    }
    fn compute(&self) -> Arc<dyn Compute> {
        self.driver.clone()
    }
    fn images(&self) -> &Arc<ImageCache> {
        &self.images
    }
    fn image_store(&self) -> std::path::PathBuf {
        self.store.clone()
    }
}

/// The all-in-one shape: one process, SQLite, the in-process bus.
pub struct AllInOneStack {
    api_url: String,
    /// Where the all-in-one wrote `clouds.yaml` (with Keystone identity).
    pub clouds_yaml: Option<std::path::PathBuf>,
    pub identity: Identity,
    pub key_repository: std::path::PathBuf,
    aio: Option<allinone::AllInOne>,
    db: Db,
    images: Arc<ImageCache>,
    store: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl AllInOneStack {
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        crate::init_logging();
        let (dir, url) = env::fresh_sqlite_database()?;
        let mut auth = options.auth.clone().unwrap_or_else(noauth2);
        auth.key_repository = dir.path().join("keys");
        let mut settings = allinone::Settings {
            auth,
            clouds_yaml: dir.path().join("clouds.yaml"),
            api: options.api(),
            conductor: options.conductor(),
            agent: options.agent(),
            ..Default::default()
        };
        settings.database.url = url;
        settings.image = options.image(dir.path().join("images"));
        settings.agent.images.cache_dir = dir.path().join("image-cache");
        settings.agent.state_dir = dir.path().join("agent-state");
        settings.bus.prefetch = options.prefetch;
        settings.agent.baremetal.pool = options.baremetal_pool;
        let store = image_api::store::open(&settings.image.store)?;
        let aio = allinone::AllInOne::start(settings).await?;
        let db = aio.db.clone();
        env::register_test_images(&db, store.as_ref()).await?;
        env::lift_quotas(&db).await?;
        wait_for_node(&db).await?;
        Ok(Self {
            clouds_yaml: aio.clouds_yaml.clone(),
            identity: aio.identity.clone(),
            key_repository: dir.path().join("keys"),
            api_url: format!("http://{}", aio.api_addr),
            images: aio.images.clone(),
            store: dir.path().join("images"),
            db,
            aio: Some(aio),
            _dir: dir,
        })
    }
}

impl Drop for AllInOneStack {
    fn drop(&mut self) {
        drop(self.aio.take());
    }
}

impl Stack for AllInOneStack {
    fn api_url(&self) -> &str {
        &self.api_url
    }
    fn db(&self) -> &Db {
        &self.db
    }
    fn driver(&self) -> &Arc<FakeDriver> {
        self.aio
            .as_ref()
            .and_then(|a| a.fake.as_ref())
            .expect("this stack runs the fake driver")
    }
    fn compute(&self) -> Arc<dyn Compute> {
        self.aio.as_ref().expect("running").driver.clone()
    }
    fn images(&self) -> &Arc<ImageCache> {
        &self.images
    }
    fn image_store(&self) -> std::path::PathBuf {
        self.store.clone()
    }
}
