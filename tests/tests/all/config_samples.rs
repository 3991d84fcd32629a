//! The sample configuration files in `etc/` load into the settings types the binaries use, so
//! that a sample never drifts from the code.

use compute_agent::credential::CredentialSettings;
use serde::Deserialize;
use std::path::{Path, PathBuf};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../etc")
        .join(name)
}

#[derive(Deserialize)]
struct Compute {
    agent: compute_agent::AgentSettings,
    #[allow(dead_code)]
    bus: nova_core::settings::BusSettings,
}

#[test]
fn nova_compute_sample_loads() -> anyhow::Result<()> {
    let s: Compute = nova_core::settings::load(Some(&sample("nova-compute.toml")))?;
    assert!(matches!(
        s.agent.images.auth,
        CredentialSettings::Password(_)
    ));
    assert!(s.agent.images.endpoint.is_some());
    Ok(())
}

#[test]
fn all_in_one_sample_loads() -> anyhow::Result<()> {
    let s: allinone::Settings = nova_core::settings::load(Some(&sample("all-in-one.toml")))?;
    assert!(matches!(s.agent.images.auth, CredentialSettings::None));
    Ok(())
}
