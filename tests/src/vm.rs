//! What the libvirt tests share: the test guest (Debian's kernel and a busybox initramfs,
//! built once by `scripts/guest-image.sh`), its upload as Nova boots it (a qcow2 disk naming
//! its kernel and ramdisk), and a guard that removes a test's domains however it ends.

use crate::client::Client;
use serde_json::json;
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

/// What the guest prints on its serial console once it is up.
pub const MARKER: &str = "NOVA-TEST-GUEST-UP";

pub struct Guest {
    pub kernel: PathBuf,
    pub ramdisk: PathBuf,
    pub disk: PathBuf,
    /// The kernel and initramfs on a BIOS-bootable ISO (what a bare-metal machine boots).
    pub iso: PathBuf,
}

static GUEST: OnceCell<Guest> = OnceCell::const_new();

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// The test guest's files, built on first use.
pub async fn guest() -> anyhow::Result<&'static Guest> {
    GUEST
        .get_or_try_init(|| async {
            let dir = repo().join("var").join("guest");
            let out = tokio::process::Command::new(repo().join("scripts/guest-image.sh"))
                .arg(&dir)
                .output()
                .await?;
            anyhow::ensure!(
                out.status.success(),
                "scripts/guest-image.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(Guest {
                kernel: dir.join("kernel"),
                ramdisk: dir.join("ramdisk"),
                disk: dir.join("disk.qcow2"),
                iso: dir.join("boot.iso"),
            })
        })
        .await
}

/// The guest kernel's command line: its console on the serial port, which the driver logs.
/// `no_timer_check` because under TCG on a loaded host the kernel's IO-APIC timer check can
/// miss its ticks and panic ("IO-APIC + timer doesn't work!"); cloud images boot with it for
/// the same reason.
pub const GUEST_CMDLINE: &str = "console=ttyS0 no_timer_check";

/// Uploads the guest as `c`'s images: its kernel (aki), its ramdisk (ari) and its disk
/// (qcow2) with `kernel_id`, `ramdisk_id` and `os_command_line` ([`GUEST_CMDLINE`] and
/// `extra_cmdline`); returns the disk image's id.
pub async fn upload_guest(c: &Client, extra_cmdline: &str) -> anyhow::Result<String> {
    let g = guest().await?;
    let kernel = c
        .create_image("tiny-kernel", "aki", "aki", std::fs::read(&g.kernel)?)
        .await?;
    let ramdisk = c
        .create_image("tiny-ramdisk", "ari", "ari", std::fs::read(&g.ramdisk)?)
        .await?;
    c.create_image_with(
        "tiny",
        "bare",
        "qcow2",
        json!({"kernel_id": kernel, "ramdisk_id": ramdisk,
               "os_command_line": format!("{GUEST_CMDLINE} {extra_cmdline}").trim()}),
        std::fs::read(&g.disk)?,
    )
    .await
}

/// Runs `virsh` on the system connection; its stdout, or the error with its stderr.
pub async fn virsh(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("virsh")
        .arg("-q")
        .arg("-c")
        .arg("qemu:///system")
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "virsh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the domain of server `id` exists (an error when libvirtd does not answer: a
/// missing domain must not be mistaken for a missing daemon).
pub async fn domain_exists(id: &str) -> anyhow::Result<bool> {
    let names = virsh(&["list", "--all", "--name"]).await?;
    Ok(names.lines().any(|l| l.trim() == format!("instance-{id}")))
}

/// The domain's state as `virsh domstate` prints it (`running`, `shut off`).
pub async fn domain_state(id: &str) -> anyhow::Result<String> {
    Ok(virsh(&["domstate", &format!("instance-{id}")])
        .await?
        .trim()
        .to_owned())
}

/// A directory for a test agent's instances that QEMU can reach, and on drop the removal of
/// every domain that has its directory there (a failed test leaves no guest running).
/// A libvirt network a test makes the driver define (for a port's subnet); destroyed and
/// undefined when dropped, after the guests on it (declare it first).
pub struct TestLibvirtNetwork(pub String);

impl Drop for TestLibvirtNetwork {
    fn drop(&mut self) {
        for command in ["net-destroy", "net-undefine"] {
            let _ = std::process::Command::new("virsh")
                .args(["-q", "-c", "qemu:///system", command, &self.0])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

pub struct Instances {
    pub dir: tempfile::TempDir,
}

impl Instances {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("nova-vm-").tempdir()?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = format!("instance-{}", entry.file_name().to_string_lossy());
            for args in [vec!["destroy", &name], vec!["undefine", &name]] {
                let _ = std::process::Command::new("virsh")
                    .args(["-q", "-c", "qemu:///system"])
                    .args(&args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// A Unix-socket proxy in front of libvirtd's socket that a test can freeze: from then on it
/// passes nothing either way and answers no new connection, as a hung libvirtd would.
pub struct FreezableProxy {
    pub path: PathBuf,
    frozen: tokio::sync::watch::Sender<bool>,
    tasks: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    _dir: tempfile::TempDir,
}

impl FreezableProxy {
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("libvirt-sock");
        let listener = tokio::net::UnixListener::bind(&path)?;
        let (frozen, _) = tokio::sync::watch::channel(false);
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let upstream = upstream.to_owned();
        let (flag, set) = (frozen.clone(), tasks.clone());
        tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(async move {
                let mut held = Vec::new();
                while let Ok((client, _)) = listener.accept().await {
                    if *flag.borrow() {
                        held.push(client);
                        continue;
                    }
                    let Ok(server) = tokio::net::UnixStream::connect(&upstream).await else {
                        continue;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
                    set.spawn(pump(cr, sw, flag.subscribe()));
                    set.spawn(pump(sr, cw, flag.subscribe()));
                }
            });
        Ok(Self {
            path,
            frozen,
            tasks,
            _dir: dir,
        })
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }
}

async fn pump(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *frozen.borrow() {
            // Hung: nothing more passes, and the connection stays open.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
