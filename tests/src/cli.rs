//! The real `openstack` CLI (python-openstackclient, installed into `.venv` by
//! `scripts/test.sh`), run against an all-in-one with the `clouds.yaml` it wrote.

use crate::stack::AllInOneStack;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn openstack() -> anyhow::Result<PathBuf> {
    let path = std::env::var("NOVA_TEST_OPENSTACK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/openstack")
        });
    anyhow::ensure!(
        path.exists(),
        "{} missing: scripts/test.sh installs python-openstackclient",
        path.display()
    );
    Ok(path)
}

/// Runs `openstack ARGS` as `cloud` and returns stdout; fails on a non-zero exit, with stderr.
pub async fn run(stack: &AllInOneStack, cloud: &str, args: &[&str]) -> anyhow::Result<String> {
    let clouds = stack
        .clouds_yaml
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no clouds.yaml written"))?;
    let mut cmd = Command::new(openstack()?);
    cmd.args(args)
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("OS_CLOUD", cloud);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    anyhow::ensure!(
        out.status.success(),
        "openstack {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs `openstack ARGS -f json` as `cloud` and parses the output.
pub async fn run_json(stack: &AllInOneStack, cloud: &str, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    Ok(serde_json::from_str(&run(stack, cloud, &all).await?)?)
}
