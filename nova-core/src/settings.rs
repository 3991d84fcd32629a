//! Configuration pieces every process shares, and the loader: a TOML file (optional) under
//! environment overrides (`NOVA__SECTION__KEY=value`). Every option has a default that works
//! for the all-in-one.

use serde::{de::DeserializeOwned, Deserialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    Amqp,
    InProcess,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct BusSettings {
    pub kind: BusKind,
    pub amqp_url: String,
    /// Prepended to every queue name, to keep deployments sharing a broker apart.
    pub queue_prefix: String,
    /// Unacked deliveries per consumer.
    pub prefetch: u16,
    /// Deliveries of one message before it goes to its queue's dead-letter queue
    /// (`<queue>.dead-letter`): a quorum queue's `x-delivery-limit`.
    pub delivery_limit: u32,
    /// Messages a dead-letter queue keeps; beyond, the oldest are dropped (`x-max-length`).
    pub dead_letter_max_length: u32,
}

impl BusSettings {
    pub fn queue_limits(&self) -> crate::bus::QueueLimits {
        crate::bus::QueueLimits {
            delivery_limit: self.delivery_limit,
            dead_letter_max_length: self.dead_letter_max_length,
        }
    }
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            kind: BusKind::InProcess,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            queue_prefix: String::new(),
            prefetch: 64,
            delivery_limit: crate::bus::DEFAULT_DELIVERY_LIMIT,
            dead_letter_max_length: crate::bus::DEFAULT_DEAD_LETTER_MAX_LENGTH,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct SettingsError(#[from] config::ConfigError);

/// Loads `T` from `file` (when given) and the `NOVA__…` environment variables.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, SettingsError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).required(true));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("NOVA")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    Ok(builder.build()?.try_deserialize()?)
}

/// Logging for a service process: `RUST_LOG` or `info`, to stderr.
/// The machine's host name (the default name a service registers under), or `localhost`.
pub fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Loads `T` from the file named by the first command-line argument (if any) and the
/// environment, as every service binary does.
pub fn load_from_args<T: DeserializeOwned>() -> Result<T, SettingsError> {
    let file = std::env::args().nth(1);
    load(file.as_deref().map(Path::new))
}
