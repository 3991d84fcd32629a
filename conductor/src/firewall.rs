//! The hosts' packet filters: each compute host is sent the whole filter of the ports bound to
//! it (`nova_db::firewall`) when the firewall generation moves (a group, a rule, a port's
//! groups or addresses, a server built or deleted), when its agent registers, and every
//! minute anyway, which heals a message or a bump that was lost.

use crate::{Conductor, Result};
use nova_core::model::COMPUTE_BINARY;
use nova_core::rpc::{ComputeCommand, Envelope};
use nova_core::time::now_ms;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every host's filter again after this long, changed or not.
const FULL_SYNC: Duration = Duration::from_secs(60);

pub async fn run(c: Arc<Conductor>) {
    let period = Duration::from_millis(c.settings.firewall_interval_ms.max(50));
    let mut pushed: Option<i64> = None;
    let mut full = Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let generation = match nova_db::firewall::generation(&c.db).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "firewall generation not read");
                continue;
            }
        };
        if pushed == Some(generation) && full.elapsed() < FULL_SYNC {
            continue;
        }
        match push_all(&c).await {
            Ok(()) => {
                pushed = Some(generation);
                full = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "firewall push failed; next round"),
        }
    }
}

/// Sends every live compute host its filter. (Not the hosts that are down: their queues
/// would fill with filters nobody applies; an agent that comes back is sent its own when it
/// registers.)
async fn push_all(c: &Conductor) -> Result<()> {
    let now = now_ms();
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    for s in nova_db::nodes::services(&c.db).await? {
        if s.binary == COMPUTE_BINARY && s.is_up(now, c.settings.service_down_ms()) {
            hosts.insert(s.host);
        }
    }
    for host in hosts {
        push_host(c, &host).await?;
    }
    Ok(())
}

/// Sends one host its filter.
pub(crate) async fn push_host(c: &Conductor, host: &str) -> Result<()> {
    let sent_at = now_ms();
    let ports = nova_db::firewall::of_host(&c.db, host).await?;
    let command = ComputeCommand::SyncFirewall { ports, sent_at };
    if let Err(e) = c
        .bus
        .publish(
            &c.queues.compute(host),
            Envelope::new(None, command).encode(),
        )
        .await
    {
        tracing::warn!(%host, error = %e, "firewall not sent");
    }
    Ok(())
}
