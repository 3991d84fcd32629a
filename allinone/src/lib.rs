//! The all-in-one: the API, a conductor and a compute agent in one process, sharing an
//! in-process bus and (by default) a SQLite database. The same code runs as separate processes
//! over RabbitMQ and PostgreSQL in the distributed mode.
//!
//! Drivers: until the Docker and libvirt drivers land, the agent runs the `fake` driver, which
//! registers one node of the configured type.

use compute_agent::{Agent, AgentSettings};
use conductor::{Conductor, ConductorSettings};
use drivers::fake::FakeDriver;
use keystone_auth::AuthSettings;
use nova_api::ApiSettings;
use nova_core::bus::inproc::InProcBus;
use nova_core::bus::Bus;
use nova_core::db::Db;
use nova_core::rpc::Queues;
use nova_core::settings::{BusSettings, DatabaseSettings};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub api: ApiSettings,
    pub auth: AuthSettings,
    pub database: DatabaseSettings,
    /// Only `prefetch` and `queue_prefix` apply: the all-in-one always uses the in-process bus.
    pub bus: BusSettings,
    pub conductor: ConductorSettings,
    pub agent: AgentSettings,
}

/// A running all-in-one. Dropping it stops everything.
pub struct AllInOne {
    pub api_addr: SocketAddr,
    pub db: Db,
    pub driver: Arc<FakeDriver>,
    tasks: Vec<JoinHandle<()>>,
    api: actix_web::dev::ServerHandle,
}

impl AllInOne {
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect(&settings.database).await?;
        let bus: Arc<dyn Bus> = Arc::new(InProcBus::default());
        let queues = Queues::new(&settings.bus.queue_prefix);
        let prefetch = settings.bus.prefetch;
        let driver = Arc::new(FakeDriver::new(
            &settings.agent.host,
            settings.agent.fake.clone(),
        ));

        let conductor = Conductor::new(
            settings.conductor.clone(),
            db.clone(),
            bus.clone(),
            queues.clone(),
        );
        let agent = Agent::new(
            settings.agent.clone(),
            bus.clone(),
            queues.clone(),
            driver.clone(),
        );
        let api = nova_api::start(
            &settings.api,
            settings.auth.clone(),
            db.clone(),
            bus,
            queues,
        )?;
        let api_handle = api.server.handle();
        let tasks = vec![
            tokio::spawn(async move {
                if let Err(e) = conductor.run(prefetch).await {
                    tracing::error!(error = %e, "conductor stopped");
                }
            }),
            tokio::spawn(async move {
                if let Err(e) = agent.run(prefetch).await {
                    tracing::error!(error = %e, "compute agent stopped");
                }
            }),
            tokio::spawn(async move {
                if let Err(e) = api.server.await {
                    tracing::error!(error = %e, "API server stopped");
                }
            }),
        ];
        Ok(Self {
            api_addr: api.addr,
            db,
            driver,
            tasks,
            api: api_handle,
        })
    }

    /// Stops the API gracefully and the other services at once.
    pub async fn stop(mut self) {
        self.api.stop(true).await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for AllInOne {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
