//! `nova-aio`: the all-in-one. `nova-aio [config.toml]`; see `etc/all-in-one.toml`.

use allinone::{AllInOne, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nova_core::settings::init_logging();
    let settings: Settings = nova_core::settings::load_from_args()?;
    let aio = AllInOne::start(settings.clone()).await?;
    let url = settings
        .api
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", aio.api_addr));
    println!(
        "Compute API listening on {url}/v2.1 (database: {})",
        settings.database.url
    );
    println!("Try: curl -s -H 'X-Auth-Token: admin:admin' {url}/v2.1/flavors");
    tokio::signal::ctrl_c().await?;
    aio.stop().await;
    Ok(())
}
