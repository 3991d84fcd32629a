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
            })
        })
        .await
}

/// Uploads the guest as `c`'s images: its kernel (aki), its ramdisk (ari) and its disk
/// (qcow2) with `kernel_id`, `ramdisk_id` and `os_command_line` (`console=ttyS0` and
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
               "os_command_line": format!("console=ttyS0 {extra_cmdline}").trim()}),
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

/// Whether the domain of server `id` exists.
pub async fn domain_exists(id: &str) -> bool {
    virsh(&["dominfo", &format!("instance-{id}")]).await.is_ok()
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
