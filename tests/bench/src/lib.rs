//! What the benchmarks share: each benchmark is a binary of its own (`src/bench_*.rs`); the
//! figures they print are computed here alike.

pub mod actions;

use std::time::Duration;

/// The value at fraction `p` of `sorted` (nearest rank); NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A distributed stack whose one agent drives Docker on host `host`, its state in `state`,
/// with production's intervals (the sync loop's engine calls would otherwise compete with
/// what is measured) and no firewall.
pub fn docker_stack(state: &std::path::Path, host: &str) -> e2e::stack::Options {
    e2e::stack::Options {
        driver: compute_agent::settings::DriverKind::Docker,
        docker: drivers::docker::DockerSettings {
            state_dir: state.to_owned(),
            firewall: e2e::docker::no_firewall(),
            ..Default::default()
        },
        host: host.to_owned(),
        heartbeat_ms: 10_000,
        sync_ms: 10_000,
        service_down_s: 60,
        ..e2e::stack::Options::default()
    }
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
