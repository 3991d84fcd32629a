//! `nova-conductor`: the conductor as its own process (distributed mode).

use conductor::{Conductor, ConductorSettings};
use nova_core::db::Db;
use nova_core::rpc::Queues;
use nova_core::settings::{BusSettings, DatabaseSettings};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    conductor: ConductorSettings,
    database: DatabaseSettings,
    bus: BusSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let file = std::env::args().nth(1);
    let settings: Settings = nova_core::settings::load(file.as_deref().map(std::path::Path::new))?;
    let db = Db::connect(&settings.database).await?;
    let bus = nova_core::bus::connect(&settings.bus).await?;
    let queues = Queues::new(&settings.bus.queue_prefix);
    Conductor::new(settings.conductor, db, bus, queues)
        .run(settings.bus.prefetch)
        .await
}
