//! What the benchmarks share: each benchmark is a binary of its own (`src/bench_*.rs`); the
//! figures they print are computed here alike.

pub mod actions;

use std::time::Duration;

/// The value at fraction `p` of `sorted` (nearest rank); NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A distributed stack whose one agent drives Docker on host `host`, its state in `state`,
/// with production's intervals (the sync loop's engine calls would otherwise compete with
/// what is measured) and no firewall.
pub fn docker_stack(state: &std::path::Path, host: &str) -> e2e::stack::Options {
    e2e::stack::Options {
        driver: compute_agent::settings::DriverKind::Docker,
        docker: drivers::docker::DockerSettings {
            state_dir: state.to_owned(),
            firewall: e2e::docker::no_firewall(),
            ..Default::default()
        },
        host: host.to_owned(),
        heartbeat_ms: 10_000,
        sync_ms: 10_000,
        service_down_s: 60,
        ..e2e::stack::Options::default()
    }
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The value after `flag` on the command line (`--rounds 10`), else `default`; any other
/// argument is an error.
pub fn count_arg(flag: &str, default: usize) -> anyhow::Result<usize> {
    let mut n = default;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            a if a == flag => n = it.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(n)
}

/// The files of a raw test guest in `dir`, made afresh as the libvirt driver makes an
/// instance's (a qcow2 overlay of the test guest's disk, its kernel and ramdisk beside it), so
/// that a raw domain of the driver's definition can run on them.
pub async fn raw_guest_files(
    dir: &std::path::Path,
) -> anyhow::Result<drivers::libvirt::GuestFiles> {
    let g = e2e::vm::guest().await?;
    let _ = tokio::fs::remove_dir_all(dir).await;
    tokio::fs::create_dir_all(dir).await?;
    let disk = dir.join("disk");
    let ok = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(std::fs::canonicalize(&g.disk)?)
        .arg(&disk)
        .arg("1G")
        .status()
        .await?;
    anyhow::ensure!(ok.success(), "qemu-img create");
    tokio::fs::copy(&g.kernel, dir.join("kernel")).await?;
    tokio::fs::copy(&g.ramdisk, dir.join("ramdisk")).await?;
    Ok(drivers::libvirt::GuestFiles {
        disk,
        kernel: Some(dir.join("kernel")),
        ramdisk: Some(dir.join("ramdisk")),
        config_drive: None,
        console_log: dir.join("console.log"),
        ..Default::default()
    })
}

/// The spec of a raw test guest on flavor `flavor` (`memory_mb` MiB, `vcpus`, a 1 GB root
/// disk), booted by the test guest's kernel, without networks.
pub fn raw_spec(flavor: &str, memory_mb: i64, vcpus: i64) -> nova_core::rpc::InstanceSpec {
    nova_core::rpc::InstanceSpec {
        uuid: nova_core::ids::InstanceUuid::new_v4(),
        name: "bench-raw".into(),
        project_id: "bench".into(),
        user_id: "bench".into(),
        node: "bench".into(),
        flavor: nova_core::model::Flavor {
            flavorid: flavor.into(),
            name: flavor.into(),
            memory_mb,
            vcpus,
            root_gb: 1,
            ephemeral_gb: 0,
            swap: 0,
            rxtx_factor: 1.0,
            is_public: true,
            disabled: false,
            description: None,
            extra_specs: Default::default(),
        },
        image_ref: "bench".into(),
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
        os_command_line: Some(e2e::vm::GUEST_CMDLINE.into()),
        bmc: None,
        nics: Vec::new(),
    }
}
