//! The all-in-one: the API, a conductor and a compute agent in one process, sharing an
//! in-process bus and (by default) a SQLite database. The same code runs as separate processes
//! over RabbitMQ and PostgreSQL in the distributed mode.
//!
//! Drivers: `agent.driver = "auto"` (etc/all-in-one.toml) runs one compute agent per pool that
//! works on the machine, each its own compute service and host, as Nova runs one nova-compute
//! per driver: `<host>-vm` on libvirt when libvirtd answers, `<host>-container` on Docker when
//! the engine answers, and the `fake` driver (which boots nothing) only when neither does.
//! Naming one driver (`fake`, `docker`, `libvirt`) runs that one alone under `<host>`.

use api_server::{ApiSettings, Backends};
use compute_agent::credential::{
    Credential, CredentialSettings, Issued, KeystonePassword, PasswordSettings, StaticToken,
};
use compute_agent::image_cache::ImageCache;
use compute_agent::settings::DriverKind;
use compute_agent::{Agent, AgentSettings};
use conductor::{Conductor, ConductorSettings};
use drivers::fake::FakeDriver;
use drivers::Compute;
use image_api::ImageSettings;
use keystone_auth::{AuthSettings, Identity, Strategy};
use nova_core::bus::inproc::InProcBus;
use nova_core::bus::Bus;
use nova_core::rpc::Queues;
use nova_core::settings::BusSettings;
use nova_db::DatabaseSettings;
use nova_db::Db;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub api: ApiSettings,
    pub image: ImageSettings,
    pub auth: AuthSettings,
    pub database: DatabaseSettings,
    /// Only `prefetch` and `queue_prefix` apply: the all-in-one always uses the in-process bus.
    pub bus: BusSettings,
    pub conductor: ConductorSettings,
    pub agent: AgentSettings,
    /// Where to write the `clouds.yaml` for the admin and demo accounts.
    pub clouds_yaml: std::path::PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            api: ApiSettings::default(),
            image: ImageSettings::default(),
            auth: AuthSettings::default(),
            database: DatabaseSettings::default(),
            bus: BusSettings::default(),
            conductor: ConductorSettings::default(),
            agent: AgentSettings::default(),
            clouds_yaml: "clouds.yaml".into(),
        }
    }
}

/// A running all-in-one. Dropping it stops everything.
pub struct AllInOne {
    pub api_addr: SocketAddr,
    pub db: Db,
    /// The first pool's driver.
    pub driver: Arc<dyn Compute>,
    /// The compute agents this process runs, and for `auto` why the others do not run.
    pub pools: Vec<Pool>,
    pub missing_pools: Vec<String>,
    /// The driver again when it is the fake one, for tests that steer it.
    pub fake: Option<Arc<FakeDriver>>,
    pub images: Arc<ImageCache>,
    /// The public URL of the API (the identity endpoint is `<url>/identity/v3`).
    pub url: String,
    /// Where `clouds.yaml` was written, if it was.
    pub clouds_yaml: Option<std::path::PathBuf>,
    pub identity: Identity,
    tasks: Vec<JoinHandle<()>>,
    api: actix_web::dev::ServerHandle,
}

impl AllInOne {
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect(&settings.database).await?;
        let bus: Arc<dyn Bus> = Arc::new(InProcBus::default());
        let queues = Queues::new(&settings.bus.queue_prefix);
        let prefetch = settings.bus.prefetch;
        let mut agent_settings = settings.agent.clone();
        // The bare-metal pool opens the BMC passwords with the API's key.
        if agent_settings.baremetal.key_file.is_none() {
            agent_settings.baremetal.key_file = settings
                .api
                .baremetal
                .key_file
                .clone()
                .or_else(|| Some(settings.auth.key_repository.join("baremetal.key")));
        }
        let conductor = Conductor::new(
            settings.conductor.clone(),
            db.clone(),
            bus.clone(),
            queues.clone(),
        );
        // One public URL for the whole API unless identity has its own.
        let mut auth = settings.auth.clone();
        if auth.public_url.is_none() {
            auth.public_url = settings.api.public_url.clone();
        }
        let identity = Identity::setup(&db, &auth)
            .await
            .map_err(anyhow::Error::msg)?;
        let api = api_server::start(
            &settings.api,
            &settings.image,
            Backends {
                db: db.clone(),
                bus: bus.clone(),
                queues: queues.clone(),
                identity: identity.clone(),
            },
        )?;
        let images = image_cache(&settings, &identity, api.addr)?;
        // The BMCs fetch the ISOs they boot from this process's image service.
        if agent_settings.baremetal.image_url.is_none() {
            agent_settings.baremetal.image_url = Some(match &settings.api.public_url {
                Some(url) => format!("{}/image", url.trim_end_matches('/')),
                None => format!("http://{}/image", api.addr),
            });
        }
        let (pools, missing_pools, fake) = pools(&agent_settings).await?;
        let driver = pools[0].driver.clone();
        if settings.agent.driver == DriverKind::Auto {
            bootstrap_flavors(&db, &pools).await?;
        }
        let mut agents = Vec::new();
        for pool in &pools {
            let nodes = pool.nodes.lock().unwrap_or_else(|e| e.into_inner()).take();
            let agent = Agent::with_nodes(
                pool.settings.clone(),
                bus.clone(),
                queues.clone(),
                pool.driver.clone(),
                images.clone(),
                nodes,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "agent state directory {}: {e}",
                    pool.settings.state_dir.display()
                )
            })?;
            agents.push(agent);
        }
        let url = settings
            .api
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", api.addr));
        let clouds_yaml = write_clouds_yaml(&settings, &identity, &url)?;
        let api_handle = api.server.handle();
        let mut tasks = vec![
            tokio::spawn(async move {
                if let Err(e) = conductor.run(prefetch).await {
                    tracing::error!(error = %e, "conductor stopped");
                }
            }),
            tokio::spawn(async move {
                if let Err(e) = api.server.await {
                    tracing::error!(error = %e, "API server stopped");
                }
            }),
        ];
        for agent in agents {
            tasks.push(tokio::spawn(async move {
                if let Err(e) = agent.run(prefetch).await {
                    tracing::error!(error = %e, "compute agent stopped");
                }
            }));
        }
        Ok(Self {
            api_addr: api.addr,
            db,
            driver,
            pools,
            missing_pools,
            fake,
            images,
            url,
            clouds_yaml,
            identity,
            tasks,
            api: api_handle,
        })
    }

    /// Stops the API gracefully and the other services at once.
    pub async fn stop(mut self) {
        self.api.stop(true).await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for AllInOne {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A compute agent of the all-in-one: its driver and its own settings (host, state).
pub struct Pool {
    pub kind: DriverKind,
    pub settings: AgentSettings,
    pub driver: Arc<dyn Compute>,
    /// A bare-metal pool's machine operations (taken by its agent at start).
    nodes: std::sync::Mutex<Option<compute_agent::node_operations::NodeManager>>,
}

impl Pool {
    fn of(kind: DriverKind, settings: AgentSettings, drivers: compute_agent::Drivers) -> Self {
        Self {
            kind,
            settings,
            driver: drivers.compute,
            nodes: std::sync::Mutex::new(drivers.nodes),
        }
    }
}

/// The pools to run: the one driver `agent.driver` names, or for `auto` every pool that works
/// here (each under `<host>-<type>`, its state in `<state_dir>/<type>`), with the reasons
/// the others do not. The fake driver runs only when nothing else does.
async fn pools(
    agent: &AgentSettings,
) -> anyhow::Result<(Vec<Pool>, Vec<String>, Option<Arc<FakeDriver>>)> {
    let for_pool = |kind: DriverKind| {
        let mut s = agent.clone();
        s.driver = kind;
        s.host = format!("{}-{}", agent.host, kind.pool());
        s.state_dir = agent.state_dir.join(kind.pool());
        s
    };
    // Enrolled machines need nothing on this host (their BMCs are reached over the network):
    // the bare-metal pool runs with `auto`, and beside a named driver when asked.
    let baremetal = || async {
        let settings = for_pool(DriverKind::Baremetal);
        let drivers = compute_agent::driver_from_settings(&settings).await?;
        anyhow::Ok(Pool::of(DriverKind::Baremetal, settings, drivers))
    };
    if agent.driver != DriverKind::Auto {
        let drivers = compute_agent::driver_from_settings(agent).await?;
        let fake = drivers.fake.clone();
        let mut pools = vec![Pool::of(agent.driver, agent.clone(), drivers)];
        if agent.baremetal.pool && agent.driver != DriverKind::Baremetal {
            pools.push(baremetal().await?);
        }
        return Ok((pools, Vec::new(), fake));
    }
    let mut pools = Vec::new();
    let mut missing = Vec::new();
    // Each probe is bounded: a daemon that accepts and never answers must not hold the start.
    const PROBE: std::time::Duration = std::time::Duration::from_secs(15);
    let probes = [
        (
            DriverKind::Libvirt,
            "libvirtd answers on qemu:///system (scripts/services.sh installs and starts \
             libvirt with QEMU)",
        ),
        (
            DriverKind::Docker,
            "the Docker Engine answers (scripts/services.sh installs and starts it)",
        ),
    ];
    for (kind, needs) in probes {
        let settings = for_pool(kind);
        let pool = kind.pool();
        match tokio::time::timeout(PROBE, compute_agent::driver_from_settings(&settings)).await {
            Ok(Ok(drivers)) => pools.push(Pool::of(kind, settings, drivers)),
            Ok(Err(e)) => missing.push(format!(
                "{pool} pool ({}) is off: {e}. It runs when {needs}.",
                kind.name()
            )),
            Err(_) => missing.push(format!(
                "{pool} pool ({}) is off: no answer within {PROBE:?}. It runs when {needs}.",
                kind.name()
            )),
        }
    }
    let mut fake = None;
    if pools.is_empty() {
        let settings = for_pool(DriverKind::Fake);
        let drivers = compute_agent::driver_from_settings(&settings).await?;
        fake = drivers.fake.clone();
        missing
            .push("No real pool works here: the fake driver runs, and boots nothing.".to_owned());
        pools.push(Pool::of(DriverKind::Fake, settings, drivers));
    }
    pools.push(baremetal().await?);
    Ok((pools, missing, fake))
}

/// The flavors of each pool that is up, created when missing: `m1.*` (VMs) come with the
/// database; `c1.*` ask for containers (`node:type=container`).
async fn bootstrap_flavors(db: &Db, pools: &[Pool]) -> anyhow::Result<()> {
    if !pools.iter().any(|p| p.kind == DriverKind::Docker) {
        return Ok(());
    }
    let existing = nova_db::flavors::list_all(db).await?;
    for (id, name, memory_mb, vcpus, root_gb) in [
        ("c1.tiny", "c1.tiny", 128, 1, 1),
        ("c1.small", "c1.small", 512, 1, 10),
        ("c1.medium", "c1.medium", 2048, 2, 20),
    ] {
        if existing.iter().any(|f| f.flavorid == id || f.name == name) {
            continue;
        }
        let flavor = nova_core::model::Flavor {
            flavorid: id.into(),
            name: name.into(),
            memory_mb,
            vcpus,
            root_gb,
            ephemeral_gb: 0,
            swap: 0,
            rxtx_factor: 1.0,
            is_public: true,
            disabled: false,
            description: Some("A container (node:type=container).".into()),
            extra_specs: [(
                nova_core::model::NODE_TYPE_EXTRA_SPEC.to_owned(),
                "container".to_owned(),
            )]
            .into(),
        };
        nova_db::flavors::create(db, &flavor).await?;
    }
    Ok(())
}

/// The agent's image cache, fetching from this process's own image service unless another is
/// configured, with a credential this process can supply: a token issued in-process for the
/// bootstrap `admin` (Keystone), or `admin:admin` (noauth2).
fn image_cache(
    settings: &Settings,
    identity: &Identity,
    api_addr: SocketAddr,
) -> anyhow::Result<Arc<ImageCache>> {
    let mut images = settings.agent.images.clone();
    if images.endpoint.is_none() {
        images.endpoint = Some(format!("http://{api_addr}/image"));
    }
    let credential: Option<Arc<dyn Credential>> = match (&images.auth, &identity.api) {
        (CredentialSettings::None, Some(state)) => {
            let state = state.clone();
            Some(Arc::new(Issued::new(move || {
                let state = state.clone();
                async move { state.issue_for("admin", "admin").await }
            })))
        }
        (CredentialSettings::None, None) if settings.auth.strategy == Strategy::Noauth2 => {
            Some(Arc::new(StaticToken("admin:admin".into())))
        }
        // Identity is elsewhere: the service account that validates tokens fetches images too
        // (Nova's `[keystone_authtoken]` user).
        (CredentialSettings::None, None) => {
            let r = &settings.auth.remote;
            Some(Arc::new(KeystonePassword::new(PasswordSettings {
                auth_url: r.auth_url.clone(),
                username: r.username.clone(),
                password: r.password.clone(),
                project_name: r.project_name.clone(),
                user_domain_name: String::new(),
                project_domain_name: String::new(),
                user_domain_id: Some(r.user_domain_id.clone()),
                project_domain_id: Some(r.project_domain_id.clone()),
            })))
        }
        _ => None,
    };
    Ok(Arc::new(ImageCache::open(&images, credential)?))
}

/// Writes a `clouds.yaml` with an `admin` and a `demo` cloud when their passwords are known
/// (configured, or generated by this start's bootstrap); a file from an earlier start is left
/// alone otherwise. The file holds passwords: only its owner may read it.
fn write_clouds_yaml(
    settings: &Settings,
    identity: &Identity,
    url: &str,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(generated) = &identity.generated else {
        return Ok(None);
    };
    let admin = settings
        .auth
        .admin_password
        .clone()
        .or_else(|| generated.admin_password.clone());
    let demo = settings
        .auth
        .demo_password
        .clone()
        .or_else(|| generated.demo_password.clone());
    let (Some(admin), Some(demo)) = (admin, demo) else {
        return Ok(None);
    };
    let cloud = |user: &str, password: &str| {
        format!(
            "  {user}:\n    auth:\n      auth_url: {url}/identity/v3\n      username: {user}\n      \
             password: \"{password}\"\n      project_name: {user}\n      user_domain_name: Default\n      \
             project_domain_name: Default\n    region_name: {region}\n    interface: public\n    \
             identity_api_version: 3\n",
            region = settings.auth.region
        )
    };
    let text = format!(
        "clouds:\n{}{}",
        cloud("admin", &admin),
        cloud("demo", &demo)
    );
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = settings.clouds_yaml.clone();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    Ok(Some(path))
}
