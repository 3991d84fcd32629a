//! Placement of a build: the pool of nodes of the requested type, a filter (enabled, alive,
//! room for the flavor, the create's `same_host`/`different_host` hints, its server group's
//! affinity or anti-affinity), a weigher (a soft group policy's preference, then most free RAM),
//! then a claim.
//!
//! A group's hard policy is checked again inside the claim's transaction, under the group's
//! row lock (`nova_db::server_groups::lock_and_place`): two members placed at once cannot both
//! take the host the policy leaves to one of them (Nova checks again on the compute host and
//! reschedules).
//!
//! The claim is optimistic across conductors: a generation compare-and-swap in the same
//! transaction as the allocation row (see `nova_db::nodes::claim`). Within one conductor,
//! claims on the same node take turns behind a per-node lock, so that concurrent builds do not
//! spend their time losing races to each other; the compare-and-swap still guards against
//! other conductors.

use nova_core::ids::NodeUuid;
use nova_core::model::{ComputeNode, Instance};
use nova_db::{instances, nodes, server_groups, tasks, Db, DbResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a build went.
#[derive(Debug)]
pub enum Placement {
    Placed {
        host: String,
        node: String,
    },
    /// No node of the type has room (Nova's NoValidHost).
    NoValidHost,
    /// The instance is no longer waiting to be scheduled (deleted meanwhile, or a duplicate).
    Superseded,
}

/// How many free machines of a class a bare-metal build considers: the first it can claim wins,
/// and more only matter to builds racing for the same class (they take the next attempt's).
const BAREMETAL_CANDIDATES: i64 = 32;

#[derive(Default)]
pub struct Scheduler {
    node_locks: Mutex<HashMap<NodeUuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl Scheduler {
    fn lock_for(&self, node: NodeUuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.node_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(node).or_default().clone()
    }

    /// Picks a node for `instance`, claims the flavor's resources on it, records the host on the
    /// instance (task state spawning) and marks `task` dispatched, all in one transaction.
    pub async fn place(
        &self,
        db: &Db,
        instance: &Instance,
        task: nova_core::ids::TaskId,
        alive_since: i64,
        attempts: u32,
    ) -> DbResult<Placement> {
        let building = (
            nova_core::model::VmState::Building,
            nova_core::model::TaskState::Scheduling,
        );
        self.place_from(db, instance, task, alive_since, attempts, building)
            .await
    }

    /// [`Self::place`] for an instance in the states `from` (an unshelve's).
    pub async fn place_from(
        &self,
        db: &Db,
        instance: &Instance,
        task: nova_core::ids::TaskId,
        alive_since: i64,
        attempts: u32,
        from: (nova_core::model::VmState, nova_core::model::TaskState),
    ) -> DbResult<Placement> {
        let need = instance.flavor.resources();
        let hints = &instance.scheduler_hints;
        // Nova's SameHostFilter and DifferentHostFilter: the hosts the hinted servers are on.
        let (same, different) = if hints.is_empty() {
            Default::default()
        } else {
            (
                instances::hosts_of(db, &hints.same_host).await?,
                instances::hosts_of(db, &hints.different_host).await?,
            )
        };
        // Nova's availability zone filter: a requested zone takes only its hosts.
        let zones = match &instance.availability_zone {
            Some(_) => nova_db::aggregates::host_zones(db).await?,
            None => Default::default(),
        };
        // A bare-metal server takes a whole machine of its flavor's class, exactly: the
        // machines free now whose class is the one asked for.
        let baremetal = instance.node_type == nova_core::model::NodeType::Baremetal;
        let wanted_class = instance.flavor.baremetal_class().map(str::to_owned);
        let group = hints
            .group
            .as_deref()
            .and_then(|g| uuid::Uuid::parse_str(g).ok());
        for _ in 0..attempts.max(1) {
            // Where the group's other members are (a group deleted since: no policy).
            let mut group_placed = match group {
                Some(g) => server_groups::placed(db, g, instance.uuid.0)
                    .await?
                    .unwrap_or_default(),
                None => server_groups::Placed::default(),
            };
            let mut candidates = if baremetal {
                let Some(class) = &wanted_class else {
                    return Ok(Placement::NoValidHost);
                };
                // The first few do, unless hints or a zone filter them below: then all.
                let limit = if hints.is_empty() && instance.availability_zone.is_none() {
                    BAREMETAL_CANDIDATES
                } else {
                    i64::MAX
                };
                nodes::free_machines(db, class, alive_since, limit).await?
            } else {
                nodes::candidates(db, instance.node_type, need, alive_since).await?
            };
            candidates.retain(|node| {
                instance
                    .availability_zone
                    .as_deref()
                    .is_none_or(|z| nova_db::aggregates::zone_of(&zones, &node.host) == z)
                    && (hints.same_host.is_empty() || same.contains(&node.host))
                    && !different.contains(&node.host)
                    && hints.host.as_ref().is_none_or(|h| *h == node.host)
                    && hints
                        .node
                        .as_ref()
                        .is_none_or(|n| *n == node.inventory.name)
                    && group_placed.allows(&node.host)
            });
            if candidates.is_empty() {
                return Ok(Placement::NoValidHost);
            }
            // A soft policy's preference first; the candidates' own order among equals.
            candidates.sort_by_key(|node| std::cmp::Reverse(group_placed.preference(&node.host)));
            // Each candidate with whether it may still be put off: any free machine of the
            // class will do, so one whose turn another build holds (most likely taking it) is
            // tried after the others rather than waited for.
            let mut queue: std::collections::VecDeque<(ComputeNode, bool)> =
                candidates.into_iter().map(|c| (c, baremetal)).collect();
            'candidates: while let Some((candidate, may_wait_later)) = queue.pop_front() {
                if !group_placed.allows(&candidate.host) {
                    continue;
                }
                let lock = self.lock_for(candidate.inventory.uuid);
                // Uncontended, the listed row is usually current (the claim is a compare-and-set
                // on the node's generation anyway); after waiting for the turn it may be stale,
                // so the node is read again. A claim lost on the listed row (another task took
                // the node between the list and the turn) is retried once on a fresh read.
                let (_turn, mut node, mut fresh) = match lock.clone().try_lock_owned() {
                    Ok(turn) => (turn, candidate, false),
                    Err(_) if may_wait_later => {
                        queue.push_back((candidate, false));
                        continue;
                    }
                    Err(_) => {
                        let turn = lock.lock_owned().await;
                        let Some(node) = nodes::node(db, candidate.inventory.uuid).await? else {
                            continue;
                        };
                        (turn, node, true)
                    }
                };
                loop {
                    // A machine is claimed whole: all it has, so that nothing else fits.
                    let need = if baremetal {
                        node.inventory.total
                    } else {
                        need
                    };
                    if !fits(&node, need) {
                        continue 'candidates;
                    }
                    let mut tx = db.begin().await?;
                    // Take the task first: a duplicate message handled concurrently waits on
                    // this row and then finds the task no longer pending.
                    if !tasks::advance(
                        &mut tx,
                        task,
                        &[tasks::TaskState::Pending],
                        tasks::TaskState::Dispatched,
                    )
                    .await?
                    {
                        return Ok(Placement::Superseded);
                    }
                    if let (Some(g), true) = (group, group_placed.is_hard()) {
                        let now = server_groups::lock_and_place(&mut tx, g, instance.uuid.0)
                            .await?
                            .unwrap_or_default();
                        if !now.allows(&node.host) {
                            // A member placed meanwhile took the host's place: the next
                            // candidate, as the group is now.
                            tracing::debug!(host = %node.host, "server group policy: host taken meanwhile");
                            drop(tx);
                            group_placed = now;
                            continue 'candidates;
                        }
                    }
                    let claimed = nodes::claim(
                        &mut tx,
                        node.inventory.uuid,
                        node.generation,
                        instance.uuid,
                        need,
                    )
                    .await?;
                    let claimed = claimed
                        && (!baremetal
                            || nova_db::baremetal::take(
                                &mut tx,
                                &node.inventory.name,
                                wanted_class.as_deref().unwrap_or_default(),
                                instance.uuid,
                                nova_core::time::now_ms(),
                            )
                            .await?);
                    if !claimed {
                        // The node changed; the transaction rolls back on drop.
                        tracing::debug!(node = %node.inventory.uuid, "claim lost a race");
                        drop(tx);
                        if fresh {
                            continue 'candidates;
                        }
                        let Some(current) = nodes::node(db, node.inventory.uuid).await? else {
                            continue 'candidates;
                        };
                        (node, fresh) = (current, true);
                        continue;
                    }
                    if !instances::assign_host_from(
                        &mut tx,
                        instance.uuid,
                        &node.host,
                        &node.inventory.name,
                        from,
                    )
                    .await?
                    {
                        return Ok(Placement::Superseded);
                    }
                    tx.commit().await?;
                    return Ok(Placement::Placed {
                        host: node.host,
                        node: node.inventory.name,
                    });
                }
            }
        }
        Ok(Placement::NoValidHost)
    }
}

fn fits(node: &ComputeNode, need: nova_core::model::Resources) -> bool {
    let free = node.free();
    free.vcpus >= need.vcpus && free.memory_mb >= need.memory_mb && free.disk_gb >= need.disk_gb
}
