//! `nova-api`: the API process on its own (distributed mode): the APIs `[api] services` names.

// glibc's malloc spends a quarter of a large listing's time in its free lists (perf);
// mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use api_server::{ApiSettings, Backends};
use image_api::ImageSettings;
use keystone_auth::{AuthSettings, Identity};
use nova_core::rpc::Queues;
use nova_core::settings::BusSettings;
use nova_db::DatabaseSettings;
use nova_db::Db;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    api: ApiSettings,
    image: ImageSettings,
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
    // One public URL for the whole API unless identity has its own.
    let mut auth = settings.auth.clone();
    if auth.public_url.is_none() {
        auth.public_url = settings.api.public_url.clone();
    }
    let identity = Identity::setup(&db, &auth)
        .await
        .map_err(anyhow::Error::msg)?;
    if let Some(g) = &identity.generated {
        if let Some(p) = &g.admin_password {
            println!("Bootstrap: generated password of user admin (shown once): {p}");
        }
        if let Some(p) = &g.demo_password {
            println!("Bootstrap: generated password of user demo (shown once): {p}");
        }
    }
    let api = api_server::start(
        &settings.api,
        &settings.image,
        Backends {
            db,
            bus,
            queues,
            identity,
        },
    )?;
    // On stdout, for whoever started the process (tests read the port from it).
    println!("Compute API listening on http://{}/v2.1", api.addr);
    api.server.await?;
    Ok(())
}
