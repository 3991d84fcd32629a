//! Virtual machines on libvirt/QEMU, through libvirt's C API (the `virt` crate). One node per
//! host, of type `vm`, `hypervisor_type` `QEMU`.
//!
//! An instance is the persistent domain named `instance-<uuid>` with the instance's uuid as
//! its own, and its files in `<instances_path>/<uuid>/`, as Nova lays them out:
//! - `disk`: a qcow2 overlay on the cached image (the cache's file is only ever read);
//! - `kernel`, `ramdisk`: copies of the images the server's image names in `kernel_id` and
//!   `ramdisk_id`, booted directly with `os_command_line`;
//! - `disk.config`: the config drive (ISO 9660, label `config-2`);
//! - `console.log`: the serial console;
//! - while the instance is rescued: `disk.rescue` (an overlay of the rescue image; `kernel.rescue`
//!   and `ramdisk.rescue` when it names them), and `unrescue.xml`, the instance's own domain
//!   definition, given back by the unrescue.
//!
//! An agent owns the domains whose directory is in its `instances_path`: several agents (a
//! test's) can share one libvirtd without seeing each other's guests, and an agent that
//! restarts finds its running domains again by their uuid.
//!
//! Every libvirt call blocks, so each runs on tokio's blocking threads.

use crate::{
    last_bytes, tail_lines, BootImages, Compute, DriverError, DriverInstance, RebootKind,
    MAX_CONSOLE_BYTES,
};
use async_trait::async_trait;
use base64::Engine as _;
use nova_core::ids::{InstanceUuid, NodeUuid};
use nova_core::model::{
    sanitize_hostname, Address, CpuDiagnostics, Diagnostics, Flavor, NetworkRequest, NodeInventory,
    NodeType, PowerState, Resources,
};
use nova_core::rpc::{InstanceSpec, Nic};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::sys;

/// `[agent.libvirt]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct LibvirtSettings {
    /// libvirt's connection URI (Nova's `connection_uri`); `test:///default` is libvirt's
    /// in-memory test driver, which boots nothing.
    pub uri: String,
    /// Where each instance's directory is (Nova's `instances_path`). QEMU runs as its own
    /// user, which must be able to reach it: not under a home directory.
    pub instances_path: PathBuf,
    /// Nova's `initial_*_allocation_ratio` defaults.
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    /// Memory kept for the host itself (Nova's `reserved_host_memory_mb`).
    pub reserved_host_memory_mb: i64,
    /// The libvirt network a server with `networks: auto` joins; `none` for no NIC.
    pub network: String,
    /// How long a spawn waits for the guest's first DHCP lease, so that the server's
    /// addresses are known when it turns ACTIVE. 0: the addresses are whatever is leased when
    /// the domain has started (often none yet).
    pub lease_wait_s: u64,
    /// How long a soft reboot waits for the guest to shut down before it resets it (Nova's
    /// `wait_soft_reboot_seconds`).
    pub soft_reboot_timeout_s: u64,
    /// Every guest gets a config drive (Nova's `force_config_drive`). Without it, a guest gets
    /// one when its server asked for one or has user data, metadata or a key.
    pub force_config_drive: bool,
    /// The kernel command line of a guest whose image names a kernel but no
    /// `os_command_line` (Nova's default).
    pub default_command_line: String,
}

impl Default for LibvirtSettings {
    fn default() -> Self {
        Self {
            uri: "qemu:///system".into(),
            instances_path: "/var/lib/nova/instances".into(),
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            reserved_host_memory_mb: 512,
            network: "default".into(),
            lease_wait_s: 0,
            soft_reboot_timeout_s: 120,
            force_config_drive: false,
            default_command_line: "root=/dev/vda console=tty0 console=ttyS0".into(),
        }
    }
}

/// Nova's namespace for the metadata it writes into a domain.
pub const NOVA_XMLNS: &str = "http://openstack.org/xmlns/libvirt/nova/1.1";

pub struct LibvirtDriver {
    host: String,
    settings: LibvirtSettings,
    /// `kvm`, `qemu` or `test`: detected once at connect.
    virt_type: String,
    connection: Mutex<Option<Arc<Connect>>>,
    /// The instances libvirt's lifecycle events name (see [`watch_events`]).
    events: tokio::sync::broadcast::Sender<InstanceUuid>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// A health probe is under way.
    probing: Arc<std::sync::atomic::AtomicBool>,
    turns: Mutex<std::collections::HashMap<InstanceUuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Cached images already checked (see [`LibvirtDriver::checked_base`]).
    checked: Mutex<std::collections::HashMap<CheckedKey, CheckedBase>>,
    /// The NIC filters a sync defined, by name, with the XML they were defined with: an
    /// unchanged one is not defined again (each definition makes libvirt rebuild the rules of
    /// the guests using it), and one no longer listed is removed.
    filters: Arc<Mutex<std::collections::HashMap<String, String>>>,
}

/// A cached image file as checked: its path, declared format, size and inode (a new file
/// arrives in the cache by a rename, so it is a new inode).
type CheckedKey = (PathBuf, String, u64, (u64, u64));

/// Clears the probe flag when the probe's thread is done, however it ends.
struct ProbeDone(Arc<std::sync::atomic::AtomicBool>);

impl Drop for ProbeDone {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for LibvirtDriver {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn backend(what: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Backend(format!("libvirt: {what}: {e}"))
}

fn domain_name(uuid: InstanceUuid) -> String {
    format!("instance-{uuid}")
}

/// Whether KVM can run guests here: `/dev/kvm` opens for reading and writing and the CPU has
/// hardware virtualisation (what Debian's `kvm-ok` checks). libvirt's capabilities list `kvm`
/// whenever `/dev/kvm` exists, which is not enough: a nested machine may have the device and
/// no VT-x, and a `kvm` guest then never runs.
pub fn kvm_works() -> bool {
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    });
    device && cpu
}

impl LibvirtDriver {
    /// Connects to libvirt and checks that it answers.
    pub async fn connect(host: &str, mut settings: LibvirtSettings) -> Result<Self, DriverError> {
        std::fs::create_dir_all(&settings.instances_path)
            .map_err(|e| backend("instances_path", e))?;
        // The domain names its files by absolute paths.
        settings.instances_path = std::fs::canonicalize(&settings.instances_path)
            .map_err(|e| backend("instances_path", e))?;
        // libvirt prints every error to stderr by default; the driver reports its own.
        virt::error::clear_error_callback();
        let uri = settings.uri.clone();
        let connection =
            blocking(move || Connect::open(Some(&uri)).map_err(|e| backend("cannot connect", e)))
                .await?;
        let virt_type = if settings.uri.starts_with("test:") {
            "test".to_owned()
        } else if kvm_works() {
            "kvm".to_owned()
        } else {
            "qemu".to_owned()
        };
        tracing::info!(uri = %settings.uri, %virt_type, "libvirt connected");
        let (events, _) = tokio::sync::broadcast::channel(1024);
        // The test driver's state is per process: a `virsh` beside it would see another.
        let watcher = (virt_type != "test").then(|| {
            tokio::spawn(watch_events(
                settings.uri.clone(),
                settings.instances_path.clone(),
                events.clone(),
            ))
        });
        Ok(Self {
            host: host.to_owned(),
            settings,
            virt_type,
            connection: Mutex::new(Some(Arc::new(connection))),
            events,
            watcher,
            probing: Arc::default(),
            turns: Mutex::default(),
            checked: Mutex::default(),
            filters: Arc::default(),
        })
    }

    /// The domain type guests get: `kvm`, `qemu` (TCG) or `test`.
    pub fn virt_type(&self) -> &str {
        &self.virt_type
    }

    fn node_uuid(&self) -> NodeUuid {
        NodeUuid(uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("libvirt-node:{}", self.host).as_bytes(),
        ))
    }

    /// The instance's own directory.
    pub fn instance_dir(&self, uuid: InstanceUuid) -> PathBuf {
        self.settings.instances_path.join(uuid.to_string())
    }

    /// The open connection, opened again when libvirtd restarted since.
    async fn conn(&self) -> Result<Arc<Connect>, DriverError> {
        let current = lock(&self.connection).clone();
        if let Some(c) = current {
            let probe = c.clone();
            if blocking(move || Ok(probe.is_alive().unwrap_or(false))).await? {
                return Ok(c);
            }
        }
        let uri = self.settings.uri.clone();
        let fresh = Arc::new(
            blocking(move || Connect::open(Some(&uri)).map_err(|e| backend("cannot connect", e)))
                .await?,
        );
        *lock(&self.connection) = Some(fresh.clone());
        Ok(fresh)
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connect) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let conn = self.conn().await?;
        blocking(move || f(&conn)).await
    }

    /// The instance's domain, `None` when there is none; runs `f` on it.
    async fn with_domain<T: Send + 'static>(
        &self,
        uuid: InstanceUuid,
        f: impl FnOnce(&Domain) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<Option<T>, DriverError> {
        self.with_conn(move |c| match lookup(c, uuid)? {
            Some(d) => f(&d).map(Some),
            None => Ok(None),
        })
        .await
    }

    /// The libvirt networks a server's NICs join, each with the name its addresses are shown
    /// under: none when the create asked for none; the configured network for `auto`; each
    /// chosen network's `provider:physical_network`, which names a libvirt network.
    fn networks_of(&self, spec: &InstanceSpec) -> Vec<(String, String)> {
        match &spec.networks {
            NetworkRequest::None => Vec::new(),
            NetworkRequest::Auto if self.settings.network == "none" => Vec::new(),
            NetworkRequest::Auto => {
                vec![(self.settings.network.clone(), self.settings.network.clone())]
            }
            NetworkRequest::Chosen(chosen) => chosen
                .iter()
                .map(|n| (n.backend.clone(), n.name.clone()))
                .collect(),
        }
    }

    /// Whether the guest gets a config drive.
    fn wants_config_drive(&self, spec: &InstanceSpec) -> bool {
        self.settings.force_config_drive
            || spec.config_drive
            || spec.user_data.is_some()
            || !spec.metadata.is_empty()
            || spec.key_data.is_some()
    }

    /// Makes the instance's directory and files: the overlay, the kernel and ramdisk, the
    /// config drive. Returns the domain XML.
    async fn prepare(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
    ) -> Result<String, DriverError> {
        let files = self.prepare_files(spec, images, Use::Own).await?;
        Ok(self.xml_of(spec, &files))
    }

    /// The domain XML of `spec` with `files`.
    fn xml_of(&self, spec: &InstanceSpec, files: &GuestFiles) -> String {
        let networks = self.networks_of(spec);
        domain_xml(
            spec,
            &self.virt_type,
            files,
            &networks,
            &self.settings.default_command_line,
        )
    }

    /// The files of the guest `spec` boots, in the instance's directory: its disk (an overlay
    /// of `images`' disk), kernel and ramdisk, and its config drive. A rescue's are beside
    /// the instance's own (`disk.rescue`, …), its own disk attached second, its config drive
    /// the instance's.
    async fn prepare_files(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
        what: Use,
    ) -> Result<GuestFiles, DriverError> {
        let base = images.disk.as_deref().ok_or_else(|| {
            DriverError::Invalid(format!(
                "Build of instance {} aborted: a virtual machine boots from an image (booting \
                 from a volume is not supported).",
                spec.uuid
            ))
        })?;
        let dir = self.instance_dir(spec.uuid);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| backend("instance directory", e))?;
        let format = spec
            .image
            .as_ref()
            .and_then(|i| i.disk_format.clone())
            .unwrap_or_else(|| "raw".into());
        // The overlay names its base by an absolute path (a relative one would be read from
        // the overlay's own directory).
        let base = tokio::fs::canonicalize(base)
            .await
            .map_err(|e| backend("cached image", e))?;
        let disk = dir.join(what.file("disk"));
        let overlay = async {
            let checked = self.checked_base(spec, &base, &format).await?;
            create_overlay(spec, &base, checked, &disk).await
        };
        // Copies, as Nova makes them: libvirt relabels what a guest uses, and the cache's
        // files are shared.
        let copy = |from: Option<PathBuf>, name: &'static str| {
            let to = dir.join(what.file(name));
            async move {
                match from {
                    Some(from) => tokio::fs::copy(&from, &to)
                        .await
                        .map(|_| Some(to))
                        .map_err(|e| backend(name, e)),
                    None => Ok(None),
                }
            }
        };
        let drive = async {
            match what {
                Use::Own if self.wants_config_drive(spec) => {
                    write_config_drive(spec, &dir).await.map(Some)
                }
                Use::Own => Ok(None),
                Use::Rescue => Ok(Some(config_drive_path(&dir)).filter(|p| p.exists())),
            }
        };
        // Each is its own file: made side by side, and all finished (none cancelled half
        // way while writing into the directory) before a failure is acted on.
        let (overlay, kernel, ramdisk, config_drive) = tokio::join!(
            overlay,
            copy(images.kernel.clone(), "kernel"),
            copy(images.ramdisk.clone(), "ramdisk"),
            drive
        );
        overlay?;
        let (kernel, ramdisk, config_drive) = (kernel?, ramdisk?, config_drive?);
        Ok(GuestFiles {
            disk,
            kernel,
            ramdisk,
            config_drive,
            console_log: dir.join("console.log"),
            rescued_disk: (what == Use::Rescue).then(|| dir.join("disk")),
            ..GuestFiles::default()
        })
    }

    /// [`check_base`], once per cached file: the cache's files are named by their content's
    /// hash and never change, so a base checked once stays checked (while its size and
    /// modification time are the same).
    async fn checked_base(
        &self,
        spec: &InstanceSpec,
        base: &Path,
        format: &str,
    ) -> Result<CheckedBase, DriverError> {
        let meta = tokio::fs::metadata(base)
            .await
            .map_err(|e| backend("cached image", e))?;
        // Not the modification time: the image cache touches a file at every use.
        use std::os::unix::fs::MetadataExt;
        let key = (
            base.to_owned(),
            format.to_owned(),
            meta.len(),
            (meta.dev(), meta.ino()),
        );
        if let Some(checked) = lock(&self.checked).get(&key) {
            return Ok(*checked);
        }
        let checked = check_base(spec, base, format).await?;
        let mut known = lock(&self.checked);
        if known.len() >= 1024 {
            known.clear();
        }
        known.insert(key, checked);
        Ok(checked)
    }

    /// Removes the instance's directory (idempotent).
    async fn remove_files(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        match tokio::fs::remove_dir_all(self.instance_dir(uuid)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(backend("instance directory not removed", e))
            }
            _ => Ok(()),
        }
    }

    /// Removes a rescue's files, and its saved definition of the instance's own guest when
    /// `ended` (last: while it is there, the rescue can be ended again). What cannot be
    /// removed is told and left (a later rescue makes its files afresh).
    async fn remove_rescue_files(&self, uuid: InstanceUuid, ended: bool) {
        let dir = self.instance_dir(uuid);
        let saved = ended.then_some(UNRESCUE_XML);
        for name in RESCUE_FILES.iter().copied().chain(saved) {
            if let Err(e) = remove_if_there(&dir.join(name)).await {
                tracing::warn!(instance = %uuid, error = %e, file = name, "rescue file not removed");
            }
        }
    }

    /// Undefines and stops the domain if it exists, and removes its NICs' DHCP entries.
    async fn remove_domain(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let nics = self
            .with_domain(uuid, |d| Ok(d.get_xml_desc(0).map(|x| nics_of_xml(&x))))
            .await?
            .and_then(Result::ok)
            .unwrap_or_default();
        self.remove_domain_only(uuid).await?;
        if !nics.is_empty() {
            self.with_conn(move |c| {
                crate::libvirt_nics::remove_dhcp_hosts(c, &nics);
                // The NICs' filters, now that no guest references them.
                for (mac, _) in &nics {
                    undefine_filter(
                        c,
                        &crate::libvirt_firewall::filter_name(&domain_name(uuid), mac),
                    );
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    async fn remove_domain_only(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        self.with_domain(uuid, |d| {
            if d.is_active().unwrap_or(false) {
                if let Err(e) = d.destroy() {
                    if e.code() != ErrorNumber::OperationInvalid {
                        return Err(backend("destroy", e));
                    }
                }
            }
            match d.undefine_flags(
                sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_NVRAM,
            ) {
                Ok(()) => Ok(()),
                Err(e) if e.code() == ErrorNumber::NoDomain => Ok(()),
                // The test driver knows no NVRAM flag: the managed save's alone (a plain
                // undefine refuses a domain with one), then a plain undefine.
                Err(_) => match d
                    .undefine_flags(sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
                    .or_else(|_| d.undefine())
                {
                    Err(e) if e.code() != ErrorNumber::NoDomain => Err(backend("undefine", e)),
                    _ => Ok(()),
                },
            }
        })
        .await
        .map(|_| ())
    }

    /// The guest's addresses from libvirt's DHCP leases, named by the network each NIC is on.
    async fn addresses(
        &self,
        uuid: InstanceUuid,
        networks: &[(String, String)],
    ) -> Result<Vec<Address>, DriverError> {
        if networks.is_empty() || self.virt_type == "test" {
            return Ok(Vec::new());
        }
        let leased = self
            .with_domain(uuid, |d| Ok(leased_addresses(d)))
            .await?
            .unwrap_or_default();
        // Under the names the server's networks have.
        let addresses = leased
            .into_iter()
            .map(|mut a| {
                if let Some((_, name)) = networks.iter().find(|(backend, _)| *backend == a.network)
                {
                    a.network = name.clone();
                }
                a
            })
            .collect();
        Ok(addresses)
    }

    /// Shuts the guest down: an ACPI request, then off by force when it has not stopped
    /// within `timeout` (at once for none). The caller holds the instance's turn.
    async fn off(&self, uuid: InstanceUuid, timeout: Duration) -> Result<(), DriverError> {
        // A guest that does not take the ACPI request is forced off all the same (Nova's
        // power_off ignores the shutdown's errors and destroys).
        let asked = self
            .with_domain(uuid, move |d| {
                Ok(!timeout.is_zero() && d.is_active().unwrap_or(false) && d.shutdown().is_ok())
            })
            .await?
            .ok_or(DriverError::NotFound(uuid))?;
        if asked && !timeout.is_zero() && self.wait_off(uuid, timeout).await? {
            return Ok(());
        }
        self.with_domain(uuid, |d| match d.destroy() {
            Ok(()) => Ok(()),
            // Off already.
            Err(e) if e.code() == ErrorNumber::OperationInvalid => Ok(()),
            Err(e) => Err(backend("destroy", e)),
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    /// The vCPUs and memory (KiB) of the domain's persistent definition.
    async fn sizes(&self, uuid: InstanceUuid) -> Result<(u32, u64), DriverError> {
        self.with_domain(uuid, |d| {
            let config = sys::VIR_DOMAIN_AFFECT_CONFIG;
            let vcpus = d
                .get_vcpus_flags(config | sys::VIR_DOMAIN_VCPU_MAXIMUM)
                .map_err(|e| backend("vcpus", e))?;
            let xml = d
                .get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                .map_err(|e| backend("domain XML", e))?;
            let memory = xml_number(&xml, "<memory unit='KiB'>")
                .ok_or_else(|| DriverError::Backend("libvirt: the domain has no memory".into()))?;
            Ok((vcpus, memory))
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    /// Sets the flavor's vCPUs and memory in the domain's persistent definition (the guest is
    /// off), and the flavor in Nova's metadata.
    async fn set_sizes(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        let vcpus = u32::try_from(flavor.vcpus.max(1)).unwrap_or(1);
        let memory = u64::try_from(flavor.memory_mb.max(1)).unwrap_or(1) * 1024;
        self.restore_sizes(uuid, (vcpus, memory)).await?;
        let metadata = flavor_metadata(flavor);
        self.with_domain(uuid, move |d| {
            // Nova's metadata says which flavor the guest has; the sizes are what counts, so a
            // failure here is told, not fatal.
            let kind = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
            let replaced = d
                .get_metadata(kind, Some(NOVA_XMLNS), sys::VIR_DOMAIN_AFFECT_CONFIG)
                .ok()
                .and_then(|m| replace_between(&m, "<nova:flavor", "</nova:flavor>", &metadata));
            if let Some(m) = replaced {
                if let Err(e) = d.set_metadata(
                    kind,
                    Some(&m),
                    Some("nova"),
                    Some(NOVA_XMLNS),
                    sys::VIR_DOMAIN_AFFECT_CONFIG,
                ) {
                    tracing::warn!(instance = %uuid, error = %e, "flavor metadata not updated");
                }
            }
            Ok(())
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    /// Sets vCPUs and memory (KiB) in the domain's persistent definition: each maximum first
    /// (libvirt lowers the current value with a lower maximum), then the current value.
    async fn restore_sizes(
        &self,
        uuid: InstanceUuid,
        (vcpus, memory): (u32, u64),
    ) -> Result<(), DriverError> {
        self.with_domain(uuid, move |d| {
            let config = sys::VIR_DOMAIN_AFFECT_CONFIG;
            d.set_vcpus_flags(vcpus, config | sys::VIR_DOMAIN_VCPU_MAXIMUM)
                .and_then(|_| d.set_vcpus_flags(vcpus, config))
                .map_err(|e| backend("set vcpus", e))?;
            d.set_memory_flags(memory, config | sys::VIR_DOMAIN_MEM_MAXIMUM)
                .and_then(|_| d.set_memory_flags(memory, config))
                .map_err(|e| backend("set memory", e))?;
            Ok(())
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    /// Waits up to `limit` for the domain to be inactive (QEMU gone; a guest that is shutting
    /// down is not off yet); whether it is.
    async fn wait_off(&self, uuid: InstanceUuid, limit: Duration) -> Result<bool, DriverError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let active = self
                .with_domain(uuid, |d| Ok(d.is_active().unwrap_or(true)))
                .await?
                .ok_or(DriverError::NotFound(uuid))?;
            if !active {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Leaves the domain running: started when off, resumed when paused. A domain off with a
    /// managed save (a suspended guest's memory) is restored from it only for `resume`;
    /// otherwise the save is dropped first and the guest boots afresh (Nova's power on and
    /// reboots undefine the domain with its managed save).
    async fn start(&self, uuid: InstanceUuid, saved: Saved) -> Result<(), DriverError> {
        let started = self
            .with_domain(uuid, move |d| {
                if saved == Saved::Discard
                    && !d.is_active().unwrap_or(true)
                    && d.has_managed_save(0).unwrap_or(false)
                {
                    d.managed_save_remove(0)
                        .map_err(|e| backend("managed save removal", e))?;
                }
                let state = d
                    .get_state()
                    .map(|s| s.0)
                    .unwrap_or(sys::VIR_DOMAIN_NOSTATE);
                let result = match state {
                    sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => return Ok(()),
                    sys::VIR_DOMAIN_PAUSED => d.resume().map(|_| ()),
                    sys::VIR_DOMAIN_PMSUSPENDED => d.pm_wakeup(0).map(|_| ()),
                    // Still shutting down: off at once, then started.
                    sys::VIR_DOMAIN_SHUTDOWN => {
                        let _ = d.destroy();
                        d.create().map(|_| ())
                    }
                    _ => d.create().map(|_| ()),
                };
                result.map_err(|e| backend("start", e))?;
                match d.get_state().map(|s| s.0) {
                    Ok(sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED) => Ok(()),
                    other => Err(DriverError::Backend(format!(
                        "libvirt: the domain is not running after a start ({other:?})"
                    ))),
                }
            })
            .await?;
        started.ok_or(DriverError::NotFound(uuid))
    }

    /// The turn of one instance: spawn, destroy and the power calls of one instance do not
    /// overlap (a destroy that ran between a spawn's checks and its define would leave a
    /// domain with no files; Nova serialises them with a lock per instance too).
    async fn turn(&self, uuid: InstanceUuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut turns = lock(&self.turns);
            turns.retain(|_, l| Arc::strong_count(l) > 1);
            turns.entry(uuid).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// What a start does with a managed save (a suspended guest's memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Saved {
    /// Restores the guest from it (resume).
    Restore,
    /// Drops it: the guest boots afresh.
    Discard,
}

/// Follows libvirt's domain lifecycle events (started, stopped, suspended, …) and sends the
/// uuid of each of this agent's instances they name. The `virt` crate has no safe binding for
/// event callbacks (and the workspace forbids `unsafe`), so libvirt's own client does the
/// listening: `virsh event --loop`, one line per event, started again whenever it ends (a
/// libvirtd restart ends it).
async fn watch_events(
    uri: String,
    instances_path: PathBuf,
    events: tokio::sync::broadcast::Sender<InstanceUuid>,
) {
    use tokio::io::AsyncBufReadExt;
    loop {
        let child = tokio::process::Command::new("virsh")
            .args(["-q", "-c", &uri, "event", "--loop", "--event", "lifecycle"])
            // A virsh left behind by an agent that was killed (no one kills it then) ends at
            // its next event, when writing to the closed pipe (SIGPIPE).
            // The lines are parsed: untranslated.
            .env("LC_ALL", "C")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    let mut lines = tokio::io::BufReader::new(out).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(uuid) = instance_of_event(&line) {
                            if instances_path.join(uuid.to_string()).is_dir() {
                                let _ = events.send(uuid);
                            }
                        }
                    }
                }
                let _ = child.kill().await;
            }
            Err(e) => tracing::warn!(error = %e, "libvirt events: virsh did not start"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The instance a `virsh event` line names:
/// `event 'lifecycle' for domain 'instance-<uuid>': Stopped Shutdown`.
fn instance_of_event(line: &str) -> Option<InstanceUuid> {
    let rest = line.split("for domain '").nth(1)?;
    let name = rest.split('\'').next()?;
    name.strip_prefix("instance-")?
        .parse::<uuid::Uuid>()
        .ok()
        .map(InstanceUuid)
}

/// The last `max` bytes of a file; none when it does not exist.
async fn read_tail(path: &Path, max: usize) -> Result<Vec<u8>, DriverError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(backend("console log", e)),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| backend("console log", e))?
        .len();
    let start = len.saturating_sub(max as u64);
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| backend("console log", e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len - start).unwrap_or(max));
    f.read_to_end(&mut bytes)
        .await
        .map_err(|e| backend("console log", e))?;
    Ok(bytes)
}

/// Runs a blocking libvirt call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DriverError::Backend(format!("libvirt call failed: {e}")))?
}

fn lookup(c: &Connect, uuid: InstanceUuid) -> Result<Option<Domain>, DriverError> {
    match Domain::lookup_by_uuid_string(c, &uuid.to_string()) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.code() == ErrorNumber::NoDomain => Ok(None),
        Err(e) => Err(backend("lookup", e)),
    }
}

/// libvirt's domain state as Nova maps it (`nova.virt.libvirt.guest.LIBVIRT_POWER_STATE`).
fn power_of(state: sys::virDomainState) -> PowerState {
    match state {
        sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => PowerState::Running,
        sys::VIR_DOMAIN_PAUSED => PowerState::Paused,
        // Shutting down: Nova maps it to SHUTDOWN, as the guest is on its way off.
        sys::VIR_DOMAIN_SHUTDOWN | sys::VIR_DOMAIN_SHUTOFF => PowerState::Shutdown,
        sys::VIR_DOMAIN_CRASHED => PowerState::Crashed,
        sys::VIR_DOMAIN_PMSUSPENDED => PowerState::Suspended,
        _ => PowerState::NoState,
    }
}

/// What `qemu-img info` says of an image file.
#[derive(Deserialize)]
struct ImageInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(rename = "format-specific")]
    format_specific: Option<serde_json::Value>,
}

/// The format QEMU reads an image of this Glance `disk_format` in: a VM boots qcow2 and raw
/// disks (`ami` is a raw disk, as Nova reads it). Other formats are refused rather than
/// handed to QEMU's probing.
fn qemu_format(disk_format: &str) -> Option<&'static str> {
    match disk_format {
        "qcow2" => Some("qcow2"),
        "raw" | "ami" => Some("raw"),
        _ => None,
    }
}

async fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, String> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(out.stdout)
}

/// Checks the cached image against its declared format and the flavor's root disk, then
/// creates the instance's qcow2 overlay on it (sized to the root disk when it is larger).
/// What checking a cached base image found: the format QEMU reads it in and its virtual size.
#[derive(Clone, Copy)]
struct CheckedBase {
    format: &'static str,
    virtual_size: u64,
}

/// Checks a cached image against its declared format: a format a VM here boots, a file that
/// is what it says, no backing or external data file.
async fn check_base(
    spec: &InstanceSpec,
    base: &Path,
    format: &str,
) -> Result<CheckedBase, DriverError> {
    let invalid = |why: String| {
        DriverError::Invalid(format!("Build of instance {} aborted: {why}", spec.uuid))
    };
    let image_id = spec.image.as_ref().map_or("", |i| i.id.as_str());
    let disk_format = format;
    let Some(format) = qemu_format(disk_format) else {
        return Err(invalid(format!(
            "Image {image_id} has disk_format {disk_format}, which a virtual machine here \
             cannot boot (qcow2, raw or ami)."
        )));
    };
    // The format is given, never guessed: a raw image probed as qcow2 could name a backing
    // file on the host (the reason Nova passes the format too). The image is the project's
    // data: `qemu-img` reads it within Nova's limits (30 s of CPU, 1 GiB of address space).
    let out = tokio::process::Command::new("prlimit")
        .args([
            "--cpu=30",
            "--as=1073741824",
            "qemu-img",
            "info",
            "--output=json",
            "-f",
        ])
        .arg(format)
        .arg(base)
        .output()
        .await
        .map_err(|e| backend("prlimit qemu-img info", e))?;
    if !out.status.success() {
        return Err(invalid(format!(
            "Image {image_id} is not a valid {disk_format} image: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let info = out.stdout;
    let info: ImageInfo = serde_json::from_slice(&info).map_err(|e| backend("qemu-img info", e))?;
    if info.format != format {
        return Err(invalid(format!(
            "Image {image_id} is not a valid {disk_format} image."
        )));
    }
    // A qcow2 external data file names a host file that QEMU would read as the guest's disk
    // (CVE-2024-32498; Nova refuses it the same way).
    let data_file = info
        .format_specific
        .as_ref()
        .and_then(|f| f.get("data"))
        .and_then(|d| d.get("data-file"));
    if data_file.is_some() {
        return Err(invalid(format!(
            "Image {image_id} has a data file, which is not allowed."
        )));
    }
    if info.backing_filename.is_some() {
        return Err(invalid(format!(
            "Image {image_id} has a backing file, which is not allowed."
        )));
    }
    Ok(CheckedBase {
        format,
        virtual_size: info.virtual_size,
    })
}

/// Creates the instance's qcow2 overlay on the checked base (sized to the root disk when it
/// is larger), after Nova's check of the flavor's root disk against the image.
async fn create_overlay(
    spec: &InstanceSpec,
    base: &Path,
    checked: CheckedBase,
    disk: &Path,
) -> Result<(), DriverError> {
    let invalid = |why: String| {
        DriverError::Invalid(format!("Build of instance {} aborted: {why}", spec.uuid))
    };
    let (format, info) = (checked.format, checked);
    let root = spec.flavor.root_gb.max(0) as u64 * (1 << 30);
    if root > 0 && info.virtual_size > root {
        // Nova's FlavorDiskSmallerThanImage.
        return Err(invalid(format!(
            "Flavor's disk is too small for requested image. Flavor disk is {root} bytes, \
             image is {} bytes.",
            info.virtual_size
        )));
    }
    let size = if root > info.virtual_size {
        root.to_string()
    } else {
        info.virtual_size.to_string()
    };
    let partial = disk.with_extension("part");
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        format.as_ref(),
        "-b".as_ref(),
        base.as_os_str(),
        partial.as_os_str(),
        size.as_ref(),
    ])
    .await
    .map_err(|e| backend("qemu-img create", e))?;
    tokio::fs::rename(&partial, disk)
        .await
        .map_err(|e| backend("overlay", e))
}

/// Writes the config drive as Nova does: an ISO 9660 image labelled `config-2` with
/// `openstack/latest/meta_data.json` and `user_data`.
async fn write_config_drive(spec: &InstanceSpec, dir: &Path) -> Result<PathBuf, DriverError> {
    let tree = dir.join("config-drive");
    let latest = tree.join("openstack").join("latest");
    let io = |e: std::io::Error| backend("config drive", e);
    let _ = tokio::fs::remove_dir_all(&tree).await;
    tokio::fs::create_dir_all(&latest).await.map_err(io)?;
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| sanitize_hostname(&spec.name));
    let mut meta = serde_json::json!({
        "uuid": spec.uuid.to_string(),
        "name": spec.name,
        "hostname": hostname,
        "project_id": spec.project_id,
        "availability_zone": "nova",
        "launch_index": 0,
        "meta": spec.metadata,
    });
    if let (Some(name), Some(key)) = (&spec.key_name, &spec.key_data) {
        meta["public_keys"] = serde_json::json!({ name: key });
    }
    tokio::fs::write(latest.join("meta_data.json"), meta.to_string())
        .await
        .map_err(io)?;
    // No network_data.json: an empty one would tell cloud-init that the guest has no
    // network, where without it the guest asks DHCP on its NICs, and libvirt's DHCP has a
    // static entry for each port's MAC (libvirt_nics).
    if let Some(data) = &spec.user_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| DriverError::Invalid(format!("user_data is not base64: {e}")))?;
        tokio::fs::write(latest.join("user_data"), bytes)
            .await
            .map_err(io)?;
    }
    let iso = config_drive_path(dir);
    // Nova's genisoimage call (nova.virt.configdrive).
    let out = tokio::process::Command::new("genisoimage")
        .kill_on_drop(true)
        .args([
            "-o".as_ref(),
            iso.as_os_str(),
            "-ldots".as_ref(),
            "-allow-lowercase".as_ref(),
            "-allow-multidot".as_ref(),
            "-l".as_ref(),
            "-V".as_ref(),
            "config-2".as_ref(),
            "-J".as_ref(),
            "-r".as_ref(),
            "-quiet".as_ref(),
            tree.as_os_str(),
        ])
        .output()
        .await
        .map_err(|e| backend("genisoimage (package genisoimage)", e))?;
    if !out.status.success() {
        return Err(backend(
            "genisoimage",
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    let _ = tokio::fs::remove_dir_all(&tree).await;
    Ok(iso)
}

/// Where an instance's config drive is, in its directory `dir`.
fn config_drive_path(dir: &Path) -> PathBuf {
    dir.join("disk.config")
}

/// What a guest's domain names beyond its spec: its files, and the MACs it keeps.
#[derive(Clone, Debug, Default)]
pub struct GuestFiles {
    pub disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub ramdisk: Option<PathBuf>,
    pub config_drive: Option<PathBuf>,
    pub console_log: PathBuf,
    /// A rescue guest's second disk: the instance's own.
    pub rescued_disk: Option<PathBuf>,
    /// A stable device rescue: the instance's own disk stays the first (`vda`), and `disk`
    /// (the rescue's) comes last, as this device on this bus, booted first.
    pub stable_rescue: Option<nova_core::rpc::StableRescue>,
    /// The MACs of the guest's NICs as it was defined, with their libvirt networks: a NIC
    /// without a port keeps its MAC when the guest is defined again (a rescue), as Nova keeps
    /// a guest's VIFs. (A port's NIC has the port's MAC.)
    pub known_macs: Vec<(String, String)>,
}

/// Whose files [`LibvirtDriver::prepare_files`] makes: the instance's own, or a rescue's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    Own,
    Rescue,
}

impl Use {
    /// The name of the file `name` of this use (a rescue's have Nova's `.rescue` suffix).
    fn file(self, name: &str) -> String {
        match self {
            Use::Own => name.to_owned(),
            Use::Rescue => format!("{name}.rescue"),
        }
    }
}

/// The files of a rescue, removed when it ends (its saved definition last).
const RESCUE_FILES: &[&str] = &["disk.rescue", "kernel.rescue", "ramdisk.rescue"];

/// The instance's own domain definition while it is rescued (Nova's `unrescue.xml`).
const UNRESCUE_XML: &str = "unrescue.xml";

/// XML-escapes text and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn path_text(p: &Path) -> String {
    esc(&p.to_string_lossy())
}

/// Defines the domain and starts it; a start that fails undefines it again.
fn define_and_start(c: &Connect, xml: &str) -> Result<(), DriverError> {
    let d = Domain::define_xml(c, xml).map_err(|e| backend("define", e))?;
    if let Err(e) = d.create() {
        let _ = d.undefine();
        // A network the host lacks is the request's problem, and libvirt's words
        // name only that network: the project is told (other errors are for
        // admins).
        if e.code() == ErrorNumber::NoNetwork {
            return Err(DriverError::Invalid(format!(
                "a network of this server does not exist on this host ({})",
                e.message()
            )));
        }
        return Err(backend("start", e));
    }
    Ok(())
}

/// A virtio NIC on a libvirt network, with its port's packet filter when it has one.
fn interface_xml(mac: &str, network: &str, filter: Option<&str>) -> String {
    let filterref = filter
        .map(|f| format!("      <filterref filter='{}'/>\n", esc(f)))
        .unwrap_or_default();
    format!(
        "<interface type='network'>\n      <mac address='{}'/>\n      \
         <source network='{}'/>\n      <model type='virtio'/>\n{filterref}    </interface>\n",
        esc(mac),
        esc(network)
    )
}

/// The filter of a NIC with a port, where the connection has nwfilter (libvirt's test
/// driver has none).
fn nic_filter(virt_type: &str, uuid: InstanceUuid, nic: &Nic) -> Option<String> {
    (virt_type != "test" && nic.firewall.is_some())
        .then(|| crate::libvirt_firewall::filter_name(&domain_name(uuid), &nic.mac))
}

/// Defines (or redefines: the running guest's rules change at once) the NIC's filter.
fn define_filter(
    c: &Connect,
    name: &str,
    port: &nova_core::firewall::PortFirewall,
) -> Result<(), DriverError> {
    let xml = crate::libvirt_firewall::filter_xml(name, port);
    virt::nwfilter::NWFilter::define_xml(c, &xml)
        .map(|_| ())
        .map_err(|e| backend("define nwfilter", e))
}

/// Removes a NIC's filter; one that is gone (or still in use: the next sync retries) is left.
fn undefine_filter(c: &Connect, name: &str) {
    if let Ok(f) = virt::nwfilter::NWFilter::lookup_by_name(c, name) {
        if let Err(e) = f.undefine() {
            tracing::debug!(filter = name, error = %e, "nwfilter not undefined");
        }
    }
}

/// A device change to the guest's definition, and to the running guest when it runs.
fn affect(d: &Domain) -> u32 {
    let mut flags = sys::VIR_DOMAIN_AFFECT_CONFIG;
    if d.is_active().unwrap_or(false) {
        flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    flags
}

/// A MAC in OpenStack's range (`fa:16:3e`, Neutron's default base), random below it.
fn new_mac() -> String {
    let b = uuid::Uuid::new_v4();
    let b = b.as_bytes();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Where a resize keeps the disk as it was, for a revert.
fn kept_disk(disk: &Path) -> PathBuf {
    disk.with_file_name("disk.resize-kept")
}

/// The flavor the kept disk was kept for (see [`LibvirtDriver::resize`]).
fn kept_stamp(disk: &Path) -> PathBuf {
    disk.with_file_name("disk.resize-kept.flavor")
}

/// Removes a file; one that is not there is fine.
async fn remove_if_there(path: &Path) -> Result<(), DriverError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(backend("remove", e)),
        _ => Ok(()),
    }
}

/// The virtual size of a disk file, as `qemu-img info` tells it.
async fn disk_virtual_size(disk: &Path) -> Result<u64, DriverError> {
    let info = qemu_img(&[
        "info".as_ref(),
        "--output=json".as_ref(),
        "-U".as_ref(),
        disk.as_os_str(),
    ])
    .await
    .map_err(|e| backend("qemu-img info", e))?;
    let info: ImageInfo = serde_json::from_slice(&info).map_err(|e| backend("qemu-img info", e))?;
    Ok(info.virtual_size)
}

/// Copies a file through a temporary name, so that the copy is whole or absent.
async fn copy_file(from: &Path, to: &Path) -> Result<(), DriverError> {
    let partial = to.with_extension("part");
    tokio::fs::copy(from, &partial)
        .await
        .map_err(|e| backend("disk copy", e))?;
    tokio::fs::rename(&partial, to)
        .await
        .map_err(|e| backend("disk copy", e))
}

/// The number after `prefix` in `xml`.
fn xml_number(xml: &str, prefix: &str) -> Option<u64> {
    let rest = &xml[xml.find(prefix)? + prefix.len()..];
    rest[..rest.find('<')?].trim().parse().ok()
}

/// `text` with the part from `start` to the end of `end` replaced by `with`.
fn replace_between(text: &str, start: &str, end: &str, with: &str) -> Option<String> {
    let a = text.find(start)?;
    let b = a + text[a..].find(end)? + end.len();
    Some(format!("{}{with}{}", &text[..a], &text[b..]))
}

/// Nova's `nova:flavor` element for a flavor.
fn flavor_metadata(f: &Flavor) -> String {
    format!(
        "<nova:flavor name=\"{name}\" id=\"{id}\"><nova:memory>{memory}</nova:memory>\
         <nova:disk>{disk}</nova:disk><nova:swap>{swap}</nova:swap>\
         <nova:ephemeral>{ephemeral}</nova:ephemeral><nova:vcpus>{vcpus}</nova:vcpus>\
         </nova:flavor>",
        name = esc(&f.name),
        id = esc(&f.flavorid),
        memory = f.memory_mb,
        disk = f.root_gb,
        swap = f.swap,
        ephemeral = f.ephemeral_gb,
        vcpus = f.vcpus,
    )
}

/// The domain of a guest: the flavor's vCPUs and memory, the overlay as its virtio disk, the
/// config drive as a CD-ROM, one virtio NIC per network, the serial console into a file and
/// Nova's metadata (`nova:instance`), as Nova's libvirt driver writes them.
pub fn domain_xml(
    spec: &InstanceSpec,
    virt_type: &str,
    files: &GuestFiles,
    networks: &[(String, String)],
    default_command_line: &str,
) -> String {
    let f = &spec.flavor;
    let mut x = String::new();
    let _ = write!(
        x,
        "<domain type='{virt_type}'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n",
        virt_type = esc(virt_type),
        name = domain_name(spec.uuid),
        uuid = spec.uuid,
    );
    let created = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S");
    let _ = write!(
        x,
        "  <metadata>\n    <nova:instance xmlns:nova=\"{NOVA_XMLNS}\">\n      \
         <nova:package version=\"{version}\"/>\n      <nova:name>{name}</nova:name>\n      \
         <nova:creationTime>{created}</nova:creationTime>\n      \
         <nova:flavor name=\"{flavor}\" id=\"{flavor_id}\">\n        \
         <nova:memory>{memory}</nova:memory>\n        <nova:disk>{disk}</nova:disk>\n        \
         <nova:swap>{swap}</nova:swap>\n        <nova:ephemeral>{ephemeral}</nova:ephemeral>\n        \
         <nova:vcpus>{vcpus}</nova:vcpus>\n      </nova:flavor>\n      <nova:owner>\n        \
         <nova:user uuid=\"{user}\"/>\n        <nova:project uuid=\"{project}\"/>\n      \
         </nova:owner>\n      <nova:root type=\"image\" uuid=\"{image}\"/>\n    \
         </nova:instance>\n  </metadata>\n",
        version = env!("CARGO_PKG_VERSION"),
        name = esc(&spec.name),
        flavor = esc(&f.name),
        flavor_id = esc(&f.flavorid),
        memory = f.memory_mb,
        disk = f.root_gb,
        swap = f.swap,
        ephemeral = f.ephemeral_gb,
        vcpus = f.vcpus,
        user = esc(&spec.user_id),
        project = esc(&spec.project_id),
        image = esc(&spec.image_ref),
    );
    let _ = write!(
        x,
        "  <memory unit='MiB'>{}</memory>\n  <vcpu>{}</vcpu>\n",
        f.memory_mb.max(1),
        f.vcpus.max(1)
    );
    x.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
    if let Some(kernel) = &files.kernel {
        let _ = writeln!(x, "    <kernel>{}</kernel>", path_text(kernel));
        if let Some(ramdisk) = &files.ramdisk {
            let _ = writeln!(x, "    <initrd>{}</initrd>", path_text(ramdisk));
        }
        let cmdline = spec
            .os_command_line
            .as_deref()
            .unwrap_or(default_command_line);
        let _ = writeln!(x, "    <cmdline>{}</cmdline>", esc(cmdline));
    } else if files.stable_rescue.is_none() {
        // (A stable rescue boots its disk by the disk's own boot order, which libvirt does
        // not take beside this.)
        x.push_str("    <boot dev='hd'/>\n");
    }
    x.push_str("  </os>\n  <features>\n    <acpi/>\n    <apic/>\n  </features>\n");
    if virt_type == "kvm" {
        x.push_str("  <cpu mode='host-passthrough'/>\n");
    }
    // Off is off: a guest that powers itself off stays off (Nova's `on_poweroff` is
    // `destroy`), and the domain stays defined.
    x.push_str(
        "  <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  \
         <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n  <devices>\n",
    );
    // A stable rescue: the instance's own disk first, where it was; the rescue disk after
    // the config drive.
    let stable = files.stable_rescue.filter(|_| files.rescued_disk.is_some());
    let disks = match stable {
        Some(_) => [(files.rescued_disk.as_ref(), "vda"), (None, "vdb")],
        None => [
            (Some(&files.disk), "vda"),
            (files.rescued_disk.as_ref(), "vdb"),
        ],
    };
    for (disk, dev) in disks {
        if let Some(disk) = disk {
            let _ = write!(
                x,
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      \
                 <source file='{}'/>\n      <target dev='{dev}' bus='virtio'/>\n    </disk>\n",
                path_text(disk)
            );
        }
    }
    if let Some(drive) = &files.config_drive {
        let _ = write!(
            x,
            "    <disk type='file' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n      \
             <source file='{}'/>\n      <target dev='hdd' bus='ide'/>\n      <readonly/>\n    \
             </disk>\n",
            path_text(drive)
        );
    }
    if let Some(rescue) = stable {
        x.push_str(&stable_rescue_disk(&files.disk, rescue));
    }
    // A NIC with a port has the port's MAC (its DHCP entry is keyed by it), as Nova's VIFs.
    let ports = crate::libvirt_nics::nics_of(spec);
    let port_macs: Vec<&str> = ports.iter().flatten().map(|p| p.mac.as_str()).collect();
    let mut known: Vec<&(String, String)> = files
        .known_macs
        .iter()
        .filter(|(mac, _)| !port_macs.contains(&mac.as_str()))
        .collect();
    for (i, (network, _)) in networks.iter().enumerate() {
        let port = ports.get(i).and_then(Option::as_ref);
        let mac = match port {
            Some(p) => p.mac.clone(),
            None => match known.iter().position(|(_, n)| n == network) {
                Some(k) => known.remove(k).0.clone(),
                None => new_mac(),
            },
        };
        let filter = port.and_then(|p| nic_filter(virt_type, spec.uuid, p));
        let _ = write!(x, "    {}", interface_xml(&mac, network, filter.as_deref()));
    }
    // The serial console through virtlogd (Nova's form): a chatty guest cannot fill the disk,
    // virtlogd rotates the file (`console.log.0`, … at `max_size`).
    let _ = write!(
        x,
        "    <serial type='pty'>\n      <log file='{}' append='on'/>\n      \
         <target port='0'/>\n    </serial>\n",
        path_text(&files.console_log)
    );
    x.push_str("  </devices>\n</domain>\n");
    x
}

/// A stable rescue's disk (Nova's `hw_rescue_device` on `hw_rescue_bus`), booted first: its
/// target named for its bus after the guest's own (`vda`, the config drive's `hdd`); a SCSI
/// disk on a virtio-scsi controller, as Nova's libvirt driver gives one.
fn stable_rescue_disk(disk: &Path, rescue: nova_core::rpc::StableRescue) -> String {
    use nova_core::rpc::{RescueBus, RescueDevice};
    let (dev, bus) = match rescue.bus {
        RescueBus::Virtio => ("vdb", "virtio"),
        RescueBus::Scsi => ("sda", "scsi"),
        RescueBus::Usb => ("sda", "usb"),
        RescueBus::Sata => ("sda", "sata"),
        RescueBus::Ide => ("hda", "ide"),
    };
    let (device, readonly) = match rescue.device {
        RescueDevice::Disk => ("disk", ""),
        RescueDevice::Cdrom => ("cdrom", "      <readonly/>\n"),
    };
    let controller = if rescue.bus == RescueBus::Scsi {
        "    <controller type='scsi' index='0' model='virtio-scsi'/>\n"
    } else {
        ""
    };
    format!(
        "{controller}    <disk type='file' device='{device}'>\n      \
         <driver name='qemu' type='qcow2'/>\n      <source file='{}'/>\n      \
         <target dev='{dev}' bus='{bus}'/>\n{readonly}      <boot order='1'/>\n    </disk>\n",
        path_text(disk)
    )
}

/// The addresses libvirt's DHCP leases give a domain's NICs, keyed by each NIC's libvirt
/// network (none when it has no NIC or no lease yet).
fn leased_addresses(d: &Domain) -> Vec<Address> {
    let Ok(xml) = d.get_xml_desc(0) else {
        return Vec::new();
    };
    let nics = nics_of_xml(&xml);
    if nics.is_empty() {
        return Vec::new();
    }
    let leases = d
        .interface_addresses(sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
        .unwrap_or_default();
    let mut addresses = Vec::new();
    for (mac, network) in nics {
        for lease in leases
            .iter()
            .filter(|l| l.hwaddr.eq_ignore_ascii_case(&mac))
        {
            for ip in &lease.addrs {
                addresses.push(Address {
                    network: network.clone(),
                    addr: ip.addr.clone(),
                    version: if ip.addr.contains(':') { 6 } else { 4 },
                    mac: Some(mac.clone()),
                });
            }
        }
    }
    addresses
}

/// The (MAC, libvirt network) of each NIC in a domain's XML.
fn nics_of_xml(xml: &str) -> Vec<(String, String)> {
    let mut nics = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<interface type='network'") {
        let after = &rest[start..];
        let end = after.find("</interface>").unwrap_or(after.len());
        let block = &after[..end];
        let attr = |tag: &str, name: &str| {
            let i = block.find(tag)?;
            let t = &block[i..];
            let key = format!("{name}='");
            let j = t.find(&key)? + key.len();
            let k = t[j..].find('\'')?;
            Some(t[j..j + k].to_owned())
        };
        if let (Some(mac), Some(net)) = (attr("<mac ", "address"), attr("<source ", "network")) {
            nics.push((mac, net));
        }
        rest = &after[end..];
    }
    nics
}

#[async_trait]
impl Compute for LibvirtDriver {
    async fn inventory(&self) -> Result<Vec<NodeInventory>, DriverError> {
        let (info, version) = self
            .with_conn(|c| {
                let info = c.get_node_info().map_err(|e| backend("node info", e))?;
                let version = c.get_hyp_version().unwrap_or(0);
                Ok((info, version))
            })
            .await?;
        let memory_mb = i64::try_from(info.memory / 1024).unwrap_or(i64::MAX);
        let disk_gb = rustix::fs::statvfs(&self.settings.instances_path)
            .map(|s| s.f_blocks.saturating_mul(s.f_frsize) / (1024 * 1024 * 1024))
            .unwrap_or(0);
        Ok(vec![NodeInventory {
            uuid: self.node_uuid(),
            name: self.host.clone(),
            node_type: NodeType::Vm,
            // Nova's libvirt driver reports the QEMU driver as `QEMU` whether KVM or TCG
            // runs the guests.
            hypervisor_type: "QEMU".into(),
            // libvirt already encodes it as Nova does (major * 1,000,000 + minor * 1,000 +
            // micro).
            hypervisor_version: i64::from(version),
            total: Resources {
                vcpus: i64::from(info.cpus),
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
        let networks = self.networks_of(spec);
        let uuid = spec.uuid;
        let _turn = self.turn(uuid).await;
        let instance = |power_state, addresses| DriverInstance {
            uuid,
            node: self.host.clone(),
            power_state,
            addresses,
        };
        // Idempotent: a domain that exists is the instance; one defined and never started
        // (an agent stopped between the two) is started.
        if self.with_domain(uuid, |_| Ok(())).await?.is_some() {
            self.start(uuid, Saved::Discard).await?;
            let addresses = self.addresses(uuid, &networks).await?;
            return Ok(instance(self.power_state(uuid).await?, addresses));
        }
        let xml = match self.prepare(spec, images).await {
            Ok(xml) => xml,
            Err(e) => {
                // Nothing is left of a build that failed here.
                let _ = self.remove_files(uuid).await;
                return Err(e);
            }
        };
        let ports: Vec<(String, Nic)> = networks
            .iter()
            .zip(crate::libvirt_nics::nics_of(spec))
            .filter_map(|((backend, _), nic)| nic.map(|n| (backend.clone(), n)))
            .collect();
        let virt_type = self.virt_type.clone();
        let defined = self
            .with_conn(move |c| {
                // The networks the ports' subnets need, and each port's DHCP entry, before
                // the guest asks.
                let entries: Vec<(String, String)> = ports
                    .iter()
                    .map(|(network, nic)| (nic.mac.clone(), network.clone()))
                    .collect();
                // A build that fails here leaves no DHCP entry behind (its domain, which
                // names them, is not there to say so later).
                let defined = (|| {
                    for (backend, nic) in &ports {
                        crate::libvirt_nics::ensure_network(c, backend, nic)?;
                        crate::libvirt_nics::add_dhcp_host(c, backend, nic)?;
                        // The NIC's filter before the guest that references it.
                        if let (Some(name), Some(fw)) =
                            (nic_filter(&virt_type, uuid, nic), &nic.firewall)
                        {
                            define_filter(c, &name, fw)?;
                        }
                    }
                    define_and_start(c, &xml)
                })();
                if defined.is_err() {
                    crate::libvirt_nics::remove_dhcp_hosts(c, &entries);
                }
                defined
            })
            .await;
        if let Err(e) = defined {
            let _ = self.remove_domain(uuid).await;
            let _ = self.remove_files(uuid).await;
            return Err(e);
        }
        let started = async {
            let mut addresses = self.addresses(uuid, &networks).await?;
            if addresses.is_empty() && !networks.is_empty() && self.settings.lease_wait_s > 0 {
                let deadline =
                    tokio::time::Instant::now() + Duration::from_secs(self.settings.lease_wait_s);
                while addresses.is_empty() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    addresses = self.addresses(uuid, &networks).await?;
                }
            }
            Ok::<_, DriverError>((self.power_state(uuid).await?, addresses))
        }
        .await;
        match started {
            Ok((state, addresses)) => Ok(instance(state, addresses)),
            Err(e) => {
                // A build that failed leaves nothing running.
                let _ = self.remove_domain(uuid).await;
                let _ = self.remove_files(uuid).await;
                Err(e)
            }
        }
    }

    /// A virtio NIC with the port's MAC on the libvirt network, hot-plugged into a running
    /// guest and kept in its definition (Nova's attach_interface), after the network and the
    /// port's DHCP entry; a NIC with that MAC there already is left as it is.
    async fn attach_interface(
        &self,
        uuid: InstanceUuid,
        network: &str,
        nic: &Nic,
    ) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let (network, nic) = (network.to_owned(), nic.clone());
        let filter = nic_filter(&self.virt_type, uuid, &nic);
        self.with_conn(move |c| {
            let d = lookup(c, uuid)?.ok_or(DriverError::NotFound(uuid))?;
            let xml = d.get_xml_desc(0).map_err(|e| backend("domain XML", e))?;
            if nics_of_xml(&xml).iter().any(|(mac, _)| *mac == nic.mac) {
                return Ok(());
            }
            crate::libvirt_nics::ensure_network(c, &network, &nic)?;
            crate::libvirt_nics::add_dhcp_host(c, &network, &nic)?;
            if let (Some(name), Some(fw)) = (&filter, &nic.firewall) {
                define_filter(c, name, fw)?;
            }
            let device = interface_xml(&nic.mac, &network, filter.as_deref());
            if let Err(e) = d.attach_device_flags(&device, affect(&d)) {
                crate::libvirt_nics::remove_dhcp_hosts(c, &[(nic.mac.clone(), network.clone())]);
                return Err(backend("attach interface", e));
            }
            Ok(())
        })
        .await
    }

    async fn detach_interface(
        &self,
        uuid: InstanceUuid,
        network: &str,
        nic: &Nic,
    ) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let (network, nic) = (network.to_owned(), nic.clone());
        self.with_conn(move |c| {
            let d = lookup(c, uuid)?.ok_or(DriverError::NotFound(uuid))?;
            let xml = d.get_xml_desc(0).map_err(|e| backend("domain XML", e))?;
            if nics_of_xml(&xml).iter().any(|(mac, _)| *mac == nic.mac) {
                let device = interface_xml(&nic.mac, &network, None);
                d.detach_device_flags(&device, affect(&d))
                    .map_err(|e| backend("detach interface", e))?;
            }
            crate::libvirt_nics::remove_dhcp_hosts(c, &[(nic.mac.clone(), network.clone())]);
            undefine_filter(
                c,
                &crate::libvirt_firewall::filter_name(&domain_name(uuid), &nic.mac),
            );
            Ok(())
        })
        .await
    }

    /// Each listed port's NIC filter defined when it changed (which updates the running
    /// guest's rules at once), for a NIC of a guest here; the filters of ports no longer
    /// listed that a sync defined are removed (those a guest still uses stay until the next).
    /// Filters also go with their NIC (detach) or their domain (delete).
    async fn sync_firewall(
        &self,
        ports: &[nova_core::firewall::PortFirewall],
    ) -> Result<(), DriverError> {
        if self.virt_type == "test" {
            return Ok(());
        }
        let ports = ports.to_vec();
        let cache = self.filters.clone();
        self.with_conn(move |c| {
            let mut listed = std::collections::HashSet::new();
            for p in &ports {
                let Ok(uuid) = p.instance.parse::<InstanceUuid>() else {
                    continue;
                };
                let name = crate::libvirt_firewall::filter_name(&domain_name(uuid), &p.mac);
                listed.insert(name.clone());
                let xml = crate::libvirt_firewall::filter_xml(&name, p);
                if lock(&cache).get(&name) == Some(&xml) {
                    continue;
                }
                // Only for a NIC of a guest here (a sync made before a delete committed
                // would otherwise leave a filter of a gone guest behind).
                let has_nic = lookup(c, uuid)?
                    .and_then(|d| d.get_xml_desc(0).ok())
                    .is_some_and(|x| nics_of_xml(&x).iter().any(|(mac, _)| *mac == p.mac));
                if !has_nic {
                    continue;
                }
                define_filter(c, &name, p)?;
                lock(&cache).insert(name, xml);
            }
            let gone: Vec<String> = lock(&cache)
                .keys()
                .filter(|n| !listed.contains(*n))
                .cloned()
                .collect();
            for name in gone {
                undefine_filter(c, &name);
                if virt::nwfilter::NWFilter::lookup_by_name(c, &name).is_err() {
                    lock(&cache).remove(&name);
                }
            }
            Ok(())
        })
        .await
    }

    async fn destroy(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        self.remove_domain(uuid).await?;
        self.remove_files(uuid).await
    }

    /// An ACPI shutdown, then off by force when the guest has not stopped within `timeout`.
    async fn power_off(&self, uuid: InstanceUuid, timeout: Duration) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        self.off(uuid, timeout).await
    }

    /// Nova's resize on one host: the guest shut down (cleanly within the soft reboot's
    /// timeout, as Nova's `migrate_disk_and_power_off`), its disk grown to the flavor's root
    /// disk with the disk as it was kept beside it for a revert, the domain's vCPUs and memory
    /// set in its persistent definition, and the guest started again if it ran. A root disk
    /// smaller than the disk is refused before anything changes (Nova's "Unable to resize disk
    /// down."); a failure after puts back what it changed.
    async fn resize(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let disk = self.instance_dir(uuid).join("disk");
        let kept = kept_disk(&disk);
        let stamp = kept_stamp(&disk);
        // The kept disk is stamped with the flavor it was kept for: the same command sent
        // again finds its work done; a kept disk of anything else is what a resize that failed
        // or was given up left, older than the disk, and goes (a revert must never restore it).
        if kept.exists() {
            let stamped = tokio::fs::read_to_string(&stamp).await.unwrap_or_default();
            if stamped == flavor.flavorid {
                return Ok(());
            }
            remove_if_there(&kept).await?;
        }
        let size = disk_virtual_size(&disk).await?;
        let root = u64::try_from(flavor.root_gb.max(0)).unwrap_or(0) << 30;
        if root > 0 && root < size {
            return Err(DriverError::Invalid(
                "Resize error: Unable to resize disk down.".into(),
            ));
        }
        let was = self.sizes(uuid).await?;
        let running = self.power_state(uuid).await? == PowerState::Running;
        let timeout = Duration::from_secs(self.settings.soft_reboot_timeout_s);
        self.off(uuid, timeout).await?;
        let changed = async {
            copy_file(&disk, &kept).await?;
            if root > size {
                qemu_img(&[
                    "resize".as_ref(),
                    "-q".as_ref(),
                    disk.as_os_str(),
                    root.to_string().as_ref(),
                ])
                .await
                .map_err(|e| backend("qemu-img resize", e))?;
            }
            self.set_sizes(uuid, flavor).await?;
            if running {
                self.start(uuid, Saved::Discard).await?;
            }
            // Last: the stamp says the resize is whole.
            tokio::fs::write(&stamp, &flavor.flavorid)
                .await
                .map_err(|e| backend("kept disk stamp", e))
        }
        .await;
        if let Err(e) = changed {
            tracing::warn!(instance = %uuid, error = %e, "resize failed; putting back the old disk and sizes");
            let _ = self.off(uuid, Duration::ZERO).await;
            if kept.exists() {
                let _ = tokio::fs::rename(&kept, &disk).await;
            }
            let _ = remove_if_there(&stamp).await;
            let _ = self.restore_sizes(uuid, was).await;
            if running {
                let _ = self.start(uuid, Saved::Discard).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// The guest's disk flattened into one qcow2 (its image and what it wrote since), read
    /// while a running guest is paused, so that it is the disk of one moment (Nova's cold
    /// snapshot saves the guest's memory instead; a live one needs a block job).
    async fn snapshot(&self, uuid: InstanceUuid, into: &Path) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let disk = self.instance_dir(uuid).join("disk");
        let paused_here = self
            .with_domain(uuid, |d| match d.get_state().map(|s| s.0) {
                Ok(sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED) => d
                    .suspend()
                    .map(|_| true)
                    .map_err(|e| backend("pause for snapshot", e)),
                _ => Ok(false),
            })
            .await?
            .ok_or(DriverError::NotFound(uuid))?;
        let partial = into.with_extension("part");
        let converted = qemu_img(&[
            "convert".as_ref(),
            "-U".as_ref(),
            "-q".as_ref(),
            "-O".as_ref(),
            "qcow2".as_ref(),
            disk.as_os_str(),
            partial.as_os_str(),
        ])
        .await;
        if paused_here {
            self.with_domain(uuid, |d| {
                d.resume()
                    .map(|_| ())
                    .map_err(|e| backend("resume after snapshot", e))
            })
            .await?;
        }
        if let Err(e) = converted {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(backend("qemu-img convert", e));
        }
        tokio::fs::rename(&partial, into)
            .await
            .map_err(|e| backend("snapshot file", e))
    }

    /// Nova's libvirt rescue: the guest shut down (cleanly within `timeout`), its definition
    /// saved (`unrescue.xml`), and the domain defined again to boot the rescue image's
    /// overlay (`disk.rescue`, its kernel and ramdisk when it names them) with the instance's
    /// own disk as the second (`vdb`), the same NICs and console. Idempotent: a domain that
    /// boots `disk.rescue` already is left running. A failure puts the instance back as it was.
    async fn rescue(
        &self,
        spec: &InstanceSpec,
        images: &BootImages,
        stable: Option<nova_core::rpc::StableRescue>,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let uuid = spec.uuid;
        let _turn = self.turn(uuid).await;
        let dir = self.instance_dir(uuid);
        let own = self
            .with_domain(uuid, |d| {
                d.get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_SECURE)
                    .map_err(|e| backend("domain XML", e))
            })
            .await?
            .ok_or(DriverError::NotFound(uuid))?;
        if own.contains(&path_text(&dir.join(Use::Rescue.file("disk")))) {
            return self.start(uuid, Saved::Discard).await;
        }
        let running = self.power_state(uuid).await? == PowerState::Running;
        // Everything the rescue guest needs, and the instance's own definition saved, before
        // the instance's guest is touched.
        let prepared = async {
            let mut files = self.prepare_files(spec, images, Use::Rescue).await?;
            files.known_macs = nics_of_xml(&own);
            files.stable_rescue = stable;
            let partial = dir.join(format!("{UNRESCUE_XML}.part"));
            let save = async {
                tokio::fs::write(&partial, &own).await?;
                tokio::fs::rename(&partial, dir.join(UNRESCUE_XML)).await
            };
            save.await
                .map_err(|e| backend("saved domain definition", e))?;
            Ok::<_, DriverError>(self.xml_of(spec, &files))
        }
        .await;
        let xml = match prepared {
            Ok(xml) => xml,
            Err(e) => {
                self.remove_rescue_files(uuid, true).await;
                return Err(e);
            }
        };
        let rescued = async {
            self.off(uuid, timeout).await?;
            self.with_conn(move |c| {
                let d = Domain::define_xml(c, &xml).map_err(|e| backend("define", e))?;
                d.create().map(|_| ()).map_err(|e| backend("start", e))
            })
            .await
        }
        .await;
        if let Err(e) = rescued {
            tracing::warn!(instance = %uuid, error = %e, "rescue failed; putting back the instance's own guest");
            let _ = self.off(uuid, Duration::ZERO).await;
            let put_back = self
                .with_conn(move |c| {
                    Domain::define_xml(c, &own)
                        .map(|_| ())
                        .map_err(|e| backend("define", e))
                })
                .await;
            if put_back.is_ok() {
                self.remove_rescue_files(uuid, true).await;
                if running {
                    let _ = self.start(uuid, Saved::Discard).await;
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// While its own definition is saved: the rescue is not undone yet.
    async fn rescued(&self, uuid: InstanceUuid) -> Result<bool, DriverError> {
        Ok(self.instance_dir(uuid).join(UNRESCUE_XML).exists())
    }

    /// Nova's libvirt unrescue: the rescue guest off, the instance's own definition given
    /// back and started, the rescue's files removed. Idempotent: an instance that is not
    /// rescued is started.
    async fn unrescue(
        &self,
        uuid: InstanceUuid,
        _own: Option<&nova_core::rpc::OwnImage>,
    ) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let saved = self.instance_dir(uuid).join(UNRESCUE_XML);
        let own = match tokio::fs::read_to_string(&saved).await {
            Ok(xml) => xml,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.start(uuid, Saved::Discard).await;
            }
            Err(e) => return Err(backend("saved domain definition", e)),
        };
        self.off(uuid, Duration::ZERO).await?;
        self.with_conn(move |c| {
            Domain::define_xml(c, &own)
                .map(|_| ())
                .map_err(|e| backend("define", e))
        })
        .await?;
        self.remove_rescue_files(uuid, true).await;
        self.start(uuid, Saved::Discard).await
    }

    /// The disk kept by the resize goes.
    async fn confirm_resize(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let disk = self.instance_dir(uuid).join("disk");
        remove_if_there(&kept_disk(&disk)).await?;
        remove_if_there(&kept_stamp(&disk)).await
    }

    /// The guest shut down, the disk kept by the resize put back, the old flavor's vCPUs and
    /// memory set again, and the guest started if it ran (Nova's `finish_revert_migration`).
    async fn revert_resize(&self, uuid: InstanceUuid, flavor: &Flavor) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let disk = self.instance_dir(uuid).join("disk");
        let kept = kept_disk(&disk);
        let running = self.power_state(uuid).await? == PowerState::Running;
        let timeout = Duration::from_secs(self.settings.soft_reboot_timeout_s);
        self.off(uuid, timeout).await?;
        if kept.exists() {
            tokio::fs::rename(&kept, &disk)
                .await
                .map_err(|e| backend("kept disk", e))?;
        }
        remove_if_there(&kept_stamp(&disk)).await?;
        self.set_sizes(uuid, flavor).await?;
        if running {
            self.start(uuid, Saved::Discard).await?;
        }
        Ok(())
    }

    async fn power_on(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        self.start(uuid, Saved::Discard).await
    }

    /// Soft: an ACPI shutdown and a start once the guest is off (Nova's `_soft_reboot`),
    /// a reset when it does not stop in time. Hard: a reset of a running guest, a start of
    /// a stopped one.
    async fn reboot(&self, uuid: InstanceUuid, kind: RebootKind) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        let state = self.power_state(uuid).await?;
        if kind == RebootKind::Hard && state != PowerState::Running {
            // A hard reboot of a paused, suspended or crashed guest boots it afresh (Nova's
            // _hard_reboot destroys and creates the domain).
            self.with_domain(uuid, |d| {
                if d.is_active().unwrap_or(false) {
                    let _ = d.destroy();
                }
                Ok(())
            })
            .await?;
            return self.start(uuid, Saved::Discard).await;
        }
        if state != PowerState::Running {
            return self.start(uuid, Saved::Discard).await;
        }
        if kind == RebootKind::Soft {
            let asked = self
                .with_domain(uuid, |d| Ok(d.shutdown().is_ok()))
                .await?
                .ok_or(DriverError::NotFound(uuid))?;
            let limit = Duration::from_secs(self.settings.soft_reboot_timeout_s);
            if asked && self.wait_off(uuid, limit).await? {
                return self.start(uuid, Saved::Discard).await;
            }
            tracing::info!(instance = %uuid, "guest did not stop for a soft reboot: resetting");
        }
        self.with_domain(uuid, |d| match d.reset() {
            Ok(_) => Ok(()),
            // Stopped meanwhile: started below.
            Err(e) if e.code() == ErrorNumber::OperationInvalid => Ok(()),
            Err(e) => Err(backend("reset", e)),
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))?;
        self.start(uuid, Saved::Discard).await
    }

    /// libvirt's suspend: QEMU's vCPUs stopped, the guest's memory kept in the process.
    async fn pause(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        self.with_domain(uuid, |d| match d.get_state().map(|s| s.0) {
            Ok(sys::VIR_DOMAIN_PAUSED) => Ok(()),
            _ => d.suspend().map(|_| ()).map_err(|e| backend("pause", e)),
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    async fn unpause(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        self.with_domain(uuid, |d| match d.get_state().map(|s| s.0) {
            Ok(sys::VIR_DOMAIN_PAUSED) => d.resume().map(|_| ()).map_err(|e| backend("unpause", e)),
            _ => Ok(()),
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    /// A managed save, as Nova's libvirt driver suspends: the guest's memory written beside
    /// the domain by libvirt and QEMU gone; the domain is shut off until `resume`.
    async fn suspend(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        self.with_domain(uuid, |d| {
            if d.has_managed_save(0).unwrap_or(false) && !d.is_active().unwrap_or(true) {
                return Ok(());
            }
            d.managed_save(0)
                .map(|_| ())
                .map_err(|e| backend("managed save", e))
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    /// Starts the domain, which libvirt restores from its managed save.
    async fn resume(&self, uuid: InstanceUuid) -> Result<(), DriverError> {
        let _turn = self.turn(uuid).await;
        self.start(uuid, Saved::Restore).await
    }

    async fn power_state(&self, uuid: InstanceUuid) -> Result<PowerState, DriverError> {
        self.with_domain(uuid, |d| {
            d.get_state()
                .map(|s| power_of(s.0))
                .map_err(|e| backend("state", e))
        })
        .await?
        .ok_or(DriverError::NotFound(uuid))
    }

    async fn list_instances(&self) -> Result<Vec<DriverInstance>, DriverError> {
        let root = self.settings.instances_path.clone();
        let host = self.host.clone();
        let leases = self.virt_type != "test";
        self.with_conn(move |c| {
            let domains = c
                .list_all_domains(0)
                .map_err(|e| backend("list domains", e))?;
            let mut out = Vec::new();
            for d in domains {
                let Ok(name) = d.get_name() else { continue };
                let Some(uuid) = name
                    .strip_prefix("instance-")
                    .and_then(|u| u.parse::<uuid::Uuid>().ok())
                else {
                    continue;
                };
                // Another agent's guest on a shared libvirtd.
                if !root.join(uuid.to_string()).is_dir() {
                    continue;
                }
                let state = d.get_state().map(|s| s.0).unwrap_or(0);
                // The addresses its NICs hold now, keyed by the libvirt network: a lease
                // that came after the build reaches the server this way.
                let running = matches!(state, sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED);
                let addresses = if leases && running {
                    leased_addresses(&d)
                } else {
                    Vec::new()
                };
                out.push(DriverInstance {
                    uuid: InstanceUuid(uuid),
                    node: host.clone(),
                    power_state: power_of(state),
                    addresses,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn console_output(
        &self,
        uuid: InstanceUuid,
        lines: Option<usize>,
    ) -> Result<String, DriverError> {
        if self.with_domain(uuid, |_| Ok(())).await?.is_none() {
            return Err(DriverError::NotFound(uuid));
        }
        let dir = self.instance_dir(uuid);
        // The end of the current file, after the end of the one virtlogd rotated last when the
        // current one is short.
        let mut bytes = read_tail(&dir.join("console.log"), MAX_CONSOLE_BYTES).await?;
        if bytes.len() < MAX_CONSOLE_BYTES {
            let mut older =
                read_tail(&dir.join("console.log.0"), MAX_CONSOLE_BYTES - bytes.len()).await?;
            older.extend_from_slice(&bytes);
            bytes = older;
        }
        let text = String::from_utf8_lossy(last_bytes(&bytes, MAX_CONSOLE_BYTES)).into_owned();
        Ok(tail_lines(&text, lines))
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<InstanceUuid>> {
        self.watcher.as_ref().map(|_| self.events.subscribe())
    }

    /// libvirtd answers a call on a connection of its own within a few seconds: the shared
    /// one may be busy with a long call, and a hung daemon must not hang the heartbeat.
    async fn healthy(&self) -> Result<(), DriverError> {
        // One probe at a time: a probe stuck in a hung daemon holds its thread, and a new one
        // every heartbeat would pile them up.
        if self.probing.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(DriverError::Backend(
                "libvirt: the last health probe has not returned".into(),
            ));
        }
        // Cleared however the probe ends, even if its thread never starts.
        let done = ProbeDone(self.probing.clone());
        let uri = self.settings.uri.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let _done = done;
            let mut c = Connect::open(Some(&uri)).map_err(|e| backend("cannot connect", e))?;
            let answered = c.get_lib_version().map_err(|e| backend("no answer", e));
            let _ = c.close();
            answered.map(|_| ())
        });
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(backend("health probe", e)),
            Err(_) => Err(DriverError::Backend("libvirt: no answer within 5 s".into())),
        }
    }

    /// From the domain's info (state, memory, CPU time) as Nova's libvirt driver reports it.
    async fn diagnostics(&self, uuid: InstanceUuid) -> Result<Diagnostics, DriverError> {
        let virt_type = self.virt_type.clone();
        let info = self
            .with_domain(uuid, |d| {
                d.get_info().map_err(|e| backend("domain info", e))
            })
            .await?
            .ok_or(DriverError::NotFound(uuid))?;
        let mb = |kib: u64| i64::try_from(kib / 1024).ok();
        Ok(Diagnostics {
            driver: Some("libvirt".into()),
            power_state: Some(power_of(info.state)),
            hypervisor: Some(virt_type),
            hypervisor_os: Some("linux".into()),
            uptime_s: None,
            memory_max_mb: mb(info.max_mem),
            memory_used_mb: mb(info.memory),
            cpus: vec![CpuDiagnostics {
                id: Some(0),
                time_ns: i64::try_from(info.cpu_time).ok(),
                utilisation: None,
            }],
            nics: Vec::new(),
            disks: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nova_core::model::Flavor;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            uuid: InstanceUuid::new_v4(),
            name: "a <b> & 'c'".into(),
            project_id: "p".into(),
            user_id: "u".into(),
            node: "h".into(),
            flavor: Flavor {
                flavorid: "1".into(),
                name: "m1.tiny".into(),
                memory_mb: 128,
                vcpus: 2,
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
            networks: NetworkRequest::None,
            config_drive: false,
            kernel: None,
            ramdisk: None,
            os_command_line: Some("console=ttyS0 x=\"y\"".into()),
            bmc: None,
            nics: Vec::new(),
        }
    }

    fn files(kernel: bool) -> GuestFiles {
        GuestFiles {
            disk: "/i/disk".into(),
            kernel: kernel.then(|| "/i/kernel".into()),
            ramdisk: kernel.then(|| "/i/ramdisk".into()),
            config_drive: Some("/i/disk.config".into()),
            console_log: "/i/console.log".into(),
            ..GuestFiles::default()
        }
    }

    #[test]
    fn two_nics_on_one_network_are_two_ports_with_their_own_macs() {
        use nova_core::model::ChosenNetwork;
        let chosen = |id: &str, port: Option<&str>| ChosenNetwork {
            id: id.into(),
            name: id.into(),
            backend: format!("lv-{id}"),
            port: port.map(str::to_owned),
            fixed_ip: None,
            security_groups: Vec::new(),
        };
        let nic = |network: &str, port: &str, mac: &str| nova_core::rpc::Nic {
            network_id: network.into(),
            port_id: port.into(),
            mac: mac.into(),
            ips: Vec::new(),
            firewall: None,
        };
        let mut s = spec();
        // A, B, A again, and the user's port on A (listed first among the ports).
        s.networks = NetworkRequest::Chosen(vec![
            chosen("a", None),
            chosen("b", None),
            chosen("a", None),
            chosen("a", Some("mine")),
        ]);
        s.nics = vec![
            nic("a", "mine", "fa:16:3e:00:00:04"),
            nic("a", "p1", "fa:16:3e:00:00:01"),
            nic("b", "p2", "fa:16:3e:00:00:02"),
            nic("a", "p3", "fa:16:3e:00:00:03"),
        ];
        let ports: Vec<&str> = s
            .nics_by_choice()
            .iter()
            .map(|n| n.map_or("", |n| n.port_id.as_str()))
            .collect();
        assert_eq!(ports, ["p1", "p2", "p3", "mine"]);
        let networks: Vec<(String, String)> = ["a", "b", "a", "a"]
            .iter()
            .map(|n| (format!("lv-{n}"), (*n).to_owned()))
            .collect();
        let x = domain_xml(&s, "qemu", &files(false), &networks, "");
        let macs: Vec<usize> = (1..=4)
            .map(|i| {
                x.find(&format!("<mac address='fa:16:3e:00:00:0{i}'/>"))
                    .unwrap_or_else(|| panic!("MAC {i} in {x}"))
            })
            .collect();
        assert!(
            macs[0] < macs[1] && macs[1] < macs[2] && macs[2] < macs[3],
            "in the choice's order: {x}"
        );
    }

    #[test]
    fn the_domain_holds_the_flavor_the_files_and_novas_metadata() {
        let s = spec();
        let nets = vec![("default".to_owned(), "private".to_owned())];
        let xml = domain_xml(&s, "qemu", &files(true), &nets, "root=/dev/vda");
        assert!(xml.starts_with("<domain type='qemu'>"));
        assert!(xml.contains(&format!("<name>instance-{}</name>", s.uuid)));
        assert!(xml.contains(&format!("<uuid>{}</uuid>", s.uuid)));
        assert!(xml.contains("<memory unit='MiB'>128</memory>"));
        assert!(xml.contains("<vcpu>2</vcpu>"));
        assert!(xml.contains(NOVA_XMLNS));
        assert!(xml.contains("<nova:name>a &lt;b&gt; &amp; &apos;c&apos;</nova:name>"));
        assert!(xml.contains("<nova:flavor name=\"m1.tiny\" id=\"1\">"));
        assert!(xml.contains("<nova:project uuid=\"p\"/>"));
        assert!(xml.contains("<kernel>/i/kernel</kernel>"));
        assert!(xml.contains("<initrd>/i/ramdisk</initrd>"));
        assert!(xml.contains("<cmdline>console=ttyS0 x=&quot;y&quot;</cmdline>"));
        assert!(xml.contains("<source file='/i/disk'/>"));
        assert!(xml.contains("<source file='/i/disk.config'/>"));
        assert!(xml.contains("<log file='/i/console.log' append='on'/>"));
        assert!(xml.contains("<source network='default'/>"));
        assert!(xml.contains("<on_poweroff>destroy</on_poweroff>"));
        assert!(!xml.contains("host-passthrough"));
        let nics = nics_of_xml(&xml);
        assert_eq!(nics.len(), 1);
        assert!(nics[0].0.starts_with("fa:16:3e:"));
        assert_eq!(nics[0].1, "default");
    }

    /// The driver on libvirt's in-memory test driver (no daemon), with its own instances
    /// directory, and a real qcow2 base image.
    async fn test_driver() -> (LibvirtDriver, tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let settings = LibvirtSettings {
            uri: "test:///default".into(),
            instances_path: tmp.path().join("instances"),
            ..Default::default()
        };
        let base = tmp.path().join("base.qcow2");
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            base.as_os_str(),
            "16M".as_ref(),
        ])
        .await
        .unwrap();
        let d = LibvirtDriver::connect("h", settings).await.unwrap();
        (d, tmp, base)
    }

    fn qcow2_spec() -> InstanceSpec {
        let mut s = spec();
        s.image = Some(nova_core::rpc::ImageSpec {
            id: "img".into(),
            container_format: Some("bare".into()),
            disk_format: Some("qcow2".into()),
            size: 0,
            hash_algo: "sha512".into(),
            hash_value: String::new(),
        });
        s
    }

    #[tokio::test]
    async fn a_rescue_boots_the_rescue_disk_beside_the_own_and_an_unrescue_gives_it_back() {
        let (d, tmp, base) = test_driver().await;
        // On the test driver's network `default`, with no port: a MAC of the driver's.
        let mut s = qcow2_spec();
        s.networks = NetworkRequest::Auto;
        d.spawn(&s, &BootImages::disk(&base)).await.unwrap();
        let dir = d.instance_dir(s.uuid);
        let xml = |d: &LibvirtDriver| {
            let c = d.connection.lock().unwrap().clone().unwrap();
            lookup(&c, s.uuid)
                .unwrap()
                .unwrap()
                .get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                .unwrap()
        };
        let own = xml(&d);
        assert!(!nics_of_xml(&own).is_empty(), "a NIC without a port: {own}");
        let rescue_disk = path_text(&dir.join("disk.rescue"));
        // A rescue image that cannot be read changes nothing: the guest runs on its own disk.
        let missing = BootImages::disk(tmp.path().join("missing.qcow2"));
        assert!(d.rescue(&s, &missing, None, Duration::ZERO).await.is_err());
        assert_eq!(xml(&d), own);
        assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        assert!(!dir.join(UNRESCUE_XML).exists() && !dir.join("disk.rescue").exists());

        for _ in 0..2 {
            d.rescue(&s, &BootImages::disk(&base), None, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
            let rescued = xml(&d);
            assert!(rescued.contains(&rescue_disk), "{rescued}");
            assert!(
                rescued.contains(&path_text(&dir.join("disk"))) && rescued.contains("'vdb'"),
                "its own disk is the second: {rescued}"
            );
            assert!(dir.join(UNRESCUE_XML).is_file());
            assert!(d.rescued(s.uuid).await.unwrap());
            assert_eq!(
                nics_of_xml(&rescued),
                nics_of_xml(&own),
                "the same NICs and MACs"
            );
        }
        for _ in 0..2 {
            d.unrescue(s.uuid, None).await.unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
            assert!(!xml(&d).contains(&rescue_disk));
            assert!(!dir.join(UNRESCUE_XML).exists() && !dir.join("disk.rescue").exists());
            assert!(!d.rescued(s.uuid).await.unwrap());
        }
        assert_eq!(xml(&d), own);

        // A stable device rescue: its own disk stays `vda`, the rescue disk comes last on the
        // bus asked for and boots first; unrescue gives the own definition back.
        let stable = nova_core::rpc::StableRescue {
            device: nova_core::rpc::RescueDevice::Disk,
            bus: nova_core::rpc::RescueBus::Usb,
        };
        d.rescue(&s, &BootImages::disk(&base), Some(stable), Duration::ZERO)
            .await
            .unwrap();
        let rescued = xml(&d);
        let own_disk = rescued
            .find(&path_text(&dir.join("disk")))
            .expect("its own disk");
        let rescue_at = rescued.find(&rescue_disk).expect("the rescue disk");
        assert!(own_disk < rescue_at, "the rescue disk last: {rescued}");
        assert!(
            rescued.contains("dev='vda'") && rescued.contains("bus='usb'"),
            "{rescued}"
        );
        assert!(rescued.contains("<boot order='1'/>"), "{rescued}");
        assert_eq!(nics_of_xml(&rescued), nics_of_xml(&own));
        d.unrescue(s.uuid, None).await.unwrap();
        assert_eq!(xml(&d), own);
        d.destroy(s.uuid).await.unwrap();
    }

    #[test]
    fn a_stable_rescue_keeps_the_own_disk_first_and_boots_the_rescue_disk_last() {
        use nova_core::rpc::{RescueBus, RescueDevice, StableRescue};
        let mut f = files(false);
        f.disk = "/i/disk.rescue".into();
        f.rescued_disk = Some("/i/disk".into());
        let legacy = domain_xml(&spec(), "qemu", &f, &[], "");
        assert!(legacy.contains("<boot dev='hd'/>"), "{legacy}");
        assert!(
            legacy.find("/i/disk.rescue") < legacy.find("/i/disk'"),
            "the legacy rescue boots the rescue disk as vda: {legacy}"
        );
        for (device, bus, target, controller) in [
            (
                RescueDevice::Disk,
                RescueBus::Virtio,
                "<target dev='vdb' bus='virtio'/>",
                false,
            ),
            (
                RescueDevice::Disk,
                RescueBus::Scsi,
                "<target dev='sda' bus='scsi'/>",
                true,
            ),
            (
                RescueDevice::Cdrom,
                RescueBus::Ide,
                "<target dev='hda' bus='ide'/>",
                false,
            ),
        ] {
            f.stable_rescue = Some(StableRescue { device, bus });
            let x = domain_xml(&spec(), "qemu", &f, &[], "");
            assert!(!x.contains("<boot dev="), "per-device boot order only: {x}");
            let own = x.find("<source file='/i/disk'/>").expect("own disk");
            let drive = x.find("/i/disk.config").expect("config drive");
            let rescue = x
                .find("<source file='/i/disk.rescue'/>")
                .expect("rescue disk");
            assert!(own < drive && drive < rescue, "{x}");
            assert!(
                x[own..].starts_with("<source file='/i/disk'/>\n      <target dev='vda'"),
                "{x}"
            );
            assert!(x[rescue..].contains(target), "{x}");
            assert!(x[rescue..].contains("<boot order='1'/>"), "{x}");
            assert_eq!(x.contains("model='virtio-scsi'"), controller, "{x}");
            assert_eq!(
                x.contains("device='cdrom'>\n      <driver name='qemu' type='qcow2'/>"),
                device == RescueDevice::Cdrom,
                "{x}"
            );
        }
    }

    #[tokio::test]
    async fn every_call_is_idempotent_and_ends_in_the_state_it_names() {
        let (d, _tmp, base) = test_driver().await;
        assert_eq!(d.virt_type(), "test");
        let s = qcow2_spec();
        let images = BootImages::disk(&base);
        let first = d.spawn(&s, &images).await.unwrap();
        assert_eq!(first.power_state, PowerState::Running);
        let again = d.spawn(&s, &images).await.unwrap();
        assert_eq!(again.power_state, PowerState::Running);
        let dir = d.instance_dir(s.uuid);
        assert!(
            dir.join("disk").is_file(),
            "the overlay is in the instance's directory"
        );
        let listed = d.list_instances().await.unwrap();
        assert_eq!(listed.iter().filter(|i| i.uuid == s.uuid).count(), 1);
        // The test driver's own domain `test` is not an instance.
        assert!(listed
            .iter()
            .all(|i| dir.parent().unwrap().join(i.uuid.to_string()).is_dir()));

        for _ in 0..2 {
            d.power_off(s.uuid, Duration::from_secs(5)).await.unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Shutdown);
        }
        for _ in 0..2 {
            d.power_on(s.uuid).await.unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        }
        d.reboot(s.uuid, RebootKind::Hard).await.unwrap();
        assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        d.reboot(s.uuid, RebootKind::Soft).await.unwrap();
        assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        d.power_off(s.uuid, Duration::ZERO).await.unwrap();
        d.reboot(s.uuid, RebootKind::Soft).await.unwrap();
        assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        for _ in 0..2 {
            d.pause(s.uuid).await.unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Paused);
        }
        for _ in 0..2 {
            d.unpause(s.uuid).await.unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        }
        let saved = |d: &LibvirtDriver| {
            let c = d.connection.lock().unwrap().clone().unwrap();
            lookup(&c, s.uuid)
                .unwrap()
                .unwrap()
                .has_managed_save(0)
                .unwrap()
        };
        for _ in 0..2 {
            d.suspend(s.uuid).await.unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Shutdown);
            assert!(saved(&d));
        }
        for _ in 0..2 {
            d.resume(s.uuid).await.unwrap();
            assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        }
        // A hard reboot of a suspended guest boots it afresh, and so does a power on (an
        // admin's reset of its state, say): its saved memory is dropped.
        d.suspend(s.uuid).await.unwrap();
        d.reboot(s.uuid, RebootKind::Hard).await.unwrap();
        assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        assert!(!saved(&d));
        d.suspend(s.uuid).await.unwrap();
        d.power_on(s.uuid).await.unwrap();
        assert_eq!(d.power_state(s.uuid).await.unwrap(), PowerState::Running);
        assert!(!saved(&d));
        let diag = d.diagnostics(s.uuid).await.unwrap();
        assert_eq!(diag.driver.as_deref(), Some("libvirt"));
        assert_eq!(d.console_output(s.uuid, Some(5)).await.unwrap(), "");
        // The log virtlogd rotated last comes before the current one.
        std::fs::write(dir.join("console.log.0"), "one\ntwo\n").unwrap();
        std::fs::write(dir.join("console.log"), "three\n").unwrap();
        assert_eq!(
            d.console_output(s.uuid, None).await.unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            d.console_output(s.uuid, Some(3)).await.unwrap(),
            "two\nthree\n"
        );

        // Suspended when destroyed: its save goes with it.
        d.suspend(s.uuid).await.unwrap();
        for _ in 0..2 {
            d.destroy(s.uuid).await.unwrap();
            assert!(matches!(
                d.power_state(s.uuid).await,
                Err(DriverError::NotFound(_))
            ));
            assert!(!dir.exists(), "destroy leaves no file");
        }
        assert!(matches!(
            d.power_on(s.uuid).await,
            Err(DriverError::NotFound(_))
        ));
        assert!(matches!(
            d.console_output(s.uuid, None).await,
            Err(DriverError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_bad_image_fails_the_spawn_and_leaves_nothing() {
        let (d, tmp, base) = test_driver().await;
        // Not a qcow2 file while the image says qcow2.
        let junk = tmp.path().join("junk");
        std::fs::write(&junk, b"this is not a disk image").unwrap();
        let s = qcow2_spec();
        let err = d.spawn(&s, &BootImages::disk(&junk)).await.unwrap_err();
        let DriverError::Invalid(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("not a valid qcow2 image"), "{message}");
        assert!(!d.instance_dir(s.uuid).exists());
        assert!(matches!(
            d.power_state(s.uuid).await,
            Err(DriverError::NotFound(_))
        ));

        // Larger than the flavor's root disk.
        let big = tmp.path().join("big.qcow2");
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            big.as_os_str(),
            "2G".as_ref(),
        ])
        .await
        .unwrap();
        let err = d.spawn(&s, &BootImages::disk(&big)).await.unwrap_err();
        assert!(
            err.public_message().contains("Flavor's disk is too small"),
            "{err:?}"
        );
        assert!(!d.instance_dir(s.uuid).exists());

        // A qcow2 whose data lives in an external file (a host path QEMU would read).
        let data = tmp.path().join("data.raw");
        let with_data = tmp.path().join("with-data.qcow2");
        let opt = format!("data_file={}", data.display());
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-o".as_ref(),
            opt.as_ref(),
            with_data.as_os_str(),
            "16M".as_ref(),
        ])
        .await
        .unwrap();
        let err = d
            .spawn(&s, &BootImages::disk(&with_data))
            .await
            .unwrap_err();
        assert!(err.public_message().contains("has a data file"), "{err:?}");
        assert!(!d.instance_dir(s.uuid).exists());

        // A format a VM here does not boot.
        let mut vmdk = s.clone();
        if let Some(i) = vmdk.image.as_mut() {
            i.disk_format = Some("vmdk".into());
        }
        let err = d.spawn(&vmdk, &BootImages::disk(&base)).await.unwrap_err();
        assert!(err.public_message().contains("disk_format vmdk"), "{err:?}");

        // No image at all.
        let err = d.spawn(&s, &BootImages::default()).await.unwrap_err();
        assert!(matches!(err, DriverError::Invalid(_)), "{err:?}");
        drop(base);
    }

    #[tokio::test]
    async fn inventory_is_one_qemu_node_and_another_agents_guests_are_not_listed() {
        let (d, _tmp, base) = test_driver().await;
        let (other, _tmp2, _) = test_driver().await;
        let nodes = d.inventory().await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].node_type, NodeType::Vm);
        assert_eq!(nodes[0].hypervisor_type, "QEMU");
        assert!(nodes[0].total.vcpus > 0);
        let s = qcow2_spec();
        other.spawn(&s, &BootImages::disk(&base)).await.unwrap();
        assert!(d
            .list_instances()
            .await
            .unwrap()
            .iter()
            .all(|i| i.uuid != s.uuid));
        assert!(other
            .list_instances()
            .await
            .unwrap()
            .iter()
            .any(|i| i.uuid == s.uuid));
        other.destroy(s.uuid).await.unwrap();
    }

    #[test]
    fn an_event_line_names_its_instance() {
        let u = uuid::Uuid::new_v4();
        let line = format!("event 'lifecycle' for domain 'instance-{u}': Stopped Shutdown");
        assert_eq!(instance_of_event(&line), Some(InstanceUuid(u)));
        assert_eq!(
            instance_of_event("event 'lifecycle' for domain 'probe': Started Booted"),
            None
        );
        assert_eq!(instance_of_event("garbage"), None);
    }

    #[test]
    fn without_a_kernel_the_guest_boots_its_disk() {
        let xml = domain_xml(&spec(), "kvm", &files(false), &[], "x");
        assert!(xml.contains("<boot dev='hd'/>"));
        assert!(!xml.contains("<kernel>"));
        assert!(!xml.contains("<interface"));
        assert!(xml.contains("<cpu mode='host-passthrough'/>"));
    }
}
