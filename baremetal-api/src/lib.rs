//! The bare-metal service (an Ironic v1 subset) under `/baremetal`: where cloud admins enrol
//! machines by their BMC (driver `redfish`), check them (`manage`), clean them into the pool
//! (`provide`), set their power and their maintenance. `openstack baremetal …`
//! (python-ironicclient) drives it.
//!
//! Every request is admin-only, as Ironic's default policy has it for nodes. Errors leave in
//! Ironic's body (`{"error_message": "<JSON of faultstring, faultcode, debuginfo>"}`).
//!
//! An operation on a machine (verify, clean, power) starts on the node's row — one at a time
//! per node, as Ironic's reservation — and goes to the bare-metal agent that runs the node
//! (`conductor`); the agent reports, the conductor ends it, and its reconciler fails one that
//! outlives its deadline. The BMC password is sealed before it is stored and travels sealed.
//!
//! The handlers: [`nodes`] (enrolment, listing, updates) and [`states`] (provision, power,
//! maintenance, validation); versions and the microversion negotiation here.

mod nodes;
mod states;
mod versions;

use actix_web::middleware::from_fn;
use actix_web::web;
use api_toolkit::FaultFormat;
use nova_core::bus::Bus;
use nova_core::rpc::Queues;
use nova_core::secret::SealingKey;
use nova_db::Db;
use serde::Deserialize;
use std::sync::Arc;

/// `[baremetal]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct BaremetalSettings {
    /// The key that seals BMC passwords (32 bytes, created when missing). The API and every
    /// bare-metal agent must read the same file. Unset: `baremetal.key` in the key repository
    /// of the identity service this process runs.
    pub key_file: Option<std::path::PathBuf>,
    /// How long `manage` may take to reach the BMC and check the credentials.
    pub verify_timeout_s: u64,
    /// How long cleaning may take (`provide`, the end of an instance).
    pub clean_timeout_s: u64,
    /// How long a power request may take when it names no `timeout` (Ironic's
    /// `power_state_change_timeout`).
    pub power_timeout_s: u64,
    /// A bare-metal agent silent this long does not take new nodes (the compute services'
    /// `service_down_time`).
    pub agent_down_time_s: u64,
}

impl Default for BaremetalSettings {
    fn default() -> Self {
        Self {
            key_file: None,
            verify_timeout_s: 120,
            clean_timeout_s: 1800,
            power_timeout_s: 60,
            agent_down_time_s: 60,
        }
    }
}

/// What the bare-metal handlers share.
pub struct BaremetalState {
    pub db: Db,
    pub bus: Arc<dyn Bus>,
    pub queues: Queues,
    pub key: SealingKey,
    pub settings: BaremetalSettings,
}

/// The bare-metal API, to serve ([`api_toolkit::server::serve`]).
pub struct BaremetalApi {
    state: web::Data<BaremetalState>,
}

impl BaremetalApi {
    pub fn new(state: BaremetalState) -> Self {
        Self {
            state: web::Data::new(state),
        }
    }
}

impl api_toolkit::Service for BaremetalApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        routes(cfg);
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/baremetal")
            .wrap(FaultFormat::Ironic.errors())
            .wrap(from_fn(versions::negotiate))
            .service(web::resource("").route(web::get().to(versions::root)))
            .service(web::resource("/").route(web::get().to(versions::root)))
            .service(web::resource("/v1").route(web::get().to(versions::v1)))
            .service(web::resource("/v1/").route(web::get().to(versions::v1)))
            .service(web::resource("/v1/drivers").route(web::get().to(versions::drivers)))
            .service(
                // python-ironicclient asks for a filtered list at `/v1/nodes/?…`.
                web::resource(["/v1/nodes", "/v1/nodes/"])
                    .route(web::get().to(nodes::list))
                    .route(web::post().to(nodes::create)),
            )
            .service(
                web::resource(["/v1/nodes/detail", "/v1/nodes/detail/"])
                    .route(web::get().to(nodes::list_detail)),
            )
            .service(
                web::resource("/v1/nodes/{node}")
                    .route(web::get().to(nodes::show))
                    .route(web::patch().to(nodes::update))
                    .route(web::delete().to(nodes::delete)),
            )
            .service(web::resource("/v1/nodes/{node}/states").route(web::get().to(states::show)))
            .service(
                web::resource("/v1/nodes/{node}/states/power").route(web::put().to(states::power)),
            )
            .service(
                web::resource("/v1/nodes/{node}/states/provision")
                    .route(web::put().to(states::provision)),
            )
            .service(
                web::resource("/v1/nodes/{node}/maintenance")
                    .route(web::put().to(states::maintenance_on))
                    .route(web::delete().to(states::maintenance_off)),
            )
            .service(
                web::resource("/v1/nodes/{node}/validate").route(web::get().to(states::validate)),
            ),
    );
}
