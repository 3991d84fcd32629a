//! Server groups (Nova's `os-server-groups`): a placement policy for the servers created into
//! the group with the `group` scheduler hint, and those servers (its members).
//!
//! A group's members are written with the servers (`instances::create_with_build_tasks`, under
//! the group's row lock, so that concurrent creates cannot together pass the
//! `server_group_members` quota), and the scheduler reads where they are (`hosts`) and checks
//! again under the same lock when it claims a host (`lock`), so that two members placed at once
//! cannot both take the host the policy leaves to one of them. Members are the live servers:
//! a deleted server's member row stays with its soft-deleted row, and no query counts it.

use crate::{on_pool, on_tx, Db, DbResult, Tx};
use std::collections::HashMap;
use uuid::Uuid;

/// A group as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerGroup {
    pub uuid: Uuid,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub policy: Policy,
    /// The anti-affinity rule (2.64); `None` is one server per host.
    pub max_server_per_host: Option<i64>,
    pub created_at: i64,
    /// The live members, oldest first.
    pub members: Vec<Uuid>,
}

pub use nova_core::model::ServerGroupPolicy as Policy;

/// A group to create.
#[derive(Clone, Debug)]
pub struct NewServerGroup<'a> {
    pub name: &'a str,
    pub project_id: &'a str,
    pub user_id: &'a str,
    pub policy: Policy,
    pub max_server_per_host: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    uuid: Uuid,
    name: String,
    project_id: String,
    user_id: String,
    policy: String,
    max_server_per_host: Option<i32>,
    created_at: i64,
}

impl Row {
    fn into_group(self, members: Vec<Uuid>) -> DbResult<ServerGroup> {
        Ok(ServerGroup {
            uuid: self.uuid,
            name: self.name,
            project_id: self.project_id,
            user_id: self.user_id,
            policy: Policy::parse(&self.policy)
                .ok_or_else(|| crate::corrupt(format!("server group policy {}", self.policy)))?,
            max_server_per_host: self.max_server_per_host.map(i64::from),
            created_at: self.created_at,
            members,
        })
    }
}

const COLUMNS: &str = "uuid, name, project_id, user_id, policy, max_server_per_host, created_at";

/// The class of the PostgreSQL advisory locks that serialise one project's group creates.
const GROUP_LOCK_CLASS: i32 = 0x5347_5250; // "SGRP"

/// Creates the group unless its project holds `limit` groups already (negative: no limit), in
/// one transaction in which the project's group creates are serialised; `None` when over.
pub async fn create_within_quota(
    db: &Db,
    new: &NewServerGroup<'_>,
    limit: i64,
) -> DbResult<Option<ServerGroup>> {
    let mut tx = db.begin().await?;
    if let Tx::Pg(t) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(GROUP_LOCK_CLASS)
            .bind(new.project_id)
            .execute(&mut **t)
            .await?;
    }
    let count: i64 = on_tx!(&mut tx, c => {
        sqlx::query_scalar("SELECT COUNT(*) FROM server_groups WHERE project_id = $1")
            .bind(new.project_id).fetch_one(&mut *c).await?
    });
    if limit >= 0 && count >= limit {
        return Ok(None);
    }
    let uuid = Uuid::new_v4();
    let now = nova_core::time::now_ms();
    let max = new
        .max_server_per_host
        .map(|m| i32::try_from(m).unwrap_or(i32::MAX));
    on_tx!(&mut tx, c => {
        sqlx::query(
            "INSERT INTO server_groups (uuid, name, project_id, user_id, policy, \
             max_server_per_host, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid).bind(new.name).bind(new.project_id).bind(new.user_id)
        .bind(new.policy.as_str()).bind(max).bind(now)
        .execute(&mut *c).await?;
    });
    tx.commit().await?;
    Ok(Some(ServerGroup {
        uuid,
        name: new.name.to_owned(),
        project_id: new.project_id.to_owned(),
        user_id: new.user_id.to_owned(),
        policy: new.policy,
        max_server_per_host: new.max_server_per_host,
        created_at: now,
        members: Vec::new(),
    }))
}

/// How many groups the project has.
pub async fn count(db: &Db, project: &str) -> DbResult<i64> {
    Ok(on_pool!(db, p => {
        sqlx::query_scalar("SELECT COUNT(*) FROM server_groups WHERE project_id = $1")
            .bind(project).fetch_one(p).await?
    }))
}

/// The group with its live members.
pub async fn get(db: &Db, uuid: Uuid) -> DbResult<Option<ServerGroup>> {
    let sql = format!("SELECT {COLUMNS} FROM server_groups WHERE uuid = $1");
    let row: Option<Row> = on_pool!(db, p => {
        sqlx::query_as(&sql).bind(uuid).fetch_optional(p).await?
    });
    let Some(row) = row else { return Ok(None) };
    let mut members = live_members(db, Some(uuid), None).await?;
    row.into_group(members.remove(&uuid).unwrap_or_default())
        .map(Some)
}

/// The groups of `project` (all of them for `None`), oldest first, `offset` and `limit` as
/// Nova's `limited`.
pub async fn list(
    db: &Db,
    project: Option<&str>,
    offset: i64,
    limit: i64,
) -> DbResult<Vec<ServerGroup>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM server_groups WHERE ($1 IS NULL OR project_id = $1) \
         ORDER BY created_at, uuid LIMIT $2 OFFSET $3"
    );
    let rows: Vec<Row> = on_pool!(db, p => {
        sqlx::query_as(&sql).bind(project).bind(limit).bind(offset).fetch_all(p).await?
    });
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut members = live_members(db, None, project).await?;
    rows.into_iter()
        .map(|r| {
            let m = members.remove(&r.uuid).unwrap_or_default();
            r.into_group(m)
        })
        .collect()
}

/// The live members of one group, or of a project's groups (every group's for neither), by
/// group, oldest first.
async fn live_members(
    db: &Db,
    group: Option<Uuid>,
    project: Option<&str>,
) -> DbResult<HashMap<Uuid, Vec<Uuid>>> {
    let rows: Vec<(Uuid, Uuid)> = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT m.group_uuid, m.instance_uuid FROM server_group_members m \
             JOIN server_groups g ON g.uuid = m.group_uuid \
             JOIN instances i ON i.uuid = m.instance_uuid \
             WHERE i.deleted = $1 AND ($2 IS NULL OR m.group_uuid = $2) \
             AND ($3 IS NULL OR g.project_id = $3) \
             ORDER BY m.created_at, m.instance_uuid",
        )
        .bind(false).bind(group).bind(project)
        .fetch_all(p).await?
    });
    let mut out: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (g, i) in rows {
        out.entry(g).or_default().push(i);
    }
    Ok(out)
}

/// Deletes the group (its member rows with it); `false` when there was none.
pub async fn delete(db: &Db, uuid: Uuid) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("DELETE FROM server_groups WHERE uuid = $1")
            .bind(uuid).execute(p).await?.rows_affected()
    });
    Ok(n > 0)
}

/// The groups `instance` is a member of (one at most, as Nova's).
pub async fn of_instance(db: &Db, instance: Uuid) -> DbResult<Vec<Uuid>> {
    Ok(on_pool!(db, p => {
        sqlx::query_scalar(
            "SELECT group_uuid FROM server_group_members WHERE instance_uuid = $1",
        )
        .bind(instance).fetch_all(p).await?
    }))
}

/// A group as placement needs it: its policy and rule, and how many live members (other than
/// the one being placed) each host runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub policy: Option<Policy>,
    pub max_server_per_host: i64,
    pub hosts: HashMap<String, i64>,
}

impl Placed {
    /// Whether the policy lets `host` take one more member (the soft policies always do).
    pub fn allows(&self, host: &str) -> bool {
        match self.policy {
            Some(Policy::Affinity) => self.hosts.is_empty() || self.hosts.contains_key(host),
            Some(Policy::AntiAffinity) => {
                self.hosts.get(host).copied().unwrap_or(0) < self.max_server_per_host
            }
            _ => true,
        }
    }

    /// Whether the policy is one placement must keep (affinity, anti-affinity).
    pub fn is_hard(&self) -> bool {
        matches!(self.policy, Some(Policy::Affinity | Policy::AntiAffinity))
    }

    /// How much the soft policies prefer `host`: higher is better (Nova's server group soft
    /// affinity and anti-affinity weighers).
    pub fn preference(&self, host: &str) -> i64 {
        let here = self.hosts.get(host).copied().unwrap_or(0);
        match self.policy {
            Some(Policy::SoftAffinity) => here,
            Some(Policy::SoftAntiAffinity) => -here,
            _ => 0,
        }
    }
}

/// The group's policy and its members' hosts, for placing `instance`; `None` when the group is
/// gone.
pub async fn placed(db: &Db, group: Uuid, instance: Uuid) -> DbResult<Option<Placed>> {
    let head: Option<(String, Option<i32>)> = on_pool!(db, p => {
        sqlx::query_as("SELECT policy, max_server_per_host FROM server_groups WHERE uuid = $1")
            .bind(group).fetch_optional(p).await?
    });
    let Some((policy, max)) = head else {
        return Ok(None);
    };
    let hosts: Vec<(String, i64)> = on_pool!(db, p => {
        sqlx::query_as(HOSTS_SQL).bind(group).bind(instance).bind(false).fetch_all(p).await?
    });
    Ok(Some(Placed {
        policy: Policy::parse(&policy),
        max_server_per_host: max.map_or(1, i64::from),
        hosts: hosts.into_iter().collect(),
    }))
}

const HOSTS_SQL: &str = "SELECT i.host, COUNT(*) FROM server_group_members m \
     JOIN instances i ON i.uuid = m.instance_uuid \
     WHERE m.group_uuid = $1 AND m.instance_uuid <> $2 AND i.deleted = $3 \
     AND i.host IS NOT NULL GROUP BY i.host";

/// Inside a claim's transaction: takes the group's row lock (PostgreSQL; SQLite has one
/// writer), then reads its members' hosts again, in a statement of its own so that it sees
/// what a member placed while this one waited committed. `None` when the group is gone.
pub async fn lock_and_place(tx: &mut Tx, group: Uuid, instance: Uuid) -> DbResult<Option<Placed>> {
    let sql = match tx {
        Tx::Pg(_) => {
            "SELECT policy, max_server_per_host FROM server_groups WHERE uuid = $1 \
                      FOR UPDATE"
        }
        Tx::Sqlite(_) => "SELECT policy, max_server_per_host FROM server_groups WHERE uuid = $1",
    };
    let head: Option<(String, Option<i32>)> = on_tx!(tx, c => {
        sqlx::query_as(sql).bind(group).fetch_optional(&mut *c).await?
    });
    let Some((policy, max)) = head else {
        return Ok(None);
    };
    let hosts: Vec<(String, i64)> = on_tx!(tx, c => {
        sqlx::query_as(HOSTS_SQL).bind(group).bind(instance).bind(false).fetch_all(&mut *c).await?
    });
    Ok(Some(Placed {
        policy: Policy::parse(&policy),
        max_server_per_host: max.map_or(1, i64::from),
        hosts: hosts.into_iter().collect(),
    }))
}

/// Inside a server create's transaction: takes the group's row lock and counts its live
/// members that `user` made (Nova counts the `server_group_members` quota per user); `None`
/// when the group is gone.
pub async fn lock_for_members(tx: &mut Tx, group: Uuid, user: &str) -> DbResult<Option<i64>> {
    let sql = match tx {
        Tx::Pg(_) => "SELECT uuid FROM server_groups WHERE uuid = $1 FOR UPDATE",
        Tx::Sqlite(_) => "SELECT uuid FROM server_groups WHERE uuid = $1",
    };
    let found: Option<Uuid> = on_tx!(tx, c => {
        sqlx::query_scalar(sql).bind(group).fetch_optional(&mut *c).await?
    });
    if found.is_none() {
        return Ok(None);
    }
    let count: i64 = on_tx!(tx, c => {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM server_group_members m \
             JOIN instances i ON i.uuid = m.instance_uuid \
             WHERE m.group_uuid = $1 AND i.deleted = $2 AND i.user_id = $3",
        )
        .bind(group).bind(false).bind(user).fetch_one(&mut *c).await?
    });
    Ok(Some(count))
}

/// Makes `instance` a member of the group (inside the create's transaction).
pub async fn add_member(tx: &mut Tx, group: Uuid, instance: Uuid) -> DbResult<()> {
    let now = nova_core::time::now_ms();
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO server_group_members (group_uuid, instance_uuid, created_at) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(group).bind(instance).bind(now)
        .execute(&mut *c).await?;
    });
    Ok(())
}
