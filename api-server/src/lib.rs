//! The API process: the APIs it is configured to serve — compute, image, network, identity —
//! on one HTTP server ([`api_toolkit::server`]). The `nova-api` binary runs it alone (the
//! distributed shape, as many replicas as wanted); the all-in-one runs it beside a conductor
//! and an agent.

use api_toolkit::server::{HttpSettings, RunningServer, Service};
use image_api::ImageSettings;
use keystone_auth::Identity;
use nova_core::bus::Bus;
use nova_core::rpc::Queues;
use nova_db::Db;
use serde::Deserialize;
use std::sync::Arc;

/// The APIs a process can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiName {
    /// The Compute API (`/`, `/v2.1`).
    Compute,
    /// The image service (`/image`).
    Image,
    /// The networking service (`/network`).
    Network,
    /// The identity service (`/identity`), with the `keystone` auth strategy.
    Identity,
    /// The bare-metal service (`/baremetal`, an Ironic v1 subset).
    Baremetal,
}

/// `[api]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Where to listen; port 0 picks a free one.
    pub bind: String,
    /// The URL clients reach the APIs at, when it differs from the bind address (a proxy).
    pub public_url: Option<String>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Proxies whose forwarding headers are believed for links when `public_url` is unset
    /// (empty: links use the address the connection reached, never a client's `Host`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A request body read whole must arrive within this; a streamed upload (image data) must
    /// not stall this long and, past it, must average `upload_min_rate` bytes per second.
    pub body_timeout_s: u64,
    pub upload_min_rate: u64,
    /// How long `POST /servers` remembers an `Idempotency-Key`: the same key and body within
    /// it get the same server.
    pub idempotency_key_ttl_s: u64,
    /// The key of the keyed digest (HMAC-SHA256) that an `Idempotency-Key`'s record holds of
    /// its request body, which may carry an `adminPass`: 32 random bytes, created when missing.
    /// Every API process must read the same file. Unset: `idempotency.key` in the key
    /// repository where this process issues tokens; else (a remote Keystone, noauth2) the
    /// records hold a salted digest, which a reader of the database can test guesses against.
    pub idempotency_secret_file: Option<std::path::PathBuf>,
    /// A compute service silent this long shows as down (Nova's `service_down_time`; keep it
    /// equal to the conductor's).
    pub service_down_time_s: u64,
    /// The APIs this process serves (all by default).
    pub services: Vec<ApiName>,
    /// Deprecated spelling of `image.store.dir`, still honoured (with a warning) so that an
    /// older configuration does not silently lose its images.
    pub image_store_dir: Option<std::path::PathBuf>,
    /// Deprecated spelling of `image.size_cap`, still honoured (with a warning).
    pub image_size_cap: Option<i64>,
    /// `[api.baremetal]`: the bare-metal API's key and operation timeouts.
    pub baremetal: baremetal_api::BaremetalSettings,
    /// A deleted server waits this long, SOFT_DELETED and restorable, before the conductor
    /// deletes it (Nova's `reclaim_instance_interval`; 0, Nova's default: deleted at once).
    /// The deadline is kept with the server, so this is the one setting of it.
    pub reclaim_instance_interval_s: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        let http = HttpSettings::default();
        Self {
            bind: http.bind,
            public_url: http.public_url,
            workers: http.workers,
            trusted_proxies: http.trusted_proxies,
            body_timeout_s: http.body_timeout_s,
            upload_min_rate: http.upload_min_rate,
            idempotency_key_ttl_s: 86_400,
            idempotency_secret_file: None,
            service_down_time_s: 60,
            services: vec![
                ApiName::Compute,
                ApiName::Image,
                ApiName::Network,
                ApiName::Identity,
                ApiName::Baremetal,
            ],
            image_store_dir: None,
            image_size_cap: None,
            baremetal: baremetal_api::BaremetalSettings::default(),
            reclaim_instance_interval_s: 0,
        }
    }
}

/// What the APIs work with.
pub struct Backends {
    pub db: Db,
    pub bus: Arc<dyn Bus>,
    pub queues: Queues,
    pub identity: Identity,
}

/// Binds the server for the configured APIs.
pub fn start(
    settings: &ApiSettings,
    image: &ImageSettings,
    backends: Backends,
) -> anyhow::Result<RunningServer> {
    let mut image = image.clone();
    if let Some(dir) = &settings.image_store_dir {
        tracing::warn!("api.image_store_dir is deprecated: use image.store.dir");
        image.store.dir = dir.clone();
    }
    if let Some(cap) = settings.image_size_cap {
        tracing::warn!("api.image_size_cap is deprecated: use image.size_cap");
        image.size_cap = cap;
    }
    let service_down_ms =
        i64::try_from(settings.service_down_time_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    // One store for the image API and the compute API's image proxy.
    let image_data = image_api::store::open(&image.store)?;
    let serves_compute = settings.services.contains(&ApiName::Compute);
    let secret =
        match (&settings.idempotency_secret_file, &backends.identity.api) {
            _ if !serves_compute => None,
            // Configured: it must work.
            (Some(path), _) => Some(nova_api::load_or_create_secret(path).map_err(|e| {
                anyhow::anyhow!("api.idempotency_secret_file {}: {e}", path.display())
            })?),
            // The default, in the key repository: a repository mounted read-only (keys made
            // elsewhere) must not stop the API; the digests are salted instead.
            (None, Some(api)) => {
                let path = api.settings.key_repository.join("idempotency.key");
                nova_api::load_or_create_secret(&path)
                .inspect_err(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "no idempotency key")
                })
                .ok()
            }
            (None, None) => None,
        };
    let idempotency = nova_api::IdempotencySettings {
        ttl_ms: i64::try_from(settings.idempotency_key_ttl_s.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        secret,
    };
    if idempotency.secret.is_none() && serves_compute {
        tracing::warn!(
            "no idempotency key (api.idempotency_secret_file unset, and none in a key \
             repository of this process): idempotency records hold a salted, unkeyed digest \
             of their request bodies"
        );
    }
    // The bare-metal key (BMC passwords, and the image URLs BMCs fetch): the configured file,
    // else the key repository's.
    let baremetal_key = settings.baremetal.key_file.clone().or_else(|| {
        backends
            .identity
            .api
            .as_ref()
            .map(|api| api.settings.key_repository.join("baremetal.key"))
    });
    let mut services: Vec<Arc<dyn Service>> = Vec::new();
    for name in &settings.services {
        match name {
            ApiName::Compute => services.push(Arc::new(
                nova_api::ComputeApi::new(
                    backends.db.clone(),
                    backends.bus.clone(),
                    backends.queues.clone(),
                    service_down_ms,
                    // Projects live here when this service issues the tokens.
                    backends.identity.api.is_some(),
                    image_data.clone(),
                    idempotency.clone(),
                )
                .with_reclaim(
                    i64::try_from(settings.reclaim_instance_interval_s.saturating_mul(1000))
                        .unwrap_or(i64::MAX),
                ),
            )),
            ApiName::Image => {
                let signer = match &baremetal_key {
                    Some(path) => Some(
                        nova_core::secret::UrlSigner::load_or_create(path)
                            .map_err(|e| anyhow::anyhow!("image API, bare-metal key: {e}"))?,
                    ),
                    None => None,
                };
                services.push(Arc::new(image_api::ImageApi::new(
                    backends.db.clone(),
                    &image,
                    image_data.clone(),
                    std::time::Duration::from_secs(settings.body_timeout_s),
                    signer,
                )))
            }
            ApiName::Network => {
                services.push(Arc::new(network_api::NetworkApi::new(backends.db.clone())))
            }
            ApiName::Baremetal => {
                // BMC passwords are sealed with a key every API process and bare-metal agent
                // shares.
                let Some(path) = baremetal_key.clone() else {
                    tracing::warn!(
                        "bare-metal API not served: api.baremetal.key_file is unset and this \
                         process has no key repository"
                    );
                    continue;
                };
                let key = nova_core::secret::SealingKey::load_or_create(&path)
                    .map_err(|e| anyhow::anyhow!("bare-metal API: {e}"))?;
                services.push(Arc::new(baremetal_api::BaremetalApi::new(
                    baremetal_api::BaremetalState {
                        db: backends.db.clone(),
                        bus: backends.bus.clone(),
                        queues: backends.queues.clone(),
                        key,
                        settings: settings.baremetal.clone(),
                    },
                )))
            }
            // Served where this process issues tokens; with a remote Keystone there is none.
            ApiName::Identity => {
                if let Some(api) = backends.identity.api_service() {
                    services.push(api);
                }
            }
        }
    }
    let http = HttpSettings {
        bind: settings.bind.clone(),
        public_url: settings.public_url.clone(),
        workers: settings.workers,
        trusted_proxies: settings.trusted_proxies.clone(),
        body_timeout_s: settings.body_timeout_s,
        upload_min_rate: settings.upload_min_rate,
    };
    Ok(api_toolkit::server::serve(
        &http,
        backends.identity.authenticator.clone(),
        services,
    )?)
}
