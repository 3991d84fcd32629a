//! `nova-compute`: the compute agent as its own process (distributed mode).

// glibc's malloc spends a quarter of a large listing's time in its free lists (perf);
// mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use compute_agent::image_cache::ImageCache;
use compute_agent::{Agent, AgentSettings};
use nova_core::rpc::Queues;
use nova_core::settings::BusSettings;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    agent: AgentSettings,
    bus: BusSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nova_core::settings::init_logging();
    let settings: Settings = nova_core::settings::load_from_args()?;
    let bus = nova_core::bus::connect(&settings.bus).await?;
    let drivers = compute_agent::driver_from_settings(&settings.agent).await?;
    let queues = Queues::new(&settings.bus.queue_prefix);
    let images = Arc::new(ImageCache::open(&settings.agent.images, None)?);
    let state_dir = settings.agent.state_dir.clone();
    Agent::with_nodes(
        settings.agent,
        bus,
        queues,
        drivers.compute,
        images,
        drivers.nodes,
    )
    .map_err(|e| anyhow::anyhow!("agent state directory {}: {e}", state_dir.display()))?
    .run(settings.bus.prefetch)
    .await
}
