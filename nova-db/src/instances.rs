//! Instances: creation with their build task, the state transitions the API asks for, and the
//! compare-and-set updates the conductor applies. Every update names the state it expects, so
//! a late or duplicated message cannot move a server backwards.

use crate::actions::{self, Requester};
use crate::rows::{FaultRow, InstanceRow, INSTANCE_COLUMNS};
use crate::tasks;
use crate::{corrupt, on_pool, on_tx, Db, DbError, DbResult, Tx};
use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::model::{
    Address, Fault, Flavor, Instance, LockedBy, NetworkRequest, NodeType, PowerState,
    SchedulerHints, TaskState, VmState,
};
use nova_core::rpc::TaskKind;
use nova_core::time::{now_ms, Millis};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

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
}

/// What a project's servers use: how many, their vcpus and their memory (MB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerUsage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
}

/// Writes the servers of one create request (building/scheduling), each with its `create`
/// action and build task, all in one transaction, once `admit` has accepted the project's usage
/// as read inside that transaction. The project's creates are serialised there (an advisory
/// lock on PostgreSQL; SQLite has one writer), so concurrent requests cannot together go over a
/// quota that each alone fits; a refusal writes nothing. The caller publishes the tasks after
/// the commit.
pub async fn create_with_build_tasks<E, F>(
    db: &Db,
    news: &[NewInstance],
    request_id: &str,
    admit: F,
) -> Result<Vec<(Instance, TaskId)>, E>
where
    E: From<DbError>,
    F: FnOnce(ServerUsage) -> Result<(), E>,
{
    // One request's servers are all of one project.
    let Some(project) = news.first().map(|n| n.project_id.as_str()) else {
        return Ok(Vec::new());
    };
    let mut tx = db.begin().await?;
    if let Tx::Pg(t) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(QUOTA_LOCK_CLASS)
            .bind(project)
            .execute(&mut **t)
            .await
            .map_err(DbError::from)?;
    }
    let (instances, cores, ram): (i64, i64, i64) = on_tx!(&mut tx, c => {
        sqlx::query_as(super::quotas::SERVER_USAGE_SQL)
        .bind(project)
        .bind(false)
        .fetch_one(&mut *c)
        .await
        .map_err(DbError::from)?
    });
    let usage = ServerUsage {
        instances,
        cores,
        ram,
    };
    admit(usage)?;
    let mut created = Vec::with_capacity(news.len());
    for new in news {
        created.push(insert_with_build_task(&mut tx, new, request_id).await?);
    }
    tx.commit().await?;
    Ok(created)
}

/// The class of the PostgreSQL advisory locks that serialise one project's server creates
/// (the second key is the project's hash).
const QUOTA_LOCK_CLASS: i32 = 0x4e4f_5641; // "NOVA"

/// One server and its `create` action and build task, inside the caller's transaction.
async fn insert_with_build_task(
    tx: &mut Tx,
    new: &NewInstance,
    request_id: &str,
) -> DbResult<(Instance, TaskId)> {
    let uuid = InstanceUuid::new_v4();
    let now = now_ms();
    let flavor = serde_json::to_string(&new.flavor).map_err(|e| corrupt(e.to_string()))?;
    let metadata = serde_json::to_string(&new.metadata).map_err(|e| corrupt(e.to_string()))?;
    let tags = serde_json::to_string(&new.tags).map_err(|e| corrupt(e.to_string()))?;
    let hostname = new
        .hostname
        .clone()
        .unwrap_or_else(|| nova_core::model::sanitize_hostname(&new.name));
    let hints = serde_json::to_string(&new.scheduler_hints).map_err(|e| corrupt(e.to_string()))?;
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO instances (uuid, name, project_id, user_id, vm_state, task_state, \
             power_state, node_type, flavor, image_ref, metadata, user_data, availability_zone, \
             created_at, updated_at, deleted, description, key_name, key_data, tags, vcpus, \
             memory_mb, hostname, networks, scheduler_hints) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22, $23, $24)",
        )
        .bind(uuid.0)
        .bind(&new.name)
        .bind(&new.project_id)
        .bind(&new.user_id)
        .bind(VmState::Building.as_str())
        .bind(TaskState::Scheduling.as_str())
        .bind(PowerState::NoState.code())
        .bind(new.node_type.as_str())
        .bind(&flavor)
        .bind(&new.image_ref)
        .bind(&metadata)
        .bind(&new.user_data)
        .bind(&new.availability_zone)
        .bind(now)
        .bind(false)
        .bind(&new.description)
        .bind(&new.key_name)
        .bind(&new.key_data)
        .bind(&tags)
        .bind(new.flavor.vcpus)
        .bind(new.flavor.memory_mb)
        .bind(&hostname)
        .bind(new.networks.to_column())
        .bind(&hints)
        .execute(&mut *c)
        .await?;
    });
    let who = Requester {
        request_id,
        project_id: &new.project_id,
        user_id: &new.user_id,
    };
    let action_id = actions::start(tx, uuid, TaskKind::Build.action_name(), &who).await?;
    let task = tasks::insert(tx, uuid, TaskKind::Build, request_id, action_id).await?;
    let instance = Instance {
        uuid,
        name: new.name.clone(),
        project_id: new.project_id.clone(),
        user_id: new.user_id.clone(),
        vm_state: VmState::Building,
        task_state: Some(TaskState::Scheduling),
        power_state: PowerState::NoState,
        host: None,
        node: None,
        node_type: new.node_type,
        flavor: new.flavor.clone(),
        image_ref: new.image_ref.clone(),
        metadata: new.metadata.clone(),
        user_data: new.user_data.clone(),
        availability_zone: new.availability_zone.clone(),
        launched_at: None,
        terminated_at: None,
        created_at: now,
        updated_at: now,
        deleted: false,
        fault: None,
        description: new.description.clone(),
        key_name: new.key_name.clone(),
        key_data: new.key_data.clone(),
        locked_by: None,
        locked_reason: None,
        tags: new.tags.clone(),
        hostname,
        networks: new.networks.clone(),
        addresses: Vec::new(),
        scheduler_hints: new.scheduler_hints.clone(),
    };
    Ok((instance, task))
}

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

async fn with_faults(db: &Db, rows: Vec<InstanceRow>) -> DbResult<Vec<Instance>> {
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

/// What a server listing selects in the database; the rest of Nova's filters (name as a
/// regular expression, status, flavor, tags) are applied by the caller.
#[derive(Clone, Debug, Default)]
pub struct ListQuery<'a> {
    /// `None`: every project (admins with `all_tenants`).
    pub project: Option<&'a str>,
    pub host: Option<&'a str>,
    pub image_ref: Option<&'a str>,
    /// Changed at or after (`changes-since`, epoch ms).
    pub changes_since: Option<Millis>,
    /// The order; [`ListQuery::order`] completes it so that it is total.
    pub sort: Vec<(SortKey, SortDir)>,
    /// Servers after this one in the listing's order (the page's marker or last server).
    pub after: Option<Instance>,
    pub limit: i64,
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// A bound value of the dynamic listing query.
enum Arg {
    Text(String),
    Int(i64),
    Id(Uuid),
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

    /// The SQL it sorts by. Nullable columns are coalesced so that both backends order and
    /// compare them alike (PostgreSQL and SQLite put NULLs at opposite ends).
    fn expr(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
            Self::LaunchedAt => "COALESCE(launched_at, -1)",
            Self::TerminatedAt => "COALESCE(terminated_at, -1)",
            Self::Name => "name",
            Self::Description => "COALESCE(description, '')",
            Self::Host => "COALESCE(host, '')",
            Self::Node => "COALESCE(node, '')",
            Self::Uuid => "uuid",
            Self::VmState => "vm_state",
            Self::TaskState => "COALESCE(task_state, '')",
            Self::PowerState => "power_state",
            Self::ProjectId => "project_id",
            Self::UserId => "user_id",
            Self::ImageRef => "image_ref",
            Self::AvailabilityZone => "COALESCE(availability_zone, '')",
            Self::KeyName => "COALESCE(key_name, '')",
            Self::LockedBy => "COALESCE(locked_by, '')",
            // Every row has one: new rows at create, older ones by `backfill_hostnames`.
            Self::Hostname => "COALESCE(hostname, '')",
        }
    }

    /// The value of `expr` for a server, for the keyset condition after a marker.
    fn value(self, i: &Instance) -> Arg {
        let text = |s: Option<&str>| Arg::Text(s.unwrap_or_default().to_owned());
        match self {
            Self::CreatedAt => Arg::Int(i.created_at),
            Self::UpdatedAt => Arg::Int(i.updated_at),
            Self::LaunchedAt => Arg::Int(i.launched_at.unwrap_or(-1)),
            Self::TerminatedAt => Arg::Int(i.terminated_at.unwrap_or(-1)),
            Self::Name => text(Some(&i.name)),
            Self::Description => text(i.description.as_deref()),
            Self::Host => text(i.host.as_deref()),
            Self::Node => text(i.node.as_deref()),
            Self::Uuid => Arg::Id(i.uuid.0),
            Self::VmState => text(Some(i.vm_state.as_str())),
            Self::TaskState => text(i.task_state.map(|t| t.as_str())),
            Self::PowerState => Arg::Int(i64::from(i.power_state.code())),
            Self::ProjectId => text(Some(&i.project_id)),
            Self::UserId => text(Some(&i.user_id)),
            Self::ImageRef => text(Some(&i.image_ref)),
            Self::AvailabilityZone => text(i.availability_zone.as_deref()),
            Self::KeyName => text(i.key_name.as_deref()),
            Self::LockedBy => text(i.locked_by.map(LockedBy::as_str)),
            Self::Hostname => text(Some(&i.hostname)),
        }
    }
}

impl ListQuery<'_> {
    /// The order as Nova's `process_sort_params` makes it: the keys asked for, then
    /// `created_at` and the id (here the uuid) unless already there, in the first direction
    /// asked for (default descending) — a total order, which keyset paging needs.
    pub fn order(&self) -> Vec<(SortKey, SortDir)> {
        let default = self.sort.first().map_or(SortDir::Desc, |(_, d)| *d);
        let mut order = self.sort.clone();
        for key in [SortKey::CreatedAt, SortKey::Uuid] {
            if !order.iter().any(|(k, _)| *k == key) {
                order.push((key, default));
            }
        }
        order
    }
}

/// Live servers in the query's order, keyset-paged.
pub async fn list_page(db: &Db, q: &ListQuery<'_>) -> DbResult<Vec<Instance>> {
    // Only the filters given become conditions: `($1 IS NULL OR …)` would keep PostgreSQL's
    // generic plans from using the (project, deleted, created_at) index.
    let mut sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE NOT deleted");
    let mut args: Vec<Arg> = Vec::new();
    let bind = |args: &mut Vec<Arg>, a: Arg| {
        args.push(a);
        format!("${}", args.len())
    };
    if let Some(p) = q.project {
        sql.push_str(&format!(
            " AND project_id = {}",
            bind(&mut args, Arg::Text(p.into()))
        ));
    }
    if let Some(h) = q.host {
        sql.push_str(&format!(
            " AND host = {}",
            bind(&mut args, Arg::Text(h.into()))
        ));
    }
    if let Some(i) = q.image_ref {
        sql.push_str(&format!(
            " AND image_ref = {}",
            bind(&mut args, Arg::Text(i.into()))
        ));
    }
    if let Some(t) = q.changes_since {
        sql.push_str(&format!(
            " AND updated_at >= {}",
            bind(&mut args, Arg::Int(t))
        ));
    }
    let order = q.order();
    if let Some(after) = &q.after {
        // (k1 > v1) OR (k1 = v1 AND k2 > v2) OR …, with < for descending keys.
        let mut alternatives = Vec::new();
        for (n, (key, dir)) in order.iter().enumerate() {
            let mut terms: Vec<String> = order[..n]
                .iter()
                .map(|(k, _)| format!("{} = {}", k.expr(), bind(&mut args, k.value(after))))
                .collect();
            let op = if *dir == SortDir::Asc { ">" } else { "<" };
            terms.push(format!(
                "{} {op} {}",
                key.expr(),
                bind(&mut args, key.value(after))
            ));
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    let order_by: Vec<String> = order
        .iter()
        .map(|(k, d)| {
            format!(
                "{} {}",
                k.expr(),
                if *d == SortDir::Asc { "ASC" } else { "DESC" }
            )
        })
        .collect();
    sql.push_str(&format!(
        " ORDER BY {} LIMIT {}",
        order_by.join(", "),
        bind(&mut args, Arg::Int(q.limit))
    ));
    let rows: Vec<InstanceRow> = on_pool!(db, p => {
        let mut query = sqlx::query_as(&sql);
        for a in &args {
            query = match a {
                Arg::Text(t) => query.bind(t.as_str()),
                Arg::Int(i) => query.bind(*i),
                Arg::Id(u) => query.bind(*u),
            };
        }
        query.fetch_all(p).await?
    });
    with_faults(db, rows).await
}

/// Which states a user action may start from, and the task state it sets.
#[derive(Clone, Copy, Debug)]
pub struct TransitionRule {
    pub from_vm_states: &'static [VmState],
    pub task_state: TaskState,
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("instance not found")]
    NotFound,
    #[error("instance is in vm_state {vm_state} and task_state {task_state:?}")]
    Conflict {
        vm_state: VmState,
        task_state: Option<TaskState>,
    },
    /// The server is locked and the caller may not override the lock (Nova's
    /// `check_instance_lock`).
    #[error("instance is locked")]
    Locked,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Starts a user action: sets the task state if the server is in one of the rule's vm states
/// with no task running, and writes the action and task rows, all in one transaction.
/// `project` limits the lookup to one project (`None`: any, for admins); a locked server
/// refuses unless `lock_override` (admins, as Nova).
pub async fn begin_action(
    db: &Db,
    uuid: InstanceUuid,
    project: Option<&str>,
    lock_override: bool,
    rule: TransitionRule,
    kind: TaskKind,
    who: &Requester<'_>,
) -> Result<TaskId, TransitionError> {
    let mut tx = db.begin().await?;
    let current = lock_current(&mut tx, uuid, project).await?;
    let Some((vm_state, task_state, locked)) = current else {
        return Err(TransitionError::NotFound);
    };
    if locked && !lock_override {
        return Err(TransitionError::Locked);
    }
    // Delete may interrupt any task but another delete (Nova allows deleting a server that is
    // building, stopping, …); every other action needs the server idle.
    let idle_ok = task_state.is_none()
        || (rule.task_state == TaskState::Deleting && task_state != Some(TaskState::Deleting));
    if !rule.from_vm_states.contains(&vm_state) || !idle_ok {
        return Err(TransitionError::Conflict {
            vm_state,
            task_state,
        });
    }
    on_tx!(&mut tx, c => {
        sqlx::query("UPDATE instances SET task_state = $2, updated_at = $3 WHERE uuid = $1")
            .bind(uuid.0)
            .bind(rule.task_state.as_str())
            .bind(now_ms())
            .execute(&mut *c)
            .await
            .map_err(DbError::from)?;
    });
    let action_id = actions::start(&mut tx, uuid, kind.action_name(), who).await?;
    let task = tasks::insert(&mut tx, uuid, kind, who.request_id, action_id).await?;
    tx.commit().await?;
    Ok(task)
}

/// Reads the states (and whether it is locked) of a live instance inside `tx`; on PostgreSQL
/// the row is locked so that two concurrent actions cannot both pass the check (SQLite
/// serialises writers anyway).
async fn lock_current(
    tx: &mut Tx,
    uuid: InstanceUuid,
    project: Option<&str>,
) -> DbResult<Option<(VmState, Option<TaskState>, bool)>> {
    let lock = if matches!(tx, Tx::Pg(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT vm_state, task_state, locked_by FROM instances WHERE uuid = $1 AND NOT deleted \
         AND ($2 IS NULL OR project_id = $2){lock}"
    );
    let row: Option<(String, Option<String>, Option<String>)> = on_tx!(tx, c => {
        sqlx::query_as(&sql)
            .bind(uuid.0)
            .bind(project)
            .fetch_optional(&mut *c)
            .await?
    });
    let Some((vm, task, locked_by)) = row else {
        return Ok(None);
    };
    let vm = VmState::parse(&vm).ok_or_else(|| corrupt(format!("vm_state {vm}")))?;
    let task = match task {
        None => None,
        Some(t) => Some(TaskState::parse(&t).ok_or_else(|| corrupt(format!("task_state {t}")))?),
    };
    Ok(Some((vm, task, locked_by.is_some())))
}

/// Whether an edit by [`modify`] is recorded as an instance action (with its one
/// `api_<action>` event), as Nova records lock and unlock.
#[derive(Clone, Copy, Debug)]
pub enum Record<'a> {
    /// Never (renames, metadata, tags).
    No,
    /// When it changed something: Nova's lock records nothing for an owner's second lock.
    IfChanged(&'a str, &'a Requester<'a>),
    /// Always: Nova's unlock records even an unlocked server's.
    Always(&'a str, &'a Requester<'a>),
}

/// Changes what a user may edit of a live server — name, description, metadata, tags, lock —
/// by applying `edit` to it inside one transaction (row locked on PostgreSQL), so that
/// concurrent edits do not lose each other's changes. `None` when there is no such server (in
/// `project`, if given); an error of `edit` aborts and changes nothing. An edit that changes
/// nothing writes nothing (Nova saves changed fields only); `record` says when it is an action.
pub async fn modify<E, F>(
    db: &Db,
    uuid: InstanceUuid,
    project: Option<&str>,
    record: Record<'_>,
    edit: F,
) -> Result<Option<Instance>, E>
where
    E: From<DbError>,
    F: FnOnce(&mut Instance) -> Result<(), E>,
{
    let mut tx = db.begin().await?;
    let lock = if matches!(tx, Tx::Pg(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE uuid = $1 AND NOT deleted \
         AND ($2 IS NULL OR project_id = $2){lock}"
    );
    let row: Option<InstanceRow> = on_tx!(&mut tx, c => {
        sqlx::query_as(&sql)
            .bind(uuid.0)
            .bind(project)
            .fetch_optional(&mut *c)
            .await
            .map_err(DbError::from)?
    });
    let Some(row) = row else {
        return Ok(None);
    };
    let mut instance = row.into_model(None)?;
    let before = instance.clone();
    edit(&mut instance)?;
    let changed = instance != before;
    let action = match record {
        Record::Always(action, who) => Some((action, who)),
        Record::IfChanged(action, who) if changed => Some((action, who)),
        Record::IfChanged(..) | Record::No => None,
    };
    if !changed && action.is_none() {
        // Nothing to write: the transaction ends (rolled back) before the server is read
        // again, as SQLite has one connection.
        drop(tx);
        return Ok(get(db, uuid).await?);
    }
    if changed {
        instance.updated_at = now_ms();
    }
    let metadata = serde_json::to_string(&instance.metadata).map_err(|e| corrupt(e.to_string()))?;
    let tags = serde_json::to_string(&instance.tags).map_err(|e| corrupt(e.to_string()))?;
    on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE instances SET name = $2, description = $3, metadata = $4, tags = $5, \
             locked_by = $6, locked_reason = $7, updated_at = $8, hostname = $9 WHERE uuid = $1",
        )
        .bind(uuid.0)
        .bind(&instance.name)
        .bind(&instance.description)
        .bind(&metadata)
        .bind(&tags)
        .bind(instance.locked_by.map(LockedBy::as_str))
        .bind(&instance.locked_reason)
        .bind(instance.updated_at)
        .bind(&instance.hostname)
        .execute(&mut *c)
        .await
        .map_err(DbError::from)?;
    });
    if let Some((action, who)) = action {
        let id = actions::start(&mut tx, uuid, action, who).await?;
        let event = format!("api_{action}");
        actions::record_event(&mut tx, id, &event, now_ms(), None, None).await?;
    }
    tx.commit().await?;
    Ok(get(db, uuid).await?)
}

/// The states an update expects to find; a mismatch makes it a no-op.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub vm_state: Option<VmState>,
    pub task_state: Option<TaskState>,
}

/// The states an update sets.
#[derive(Clone, Debug)]
pub struct SetStates {
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: Option<PowerState>,
    /// Sets `launched_at` to now (a build or a start finished).
    pub launched: bool,
    /// Replaces the server's addresses (a build finished).
    pub addresses: Option<Vec<Address>>,
}

/// Compare-and-set of the states of a live instance; true when it matched and changed.
pub async fn transition(
    tx: &mut Tx,
    uuid: InstanceUuid,
    expect: Expect,
    set: SetStates,
) -> DbResult<bool> {
    let now = now_ms();
    let addresses = match &set.addresses {
        Some(a) => Some(serde_json::to_string(a).map_err(|e| corrupt(e.to_string()))?),
        None => None,
    };
    let n = on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET vm_state = $2, task_state = $3, \
             power_state = COALESCE($4, power_state), \
             launched_at = CASE WHEN $5 THEN $6 ELSE launched_at END, updated_at = $6, \
             addresses = COALESCE($9, addresses) \
             WHERE uuid = $1 AND NOT deleted \
             AND ($7 IS NULL OR vm_state = $7) AND ($8 IS NULL OR task_state = $8)",
        )
        .bind(uuid.0)
        .bind(set.vm_state.as_str())
        .bind(set.task_state.map(|t| t.as_str()))
        .bind(set.power_state.map(PowerState::code))
        .bind(set.launched)
        .bind(now)
        .bind(expect.vm_state.map(|v| v.as_str()))
        .bind(expect.task_state.map(|t| t.as_str()))
        .bind(&addresses)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Records where the scheduler placed a building instance and moves it to spawning; false when
/// it is no longer building/scheduling (deleted meanwhile, or a duplicate message).
pub async fn assign_host(
    tx: &mut Tx,
    uuid: InstanceUuid,
    host: &str,
    node: &str,
) -> DbResult<bool> {
    let n = on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET host = $2, node = $3, task_state = $4, updated_at = $5 \
             WHERE uuid = $1 AND NOT deleted AND vm_state = $6 AND task_state = $7",
        )
        .bind(uuid.0)
        .bind(host)
        .bind(node)
        .bind(TaskState::Spawning.as_str())
        .bind(now_ms())
        .bind(VmState::Building.as_str())
        .bind(TaskState::Scheduling.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Puts a live instance in ERROR with a fault. The fault is written only when the state
/// changed, so a duplicate failure report does not pile up faults.
pub async fn set_error(
    tx: &mut Tx,
    uuid: InstanceUuid,
    expect: Expect,
    fault: &Fault,
    host: Option<&str>,
) -> DbResult<bool> {
    let set = SetStates {
        vm_state: VmState::Error,
        task_state: None,
        power_state: None,
        launched: false,
        addresses: None,
    };
    if !transition(tx, uuid, expect, set).await? {
        return Ok(false);
    }
    add_fault(tx, uuid, fault, host).await?;
    Ok(true)
}

/// Records a fault without changing states (a failed stop keeps the server ACTIVE, as Nova).
pub async fn add_fault(
    tx: &mut Tx,
    uuid: InstanceUuid,
    fault: &Fault,
    host: Option<&str>,
) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO instance_faults (instance_uuid, code, message, details, host, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid.0)
        .bind(fault.code)
        .bind(&fault.message)
        .bind(&fault.details)
        .bind(host)
        .bind(fault.created_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Marks an instance deleted (soft delete, as Nova keeps the row); false if it already was.
pub async fn mark_deleted(tx: &mut Tx, uuid: InstanceUuid) -> DbResult<bool> {
    let now = now_ms();
    let n = on_tx!(tx, c => {
        sqlx::query(
            "UPDATE instances SET vm_state = $2, task_state = NULL, deleted = $3, \
             deleted_at = $4, terminated_at = $4, updated_at = $4 WHERE uuid = $1 AND NOT deleted",
        )
        .bind(uuid.0)
        .bind(VmState::Deleted.as_str())
        .bind(true)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
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

/// Records the power state the sync loop observed.
pub async fn set_power_state(db: &Db, uuid: InstanceUuid, power: PowerState) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("UPDATE instances SET power_state = $2, updated_at = $3 WHERE uuid = $1")
            .bind(uuid.0)
            .bind(power.code())
            .bind(now_ms())
            .execute(p)
            .await?;
    });
    Ok(())
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

/// Gives servers from before hostnames were kept (migration 0010 left them NULL) the hostname
/// they have been shown with since, made from their name, so that `sort_key=hostname` orders
/// and pages them like the others. Run at start-up; a no-op once done.
pub async fn backfill_hostnames(db: &Db) -> DbResult<u64> {
    let rows: Vec<(Uuid, String)> = on_pool!(db, p => {
        sqlx::query_as("SELECT uuid, name FROM instances WHERE hostname IS NULL")
            .fetch_all(p)
            .await?
    });
    for (uuid, name) in &rows {
        let hostname = nova_core::model::sanitize_hostname(name);
        on_pool!(db, p => {
            sqlx::query("UPDATE instances SET hostname = $2 WHERE uuid = $1 AND hostname IS NULL")
                .bind(uuid)
                .bind(&hostname)
                .execute(p)
                .await?;
        });
    }
    Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
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
