//! `nova-aio`: the all-in-one. `nova-aio [config.toml]`; see `etc/all-in-one.toml`.

// glibc's malloc spends a quarter of a large listing's time in its free lists (perf);
// mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use allinone::{AllInOne, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nova_core::settings::init_logging();
    let settings: Settings = nova_core::settings::load_from_args()?;
    let aio = AllInOne::start(settings.clone()).await?;
    let url = &aio.url;
    println!(
        "Compute API listening on {url}/v2.1 (database: {})",
        settings.database.url
    );
    for pool in &aio.pools {
        println!(
            "Compute pool up: {} ({} driver) as compute host {}",
            pool.kind.pool(),
            pool.kind.name(),
            pool.settings.host
        );
    }
    for why in &aio.missing_pools {
        println!("{why}");
    }
    if aio.identity.api.is_some() {
        println!("Identity API (Keystone v3) at {url}/identity/v3");
    }
    if let Some(g) = &aio.identity.generated {
        for (user, password) in [("admin", &g.admin_password), ("demo", &g.demo_password)] {
            if let Some(p) = password {
                println!("Bootstrap: generated password of user {user} (shown once): {p}");
            }
        }
    }
    if let Some(path) = &aio.clouds_yaml {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        println!(
            "Wrote {0}: export OS_CLIENT_CONFIG_FILE={0} OS_CLOUD=demo (or OS_CLOUD=admin)",
            path.display()
        );
    }
    tokio::signal::ctrl_c().await?;
    aio.stop().await;
    Ok(())
}
