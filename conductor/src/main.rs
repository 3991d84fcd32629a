//! `nova-conductor`: the conductor as its own process (distributed mode).

// glibc's malloc spends a quarter of a large listing's time in its free lists (perf);
// mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use conductor::{Conductor, ConductorSettings};
use nova_core::rpc::Queues;
use nova_core::settings::BusSettings;
use nova_db::DatabaseSettings;
use nova_db::Db;
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
    nova_core::settings::init_logging();
    let settings: Settings = nova_core::settings::load_from_args()?;
    let db = Db::connect(&settings.database).await?;
    let bus = nova_core::bus::connect(&settings.bus).await?;
    let queues = Queues::new(&settings.bus.queue_prefix);
    Conductor::new(settings.conductor, db, bus, queues)
        .run(settings.bus.prefetch)
        .await
}
