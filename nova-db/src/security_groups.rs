//! Security groups and their rules (Neutron's). A project's `default` group is made on first
//! use, once (a partial unique index: one default per project), with Neutron's four rules.
//! Writes that a quota or a duplicate check guards run under a lock (the project's, or the
//! group's row, on PostgreSQL; SQLite has one writer).

use crate::listing::{self, Column, Kind, Listing, Tags};
use crate::subnets::lock_project;
use crate::{on_pool, on_tx, Db, DbResult, Tx};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Group {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub stateful: bool,
    pub is_default: bool,
    pub tags: String,
    pub revision_number: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Group {
    pub fn tag_list(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

const GROUP_COLUMNS: &str = "id, project_id, name, description, stateful, is_default, tags, \
    revision_number, created_at, updated_at";

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Rule {
    pub id: String,
    pub security_group_id: String,
    pub project_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<i64>,
    pub port_range_max: Option<i64>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub description: String,
    pub revision_number: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const RULE_COLUMNS: &str = "id, security_group_id, project_id, direction, ethertype, protocol, \
    port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description, \
    revision_number, created_at, updated_at";

pub const GROUPS: listing::Table = listing::Table {
    name: "security_groups",
    columns: GROUP_COLUMNS,
    id: Column {
        expr: "id",
        kind: Kind::Text,
    },
    tags: Some(Tags::JsonColumn("tags")),
};

pub const RULES: listing::Table = listing::Table {
    name: "security_group_rules",
    columns: RULE_COLUMNS,
    id: Column {
        expr: "id",
        kind: Kind::Text,
    },
    tags: None,
};

/// Neutron's default limits (`quota_security_group`, `quota_security_group_rule`).
pub const DEFAULT_GROUP_QUOTA: i64 = 10;
pub const DEFAULT_RULE_QUOTA: i64 = 100;

pub async fn page_groups(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Group>> {
    listing::page(db, listing).await
}

pub async fn page_rules(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Rule>> {
    listing::page(db, listing).await
}

pub async fn get_group(db: &Db, id: &str) -> DbResult<Option<Group>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE id = $1");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
    }))
}

pub async fn get_rule(db: &Db, id: &str) -> DbResult<Option<Rule>> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM security_group_rules WHERE id = $1");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
    }))
}

/// The rules of each of `groups`, oldest first.
pub async fn rules_of(db: &Db, groups: &[&str]) -> DbResult<BTreeMap<String, Vec<Rule>>> {
    let mut out: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    if groups.is_empty() {
        return Ok(out);
    }
    let marks = crate::placeholders(1, groups.len());
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM security_group_rules WHERE security_group_id IN ({}) \
         ORDER BY created_at, id",
        marks
    );
    let rows: Vec<Rule> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for g in groups {
            q = q.bind(*g);
        }
        q.fetch_all(p).await?
    });
    for r in rows {
        out.entry(r.security_group_id.clone()).or_default().push(r);
    }
    Ok(out)
}

/// The rules of each of `ports`' groups, by port, oldest first (one query: what a port's
/// filter is made of).
pub async fn rules_of_ports(db: &Db, ports: &[&str]) -> DbResult<BTreeMap<String, Vec<Rule>>> {
    #[derive(sqlx::FromRow)]
    struct PortRule {
        port_id: String,
        #[sqlx(flatten)]
        rule: Rule,
    }
    let mut out: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    if ports.is_empty() {
        return Ok(out);
    }
    let marks = crate::placeholders(1, ports.len());
    let columns: Vec<String> = RULE_COLUMNS
        .split(',')
        .map(|c| format!("r.{}", c.trim()))
        .collect();
    let sql = format!(
        "SELECT b.port_id, {} FROM port_security_groups b JOIN security_group_rules r \
         ON r.security_group_id = b.security_group_id WHERE b.port_id IN ({}) \
         ORDER BY b.port_id, r.created_at, r.id",
        columns.join(", "),
        marks
    );
    let rows: Vec<PortRule> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for id in ports {
            q = q.bind(*id);
        }
        q.fetch_all(p).await?
    });
    for r in rows {
        out.entry(r.port_id).or_default().push(r.rule);
    }
    Ok(out)
}

/// The project's default group, if it has been made.
pub async fn default_of(db: &Db, project: &str) -> DbResult<Option<Group>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM security_groups WHERE project_id = $1 AND is_default = $2"
    );
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(project).bind(true).fetch_optional(p).await?
    }))
}

async fn insert_group(tx: &mut Tx, g: &Group) -> DbResult<()> {
    let sql = format!(
        "INSERT INTO security_groups ({GROUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         $9, $10)"
    );
    on_tx!(tx, c => {
        sqlx::query(&sql)
            .bind(&g.id)
            .bind(&g.project_id)
            .bind(&g.name)
            .bind(&g.description)
            .bind(g.stateful)
            .bind(g.is_default)
            .bind(&g.tags)
            .bind(g.revision_number)
            .bind(g.created_at)
            .bind(g.updated_at)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

async fn insert_rule(tx: &mut Tx, r: &Rule) -> DbResult<()> {
    let sql = format!(
        "INSERT INTO security_group_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
         $8, $9, $10, $11, $12, $13, $14)"
    );
    on_tx!(tx, c => {
        sqlx::query(&sql)
            .bind(&r.id)
            .bind(&r.security_group_id)
            .bind(&r.project_id)
            .bind(&r.direction)
            .bind(&r.ethertype)
            .bind(&r.protocol)
            .bind(r.port_range_min)
            .bind(r.port_range_max)
            .bind(&r.remote_ip_prefix)
            .bind(&r.remote_group_id)
            .bind(&r.description)
            .bind(r.revision_number)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// The project's default group, made now (with `rules`) if it has none: a concurrent first use
/// that made it first wins, and its group is returned.
async fn ensure_default(db: &Db, group: &Group, rules: &[Rule]) -> DbResult<Group> {
    if let Some(g) = default_of(db, &group.project_id).await? {
        return Ok(g);
    }
    let mut tx = db.begin().await?;
    let made = async {
        insert_group(&mut tx, group).await?;
        for r in rules {
            insert_rule(&mut tx, r).await?;
        }
        DbResult::Ok(())
    }
    .await;
    match made {
        Ok(()) => {
            tx.commit().await?;
            Ok(group.clone())
        }
        Err(e) if e.is_unique_violation() => {
            drop(tx);
            default_of(db, &group.project_id)
                .await?
                .ok_or_else(|| crate::corrupt("a default security group that vanished"))
        }
        Err(e) => Err(e),
    }
}

impl Rule {
    /// A rule of a group made with it (Neutron's default rules): any protocol and port, in
    /// `direction` for `ethertype`, from the group itself when `remote_group`, else from
    /// anywhere.
    pub fn of_new_group(
        group: &Group,
        direction: &str,
        ethertype: &str,
        remote_group: bool,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            security_group_id: group.id.clone(),
            project_id: group.project_id.clone(),
            direction: direction.into(),
            ethertype: ethertype.into(),
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: remote_group.then(|| group.id.clone()),
            description: String::new(),
            revision_number: 0,
            created_at: group.created_at,
            updated_at: group.created_at,
        }
    }
}

/// The project's `default` group, made now with Neutron's rules (all egress; ingress from the
/// group itself) if it has none. Neutron makes it on a project's first use of groups.
pub async fn default_for(db: &Db, project: &str) -> DbResult<Group> {
    if let Some(g) = default_of(db, project).await? {
        return Ok(g);
    }
    let now = nova_core::time::now_ms();
    let group = Group {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.to_owned(),
        name: "default".into(),
        description: "Default security group".into(),
        stateful: true,
        is_default: true,
        tags: "[]".into(),
        revision_number: 0,
        created_at: now,
        updated_at: now,
    };
    let rules = [
        Rule::of_new_group(&group, "egress", "IPv4", false),
        Rule::of_new_group(&group, "egress", "IPv6", false),
        Rule::of_new_group(&group, "ingress", "IPv4", true),
        Rule::of_new_group(&group, "ingress", "IPv6", true),
    ];
    ensure_default(db, &group, &rules).await
}

const GROUP_LOCK_CLASS: i32 = 0x5347_5250; // "SGRP"
const RULE_LOCK_CLASS: i32 = 0x5352_554c; // "SRUL"

/// Stores a new group with its first rules unless the project has `limit` groups (negative:
/// none); `false` then.
pub async fn create_group(db: &Db, g: &Group, rules: &[Rule], limit: i64) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    lock_project(&mut tx, GROUP_LOCK_CLASS, &g.project_id).await?;
    let (count,): (i64,) = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM security_groups WHERE project_id = $1")
            .bind(&g.project_id)
            .fetch_one(&mut *c)
            .await?
    });
    if limit >= 0 && count >= limit {
        return Ok(false);
    }
    insert_group(&mut tx, g).await?;
    for r in rules {
        insert_rule(&mut tx, r).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Writes a group's name, description and tags (and bumps its revision).
pub async fn update_group(db: &Db, g: &Group) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE security_groups SET name = $2, description = $3, stateful = $4, tags = $5, \
             updated_at = $6, revision_number = revision_number + 1 WHERE id = $1",
        )
        .bind(&g.id)
        .bind(&g.name)
        .bind(&g.description)
        .bind(g.stateful)
        .bind(&g.tags)
        .bind(g.updated_at)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// Deletes a group, its rules, and the rules of other groups that name it as their remote
/// group (Neutron's cascade); `false` if it was gone.
pub async fn delete_group(db: &Db, id: &str) -> DbResult<Deleted> {
    let mut tx = db.begin().await?;
    // A group that ports hold stays (Neutron's SecurityGroupInUse); the ports' foreign key
    // refuses it too, should a port take it between this check and the delete.
    let (used,): (i64,) = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM port_security_groups WHERE security_group_id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?
    });
    if used > 0 {
        return Ok(Deleted::InUse);
    }
    let deleted = async {
        let done = on_tx!(&mut tx, c => {
            sqlx::query(
                "DELETE FROM security_group_rules WHERE security_group_id = $1 \
                 OR remote_group_id = $1",
            )
            .bind(id)
            .execute(&mut *c)
            .await?;
            sqlx::query("DELETE FROM security_groups WHERE id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        tx.commit().await?;
        crate::firewall::bump(db).await?;
        DbResult::Ok(done)
    }
    .await;
    match deleted {
        Ok(0) => Ok(Deleted::Gone),
        Ok(_) => Ok(Deleted::Yes),
        Err(e) if e.is_foreign_key_violation() => Ok(Deleted::InUse),
        Err(e) => Err(e),
    }
}

/// What a group delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    Gone,
    /// Ports hold it.
    InUse,
}

/// What a rule create did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleCreated {
    Yes,
    OverQuota,
    GroupGone,
    /// The same rule exists in the group: its id.
    Duplicate(String),
}

/// Whether two rules are one (Neutron's `_rule_to_key`): the protocol compared by number, and
/// an any-address prefix the same as none.
pub fn same_rule(a: &Rule, b: &Rule) -> bool {
    let prefix = |r: &Rule| match r.remote_ip_prefix.as_deref() {
        None | Some("0.0.0.0/0") | Some("::/0") => None,
        Some(p) => Some(p.to_owned()),
    };
    let proto = |r: &Rule| {
        r.protocol
            .as_deref()
            .and_then(nova_core::firewall::protocol_number)
    };
    a.direction == b.direction
        && a.ethertype == b.ethertype
        && a.port_range_min == b.port_range_min
        && a.port_range_max == b.port_range_max
        && proto(a) == proto(b)
        && a.remote_group_id == b.remote_group_id
        && prefix(a) == prefix(b)
}

/// Stores a rule unless the group has the same one (`same` tells two rules apart as Neutron's
/// `_rule_to_key` does) or the project has `limit` rules. Under the group's row lock.
pub async fn create_rule(
    db: &Db,
    r: &Rule,
    limit: i64,
    same: impl Fn(&Rule, &Rule) -> bool,
) -> DbResult<RuleCreated> {
    let mut tx = db.begin().await?;
    let found: Option<(String,)> = match &mut tx {
        Tx::Pg(t) => {
            sqlx::query_as("SELECT id FROM security_groups WHERE id = $1 FOR UPDATE")
                .bind(&r.security_group_id)
                .fetch_optional(&mut **t)
                .await?
        }
        Tx::Sqlite(t) => {
            sqlx::query_as("SELECT id FROM security_groups WHERE id = $1")
                .bind(&r.security_group_id)
                .fetch_optional(&mut **t)
                .await?
        }
    };
    if found.is_none() {
        return Ok(RuleCreated::GroupGone);
    }
    let sql =
        format!("SELECT {RULE_COLUMNS} FROM security_group_rules WHERE security_group_id = $1");
    let existing: Vec<Rule> = on_tx!(&mut tx, c => {
        sqlx::query_as(&sql).bind(&r.security_group_id).fetch_all(&mut *c).await?
    });
    if let Some(twin) = existing.iter().find(|e| same(e, r)) {
        return Ok(RuleCreated::Duplicate(twin.id.clone()));
    }
    lock_project(&mut tx, RULE_LOCK_CLASS, &r.project_id).await?;
    let (count,): (i64,) = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM security_group_rules WHERE project_id = $1")
            .bind(&r.project_id)
            .fetch_one(&mut *c)
            .await?
    });
    if limit >= 0 && count >= limit {
        return Ok(RuleCreated::OverQuota);
    }
    insert_rule(&mut tx, r).await?;
    on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE security_groups SET revision_number = revision_number + 1, updated_at = $2 \
             WHERE id = $1",
        )
        .bind(&r.security_group_id)
        .bind(r.updated_at)
        .execute(&mut *c)
        .await?;
    });
    tx.commit().await?;
    crate::firewall::bump(db).await?;
    Ok(RuleCreated::Yes)
}

pub async fn delete_rule(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let done = on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM security_group_rules WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    tx.commit().await?;
    crate::firewall::bump(db).await?;
    Ok(done > 0)
}

/// How many groups and rules a project has (its quotas' use).
pub async fn counts(db: &Db, project: &str) -> DbResult<(i64, i64)> {
    let (groups,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM security_groups WHERE project_id = $1")
            .bind(project)
            .fetch_one(p)
            .await?
    });
    let (rules,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM security_group_rules WHERE project_id = $1")
            .bind(project)
            .fetch_one(p)
            .await?
    });
    Ok((groups, rules))
}

/// A project's groups with this name or id (Nova's `find_resourceid_by_name_or_id`).
pub async fn find_by_name_or_id(db: &Db, project: &str, name: &str) -> DbResult<Vec<Group>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM security_groups WHERE project_id = $1 \
         AND (name = $2 OR id = $2) ORDER BY created_at, id"
    );
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(project).bind(name).fetch_all(p).await?
    }))
}
