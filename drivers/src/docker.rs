//! Containers on a Docker Engine, through its API (bollard). One node per host, of type
//! `container`, `hypervisor_type` `docker`.
//!
//! An instance is the container named `nova-<uuid>`, labelled with its uuid, project, name and
//! the agent's host (several agents may share one engine; each sees only its own). Images
//! arrive as `docker save` archives from the host's image cache and are loaded into the engine
//! when it lacks them; the container is created from the image id the archive's manifest names,
//! never from a tag, so that two images with one tag cannot be confused.
//!
//! Metadata and user data are offered as a read-only directory in the container, laid out as
//! Nova's config drive (`/mnt/config/openstack/latest/{meta_data.json,user_data}`).
//!
//! A chosen network is an engine network of the same name (`provider:physical_network`). When
//! the server's port on it has addresses (its network has subnets), the container takes the
//! port's addresses and MAC, and the engine network is made with the subnets' CIDRs and
//! gateways if the host lacks it ([`crate::docker_nics`]).

use crate::docker_nics;
use crate::{
    last_bytes, tail_lines, BootImages, Compute, DriverError, DriverInstance, RebootKind,
    MAX_CONSOLE_BYTES,
};
use async_trait::async_trait;
use base64::Engine as _;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ContainerSummaryStateEnum, HostConfig,
    NetworkConnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ImportImageOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use nova_core::ids::{InstanceUuid, NodeUuid};
use nova_core::model::{
    sanitize_hostname, Address, CpuDiagnostics, Diagnostics, DiskDiagnostics, Flavor,
    NetworkRequest, NicDiagnostics, NodeInventory, NodeType, PowerState, Resources,
};
use nova_core::rpc::{InstanceSpec, Nic};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub const LABEL_INSTANCE: &str = "org.openstack.nova.instance";
pub const LABEL_PROJECT: &str = "org.openstack.nova.project";
pub const LABEL_NAME: &str = "org.openstack.nova.name";
pub const LABEL_HOST: &str = "org.openstack.nova.host";

/// Where the config drive appears inside the container.
pub const CONFIG_DRIVE_MOUNT: &str = "/mnt/config";

/// `[agent.docker]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct DockerSettings {
    /// The engine's socket; `DOCKER_HOST` or `/var/run/docker.sock` when unset.
    pub socket: Option<String>,
    /// Nova's `initial_*_allocation_ratio` defaults.
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    /// Memory kept for the host itself (Nova's `reserved_host_memory_mb`).
    pub reserved_host_memory_mb: i64,
    /// `none` (the default, no network) or a Docker network mode such as `bridge`.
    pub network_mode: String,
    /// Host directory for the instances' config drives.
    pub state_dir: PathBuf,
    /// How long a soft reboot waits for the container to stop before killing it (Nova's
    /// libvirt `wait_soft_reboot_seconds`).
    pub soft_reboot_timeout_s: u64,
    /// Every container gets a config drive, whether its server asked for one or not (Nova's
    /// `force_config_drive`). On by default: there is no metadata service here, so the config
    /// drive is the only way a guest learns its metadata, user data and key.
    pub force_config_drive: bool,
    /// The most processes a container may have (a fork bomb stops there); a flavor's
    /// `docker:pids_limit` extra spec sets its own.
    pub pids_limit: i64,
    /// Security groups in the host's packet filter (`[agent.docker.firewall]`).
    pub firewall: crate::docker_firewall::FirewallSettings,
}

/// The capabilities a container keeps by default: Docker's default set without those a
/// server rarely needs and an attacker likes (`NET_RAW`, `MKNOD`, `AUDIT_WRITE`, `SETFCAP`,
/// `SETPCAP`, `SYS_CHROOT`). A flavor's `docker:cap_add` extra spec (comma-separated) gives
/// back any of [`DOCKER_DEFAULT_CAPS`], never more.
pub const KEPT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
];

/// Docker's own default capability set: what a flavor may give back.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// A container's confinement from its flavor: capabilities to add back and its pids limit.
fn confinement(
    flavor: &nova_core::model::Flavor,
    default_pids: i64,
) -> Result<(Vec<String>, i64), DriverError> {
    let mut caps: Vec<String> = KEPT_CAPS.iter().map(|c| (*c).to_owned()).collect();
    if let Some(list) = flavor.extra_specs.get("docker:cap_add") {
        for cap in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let cap = cap.to_ascii_uppercase();
            let cap = cap.strip_prefix("CAP_").unwrap_or(&cap).to_owned();
            if !DOCKER_DEFAULT_CAPS.contains(&cap.as_str()) {
                return Err(DriverError::Invalid(format!(
                    "the flavor's docker:cap_add names {cap}, which a container may not have \
                     (one of Docker's default capabilities only)"
                )));
            }
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    let pids = match flavor.extra_specs.get("docker:pids_limit") {
        None => default_pids,
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                DriverError::Invalid(format!(
                    "the flavor's docker:pids_limit is {v}, not a positive number"
                ))
            })?,
    };
    Ok((caps, pids))
}

impl Default for DockerSettings {
    fn default() -> Self {
        Self {
            socket: None,
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            reserved_host_memory_mb: 512,
            network_mode: "none".into(),
            state_dir: "docker-state".into(),
            soft_reboot_timeout_s: 120,
            force_config_drive: true,
            pids_limit: 1024,
            firewall: Default::default(),
        }
    }
}

pub struct DockerDriver {
    docker: Docker,
    host: String,
    settings: DockerSettings,
    /// Image ids of cached archives, by path.
    archive_ids: Mutex<HashMap<PathBuf, String>>,
    firewall: crate::docker_firewall::Firewall,
}

/// What a container create found.
#[derive(Debug, PartialEq, Eq)]
enum Created {
    New,
    Exists,
    /// The engine lacks the image.
    NoImage,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn backend(e: DockerError) -> DriverError {
    DriverError::Backend(format!("Docker Engine: {e}"))
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Whether the engine's error is its 404 for `what` ("No such image: …", "No such container:
/// …"): a 404 may also be about a network the container is to join, which is not ours to fix.
fn is_no_such(e: &DockerError, what: &str) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code: 404, message }
        if message.starts_with(&format!("No such {what}")))
}

/// The engine's 404 about a network (at create or at start): the host lacks a network of the
/// server. That is the request's problem, told to the project in the engine's words, which
/// name only that network; other engine errors are for admins.
fn missing_network(e: &DockerError) -> Option<DriverError> {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } if message.contains("network") => Some(DriverError::Invalid(format!(
            "a network of this server does not exist on this host ({message})"
        ))),
        _ => None,
    }
}

fn container_name(uuid: InstanceUuid) -> String {
    format!("nova-{uuid}")
}

impl DockerDriver {
    /// Connects to the engine, agreeing on an API version it speaks.
    pub async fn connect(host: &str, settings: DockerSettings) -> Result<Self, DriverError> {
        let docker = match &settings.socket {
            Some(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(backend)?
        .negotiate_version()
        .await
        .map_err(backend)?;
        std::fs::create_dir_all(&settings.state_dir)
            .map_err(|e| DriverError::Backend(format!("{}: {e}", settings.state_dir.display())))?;
        let firewall = crate::docker_firewall::Firewall::new(settings.firewall.clone());
        Ok(Self {
            docker,
            host: host.to_owned(),
            settings,
            archive_ids: Mutex::new(HashMap::new()),
            firewall,
        })
    }

    /// The engine client, for tests and benchmarks that compare with it.
    pub fn engine(&self) -> &Docker {
        &self.docker
    }

    fn node_uuid(&self) -> NodeUuid {
        NodeUuid(uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("docker-node:{}", self.host).as_bytes(),
        ))
    }

    fn drive_dir(&self, uuid: InstanceUuid) -> PathBuf {
        self.settings.state_dir.join(uuid.to_string())
    }

    /// The Docker networks a server's container joins, each with the name its addresses are
    /// shown under: none when the create asked for none; the host's configured network for
    /// `auto`; the chosen networks' engine networks, in the order chosen.
    fn networks_of(&self, spec: &InstanceSpec) -> Vec<(String, String)> {
        match &spec.networks {
            NetworkRequest::None => Vec::new(),
            NetworkRequest::Auto if self.settings.network_mode == "none" => Vec::new(),
            NetworkRequest::Auto => vec![(
                self.settings.network_mode.clone(),
                self.settings.network_mode.clone(),
            )],
            NetworkRequest::Chosen(chosen) => chosen
                .iter()
                .map(|n| (n.backend.clone(), n.name.clone()))
                .collect(),
        }
    }

    /// The port of each of [`Self::networks_of`]'s networks (the container takes its MAC,
    /// and its addresses when it has some), in the same order.
    fn nics_of(spec: &InstanceSpec) -> Vec<Option<Nic>> {
        spec.nics_by_choice()
            .into_iter()
            .map(|n| n.cloned())
            .collect()
    }

    /// Connects the container to the networks after its first, which it joined at create (the
    /// engine takes one network at create before API 1.44), skipping those it is on already.
    async fn connect_more(
        &self,
        uuid: InstanceUuid,
        networks: &[(String, String)],
        nics: &[Option<Nic>],
        already: &[String],
    ) -> Result<(), DriverError> {
        for (i, (backend, _)) in networks.iter().enumerate().skip(1) {
            if already.contains(backend) {
                continue;
            }
            let request = NetworkConnectRequest {
                container: container_name(uuid),
                endpoint_config: nics
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(docker_nics::endpoint),
            };
            self.docker
                .connect_network(backend, request)
                .await
                .map_err(|e| match e {
                    // A network the host lacks is the request's problem, and its name is the
                    // user's own: say so to the project (other engine errors are for admins).
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 404, ..
                    } => DriverError::Invalid(format!(
                        "the network {backend} does not exist on this host"
                    )),
                    e => DriverError::Backend(format!("connecting to network {backend}: {e}")),
                })?;
        }
        Ok(())
    }

    /// The container's power state, its addresses on its networks (named as `networks` names
    /// them) and the engine networks it is on, from one inspect.
    async fn state_and_addresses(
        &self,
        uuid: InstanceUuid,
        networks: &[(String, String)],
    ) -> Result<(PowerState, Vec<Address>, Vec<String>), DriverError> {
        let c = self
            .docker
            .inspect_container(&container_name(uuid), None)
            .await
            .map_err(|e| Self::not_found_or(uuid, e))?;
        let power = power_of_status(c.state.and_then(|s| s.status));
        let endpoints = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        let mut addresses = Vec::new();
        let mut joined = Vec::new();
        for (backend, endpoint) in endpoints {
            let network = networks
                .iter()
                .find(|(b, _)| *b == backend)
                .map_or_else(|| backend.clone(), |(_, name)| name.clone());
            let mac = endpoint.mac_address.filter(|m| !m.is_empty());
            for (addr, version) in [(endpoint.ip_address, 4), (endpoint.global_ipv6_address, 6)] {
                if let Some(addr) = addr.filter(|a| !a.is_empty()) {
                    addresses.push(Address {
                        network: network.clone(),
                        addr,
                        version,
                        mac: mac.clone(),
                    });
                }
            }
            joined.push(backend);
        }
        addresses.sort_by(|a, b| (&a.network, a.version).cmp(&(&b.network, b.version)));
        Ok((power, addresses, joined))
    }

    /// The container's state, `None` when there is no container of this instance.
    async fn inspect(&self, uuid: InstanceUuid) -> Result<Option<PowerState>, DriverError> {
        match self
            .docker
            .inspect_container(&container_name(uuid), None)
            .await
        {
            Ok(c) => {
                let status = c.state.and_then(|s| s.status);
                Ok(Some(power_of_status(status)))
            }
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// The image id the archive holds, read from its manifest once per archive (a cached
    /// image file never changes: it is named by its hash).
    async fn image_id(&self, archive: &Path) -> Result<String, DriverError> {
        if let Some(id) = lock(&self.archive_ids).get(archive) {
            return Ok(id.clone());
        }
        let path = archive.to_owned();
        let id = tokio::task::spawn_blocking(move || image_id_of_archive(&path))
            .await
            .map_err(|e| DriverError::Backend(e.to_string()))??;
        lock(&self.archive_ids).insert(archive.to_owned(), id.clone());
        Ok(id)
    }

    /// Loads the archive into the engine (`docker load`) and checks that it brought `id`.
    async fn load(&self, archive: &Path, id: &str) -> Result<(), DriverError> {
        tracing::info!(image = %id, "loading image archive into the engine");
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| DriverError::Backend(format!("{}: {e}", archive.display())))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let mut progress = self.docker.import_image_stream(
            ImportImageOptions {
                quiet: true,
                platform: None,
            },
            body,
            None,
        );
        while let Some(step) = progress.next().await {
            step.map_err(|e| {
                DriverError::Invalid(format!("the image archive does not load: {e}"))
            })?;
        }
        match self.docker.inspect_image(id).await {
            Ok(_) => Ok(()),
            Err(_) => Err(DriverError::Invalid(format!(
                "the image archive loaded, but not the image {id} its manifest names"
            ))),
        }
    }

    /// Writes the config drive: Nova's `openstack/latest` layout.
    fn write_config_drive(&self, spec: &InstanceSpec) -> Result<PathBuf, DriverError> {
        let dir = self.drive_dir(spec.uuid);
        let latest = dir.join("openstack").join("latest");
        let io = |e: std::io::Error| DriverError::Backend(format!("config drive: {e}"));
        std::fs::create_dir_all(&latest).map_err(io)?;
        let mut meta = serde_json::json!({
            "uuid": spec.uuid.to_string(),
            "name": spec.name,
            "hostname": hostname_of(spec),
            "project_id": spec.project_id,
            "availability_zone": "nova",
            "launch_index": 0,
            "meta": spec.metadata,
        });
        if let (Some(name), Some(key)) = (&spec.key_name, &spec.key_data) {
            // As Nova's metadata: `public_keys` by key name (what cloud-init installs).
            meta["public_keys"] = serde_json::json!({ name: key });
        }
        std::fs::write(latest.join("meta_data.json"), meta.to_string()).map_err(io)?;
        if let Some(data) = &spec.user_data {
            // The API took it base64-encoded; the guest reads it decoded, as from Nova's drive.
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| DriverError::Invalid(format!("user_data is not base64: {e}")))?;
            std::fs::write(latest.join("user_data"), bytes).map_err(io)?;
        }
        Ok(dir)
    }

    async fn create(&self, spec: &InstanceSpec, image_id: &str) -> Result<Created, DriverError> {
        let networks = self.networks_of(spec);
        let nics = Self::nics_of(spec);
        // The engine networks the ports' subnets need, made when the host lacks them.
        for ((backend, _), nic) in networks.iter().zip(&nics) {
            if let Some(nic) = nic {
                docker_nics::ensure_network(&self.docker, backend, nic).await?;
            }
        }
        let first_nic = nics.first().and_then(Option::as_ref);
        // A config drive when the server asked for one (`config_drive`), or always when the
        // host is configured so.
        let binds = if spec.config_drive || self.settings.force_config_drive {
            let drive = self.write_config_drive(spec)?;
            let drive = std::fs::canonicalize(&drive)
                .map_err(|e| DriverError::Backend(format!("config drive: {e}")))?;
            Some(vec![format!("{}:{CONFIG_DRIVE_MOUNT}:ro", drive.display())])
        } else {
            None
        };
        let labels = HashMap::from([
            (LABEL_INSTANCE.to_owned(), spec.uuid.to_string()),
            (LABEL_PROJECT.to_owned(), spec.project_id.clone()),
            (LABEL_NAME.to_owned(), spec.name.clone()),
            (LABEL_HOST.to_owned(), self.host.clone()),
        ]);
        let memory = spec.flavor.memory_mb * 1024 * 1024;
        let (caps, pids) = confinement(&spec.flavor, self.settings.pids_limit)?;
        let body = ContainerCreateBody {
            image: Some(image_id.to_owned()),
            hostname: Some(hostname_of(spec)),
            labels: Some(labels),
            host_config: Some(HostConfig {
                nano_cpus: Some(spec.flavor.vcpus * 1_000_000_000),
                memory: Some(memory),
                // No swap beyond the flavor's memory.
                memory_swap: Some(memory),
                network_mode: Some(
                    networks
                        .first()
                        .map_or_else(|| "none".to_owned(), |(backend, _)| backend.clone()),
                ),
                binds,
                // Confined by default: no privilege gained through setuid binaries, a bounded
                // number of processes, a reduced capability set.
                security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
                pids_limit: Some(pids),
                cap_drop: Some(vec!["ALL".to_owned()]),
                cap_add: Some(caps),
                ..Default::default()
            }),
            // The first network's endpoint: the port's addresses and MAC.
            networking_config: first_nic.zip(networks.first()).map(|(nic, (backend, _))| {
                NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        backend.clone(),
                        docker_nics::endpoint(nic),
                    )])),
                }
            }),
            ..Default::default()
        };
        let name = container_name(spec.uuid);
        let created = match first_nic {
            // An engine before API 1.44 takes the MAC only as the container's.
            Some(nic) if !docker_nics::endpoint_macs(&self.docker) => {
                let socket = docker_nics::socket_path(self.settings.socket.as_deref());
                docker_nics::create_with_mac(&self.docker, &socket, &name, &body, &nic.mac).await
            }
            _ => {
                let options = CreateContainerOptionsBuilder::default().name(&name).build();
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map(|_| ())
            }
        };
        match created {
            Ok(_) => Ok(Created::New),
            // There already (an earlier spawn of this instance): one container all the same.
            Err(e) if status_of(&e) == Some(409) => Ok(Created::Exists),
            // The engine's 404 is about the image or (on newer engines) a network; only the
            // first is ours to fix.
            Err(e) if is_no_such(&e, "image") => Ok(Created::NoImage),
            Err(e) => Err(missing_network(&e).unwrap_or_else(|| backend(e))),
        }
    }

    async fn start(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        match self
            .docker
            .start_container(&container_name(uuid), None)
            .await
        {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(Self::not_found_or(uuid, e)),
        }
    }

    /// [`Compute::resize`]'s update of the container's limits to `flavor`'s.
    async fn set_limits(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        let (_, pids) = confinement(flavor, self.settings.pids_limit)?;
        let memory = flavor.memory_mb * 1024 * 1024;
        let body = bollard::models::ContainerUpdateBody {
            nano_cpus: Some(flavor.vcpus * 1_000_000_000),
            memory: Some(memory),
            memory_swap: Some(memory),
            pids_limit: Some(pids),
            ..Default::default()
        };
        self.docker
            .update_container(&container_name(uuid), body)
            .await
            .map_err(|e| Self::not_found_or(uuid, e))
    }

    /// The engine's 404 as "no such container", unless it is about a network (the engine
    /// checks a container's network when it starts it).
    fn not_found_or(uuid: InstanceUuid, e: DockerError) -> DriverError {
        if is_no_such(&e, "container") {
            DriverError::NotFound(uuid)
        } else {
            missing_network(&e).unwrap_or_else(|| backend(e))
        }
    }
}

/// The guest's hostname: the server's, or (for a spec from before it was sent) made from the
/// name as Nova makes it.
fn hostname_of(spec: &InstanceSpec) -> String {
    spec.hostname
        .clone()
        .unwrap_or_else(|| sanitize_hostname(&spec.name))
}

#[async_trait]
impl Compute for DockerDriver {
    async fn inventory(&self) -> Result<Vec<NodeInventory>, DriverError> {
        let info = self.docker.info().await.map_err(backend)?;
        let vcpus = info.ncpu.unwrap_or(1);
        let memory_mb = info.mem_total.unwrap_or(0) / (1024 * 1024);
        let root = info
            .docker_root_dir
            .unwrap_or_else(|| "/var/lib/docker".into());
        let disk_gb = rustix::fs::statvfs(root.as_str())
            .map(|s| s.f_blocks.saturating_mul(s.f_frsize) / (1024 * 1024 * 1024))
            .unwrap_or(0);
        Ok(vec![NodeInventory {
            uuid: self.node_uuid(),
            name: self.host.clone(),
            node_type: NodeType::Container,
            hypervisor_type: "docker".into(),
            hypervisor_version: info
                .server_version
                .as_deref()
                .map_or(0, nova_core::model::version_to_int),
            total: Resources {
                vcpus,
                memory_mb: (memory_mb - self.settings.reserved_host_memory_mb).max(0),
                disk_gb: i64::try_from(disk_gb).unwrap_or(i64::MAX),
            },
            cpu_allocation_ratio: self.settings.cpu_allocation_ratio,
            ram_allocation_ratio: self.settings.ram_allocation_ratio,
            disk_allocation_ratio: self.settings.disk_allocation_ratio,
        }])
    }

    async fn spawn(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
    ) -> Result<DriverInstance, DriverError> {
        let image = images.disk.as_deref();
        let instance = |power_state, addresses| DriverInstance {
            uuid: spec.uuid,
            node: self.host.clone(),
            power_state,
            addresses,
        };
        let networks = self.networks_of(spec);
        if let Some(format) = spec
            .image
            .as_ref()
            .and_then(|i| i.container_format.as_deref())
        {
            if format != "docker" {
                return Err(DriverError::Invalid(format!(
                    "image {} has container_format {format}; a container needs docker",
                    spec.image_ref
                )));
            }
        }
        let archive = image.ok_or_else(|| {
            DriverError::Invalid("a container needs an image (a docker save archive)".into())
        })?;
        // Optimistic: create first and learn from the engine's answer whether the container
        // exists or the image must be loaded, rather than asking beforehand on every boot.
        let image_id = self.image_id(archive).await?;
        let mut created = self.create(spec, &image_id).await?;
        if created == Created::NoImage {
            self.load(archive, &image_id).await?;
            created = self.create(spec, &image_id).await?;
        }
        tracing::debug!(?created, "container created");
        match created {
            Created::New => {}
            Created::Exists => match self.state_and_addresses(spec.uuid, &networks).await? {
                // Created but never started (the agent stopped in between): finish the job.
                (PowerState::NoState, _, joined) => {
                    self.connect_more(spec.uuid, &networks, &Self::nics_of(spec), &joined)
                        .await?;
                }
                (state, addresses, _) => return Ok(instance(state, addresses)),
            },
            Created::NoImage => {
                return Err(DriverError::Backend(format!(
                    "the engine lost image {image_id} right after loading it"
                )))
            }
        }
        if created == Created::New {
            self.connect_more(spec.uuid, &networks, &Self::nics_of(spec), &[])
                .await?;
        }
        // Its ports' filters are in place before it carries traffic.
        let filters: Vec<_> = spec
            .nics
            .iter()
            .filter_map(|n| n.firewall.clone())
            .collect();
        self.firewall.add(&filters).await?;
        self.start(spec.uuid).await?;
        tracing::debug!("container started");
        if !networks.is_empty() {
            // Its addresses exist from the start on (the engine assigns them then).
            let (state, addresses, _) = self.state_and_addresses(spec.uuid, &networks).await?;
            return Ok(instance(state, addresses));
        }
        // The engine answered the start: the container is running. No inspect to confirm it
        // (a few ms on every boot, against a raw create + start); a container whose program
        // exits at once is found by the power-state sync, as Nova's finds a guest that shut
        // itself down.
        Ok(instance(PowerState::Running, Vec::new()))
    }

    async fn sync_firewall(
        &self,
        ports: &[nova_core::firewall::PortFirewall],
    ) -> Result<(), DriverError> {
        self.firewall.replace(ports).await
    }

    /// Connects the container to the engine network with the port's addresses (and MAC, on
    /// engines that set an endpoint's); one on that network already is left as it is.
    async fn attach_interface(
        &self,
        uuid: InstanceUuid,
        backend: &str,
        nic: &Nic,
    ) -> Result<(), DriverError> {
        let (_, _, joined) = self.state_and_addresses(uuid, &[]).await?;
        if joined.iter().any(|j| j == backend) {
            return Ok(());
        }
        docker_nics::ensure_network(&self.docker, backend, nic).await?;
        if let Some(fw) = &nic.firewall {
            self.firewall.add(std::slice::from_ref(fw)).await?;
        }
        let request = NetworkConnectRequest {
            container: container_name(uuid),
            endpoint_config: Some(docker_nics::endpoint(nic)),
        };
        self.docker
            .connect_network(backend, request)
            .await
            .map_err(|e| match e {
                DockerError::DockerResponseServerError {
                    status_code: 404, ..
                } => DriverError::Invalid(format!(
                    "the network {backend} does not exist on this host"
                )),
                e => DriverError::Backend(format!("connecting to network {backend}: {e}")),
            })
    }

    async fn detach_interface(
        &self,
        uuid: InstanceUuid,
        backend: &str,
        _nic: &Nic,
    ) -> Result<(), DriverError> {
        let (_, _, joined) = self.state_and_addresses(uuid, &[]).await?;
        if !joined.iter().any(|j| j == backend) {
            return Ok(());
        }
        let request = bollard::models::NetworkDisconnectRequest {
            container: container_name(uuid),
            force: Some(true),
        };
        self.docker
            .disconnect_network(backend, request)
            .await
            .map_err(|e| DriverError::Backend(format!("disconnecting from {backend}: {e}")))
    }

    async fn destroy(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(&container_name(uuid), Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(backend(e)),
        }
        self.firewall.remove_instance(&uuid.to_string()).await?;
        match std::fs::remove_dir_all(self.drive_dir(uuid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::Backend(
                format!("config drive not removed: {e}"),
            )),
            _ => Ok(()),
        }
    }

    async fn power_off(&self, uuid: InstanceUuid, timeout: Duration) -> Result<(), DriverError> {
        // SIGTERM, then SIGKILL once `timeout` has passed: the engine's own stop.
        let t = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(t).build();
        match self
            .docker
            .stop_container(&container_name(uuid), Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(Self::not_found_or(uuid, e)),
        }
    }

    async fn power_on(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.start(uuid).await
    }

    async fn reboot(&self, uuid: InstanceUuid, kind: RebootKind) -> Result<(), DriverError> {
        let t = match kind {
            RebootKind::Soft => i32::try_from(self.settings.soft_reboot_timeout_s).unwrap_or(120),
            RebootKind::Hard => 0,
        };
        // A paused container is thawed first: the engine's stop signal would wait in its
        // frozen processes (Nova hard-reboots a paused server).
        self.unpause(uuid).await?;
        let options = RestartContainerOptionsBuilder::default().t(t).build();
        self.docker
            .restart_container(&container_name(uuid), Some(options))
            .await
            .map_err(|e| Self::not_found_or(uuid, e))
    }

    /// The engine's pause: the container's processes frozen (the cgroup freezer), its memory
    /// kept.
    /// The engine's pause; a container paused already is left so. The engine refuses that
    /// (with a 409 or a 500, by version), so its state is read when it refuses, not before
    /// every pause (a call more each).
    async fn pause(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        match self.docker.pause_container(&container_name(uuid)).await {
            Err(e)
                if !is_no_such(&e, "container")
                    && self.power_state(uuid).await? == PowerState::Paused =>
            {
                Ok(())
            }
            done => done.map_err(|e| Self::not_found_or(uuid, e)),
        }
    }

    /// The engine's unpause; a container that is not paused is left as it is (read, as for
    /// `pause`, when the engine refuses).
    async fn unpause(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        match self.docker.unpause_container(&container_name(uuid)).await {
            Err(e)
                if !is_no_such(&e, "container")
                    && self.power_state(uuid).await? != PowerState::Paused =>
            {
                Ok(())
            }
            done => done.map_err(|e| Self::not_found_or(uuid, e)),
        }
    }

    /// The engine's update of the container's limits: the flavor's vCPUs (as CPU time) and
    /// memory (with no swap beyond it), and its `docker:pids_limit`, in place, whatever the
    /// container's state. Nothing needs keeping for a revert: the old flavor's limits are
    /// set again the same way. (Capabilities are the container's from its creation: the
    /// engine cannot change them; a container has no disk of the flavor's size.)
    async fn resize(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        self.set_limits(uuid, flavor).await
    }

    async fn revert_resize(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        self.set_limits(uuid, flavor).await
    }

    /// The engine's commit of the container's filesystem (paused while it is read, the
    /// engine's default), saved as a `docker save` archive of that image alone, which this
    /// driver loads as any image; the committed image is then removed from the engine.
    async fn snapshot(&self, uuid: InstanceUuid, into: &Path) -> Result<(), DriverError> {
        let repo = format!("nova-snapshot-{uuid}");
        let options = bollard::query_parameters::CommitContainerOptionsBuilder::default()
            .container(&container_name(uuid))
            .repo(&repo)
            .tag("latest")
            .pause(true)
            .build();
        let committed = self
            .docker
            .commit_container(options, bollard::models::ContainerConfig::default())
            .await
            .map_err(|e| Self::not_found_or(uuid, e))?;
        let id = committed.id;
        use tokio::io::AsyncWriteExt as _;
        let saved = async {
            let mut file = tokio::fs::File::create(into)
                .await
                .map_err(|e| DriverError::Backend(format!("snapshot file: {e}")))?;
            let mut stream = self.docker.export_image(&id);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| DriverError::Backend(format!("docker save: {e}")))?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| DriverError::Backend(format!("snapshot file: {e}")))?;
            }
            file.flush()
                .await
                .map_err(|e| DriverError::Backend(format!("snapshot file: {e}")))
        }
        .await;
        // The archive holds it: the engine need not (a server booted from the snapshot loads
        // it again).
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
            .noprune(false)
            .build();
        if let Err(e) = self
            .docker
            .remove_image(&format!("{repo}:latest"), Some(options), None)
            .await
        {
            tracing::warn!(instance = %uuid, error = %e, "committed snapshot image not removed");
        }
        saved
    }

    async fn power_state(&self, uuid: InstanceUuid) -> Result<PowerState, DriverError> {
        self.inspect(uuid).await?.ok_or(DriverError::NotFound(uuid))
    }

    async fn list_instances(&self) -> Result<Vec<DriverInstance>, DriverError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_HOST}={}", self.host)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(backend)?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let uuid = c.labels.as_ref()?.get(LABEL_INSTANCE)?.parse().ok()?;
                Some(DriverInstance {
                    uuid,
                    node: self.host.clone(),
                    power_state: power_of_summary(c.state),
                    // The sync needs states only.
                    addresses: Vec::new(),
                })
            })
            .collect())
    }

    async fn console_output(
        &self,
        uuid: InstanceUuid,
        lines: Option<usize>,
    ) -> Result<String, DriverError> {
        let tail = lines.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let mut logs = self.docker.logs(&container_name(uuid), Some(options));
        // Only the end is kept, so a long log never sits whole in memory.
        let mut end: Vec<u8> = Vec::new();
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.map_err(|e| Self::not_found_or(uuid, e))?;
            end.extend_from_slice(&chunk.into_bytes());
            if end.len() > 2 * MAX_CONSOLE_BYTES {
                end.drain(..end.len() - MAX_CONSOLE_BYTES);
            }
        }
        let text = String::from_utf8_lossy(last_bytes(&end, MAX_CONSOLE_BYTES));
        // The engine's tail counts lines of both streams; cut again for an exact count.
        Ok(tail_lines(&text, lines))
    }

    /// From the engine's inspect (state, start time, limits) and one stats sample (CPU time,
    /// memory, each network's and block device's counters). A container engine is not one of
    /// Nova's hypervisor drivers, so `driver` is unset.
    async fn diagnostics(&self, uuid: InstanceUuid) -> Result<Diagnostics, DriverError> {
        let name = container_name(uuid);
        let c = self
            .docker
            .inspect_container(&name, None)
            .await
            .map_err(|e| Self::not_found_or(uuid, e))?;
        let state = c.state.unwrap_or_default();
        let power = power_of_status(state.status);
        let uptime_s = state
            .started_at
            .filter(|_| power == PowerState::Running)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
        let host = c.host_config.unwrap_or_default();
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = self
            .docker
            .stats(&name, Some(options))
            .next()
            .await
            .transpose()
            .map_err(|e| Self::not_found_or(uuid, e))?
            .unwrap_or_default();
        let int = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
        let cpu = stats.cpu_stats.unwrap_or_default();
        let online = cpu.online_cpus.map_or(0, i64::from);
        // The container may use every CPU of the host unless limited (nano_cpus).
        let limit_cpus = host
            .nano_cpus
            .filter(|n| *n > 0)
            .map(|n| (n + 999_999_999) / 1_000_000_000);
        let num_cpus = limit_cpus.unwrap_or(online).max(1);
        let usage = cpu.cpu_usage.unwrap_or_default();
        let per_cpu = usage.percpu_usage.unwrap_or_default();
        let cpus = if per_cpu.is_empty() {
            // cgroup v2 reports only the total.
            vec![CpuDiagnostics {
                id: Some(0),
                time_ns: int(usage.total_usage),
                utilisation: None,
            }]
        } else {
            per_cpu
                .iter()
                .enumerate()
                .map(|(id, t)| CpuDiagnostics {
                    id: i64::try_from(id).ok(),
                    time_ns: int(Some(*t)),
                    utilisation: None,
                })
                .collect()
        };
        let memory = stats.memory_stats.unwrap_or_default();
        let mb = |bytes: Option<u64>| int(bytes.map(|b| b / (1024 * 1024)));
        let memory_max_mb = host
            .memory
            .filter(|m| *m > 0)
            .map(|m| m / (1024 * 1024))
            .or_else(|| mb(memory.limit));
        let mut nics: Vec<NicDiagnostics> = stats
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, n)| NicDiagnostics {
                name,
                mac_address: None,
                rx_octets: int(n.rx_bytes),
                rx_errors: int(n.rx_errors),
                rx_drop: int(n.rx_dropped),
                rx_packets: int(n.rx_packets),
                tx_octets: int(n.tx_bytes),
                tx_errors: int(n.tx_errors),
                tx_drop: int(n.tx_dropped),
                tx_packets: int(n.tx_packets),
            })
            .collect();
        nics.sort_by(|a, b| a.name.cmp(&b.name));
        // The stats name interfaces, the inspect names networks: a MAC is only certain to
        // be an interface's when there is one of each.
        let endpoints: Vec<_> = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_values()
            .collect();
        if let ([nic], [endpoint]) = (nics.as_mut_slice(), endpoints.as_slice()) {
            nic.mac_address = endpoint.mac_address.clone().filter(|m| !m.is_empty());
        }
        let blkio = stats.blkio_stats.unwrap_or_default();
        let sum = |entries: &Option<Vec<bollard::models::ContainerBlkioStatEntry>>, op: &str| {
            entries.as_ref().map(|es| {
                es.iter()
                    .filter(|e| e.op.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(op)))
                    .filter_map(|e| int(e.value))
                    .sum::<i64>()
            })
        };
        let disks = vec![DiskDiagnostics {
            name: "rootfs".into(),
            read_bytes: sum(&blkio.io_service_bytes_recursive, "read"),
            read_requests: sum(&blkio.io_serviced_recursive, "read"),
            write_bytes: sum(&blkio.io_service_bytes_recursive, "write"),
            write_requests: sum(&blkio.io_serviced_recursive, "write"),
            errors_count: None,
        }];
        Ok(Diagnostics {
            driver: None,
            power_state: Some(power),
            hypervisor: Some("docker".into()),
            hypervisor_os: Some("linux".into()),
            uptime_s,
            memory_max_mb,
            memory_used_mb: mb(memory.usage),
            cpus: cpus
                .into_iter()
                .take(usize::try_from(num_cpus).unwrap_or(1).max(1))
                .collect(),
            nics,
            disks,
        })
    }
}

/// Nova's power states for the engine's container states.
fn power_of_status(status: Option<ContainerStateStatusEnum>) -> PowerState {
    use ContainerStateStatusEnum as S;
    match status {
        Some(S::RUNNING | S::RESTARTING) => PowerState::Running,
        Some(S::PAUSED) => PowerState::Paused,
        Some(S::EXITED | S::REMOVING | S::STOPPING) => PowerState::Shutdown,
        Some(S::DEAD) => PowerState::Crashed,
        // Created and never started.
        Some(S::CREATED) | Some(S::EMPTY) | None => PowerState::NoState,
    }
}

fn power_of_summary(state: Option<ContainerSummaryStateEnum>) -> PowerState {
    use ContainerSummaryStateEnum as S;
    match state {
        Some(S::RUNNING | S::RESTARTING) => PowerState::Running,
        Some(S::PAUSED) => PowerState::Paused,
        Some(S::EXITED | S::REMOVING | S::STOPPING) => PowerState::Shutdown,
        Some(S::DEAD) => PowerState::Crashed,
        Some(S::CREATED) | Some(S::EMPTY) | None => PowerState::NoState,
    }
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The part of an image config that names its layers' content (`docker inspect`'s
/// `RootFS.Layers`): the sha256 of each uncompressed layer tar.
#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Recorded for a zstd-compressed file in place of its digest.
const ZSTD: &str = "zstd";

/// The largest image config read (they are a few KB).
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// The image id (`sha256:<hex>`) that a `docker save` archive holds, from its `manifest.json`,
/// once the archive is checked to hold the whole image: the config blob the manifest names
/// (whose digest is the image id, in both the classic layout, `<hex>.json`, and the OCI one,
/// `blobs/sha256/<hex>`) and every layer the config lists, each matching its digest.
///
/// Checked here because the engine does not: `docker load` of an archive that holds only a
/// manifest and the config of an image the engine already has (another project's) succeeds
/// without reading a layer, and would run that image.
pub fn image_id_of_archive(path: &Path) -> Result<String, DriverError> {
    let corrupt =
        |why: String| DriverError::Invalid(format!("the image archive is corrupt: {why}"));
    let manifest = read_manifest(path).map_err(corrupt)?;
    let name = manifest.config.rsplit('/').next().unwrap_or_default();
    let hex = name
        .strip_suffix(".json")
        .unwrap_or(name)
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(corrupt(format!("unexpected config {}", manifest.config)));
    }
    check_contents(path, &manifest, &hex).map_err(corrupt)?;
    Ok(format!("sha256:{hex}"))
}

fn read_manifest(path: &Path) -> Result<ManifestEntry, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries_with_seek().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let is_manifest = entry
            .path()
            .map(|p| p.as_ref() == Path::new("manifest.json"))
            .unwrap_or(false);
        if !is_manifest {
            continue;
        }
        let manifest: Vec<ManifestEntry> =
            serde_json::from_reader(entry).map_err(|e| format!("manifest.json: {e}"))?;
        let mut manifest = manifest.into_iter();
        return match (manifest.next(), manifest.next()) {
            (Some(only), None) => Ok(only),
            _ => Err("manifest.json must list exactly one image".into()),
        };
    }
    Err("no manifest.json (not a docker save archive)".into())
}

/// Whether the archive holds the config blob `config`, whose sha256 is `hex`, and every layer
/// of the manifest, whose sha256s are the config's `rootfs.diff_ids` in order; else why not.
fn check_contents(path: &Path, manifest: &ManifestEntry, hex: &str) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::io::Read;
    // Each wanted file's sha256, and the config's bytes; a layer may be a symlink to another
    // entry (`docker save` links a layer that an image holds twice).
    let mut digests: HashMap<String, String> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut config_bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries_with_seek().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type().is_symlink() {
            if let Ok(Some(target)) = entry.link_name() {
                let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                let target = normalise(&base.join(target));
                links.insert(name, target);
            }
            continue;
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let mut hasher = Sha256::new();
        if name == manifest.config {
            config_bytes.clear();
            (&mut entry)
                .take(MAX_CONFIG_BYTES)
                .read_to_end(&mut config_bytes)
                .map_err(|e| e.to_string())?;
            hasher.update(&config_bytes);
        } else {
            // Every file: a layer, or one that a layer's symlink (before or after it) names.
            // The layers are nearly all of an archive's bytes anyway. A layer's diff id is the
            // digest of its tar uncompressed: `docker save` with the containerd image store
            // writes layers gzip-compressed, as they were pulled.
            let mut magic = Vec::with_capacity(4);
            (&mut entry)
                .take(4)
                .read_to_end(&mut magic)
                .map_err(|e| e.to_string())?;
            let whole = magic.as_slice().chain(&mut entry);
            let copied = match magic.as_slice() {
                [0x1f, 0x8b, ..] => {
                    std::io::copy(&mut flate2::read::MultiGzDecoder::new(whole), &mut hasher)
                }
                [0x28, 0xb5, 0x2f, 0xfd] => {
                    digests.insert(name, ZSTD.to_owned());
                    continue;
                }
                _ => std::io::copy(&mut { whole }, &mut hasher),
            };
            copied.map_err(|e| format!("{name}: {e}"))?;
        }
        digests.insert(name, format!("{:x}", hasher.finalize()));
    }
    let digest_of = |name: &str| -> Option<&String> {
        let mut name = name.to_owned();
        // A bounded walk along symlinks (a loop is corrupt).
        for _ in 0..8 {
            if let Some(d) = digests.get(&name) {
                return Some(d);
            }
            name = links.get(&name)?.clone();
        }
        None
    };
    match digest_of(&manifest.config) {
        None => {
            return Err(format!(
                "the manifest names {}, which the archive does not contain",
                manifest.config
            ))
        }
        Some(got) if got != hex => {
            return Err(format!("{} does not match its digest", manifest.config))
        }
        Some(_) => {}
    }
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| format!("{}: {e}", manifest.config))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(format!(
            "the manifest lists {} layers and the image config {}",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        ));
    }
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let got = digest_of(layer).ok_or_else(|| {
            format!("the manifest names layer {layer}, which the archive does not contain")
        })?;
        if got == ZSTD {
            return Err(format!(
                "layer {layer} is zstd-compressed, which this driver cannot check; save the \
                 image with uncompressed or gzip layers"
            ));
        }
        if diff_id.strip_prefix("sha256:") != Some(got.as_str()) {
            return Err(format!(
                "layer {layer} does not match its digest in the image config"
            ));
        }
    }
    Ok(())
}

/// `a/../b/./c` as `b/c`: a symlink's target inside the archive.
fn normalise(path: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p),
            _ => {}
        }
    }
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `docker save`-like archive: the config listing `diff_ids`, the manifest listing
    /// `layers`, and the `files` (a `None` body is a symlink to the named target).
    fn archive(
        diff_ids: &[String],
        layers: &[&str],
        files: &[(&str, Result<&[u8], &str>)],
    ) -> (tempfile::NamedTempFile, String) {
        use sha2::{Digest, Sha256};
        let config = serde_json::to_vec(&serde_json::json!({"rootfs": {"type": "layers",
            "diff_ids": diff_ids}}))
        .unwrap();
        let hex = format!("{:x}", Sha256::digest(&config));
        let config_name = format!("{hex}.json");
        let manifest = serde_json::to_vec(&serde_json::json!([{"Config": config_name,
            "RepoTags": null, "Layers": layers}]))
        .unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, body: Result<&[u8], &str>| {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            match body {
                Ok(bytes) => {
                    header.set_size(bytes.len() as u64);
                    header.set_cksum();
                    tar.append_data(&mut header, path, bytes).unwrap();
                }
                Err(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target).unwrap();
                }
            }
        };
        for (path, body) in files {
            add(path, *body);
        }
        add(&config_name, Ok(&config));
        add("manifest.json", Ok(&manifest));
        let bytes = tar.into_inner().unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        (file, format!("sha256:{hex}"))
    }

    fn diff_id(bytes: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        format!("sha256:{:x}", Sha256::digest(bytes))
    }

    #[test]
    fn an_archive_must_hold_every_layer_its_config_names() {
        let (one, two) = (&b"layer one"[..], &b"layer two"[..]);
        // Whole, with a layer held twice through a symlink (as `docker save` writes it).
        let (file, id) = archive(
            &[diff_id(one), diff_id(two), diff_id(one)],
            &["a/layer.tar", "b/layer.tar", "c/layer.tar"],
            &[
                ("a/layer.tar", Ok(one)),
                ("b/layer.tar", Ok(two)),
                ("c/layer.tar", Err("../a/layer.tar")),
            ],
        );
        assert_eq!(image_id_of_archive(file.path()).unwrap(), id);
        // A gzip-compressed layer (the containerd image store saves layers as pulled).
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, two).unwrap();
        let gz = gz.finish().unwrap();
        let (file, id) = archive(
            &[diff_id(one), diff_id(two)],
            &["blobs/sha256/a", "blobs/sha256/b"],
            &[("blobs/sha256/a", Ok(one)), ("blobs/sha256/b", Ok(&gz))],
        );
        assert_eq!(image_id_of_archive(file.path()).unwrap(), id);
        // A layer missing, one of other content, one too few in the manifest.
        let (file, _) = archive(
            &[diff_id(one), diff_id(two)],
            &["a/layer.tar", "b/layer.tar"],
            &[("a/layer.tar", Ok(one))],
        );
        let err = image_id_of_archive(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("b/layer.tar, which the archive does not contain"),
            "{err}"
        );
        let (file, _) = archive(
            &[diff_id(one)],
            &["a/layer.tar"],
            &[("a/layer.tar", Ok(two))],
        );
        let err = image_id_of_archive(file.path()).unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
        let (file, _) = archive(
            &[diff_id(one), diff_id(two)],
            &["a/layer.tar"],
            &[("a/layer.tar", Ok(one)), ("b/layer.tar", Ok(two))],
        );
        let err = image_id_of_archive(file.path()).unwrap_err().to_string();
        assert!(err.contains("lists 1 layers"), "{err}");
    }

    #[test]
    fn an_archive_without_a_manifest_is_corrupt() {
        let dir = std::env::temp_dir().join(format!("nova-docker-test-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, b"this is not a tar archive at all, just text").unwrap();
        let err = image_id_of_archive(&dir).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
