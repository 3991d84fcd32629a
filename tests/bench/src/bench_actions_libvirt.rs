//! Server action benchmark on libvirt (#19): each action through the whole distributed stack
//! (API, RabbitMQ, conductor, PostgreSQL, agent, libvirt driver) against libvirt's own calls
//! for the same operation on a domain of the same definition, side by side in one run.
//!
//! `cargo run --release -p e2e-bench --bin bench-actions-libvirt -- [--rounds N]`
//!
//! Needs what `scripts/test.sh` starts (PostgreSQL, RabbitMQ, libvirtd with QEMU) and the test
//! guest (`scripts/guest-image.sh`, built on first use). An action's time through the service
//! runs from the moment the client sends its POST to the moment PostgreSQL tells the benchmark
//! that the transaction ending the server's task committed (as `bench-actions`). The raw side
//! is libvirt's C API through the same binding the driver uses, in this process (no `virsh`
//! process to start, which would flatter the ratio): destroy (the stack stops without grace),
//! create, reset, suspend, resume, managed save, create from it; a resize is the guest
//! destroyed, its disk copied aside (the revert's copy), vCPUs and memory set in the
//! persistent definition and the domain created; a confirmResize removes that copy; a snapshot
//! is the guest paused, its disk flattened by `qemu-img convert` and the guest resumed (the
//! service's time includes the upload to the image service).

use compute_agent::settings::DriverKind;
use drivers::libvirt::{domain_xml, LibvirtSettings};
use e2e::activations::TaskEnds;
use e2e::client::Client;
use e2e::stack::{Distributed, Options, Stack};
use e2e::vm::{upload_guest, Instances, GUEST_CMDLINE};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use virt::connect::Connect;
use virt::domain::Domain;

/// The flavors' sizes: (vCPUs, MiB). One root disk size for both: a resize that grew the
/// disk could not be resized back down.
const SMALL: (u32, u64) = (1, 128);
const LARGE: (u32, u64) = (2, 192);

/// The pause before each step: QEMU goes on with its own work after libvirt answers.
const SETTLE: Duration = Duration::from_millis(200);

const ACTIONS: &[&str] = &[
    "stop",
    "start",
    "reboot",
    "pause",
    "unpause",
    "suspend",
    "resume",
    "resize",
    "confirmResize",
    "createImage",
];

/// The raw domain: its connection, its name and its files.
struct Raw {
    conn: Arc<Connect>,
    name: String,
    dir: PathBuf,
}

impl Raw {
    /// Runs `f` on the domain in a blocking thread (libvirt's calls block).
    async fn on<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Domain) -> Result<T, virt::error::Error> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (conn, name) = (self.conn.clone(), self.name.clone());
        Ok(tokio::task::spawn_blocking(move || {
            let d = Domain::lookup_by_name(&conn, &name)?;
            f(&d)
        })
        .await??)
    }

    /// libvirt's calls for `action`; returns ms.
    async fn act(&self, action: &str, (vcpus, mib): (u32, u64)) -> anyhow::Result<f64> {
        let disk = self.dir.join("disk");
        let kept = self.dir.join("disk.kept");
        let t0 = Instant::now();
        match action {
            "stop" => self.on(|d| d.destroy()).await?,
            "start" | "resume" => self.on(|d| d.create().map(|_| ())).await?,
            "reboot" => self.on(|d| d.reset().map(|_| ())).await?,
            "pause" => self.on(|d| d.suspend().map(|_| ())).await?,
            "unpause" => self.on(|d| d.resume().map(|_| ())).await?,
            "suspend" => self.on(|d| d.managed_save(0).map(|_| ())).await?,
            "resize" => {
                self.on(|d| d.destroy()).await?;
                tokio::fs::copy(&disk, &kept).await?;
                self.on(move |d| {
                    use virt::sys;
                    let config = sys::VIR_DOMAIN_AFFECT_CONFIG;
                    d.set_vcpus_flags(vcpus, config | sys::VIR_DOMAIN_VCPU_MAXIMUM)?;
                    d.set_vcpus_flags(vcpus, config)?;
                    d.set_memory_flags(mib * 1024, config | sys::VIR_DOMAIN_MEM_MAXIMUM)?;
                    d.set_memory_flags(mib * 1024, config)?;
                    d.create().map(|_| ())
                })
                .await?;
            }
            "confirmResize" => tokio::fs::remove_file(&kept).await?,
            "createImage" => {
                let into = self.dir.join("snapshot.qcow2");
                self.on(|d| d.suspend().map(|_| ())).await?;
                let ok = tokio::process::Command::new("qemu-img")
                    .args(["convert", "-U", "-q", "-O", "qcow2"])
                    .arg(&disk)
                    .arg(&into)
                    .status()
                    .await?;
                self.on(|d| d.resume().map(|_| ())).await?;
                anyhow::ensure!(ok.success(), "qemu-img convert");
                let elapsed = e2e_bench::ms(t0.elapsed());
                tokio::fs::remove_file(&into).await?;
                return Ok(elapsed);
            }
            other => anyhow::bail!("no raw call for {other}"),
        }
        Ok(e2e_bench::ms(t0.elapsed()))
    }
}

/// The raw domain, defined and started from the definition the driver writes for `spec`, its
/// files (overlay, kernel, ramdisk) in `dir`.
async fn raw_domain(spec: &nova_core::rpc::InstanceSpec, dir: &Path) -> anyhow::Result<Raw> {
    let files = e2e_bench::raw_guest_files(dir).await?;
    let virt_type = if drivers::libvirt::kvm_works() {
        "kvm"
    } else {
        "qemu"
    };
    let xml = domain_xml(spec, virt_type, &files, &[], GUEST_CMDLINE);
    let conn = tokio::task::spawn_blocking(|| Connect::open(Some("qemu:///system"))).await??;
    let raw = Raw {
        conn: Arc::new(conn),
        name: format!("instance-{}", spec.uuid),
        dir: dir.to_owned(),
    };
    let c = raw.conn.clone();
    tokio::task::spawn_blocking(move || {
        let d = Domain::define_xml(&c, &xml)?;
        d.create().map(|_| ())
    })
    .await??;
    Ok(raw)
}

async fn flavor(admin: &Client, id: &str, (vcpus, mib): (u32, u64)) -> anyhow::Result<()> {
    let r = admin
        .post(
            "/flavors",
            &json!({"flavor": {"name": id, "id": id, "ram": mib, "vcpus": vcpus, "disk": 1}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "flavor: {}", r.body);
    let r = admin
        .post(
            &format!("/flavors/{id}/os-extra_specs"),
            &json!({"extra_specs": {"node:type": "vm"}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "extra specs: {}", r.body);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = e2e_bench::count_arg("--rounds", 10)?;
    e2e::init_logging();
    let instances = Instances::new()?;
    let host = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let options = Options {
        driver: DriverKind::Libvirt,
        libvirt: LibvirtSettings {
            instances_path: instances.path().to_owned(),
            network: "none".into(),
            // The resize's shutdown without grace, as the raw side's destroy.
            soft_reboot_timeout_s: 0,
            ..Default::default()
        },
        // A stop without grace, as the raw destroy.
        graceful_shutdown_s: 0,
        host,
        // Production's intervals: the sync loop's libvirt calls would otherwise compete.
        heartbeat_ms: 10_000,
        sync_ms: 10_000,
        service_down_s: 60,
        ..Options::default()
    };
    let stack = Distributed::start(options).await?;
    let mut ends = TaskEnds::watch(&stack.db_url).await?;
    let admin = Client::new(stack.api_url(), "admin:admin");
    flavor(&admin, "bench-small", SMALL).await?;
    flavor(&admin, "bench-large", LARGE).await?;
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.45");
    let image = upload_guest(&c, "").await?;
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "bench-actions", "imageRef": image,
                               "flavorRef": "bench-small", "networks": "none"}}),
        )
        .await?;
    anyhow::ensure!(r.status == 202, "create: {}", r.body);
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    c.wait_status(&id, "ACTIVE", Duration::from_secs(120))
        .await?;
    // The raw domain in a directory of its own, not the agent's (whose sync would take it for
    // one of its guests); `Instances` removes it should the run fail.
    let raw_instances = Instances::new()?;
    let spec = e2e_bench::raw_spec("bench-small", i64::try_from(SMALL.1)?, i64::from(SMALL.0));
    let raw = raw_domain(&spec, &raw_instances.path().join(spec.uuid.to_string())).await?;

    let mut samples = e2e_bench::actions::Samples::default();
    for round in 0..n {
        // Each round resizes to the other flavor.
        let (target, sizes) = if round % 2 == 0 {
            ("bench-large", LARGE)
        } else {
            ("bench-small", SMALL)
        };
        for action in ACTIONS {
            // The order alternates, so that neither side always comes right after the other.
            let through = e2e_bench::actions::through_stack;
            let (s, r) = if round % 2 == 0 {
                tokio::time::sleep(SETTLE).await;
                let s = through(&mut ends, &c, &id, action, target).await?;
                tokio::time::sleep(SETTLE).await;
                (s, raw.act(action, sizes).await?)
            } else {
                tokio::time::sleep(SETTLE).await;
                let r = raw.act(action, sizes).await?;
                tokio::time::sleep(SETTLE).await;
                (through(&mut ends, &c, &id, action, target).await?, r)
            };
            samples.record(action, s, Some(r));
        }
    }
    raw.on(|d| {
        let _ = d.destroy();
        d.undefine()
    })
    .await?;
    let virt_type = if drivers::libvirt::kvm_works() {
        "KVM"
    } else {
        "TCG"
    };
    samples.print(
        &format!(
            "server actions on libvirt ({virt_type}), {n} rounds, one at a time, alternating:"
        ),
        "libvirt's calls",
        ACTIONS,
    );
    Ok(())
}
