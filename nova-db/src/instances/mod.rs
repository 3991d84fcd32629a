//! Instances: [`create`] (with their build tasks, under the project's quota), [`query`] (one,
//! a page of a listing, what the conductor looks for), [`state`] (the transitions of user
//! actions and the conductor's compare-and-set updates) and [`edits`] (name, description,
//! metadata, tags, lock).

mod create;
mod edits;
mod query;
mod state;

pub use create::{create_with_build_tasks, Created};
pub(crate) use edits::lock_live;
pub use edits::{backfill_hostnames, begin_rebuild, modify, Record};
pub use query::*;
pub use state::*;

use nova_core::model::{Flavor, NetworkRequest, NodeType, SchedulerHints};
use std::collections::BTreeMap;

/// What the API validated and wants built.
#[derive(Clone, Debug)]
pub struct NewInstance {
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub node_type: NodeType,
    pub flavor: Flavor,
    pub image_ref: String,
    pub metadata: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub availability_zone: Option<String>,
    pub description: Option<String>,
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    pub tags: Vec<String>,
    /// The hostname asked for (2.90); `None`: made from the name.
    pub hostname: Option<String>,
    pub networks: NetworkRequest,
    pub scheduler_hints: SchedulerHints,
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
    pub config_drive: bool,
    pub trusted_image_certificates: Option<Vec<String>>,
    pub auto_disk_config: bool,
}

/// What a project's servers use: how many, their vcpus and their memory (MB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerUsage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
    /// The live members the creating user has in the server group the servers join (their
    /// `group` hint; Nova counts that quota per user), read under the group's lock; `None`
    /// without a group, or when the group is gone.
    pub group_members: Option<i64>,
}
