//! Subnets (Neutron's): a network's address ranges, from which ports are given addresses
//! ([`crate::ports`]). A subnet's writes that depend on its network's other subnets (no two
//! overlapping) or ports (no delete while one holds an address) run under a lock on the
//! network's row on PostgreSQL; SQLite has one writer.

use crate::listing::{self, Column, Kind, Listing, Tags};
use crate::{on_pool, on_tx, Db, DbResult, Tx};
use nova_core::ipam::{self, IpNet, Pool};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Subnet {
    pub id: String,
    pub network_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub ip_version: i64,
    /// Canonical (its network address).
    pub cidr: String,
    pub gateway_ip: Option<String>,
    /// JSON: `[{"start", "end"}]`.
    pub allocation_pools: String,
    /// JSON: `["ip"]`, in the order given.
    pub dns_nameservers: String,
    /// JSON: `[{"destination", "nexthop"}]`.
    pub host_routes: String,
    pub enable_dhcp: bool,
    pub ipv6_ra_mode: Option<String>,
    pub ipv6_address_mode: Option<String>,
    /// JSON list of tags.
    pub tags: String,
    pub revision_number: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) const COLUMNS: &str = "id, network_id, project_id, name, description, ip_version, \
    cidr, gateway_ip, allocation_pools, dns_nameservers, host_routes, enable_dhcp, \
    ipv6_ra_mode, ipv6_address_mode, tags, revision_number, created_at, updated_at";

impl Subnet {
    pub fn net(&self) -> Option<IpNet> {
        ipam::parse_cidr(&self.cidr)
    }

    /// The allocation pools as ranges.
    pub fn pools(&self) -> Vec<Pool> {
        #[derive(serde::Deserialize)]
        struct Raw {
            start: std::net::IpAddr,
            end: std::net::IpAddr,
        }
        serde_json::from_str::<Vec<Raw>>(&self.allocation_pools)
            .unwrap_or_default()
            .into_iter()
            .map(|r| Pool {
                start: r.start,
                end: r.end,
            })
            .collect()
    }

    /// The pools as the column keeps them.
    pub fn pools_column(pools: &[Pool]) -> String {
        let list: Vec<_> = pools
            .iter()
            .map(|p| serde_json::json!({"start": p.start.to_string(), "end": p.end.to_string()}))
            .collect();
        serde_json::Value::Array(list).to_string()
    }

    pub fn tag_list(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

/// Subnets as the list engine sees them.
pub const TABLE: listing::Table = listing::Table {
    name: "subnets",
    columns: COLUMNS,
    id: Column {
        expr: "id",
        kind: Kind::Text,
    },
    tags: Some(Tags::JsonColumn("tags")),
};

pub async fn page(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Subnet>> {
    listing::page(db, listing).await
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<Subnet>> {
    let sql = format!("SELECT {COLUMNS} FROM subnets WHERE id = $1");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
    }))
}

/// The subnets of a network, oldest first (the order ports take addresses from them in).
pub async fn of_network(db: &Db, network_id: &str) -> DbResult<Vec<Subnet>> {
    let sql =
        format!("SELECT {COLUMNS} FROM subnets WHERE network_id = $1 ORDER BY created_at, id");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(network_id).fetch_all(p).await?
    }))
}

pub(crate) async fn of_network_tx(tx: &mut Tx, network_id: &str) -> DbResult<Vec<Subnet>> {
    let sql =
        format!("SELECT {COLUMNS} FROM subnets WHERE network_id = $1 ORDER BY created_at, id");
    Ok(on_tx!(tx, c => {
        sqlx::query_as(&sql).bind(network_id).fetch_all(&mut *c).await?
    }))
}

/// The ids of the subnets of each of `networks` (a network's `subnets`), oldest first.
pub async fn ids_by_network(db: &Db, networks: &[&str]) -> DbResult<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if networks.is_empty() {
        return Ok(out);
    }
    let marks = crate::placeholders(1, networks.len());
    let sql = format!(
        "SELECT network_id, id FROM subnets WHERE network_id IN ({}) ORDER BY created_at, id",
        marks
    );
    let rows: Vec<(String, String)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for n in networks {
            q = q.bind(*n);
        }
        q.fetch_all(p).await?
    });
    for (network, id) in rows {
        out.entry(network).or_default().push(id);
    }
    Ok(out)
}

/// Takes the network's row lock (PostgreSQL), which every write that depends on the network's
/// subnets or ports holds; `false` if the network is gone.
pub(crate) async fn lock_network(tx: &mut Tx, network_id: &str) -> DbResult<bool> {
    let found: Option<(String,)> = match tx {
        Tx::Pg(t) => {
            sqlx::query_as("SELECT id FROM networks WHERE id = $1 FOR UPDATE")
                .bind(network_id)
                .fetch_optional(&mut **t)
                .await?
        }
        Tx::Sqlite(t) => {
            sqlx::query_as("SELECT id FROM networks WHERE id = $1")
                .bind(network_id)
                .fetch_optional(&mut **t)
                .await?
        }
    };
    Ok(found.is_some())
}

/// Serialises one project's creates of a kind of resource on PostgreSQL, so that a quota's
/// count and the insert it allows are not passed by a concurrent create.
pub(crate) async fn lock_project(tx: &mut Tx, class: i32, project: &str) -> DbResult<()> {
    if let Tx::Pg(t) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(class)
            .bind(project)
            .execute(&mut **t)
            .await?;
    }
    Ok(())
}

const SUBNET_LOCK_CLASS: i32 = 0x5355_424e; // "SUBN"

/// What a subnet create did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    Yes,
    OverQuota,
    NetworkGone,
    /// Overlaps this subnet of the same network.
    Overlaps(String),
}

/// Stores a new subnet unless its CIDR overlaps another subnet of its network (Neutron allows
/// overlaps across networks only) or its project has `limit` subnets (negative: no limit).
pub async fn create(db: &Db, s: &Subnet, limit: i64) -> DbResult<Created> {
    let mut tx = db.begin().await?;
    if !lock_network(&mut tx, &s.network_id).await? {
        return Ok(Created::NetworkGone);
    }
    let new = s.net();
    for other in of_network_tx(&mut tx, &s.network_id).await? {
        if let (Some(a), Some(b)) = (new, other.net()) {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Ok(Created::Overlaps(other.id));
            }
        }
    }
    lock_project(&mut tx, SUBNET_LOCK_CLASS, &s.project_id).await?;
    let (count,): (i64,) = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM subnets WHERE project_id = $1")
            .bind(&s.project_id)
            .fetch_one(&mut *c)
            .await?
    });
    if limit >= 0 && count >= limit {
        return Ok(Created::OverQuota);
    }
    let sql = format!(
        "INSERT INTO subnets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18)"
    );
    on_tx!(&mut tx, c => {
        sqlx::query(&sql)
            .bind(&s.id)
            .bind(&s.network_id)
            .bind(&s.project_id)
            .bind(&s.name)
            .bind(&s.description)
            .bind(s.ip_version)
            .bind(&s.cidr)
            .bind(&s.gateway_ip)
            .bind(&s.allocation_pools)
            .bind(&s.dns_nameservers)
            .bind(&s.host_routes)
            .bind(s.enable_dhcp)
            .bind(&s.ipv6_ra_mode)
            .bind(&s.ipv6_address_mode)
            .bind(&s.tags)
            .bind(s.revision_number)
            .bind(s.created_at)
            .bind(s.updated_at)
            .execute(&mut *c)
            .await?;
        // Neutron revises the network when a subnet is added to it.
        sqlx::query("UPDATE networks SET updated_at = $2 WHERE id = $1")
            .bind(&s.network_id)
            .bind(s.updated_at)
            .execute(&mut *c)
            .await?;
    });
    tx.commit().await?;
    Ok(Created::Yes)
}

/// Writes what an update may change (and bumps the revision); `false` if the subnet is gone.
pub async fn update(db: &Db, s: &Subnet) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "UPDATE subnets SET name = $2, description = $3, gateway_ip = $4, \
             allocation_pools = $5, dns_nameservers = $6, host_routes = $7, enable_dhcp = $8, \
             tags = $9, updated_at = $10, revision_number = revision_number + 1 WHERE id = $1",
        )
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.description)
        .bind(&s.gateway_ip)
        .bind(&s.allocation_pools)
        .bind(&s.dns_nameservers)
        .bind(&s.host_routes)
        .bind(s.enable_dhcp)
        .bind(&s.tags)
        .bind(s.updated_at)
        .execute(p)
        .await?
        .rows_affected()
    });
    Ok(done > 0)
}

/// What a subnet delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    /// A port holds an address of it (Neutron's SubnetInUse).
    InUse,
    Missing,
}

/// Deletes the subnet unless a port holds one of its addresses, under the network's lock, so
/// that no allocation can slip in between the check and the delete.
pub async fn delete_unless_in_use(db: &Db, id: &str) -> DbResult<Deleted> {
    let Some(subnet) = get(db, id).await? else {
        return Ok(Deleted::Missing);
    };
    let mut tx = db.begin().await?;
    lock_network(&mut tx, &subnet.network_id).await?;
    let used: Option<(String,)> = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT port_id FROM ip_allocations WHERE subnet_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    if used.is_some() {
        return Ok(Deleted::InUse);
    }
    let done = on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM subnets WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    tx.commit().await?;
    Ok(if done > 0 {
        Deleted::Yes
    } else {
        Deleted::Missing
    })
}

/// How many subnets a project has (its quota's use).
pub async fn count(db: &Db, project: &str) -> DbResult<i64> {
    let (n,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM subnets WHERE project_id = $1")
            .bind(project)
            .fetch_one(p)
            .await?
    });
    Ok(n)
}
