//! Reading servers: one by id, a page of a listing ([`TABLE`] for the list engine, with the
//! keys servers sort by and Nova's status filter), and what the conductor and the scheduler
//! look for.

use crate::listing::{self, Arg, Column, Cond, Kind, Listing, Tags};
use crate::rows::{FaultRow, InstanceRow, INSTANCE_COLUMNS};
use crate::{corrupt, on_pool, Db, DbResult};
use nova_core::ids::InstanceUuid;
use nova_core::model::{Fault, Instance, TaskState, VmState};
use nova_core::time::Millis;
use std::collections::HashMap;
use uuid::Uuid;

async fn latest_faults(db: &Db, uuids: &[Uuid]) -> DbResult<HashMap<Uuid, Fault>> {
    let mut faults = HashMap::new();
    // Faults matter only for servers in ERROR, which are few; one query per chunk.
    for chunk in uuids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT instance_uuid, code, message, details, created_at FROM instance_faults \
             WHERE instance_uuid IN ({}) ORDER BY id",
            placeholders.join(", ")
        );
        let rows: Vec<FaultRow> = on_pool!(db, p => {
            let mut q = sqlx::query_as(&sql);
            for u in chunk {
                q = q.bind(*u);
            }
            q.fetch_all(p).await?
        });
        for row in rows {
            // Ordered by id: the last one wins, as Nova shows the latest fault.
            faults.insert(row.instance_uuid, row.into_model());
        }
    }
    Ok(faults)
}

pub(super) async fn with_faults(db: &Db, rows: Vec<InstanceRow>) -> DbResult<Vec<Instance>> {
    let errored: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.vm_state == VmState::Error.as_str())
        .map(|r| r.uuid)
        .collect();
    let mut faults = if errored.is_empty() {
        HashMap::new()
    } else {
        latest_faults(db, &errored).await?
    };
    rows.into_iter()
        .map(|r| {
            let fault = faults.remove(&r.uuid);
            r.into_model(fault)
        })
        .collect()
}

/// A server that is not deleted, with its latest fault when in ERROR.
pub async fn get(db: &Db, uuid: InstanceUuid) -> DbResult<Option<Instance>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE uuid = $1 AND NOT deleted");
    let row: Option<InstanceRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(uuid.0).fetch_optional(p).await?);
    Ok(with_faults(db, row.into_iter().collect()).await?.pop())
}

/// A server whether deleted or not (the conductor and tests).
pub async fn get_any(db: &Db, uuid: InstanceUuid) -> DbResult<Option<Instance>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE uuid = $1");
    let row: Option<InstanceRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(uuid.0).fetch_optional(p).await?);
    Ok(with_faults(db, row.into_iter().collect()).await?.pop())
}

/// Servers that are not deleted, newest first (Nova's default sort: created_at desc), of one
/// project or of all when `project` is `None`.
pub async fn list(db: &Db, project: Option<&str>, limit: i64) -> DbResult<Vec<Instance>> {
    let rows: Vec<InstanceRow> = match project {
        Some(project) => {
            let sql = format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE project_id = $1 AND NOT deleted \
                 ORDER BY created_at DESC, uuid DESC LIMIT $2"
            );
            on_pool!(db, p => sqlx::query_as(&sql).bind(project).bind(limit).fetch_all(p).await?)
        }
        None => {
            let sql = format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE NOT deleted \
                 ORDER BY created_at DESC, uuid DESC LIMIT $1"
            );
            on_pool!(db, p => sqlx::query_as(&sql).bind(limit).fetch_all(p).await?)
        }
    };
    with_faults(db, rows).await
}

/// Servers as the list engine sees them; their tags are a JSON list in the row.
pub const TABLE: listing::Table = listing::Table {
    name: "instances",
    columns: INSTANCE_COLUMNS,
    id: Column {
        expr: "uuid",
        kind: Kind::Uuid,
    },
    tags: Some(Tags::JsonColumn("tags")),
};

/// What servers can be sorted by (Nova's `sort_key`s that this service holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    CreatedAt,
    UpdatedAt,
    LaunchedAt,
    TerminatedAt,
    Name,
    Description,
    Host,
    Node,
    Uuid,
    VmState,
    TaskState,
    PowerState,
    ProjectId,
    UserId,
    ImageRef,
    AvailabilityZone,
    KeyName,
    LockedBy,
    Hostname,
}

impl SortKey {
    /// Nova's name of the key (`sort_key=`).
    pub fn parse(nova: &str) -> Option<Self> {
        Some(match nova {
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "launched_at" => Self::LaunchedAt,
            "terminated_at" => Self::TerminatedAt,
            "display_name" => Self::Name,
            "display_description" => Self::Description,
            "host" => Self::Host,
            "node" => Self::Node,
            "uuid" => Self::Uuid,
            "vm_state" => Self::VmState,
            "task_state" => Self::TaskState,
            "power_state" => Self::PowerState,
            "project_id" => Self::ProjectId,
            "user_id" => Self::UserId,
            "image_ref" => Self::ImageRef,
            "availability_zone" => Self::AvailabilityZone,
            "key_name" => Self::KeyName,
            "locked_by" => Self::LockedBy,
            "hostname" => Self::Hostname,
            _ => return None,
        })
    }

    /// The column it sorts by. Nullable columns are coalesced so that both backends order and
    /// compare them alike (PostgreSQL and SQLite put NULLs at opposite ends).
    pub fn column(self) -> Column {
        let text = |expr| Column {
            expr,
            kind: Kind::Text,
        };
        let int = |expr| Column {
            expr,
            kind: Kind::Int,
        };
        match self {
            Self::CreatedAt => int("created_at"),
            Self::UpdatedAt => int("updated_at"),
            Self::LaunchedAt => int("COALESCE(launched_at, -1)"),
            Self::TerminatedAt => int("COALESCE(terminated_at, -1)"),
            Self::Name => text("name"),
            Self::Description => text("COALESCE(description, '')"),
            Self::Host => text("COALESCE(host, '')"),
            Self::Node => text("COALESCE(node, '')"),
            Self::Uuid => TABLE.id,
            Self::VmState => text("vm_state"),
            Self::TaskState => text("COALESCE(task_state, '')"),
            // An INTEGER column: read as i32 by sqlx on PostgreSQL, so cast for the marker.
            Self::PowerState => int("CAST(power_state AS BIGINT)"),
            Self::ProjectId => text("project_id"),
            Self::UserId => text("user_id"),
            Self::ImageRef => text("image_ref"),
            Self::AvailabilityZone => text("COALESCE(availability_zone, '')"),
            Self::KeyName => text("COALESCE(key_name, '')"),
            Self::LockedBy => text("COALESCE(locked_by, '')"),
            // Every row has one: new rows at create, older ones by `backfill_hostnames`.
            Self::Hostname => text("COALESCE(hostname, '')"),
        }
    }
}

/// Servers whose API status (Nova's mapping from vm and task state, [`api_status`]) is one of
/// `statuses`, as a condition on the states the rows hold.
///
/// [`api_status`]: nova_core::model::api_status
pub fn status_is(statuses: &[String]) -> Cond {
    let mut alternatives = Vec::new();
    for &vm in VmState::ALL {
        let tasks: Vec<Option<TaskState>> = std::iter::once(None)
            .chain(TaskState::ALL.iter().copied().map(Some))
            .collect();
        let wanted: Vec<Option<TaskState>> = tasks
            .iter()
            .copied()
            .filter(|t| {
                let status = nova_core::model::api_status(vm, *t);
                statuses.iter().any(|s| s == status)
            })
            .collect();
        let vm_is = Cond::eq("vm_state", Arg::Text(vm.as_str().to_owned()));
        if wanted.len() == tasks.len() {
            alternatives.push(vm_is);
        } else if !wanted.is_empty() {
            let task_states = wanted
                .iter()
                .map(|t| Arg::Text(t.map(|t| t.as_str()).unwrap_or_default().to_owned()))
                .collect();
            alternatives.push(Cond::all(vec![
                vm_is,
                Cond::any_of("COALESCE(task_state, '')", task_states),
            ]));
        }
    }
    Cond::any(alternatives)
}

/// A page of a server listing, with the latest fault of those in ERROR.
pub async fn page(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Instance>> {
    let rows: Vec<InstanceRow> = listing::page(db, listing).await?;
    with_faults(db, rows).await
}

/// Builds still running that were created before `before` (the build timeout).
pub async fn builds_started_before(db: &Db, before: Millis) -> DbResult<Vec<Instance>> {
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE vm_state = $1 AND NOT deleted \
         AND created_at < $2 ORDER BY created_at LIMIT 500"
    );
    let rows: Vec<InstanceRow> = on_pool!(db, p => {
        sqlx::query_as(&sql)
            .bind(VmState::Building.as_str())
            .bind(before)
            .fetch_all(p)
            .await?
    });
    rows.into_iter().map(|r| r.into_model(None)).collect()
}

/// SOFT_DELETED servers with no task running whose `reclaim_at` has passed (the conductor
/// deletes them: Nova's `_reclaim_queued_deletes`).
pub async fn due_for_reclaim(db: &Db, now: Millis) -> DbResult<Vec<Instance>> {
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE NOT deleted AND vm_state = $1 \
         AND task_state IS NULL AND reclaim_at IS NOT NULL AND reclaim_at <= $2 \
         ORDER BY reclaim_at LIMIT 200"
    );
    let rows: Vec<InstanceRow> = on_pool!(db, p => {
        sqlx::query_as(&sql)
            .bind(VmState::SoftDeleted.as_str())
            .bind(now)
            .fetch_all(p)
            .await?
    });
    rows.into_iter().map(|r| r.into_model(None)).collect()
}

/// Live instances placed on `host` (power-state sync and re-adoption).
pub async fn on_host(db: &Db, host: &str) -> DbResult<Vec<Instance>> {
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE host = $1 AND NOT deleted ORDER BY created_at"
    );
    let rows: Vec<InstanceRow> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(host).fetch_all(p).await?);
    rows.into_iter().map(|r| r.into_model(None)).collect()
}

/// How many rows the instances table holds (tests check that rejected requests write nothing).
pub async fn count_all(db: &Db) -> DbResult<i64> {
    let (n,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM instances").fetch_one(p).await?
    });
    Ok(n)
}

/// How many live instances of a project are in each vm state.
pub async fn count_by_state(db: &Db, project: &str) -> DbResult<Vec<(VmState, i64)>> {
    let rows: Vec<(String, i64)> = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT vm_state, COUNT(*) FROM instances WHERE project_id = $1 AND NOT deleted \
             GROUP BY vm_state",
        )
        .bind(project)
        .fetch_all(p)
        .await?
    });
    rows.into_iter()
        .map(|(s, n)| {
            Ok((
                VmState::parse(&s).ok_or_else(|| corrupt(format!("vm_state {s}")))?,
                n,
            ))
        })
        .collect()
}

/// The hosts of these servers (those not deleted and placed), for the scheduler's
/// `same_host` and `different_host` hints. Ids that are not uuids name no server.
pub async fn hosts_of(db: &Db, uuids: &[String]) -> DbResult<std::collections::BTreeSet<String>> {
    let mut hosts = std::collections::BTreeSet::new();
    for id in uuids {
        let Ok(uuid) = Uuid::parse_str(id) else {
            continue;
        };
        let host: Option<(Option<String>,)> = on_pool!(db, p => {
            sqlx::query_as("SELECT host FROM instances WHERE uuid = $1 AND deleted = $2")
                .bind(uuid)
                .bind(false)
                .fetch_optional(p)
                .await?
        });
        if let Some((Some(host),)) = host {
            hosts.insert(host);
        }
    }
    Ok(hosts)
}
