//! `nova-compute`: the compute agent as its own process (distributed mode).

use compute_agent::image_cache::ImageCache;
use compute_agent::settings::DriverKind;
use compute_agent::{Agent, AgentSettings};
use drivers::fake::FakeDriver;
use drivers::Compute;
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
    let driver: Arc<dyn Compute> = match settings.agent.driver {
        DriverKind::Fake => Arc::new(FakeDriver::new(
            &settings.agent.host,
            settings.agent.fake.clone(),
        )),
    };
    let queues = Queues::new(&settings.bus.queue_prefix);
    let images = Arc::new(ImageCache::open(&settings.agent.images, None)?);
    Agent::new(settings.agent, bus, queues, driver, images)
        .run(settings.bus.prefetch)
        .await
}
