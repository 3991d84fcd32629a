//! The test harness: real services for every test, and a small Compute API client.
//!
//! - [`env`]: where PostgreSQL and RabbitMQ are (started by `scripts/test.sh`), a fresh
//!   database per test, a queue prefix per test so that tests can share the broker.
//! - [`stack`]: the whole service in its two shapes — distributed (api, conductor and agent each
//!   on its own runtime and thread, connected only through RabbitMQ and PostgreSQL) and the
//!   all-in-one (SQLite, in-process bus).
//! - [`client`]: HTTP calls the way an OpenStack client makes them, every response checked
//!   against tempest's schema for its microversion ([`schema`]); [`cli`]: the real
//!   `openstack` CLI.
//! - [`object_store`]: an S3-compatible object store (moto) for the image store's S3 backend.
//! - [`wait_until`]: how tests wait — for a condition, with a deadline, never for a time.

pub mod activations;
pub mod bmc;
pub mod cli;
pub mod client;
pub mod deployment;
pub mod docker;
pub mod env;
pub mod object_store;
pub mod schema;
pub mod stack;
pub mod vm;

/// Runs an async scenario `fn $name(&dyn Stack) -> anyhow::Result<()>` on both shapes of the
/// service, each started with `$options`: a module `$name` with tests `distributed` and
/// `all_in_one`.
#[macro_export]
macro_rules! on_both_shapes {
    ($name:ident, $options:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() -> anyhow::Result<()> {
                let stack = $crate::stack::Distributed::start($options).await?;
                super::$name(&stack).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn all_in_one() -> anyhow::Result<()> {
                let stack = $crate::stack::AllInOneStack::start($options).await?;
                super::$name(&stack).await
            }
        }
    };
}

/// Logs for tests, once, at `RUST_LOG` (default: warnings). lapin is silenced by default: a
/// component stopped by a test drops its runtime under lapin's I/O loop, which then logs an
/// error that says nothing about the service.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,lapin=off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The `p` quantile (0..=1) of an ascending `sorted` sample, nearest rank; the default for an
/// empty one. For the benchmarks.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Waits until `condition` holds, checking it every 20 ms, for at most `within`; the error
/// names `what`. Tests wait for conditions (a state, an event), never for a span of time.
pub async fn wait_until<F, Fut>(
    within: std::time::Duration,
    what: &str,
    mut condition: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await? {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not so after {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
