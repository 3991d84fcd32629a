//! nova-api: the OpenStack Compute API (v2.1) over HTTP, as a service for
//! [`api_toolkit::server::serve`].
//!
//! Handlers validate, write the request to the database (instance + task in one transaction),
//! publish the task for the conductor after the commit, and answer. They never wait for a
//! compute host. Errors of every kind leave as Nova's fault body (`api_toolkit::ApiError`'s own
//! rendering).

pub mod aggregates;
pub mod extensions;
pub mod flavors;
pub mod images;
pub mod instance_actions;
pub mod instance_usage_audit_log;
pub mod keypairs;
pub mod migrations;
pub mod os_availability_zone;
pub mod os_hosts;
pub mod os_hypervisors;
pub mod os_networks;
pub mod os_security_groups;
pub mod os_services;
pub mod quota_classes;
pub mod quotas;
pub mod server_external_events;
pub mod server_groups;
pub mod servers;
pub mod simple_tenant_usage;
pub mod versions;
pub mod views;

use actix_web::middleware::from_fn;
use actix_web::web;
use api_toolkit::policy::NOVA;
use image_api::store::ImageStore;
use nova_core::bus::Bus;
use nova_core::rpc::Queues;
use nova_db::Db;
use std::sync::Arc;

/// What every handler shares.
pub use servers::idempotency::{load_or_create_secret, IdempotencySettings};

pub struct AppState {
    pub db: Db,
    /// A compute service silent this long shows as down.
    pub service_down_ms: i64,
    pub bus: Arc<dyn Bus>,
    pub queues: Queues,
    /// Whether the projects a request names can be checked: identity is this service's own.
    /// Nova asks Keystone and refuses a project it does not know (400); with a remote Keystone
    /// or noauth2 they are taken as given, as Nova takes them when Keystone cannot say.
    pub projects_known: bool,
    /// Image data, which the deprecated `/images` proxy deletes with the image.
    pub image_data: Arc<dyn ImageStore>,
    /// How a server create's `Idempotency-Key` is remembered.
    pub idempotency: IdempotencySettings,
    /// How long a deleted server waits, SOFT_DELETED, before it is deleted (Nova's
    /// `reclaim_instance_interval`); 0: a delete is not deferred.
    pub reclaim_ms: i64,
}

impl AppState {
    /// Nova's `verify_project_id`: a project named in a request must exist.
    pub async fn check_project(&self, project: &str) -> api_toolkit::ApiResult<()> {
        if self.projects_known
            && nova_db::identity::project(&self.db, project)
                .await?
                .is_none()
        {
            return Err(api_toolkit::bad(format!(
                "Project ID {project} is not a valid project."
            )));
        }
        Ok(())
    }
}

/// The Compute API, to serve.
pub struct ComputeApi {
    state: web::Data<AppState>,
}

impl ComputeApi {
    pub fn new(
        db: Db,
        bus: Arc<dyn Bus>,
        queues: Queues,
        service_down_ms: i64,
        projects_known: bool,
        image_data: Arc<dyn ImageStore>,
        idempotency: IdempotencySettings,
    ) -> Self {
        Self {
            state: web::Data::new(AppState {
                db,
                service_down_ms,
                bus,
                queues,
                projects_known,
                image_data,
                idempotency,
                reclaim_ms: 0,
            }),
        }
    }

    /// Deletes deferred by `reclaim_ms` (Nova's soft delete); 0: none.
    pub fn with_reclaim(self, reclaim_ms: i64) -> Self {
        let mut state = self.state.into_inner();
        // (Just made by `new`: not shared yet.)
        if let Some(s) = Arc::get_mut(&mut state) {
            s.reclaim_ms = reclaim_ms;
        }
        Self {
            state: web::Data::from(state),
        }
    }
}

impl api_toolkit::Service for ComputeApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        routes(cfg);
    }
}

/// Nova's read policy (`PROJECT_READER_OR_ADMIN`) on servers (and everything under them), the
/// image proxy, usage, quotas, networks and server groups: a caller with only a custom role reads none of
/// them. Flavors, limits, key pairs (the owner's) and availability zones stay readable by any
/// role, as in Nova.
async fn readers_only(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let prefixes = [
        "/v2.1/servers",
        "/v2.1/images",
        "/v2.1/os-simple-tenant-usage",
        "/v2.1/os-quota-sets",
        "/v2.1/os-tenant-networks",
        "/v2.1/os-networks",
        "/v2.1/os-security-groups",
        "/v2.1/os-server-groups",
    ];
    if let Some(e) = NOVA
        .reader_check(&mut req, &prefixes, "os_compute_api:servers:show")
        .await
    {
        return Ok(req.error_response(e));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The routes of the Compute API: version discovery at the root, the rest under `/v2.1`.
fn routes(cfg: &mut web::ServiceConfig) {
    versions::configure(cfg);
    cfg.service(
        web::scope("/v2.1")
            .wrap(from_fn(versions::negotiate))
            .wrap(from_fn(readers_only))
            .service(web::resource("").route(web::get().to(versions::v2_1)))
            .service(web::resource("/").route(web::get().to(versions::v2_1)))
            .configure(servers::configure)
            .configure(instance_actions::configure)
            .configure(flavors::configure)
            .configure(images::configure)
            .configure(os_services::configure)
            .configure(os_hypervisors::configure)
            .configure(keypairs::configure)
            .configure(quotas::configure)
            .configure(os_availability_zone::configure)
            .configure(simple_tenant_usage::configure)
            .configure(extensions::configure)
            .configure(os_hosts::configure)
            .configure(os_networks::configure)
            .configure(os_security_groups::configure)
            .configure(instance_usage_audit_log::configure)
            .configure(quota_classes::configure)
            .configure(server_external_events::configure)
            .configure(migrations::configure)
            .configure(aggregates::configure)
            .configure(server_groups::configure),
    );
}
