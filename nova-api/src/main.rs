//! `nova-api`: the API as its own process (distributed mode).

use keystone_auth::AuthSettings;
use nova_api::ApiSettings;
use nova_core::db::Db;
use nova_core::rpc::Queues;
use nova_core::settings::{BusSettings, DatabaseSettings};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    api: ApiSettings,
    auth: AuthSettings,
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
    let api = nova_api::start(&settings.api, settings.auth, db, bus, queues)?;
    // On stdout, for whoever started the process (tests read the port from it).
    println!("Compute API listening on http://{}/v2.1", api.addr);
    api.server.await?;
    Ok(())
}
