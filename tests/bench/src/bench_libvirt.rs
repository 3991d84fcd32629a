//! VM boot benchmark: POST → ACTIVE through the whole distributed stack (API, RabbitMQ,
//! conductor, PostgreSQL, agent, libvirt driver) against a raw `virsh create` of the same
//! domain XML, side by side in one run, one boot at a time, alternating; and POST → the
//! guest's marker on its serial console against `virsh create` → the marker.
//!
//! `cargo run --release -p e2e --bin bench-libvirt -- [--boots N]`
//!
//! Needs what `scripts/test.sh` starts (PostgreSQL, RabbitMQ, libvirtd with QEMU) and the test
//! guest (`scripts/guest-image.sh`, built on first use). The stack's ACTIVE is the moment
//! PostgreSQL tells the benchmark that the transaction making the server ACTIVE committed (a
//! notification from a trigger on the benchmark's own database); the marker is read from the
//! console log file in both cases, every 10 ms. The raw side's files (overlay, kernel,
//! ramdisk) are made before its clock starts: it is the hypervisor's own operation.

use compute_agent::settings::DriverKind;
use drivers::libvirt::{domain_xml, LibvirtSettings};
use e2e::activations::Activations;
use e2e::client::Client;
use e2e::stack::{Distributed, Options, Stack};
use e2e::vm::{upload_guest, virsh, Instances, GUEST_CMDLINE, MARKER};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const MEMORY_MB: i64 = 128;
const LIMIT: Duration = Duration::from_secs(120);

/// Waits until the console log at `path` holds the marker; the moment it did.
async fn marker_in(path: &Path) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(text) = tokio::fs::read(path).await {
            if text.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
                return Ok(Instant::now());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no marker in {}", path.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One boot through the service: (POST → ACTIVE, POST → marker) in ms.
async fn boot_through_stack(
    activations: &mut Activations,
    c: &Client,
    image: &str,
    instances: &Path,
    i: usize,
) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": format!("bench-{i}"), "imageRef": image,
                               "flavorRef": "bench-v", "networks": "none"}}),
        )
        .await?;
    anyhow::ensure!(r.status == 202, "create: {} {}", r.status, r.body);
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let active = activations.of(&id, LIMIT).await?;
    let marker = marker_in(&instances.join(&id).join("console.log")).await?;
    let ms = |at: Instant| at.duration_since(t0).as_secs_f64() * 1000.0;
    assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    c.wait_gone(&id, LIMIT).await?;
    Ok((ms(active), ms(marker)))
}

/// One raw boot: the same domain as the driver writes, its files made first, then
/// `virsh create`; (create, create → marker) in ms.
async fn boot_raw(spec: &nova_core::rpc::InstanceSpec, dir: &Path) -> anyhow::Result<(f64, f64)> {
    let files = e2e_bench::raw_guest_files(dir).await?;
    let virt_type = if drivers::libvirt::kvm_works() {
        "kvm"
    } else {
        "qemu"
    };
    let xml = domain_xml(spec, virt_type, &files, &[], GUEST_CMDLINE);
    let path = dir.join("domain.xml");
    tokio::fs::write(&path, xml).await?;
    let t0 = Instant::now();
    virsh(&["create", &path.to_string_lossy()]).await?;
    let created = t0.elapsed().as_secs_f64() * 1000.0;
    let marker = marker_in(&files.console_log).await?;
    let to_marker = marker.duration_since(t0).as_secs_f64() * 1000.0;
    virsh(&["destroy", &format!("instance-{}", spec.uuid)]).await?;
    tokio::fs::remove_dir_all(dir).await?;
    Ok((created, to_marker))
}

fn report(label: &str, sorted: &[f64]) {
    println!(
        "  {label:<44} p50 {:>6.0} ms, p90 {:>6.0} ms",
        e2e::percentile(sorted, 0.5),
        e2e::percentile(sorted, 0.9)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = e2e_bench::count_arg("--boots", 10)?;
    e2e::init_logging();
    let instances = Instances::new()?;
    let host = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let options = Options {
        driver: DriverKind::Libvirt,
        libvirt: LibvirtSettings {
            instances_path: instances.path().to_owned(),
            network: "none".into(),
            ..Default::default()
        },
        host,
        // Production's intervals: the sync loop's libvirt calls would otherwise compete.
        heartbeat_ms: 10_000,
        sync_ms: 10_000,
        service_down_s: 60,
        ..Options::default()
    };
    let stack = Distributed::start(options).await?;
    let mut activations = Activations::watch(&stack.db_url).await?;
    let admin = Client::new(stack.api_url(), "admin:admin");
    let r = admin
        .post(
            "/flavors",
            &json!({"flavor": {"name": "bench-v", "id": "bench-v", "ram": MEMORY_MB,
                               "vcpus": 1, "disk": 1}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "flavor: {}", r.body);
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.37");
    let image = upload_guest(&c, "").await?;
    let raw_dir = instances.path().join("raw");

    // Warm-up: the first boot fetches the images into the host's cache.
    boot_through_stack(&mut activations, &c, &image, instances.path(), 0).await?;
    let mut spec = e2e_bench::raw_spec("bench-v", MEMORY_MB, 1);
    boot_raw(&spec, &raw_dir).await?;

    let (mut active, mut marker, mut raw, mut raw_marker) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut paired = Vec::new();
    for i in 1..=n {
        spec.uuid = nova_core::ids::InstanceUuid::new_v4();
        let (s, r) = if i % 2 == 1 {
            let s = boot_through_stack(&mut activations, &c, &image, instances.path(), i).await?;
            (s, boot_raw(&spec, &raw_dir).await?)
        } else {
            let r = boot_raw(&spec, &raw_dir).await?;
            (
                boot_through_stack(&mut activations, &c, &image, instances.path(), i).await?,
                r,
            )
        };
        active.push(s.0);
        marker.push(s.1);
        raw.push(r.0);
        raw_marker.push(r.1);
        paired.push(s.0 - r.0);
    }
    for v in [
        &mut active,
        &mut marker,
        &mut raw,
        &mut raw_marker,
        &mut paired,
    ] {
        v.sort_by(f64::total_cmp);
    }
    let virt_type = if drivers::libvirt::kvm_works() {
        "KVM"
    } else {
        "TCG"
    };
    println!("VM boots ({virt_type}), {n} each, one at a time, alternating:");
    report("through the service, POST → ACTIVE:", &active);
    report("raw `virsh create` of the same domain:", &raw);
    report("through the service, POST → marker:", &marker);
    report("raw `virsh create` → marker:", &raw_marker);
    let (a50, r50) = (e2e::percentile(&active, 0.5), e2e::percentile(&raw, 0.5));
    let (m50, rm50) = (
        e2e::percentile(&marker, 0.5),
        e2e::percentile(&raw_marker, 0.5),
    );
    println!(
        "  overhead at p50, POST → ACTIVE: {:.0} ms = {:.1} % of the raw create",
        a50 - r50,
        (a50 - r50) / r50 * 100.0
    );
    println!(
        "  overhead at p50, POST → marker: {:.0} ms = {:.1} % of the raw create → marker",
        m50 - rm50,
        (m50 - rm50) / rm50 * 100.0
    );
    let p50 = e2e::percentile(&paired, 0.5);
    println!("  paired (each service boot minus the raw create next to it): median {p50:.0} ms");
    Ok(())
}
