//! The conductor's configuration (`[conductor]`, `NOVA__CONDUCTOR__…`).

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ConductorSettings {
    /// The name this conductor registers its service under (`nova-conductor` on this host).
    pub host: String,
    /// A build still running after this long ends in ERROR (Nova's `instance_build_timeout`,
    /// which Nova leaves off; here it is on by default so that nothing stays in BUILD).
    pub build_timeout_s: u64,
    /// A compute service not heard from for this long is down (Nova's `service_down_time`).
    pub service_down_time_s: u64,
    /// How often the reconciler looks for work that stopped moving.
    pub reconcile_interval_ms: u64,
    /// An open task untouched for this long is sent again (its message may have been lost).
    pub redrive_after_s: u64,
    /// Optimistic claim attempts before a build gives up with "no valid host".
    pub claim_attempts: u32,
    /// A task other than a build (which has its timeout) sent this many times without an
    /// answer ends: its server gets a fault and its task state back (a delete: ERROR).
    pub task_attempts: u32,
    /// How often the bare-metal agents are asked for their machines' power (Ironic's
    /// `sync_power_state_interval`).
    pub baremetal_sync_interval_s: u64,
    /// Syncs in a row a BMC may fail before its node goes into maintenance (Ironic's
    /// `power_state_sync_max_retries`).
    pub baremetal_sync_max_failures: u32,
    /// How long cleaning a machine after its instance may take (the API's own cleanings have
    /// `api.baremetal.clean_timeout_s`).
    pub baremetal_clean_timeout_s: u64,
    /// How often the firewall generation is read: a change to security groups reaches the
    /// hosts' packet filters within this.
    pub firewall_interval_ms: u64,
    /// A resize waiting in VERIFY_RESIZE for longer than this is confirmed by the conductor
    /// (Nova's `resize_confirm_window`); 0, Nova's default, leaves it to the user.
    pub resize_confirm_window_s: u64,
}

impl Default for ConductorSettings {
    fn default() -> Self {
        Self {
            host: nova_core::settings::default_host(),
            build_timeout_s: 600,
            service_down_time_s: 60,
            reconcile_interval_ms: 5_000,
            redrive_after_s: 60,
            claim_attempts: 10,
            task_attempts: 5,
            baremetal_sync_interval_s: 60,
            baremetal_sync_max_failures: 3,
            baremetal_clean_timeout_s: 1800,
            firewall_interval_ms: 500,
            resize_confirm_window_s: 0,
        }
    }
}

impl ConductorSettings {
    pub fn service_down_ms(&self) -> i64 {
        i64::try_from(self.service_down_time_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
    pub fn build_timeout_ms(&self) -> i64 {
        i64::try_from(self.build_timeout_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
    pub fn redrive_after_ms(&self) -> i64 {
        i64::try_from(self.redrive_after_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}
