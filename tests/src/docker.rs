//! The Docker test image: busybox on `scratch`, built locally (no registry is reachable) and
//! saved as a `docker save` archive, then removed from the engine so that the driver under test
//! has to load it.

use std::path::PathBuf;
use std::process::Command;
use tokio::sync::OnceCell;

/// What the test container runs: prints its hostname and user data, then idles until SIGTERM
/// (a shell as PID 1 ignores SIGTERM unless it traps it, and a graceful stop would always
/// wait for the kill).
pub const TEST_IMAGE_CMD: &str = "trap 'echo stopping; exit 0' TERM; \
    echo \"hello from $(hostname)\"; \
    cat /mnt/config/openstack/latest/user_data 2>/dev/null; \
    while true; do sleep 1; done";

pub struct TestImage {
    /// The archive, as an image upload needs it.
    pub archive: PathBuf,
    /// `sha256:<hex>`, the id the engine gives it once loaded.
    pub id: String,
    _dir: tempfile::TempDir,
}

static IMAGE: OnceCell<TestImage> = OnceCell::const_new();

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the image once per test binary.
pub async fn test_image() -> anyhow::Result<&'static TestImage> {
    IMAGE
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(build)
                .await
                .map_err(anyhow::Error::from)?
        })
        .await
}

fn build() -> anyhow::Result<TestImage> {
    // Earlier runs' images, unless a container still uses them.
    let _ = run(Command::new("sh").args([
        "-c",
        "docker images -q nova-test-busybox | sort -u | xargs -r docker rmi -f 2>/dev/null; true",
    ]));
    let dir = tempfile::tempdir()?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| anyhow::anyhow!("busybox-static is not installed"))?;
    std::fs::copy(busybox, dir.path().join("busybox"))?;
    let cmd = serde_json::to_string(&["/bin/sh", "-c", TEST_IMAGE_CMD])?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD {cmd}\n"
        ),
    )?;
    // A tag of this run's own: the image is removed again below, and a tag shared with a
    // concurrent run would be taken from under it.
    let tag = format!("nova-test-busybox:{}", uuid::Uuid::new_v4().simple());
    run(Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0"))?;
    let id = run(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", &tag]))?;
    let archive = dir.path().join("image.tar");
    run(Command::new("docker")
        .args(["save", "-o"])
        .arg(&archive)
        .arg(&tag))?;
    // Untag only; the image itself may be in use by containers of an earlier test in this
    // binary's run (it is content-addressed, so that changes nothing), and if nothing uses it
    // the engine deletes it and the driver must load it.
    let _ = run(Command::new("docker").args(["rmi", &tag]));
    Ok(TestImage {
        archive,
        id,
        _dir: dir,
    })
}

/// Every container of an agent host (by the driver's host label), whatever its state.
pub async fn containers_of_host(
    docker: &bollard::Docker,
    host: &str,
) -> anyhow::Result<Vec<bollard::models::ContainerSummary>> {
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={host}", drivers::docker::LABEL_HOST)],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    Ok(docker.list_containers(Some(options)).await?)
}

/// Removes every container of an agent host when dropped, so that a failed test leaves no
/// containers behind on the shared engine.
pub struct RemoveContainersOf(pub String);

impl Drop for RemoveContainersOf {
    fn drop(&mut self) {
        let host = self.0.clone();
        crate::env::clean_up(async move {
            let docker = bollard::Docker::connect_with_local_defaults().ok()?;
            for c in containers_of_host(&docker, &host).await.ok()? {
                let Some(id) = c.id else { continue };
                let remove = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build();
                let _ = docker.remove_container(&id, Some(remove)).await;
            }
            Some(())
        });
    }
}

/// A Docker network of the test's own, internal (no route off the host, nothing reaches it
/// from outside); removed when dropped. Drop it after the containers on it are gone.
pub struct TestNetwork(pub String);

impl TestNetwork {
    pub async fn create(name: &str) -> anyhow::Result<Self> {
        let docker = bollard::Docker::connect_with_local_defaults()?;
        docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: name.to_owned(),
                internal: Some(true),
                ..Default::default()
            })
            .await?;
        Ok(Self(name.to_owned()))
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let name = self.0.clone();
        crate::env::clean_up(async move {
            let docker = bollard::Docker::connect_with_local_defaults().ok()?;
            docker.remove_network(&name).await.ok()
        });
    }
}

/// The Docker driver's packet filter off: stacks of tests about something else leave the
/// host's iptables alone (several test stacks share one host, and the filter is the host's);
/// the security-group tests put theirs into a network namespace of their own.
pub fn no_firewall() -> drivers::docker_firewall::FirewallSettings {
    drivers::docker_firewall::FirewallSettings {
        enabled: false,
        ..Default::default()
    }
}

/// A network namespace of the test's own (`ip netns add`), deleted when dropped: the Docker
/// driver's packet filter goes there (its iptables are the namespace's), never the host's.
pub struct TestNetns(pub String);

impl TestNetns {
    pub fn create() -> anyhow::Result<Self> {
        let name = format!(
            "nova-fw-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let status = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()?;
        anyhow::ensure!(status.success(), "ip netns add {name}: {status}");
        Ok(Self(name))
    }

    /// The driver's filter settings that write into this namespace.
    pub fn firewall(&self) -> drivers::docker_firewall::FirewallSettings {
        drivers::docker_firewall::FirewallSettings {
            enabled: true,
            command_prefix: vec!["ip".into(), "netns".into(), "exec".into(), self.0.clone()],
            ..Default::default()
        }
    }

    /// `iptables -S` (or `ip6tables -S`) in the namespace.
    pub fn rules(&self, program: &str) -> anyhow::Result<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, program, "-w", "5", "-S"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{program} -S: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}
