//! Ports (Neutron's) and their addresses: the IPAM. A port's addresses are rows of
//! `ip_allocations`, whose primary key (subnet, address) is what keeps two ports from holding
//! one address. Allocation runs in the port's transaction under its network's row lock on
//! PostgreSQL (SQLite has one writer), so concurrent creates on one network take turns: each
//! sees the others' addresses, and a full subnet is told from a lost race.

use crate::listing::{self, Column, Kind, Listing, Tags};
use crate::subnets::{lock_network, of_network_tx, Subnet};
use crate::{on_pool, on_tx, Db, DbResult, Tx};
use nova_core::ipam::{self, Refusal};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Port {
    pub id: String,
    pub network_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub mac_address: String,
    pub admin_state_up: bool,
    /// Neutron's `DOWN` until a server's host has it, `ACTIVE` then.
    pub status: String,
    pub device_id: String,
    pub device_owner: String,
    /// Neutron's `binding:host_id`.
    pub host_id: String,
    /// Made by the compute service for a server (deleted with it), not by the user.
    pub compute_owned: bool,
    pub tags: String,
    pub revision_number: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Neutron's port security: its security groups filter its traffic (and only its own
    /// addresses and MAC may leave it). Off: nothing is filtered, and it holds no groups.
    pub port_security_enabled: bool,
}

pub(crate) const COLUMNS: &str = "id, network_id, project_id, name, description, mac_address, \
    admin_state_up, status, device_id, device_owner, host_id, compute_owned, tags, \
    revision_number, created_at, updated_at, port_security_enabled";

impl Port {
    pub fn tag_list(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

/// One of a port's addresses.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: String,
}

/// An address a port asks for: on a subnet, a given address, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpRequest {
    pub subnet_id: Option<String>,
    pub ip_address: Option<IpAddr>,
}

/// What the port's addresses are to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// Neutron's default: one address of each family the network has subnets of.
    Default,
    Asked(Vec<IpRequest>),
}

pub const TABLE: listing::Table = listing::Table {
    name: "ports",
    columns: COLUMNS,
    id: Column {
        expr: "id",
        kind: Kind::Text,
    },
    tags: Some(Tags::JsonColumn("tags")),
};

pub async fn page(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Port>> {
    listing::page(db, listing).await
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<Port>> {
    let sql = format!("SELECT {COLUMNS} FROM ports WHERE id = $1");
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
    }))
}

/// The ports bound to a device (a server's), oldest first. Bound: a host is set, which only
/// the compute service (and admins) can do; a user's port that merely names the server as its
/// `device_id` is not the server's.
pub async fn of_device(db: &Db, device_id: &str) -> DbResult<Vec<Port>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ports WHERE device_id = $1 AND host_id <> '' \
         ORDER BY created_at, id"
    );
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(device_id).fetch_all(p).await?
    }))
}

/// The addresses of each of `ports`, in each port's order.
pub async fn fixed_ips(db: &Db, ports: &[&str]) -> DbResult<BTreeMap<String, Vec<FixedIp>>> {
    let mut out: BTreeMap<String, Vec<FixedIp>> = BTreeMap::new();
    if ports.is_empty() {
        return Ok(out);
    }
    let marks = crate::placeholders(1, ports.len());
    let sql = format!(
        "SELECT port_id, subnet_id, ip_address FROM ip_allocations WHERE port_id IN ({}) \
         ORDER BY port_id, position",
        marks
    );
    let rows: Vec<(String, String, String)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for id in ports {
            q = q.bind(*id);
        }
        q.fetch_all(p).await?
    });
    for (port, subnet_id, ip_address) in rows {
        out.entry(port).or_default().push(FixedIp {
            subnet_id,
            ip_address,
        });
    }
    Ok(out)
}

/// The addresses of a subnet that ports hold.
async fn taken(tx: &mut Tx, subnet: &str) -> DbResult<BTreeSet<u128>> {
    let rows: Vec<(String,)> = on_tx!(tx, c => {
        sqlx::query_as("SELECT ip_address FROM ip_allocations WHERE subnet_id = $1")
            .bind(subnet)
            .fetch_all(&mut *c)
            .await?
    });
    Ok(rows
        .into_iter()
        .filter_map(|(a,)| a.parse::<IpAddr>().ok())
        .map(ipam::to_u128)
        .collect())
}

fn refusal(kind: &'static str, conflict: bool, message: String) -> Refusal {
    Refusal {
        kind,
        conflict,
        message,
    }
}

/// A random number for the choices of addresses and MACs.
fn random() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

/// Chooses the port's addresses on its network's subnets (in the transaction that will hold
/// them), as Neutron's IPAM: given addresses checked and free, a subnet's next free address
/// otherwise. `kept` are addresses the port holds already, which a request may keep.
async fn choose(
    tx: &mut Tx,
    network_id: &str,
    subnets: &[Subnet],
    addresses: &Addresses,
    kept: &[FixedIp],
) -> DbResult<Result<Vec<FixedIp>, Refusal>> {
    let mut chosen: Vec<FixedIp> = Vec::new();
    let mut taken_of: BTreeMap<String, BTreeSet<u128>> = BTreeMap::new();
    let requests: Vec<IpRequest> = match addresses {
        Addresses::Asked(r) => r.clone(),
        Addresses::Default => {
            // One address of each family the network has subnets of, from the first of them
            // with room (Neutron's default); a family whose subnets are all full fails the
            // port.
            for version in [4, 6] {
                // Collected: an iterator's closure held across an await makes the future
                // not Send.
                let family: Vec<&Subnet> =
                    subnets.iter().filter(|s| s.ip_version == version).collect();
                if family.is_empty() {
                    continue;
                }
                let mut found = None;
                for s in family {
                    let taken = taken(tx, &s.id).await?;
                    if let Some(ip) = ipam::pick_free(&s.pools(), &taken, random()) {
                        found = Some(FixedIp {
                            subnet_id: s.id.clone(),
                            ip_address: ip.to_string(),
                        });
                        break;
                    }
                }
                match found {
                    Some(ip) => chosen.push(ip),
                    None => {
                        return Ok(Err(refusal(
                            "IpAddressGenerationFailure",
                            true,
                            format!("No more IP addresses available on network {network_id}."),
                        )))
                    }
                }
            }
            return Ok(Ok(chosen));
        }
    };
    if !requests.is_empty() && subnets.is_empty() {
        return Ok(Err(refusal(
            "InvalidInput",
            false,
            format!(
                "Invalid input for operation: Failed to create port on network {network_id}, \
                 because fixed_ips included invalid subnet None."
            ),
        )));
    }
    for r in &requests {
        let subnet = match (&r.subnet_id, r.ip_address) {
            (Some(id), _) => match subnets.iter().find(|s| &s.id == id) {
                Some(s) => s,
                None => {
                    return Ok(Err(refusal(
                        "InvalidInput",
                        false,
                        format!(
                            "Invalid input for operation: Failed to create port on network \
                             {network_id}, because fixed_ips included invalid subnet {id}."
                        ),
                    )))
                }
            },
            (None, Some(ip)) => {
                match subnets
                    .iter()
                    .find(|s| s.net().is_some_and(|n| ipam::check_subnet_ip(&n, ip)))
                {
                    Some(s) => s,
                    None => {
                        return Ok(Err(refusal(
                            "InvalidIpForNetwork",
                            false,
                            format!(
                                "IP address {ip} is not a valid IP for any of the subnets on \
                                 the specified network."
                            ),
                        )))
                    }
                }
            }
            (None, None) => continue,
        };
        if !taken_of.contains_key(&subnet.id) {
            let t = taken(tx, &subnet.id).await?;
            taken_of.insert(subnet.id.clone(), t);
        }
        let kept_here: Vec<&FixedIp> = kept.iter().filter(|k| k.subnet_id == subnet.id).collect();
        let taken = taken_of.get_mut(&subnet.id).expect("just inserted");
        // The port's own addresses are free for it.
        for k in &kept_here {
            if let Ok(ip) = k.ip_address.parse::<IpAddr>() {
                taken.remove(&ipam::to_u128(ip));
            }
        }
        let ip = match r.ip_address {
            Some(ip) => {
                let valid = subnet.net().is_some_and(|n| ipam::check_subnet_ip(&n, ip));
                if !valid {
                    return Ok(Err(refusal(
                        "InvalidIpForSubnet",
                        false,
                        format!("IP address {ip} is not a valid IP for the specified subnet."),
                    )));
                }
                if taken.contains(&ipam::to_u128(ip)) {
                    return Ok(Err(refusal(
                        "IpAddressAlreadyAllocated",
                        true,
                        format!("IP address {ip} already allocated in subnet {}", subnet.id),
                    )));
                }
                ip
            }
            None => {
                // A subnet asked for again keeps the address the port has on it (Neutron's
                // update); else the subnet's next free one.
                let again = kept_here
                    .iter()
                    .filter_map(|k| k.ip_address.parse::<IpAddr>().ok())
                    .find(|ip| {
                        !taken.contains(&ipam::to_u128(*ip))
                            && !chosen.iter().any(|c| c.ip_address == ip.to_string())
                    });
                match again.or_else(|| ipam::pick_free(&subnet.pools(), taken, random())) {
                    Some(ip) => ip,
                    None => {
                        return Ok(Err(refusal(
                            "IpAddressGenerationFailure",
                            true,
                            format!("No more IP addresses available for subnet {}.", subnet.id),
                        )))
                    }
                }
            }
        };
        taken.insert(ipam::to_u128(ip));
        chosen.push(FixedIp {
            subnet_id: subnet.id.clone(),
            ip_address: ip.to_string(),
        });
    }
    Ok(Ok(chosen))
}

async fn insert_allocations(tx: &mut Tx, port: &str, ips: &[FixedIp]) -> DbResult<()> {
    for (position, ip) in ips.iter().enumerate() {
        on_tx!(tx, c => {
            sqlx::query(
                "INSERT INTO ip_allocations (subnet_id, ip_address, port_id, position) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&ip.subnet_id)
            .bind(&ip.ip_address)
            .bind(port)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .execute(&mut *c)
            .await?;
        });
    }
    Ok(())
}

const PORT_LOCK_CLASS: i32 = 0x504f_5254; // "PORT"

/// Whether a MAC address is taken on the network.
async fn mac_taken(tx: &mut Tx, network: &str, mac: &str) -> DbResult<bool> {
    let found: Option<(String,)> = on_tx!(tx, c => {
        sqlx::query_as("SELECT id FROM ports WHERE network_id = $1 AND mac_address = $2")
            .bind(network)
            .bind(mac)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(found.is_some())
}

/// What a port create is to do besides storing the port.
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions<'a> {
    /// The MAC was given (unique on the network, else refused); otherwise a random one, and
    /// another if it clashes.
    pub mac_given: bool,
    pub addresses: &'a Addresses,
    /// The project's port quota (negative: none).
    pub limit: i64,
    /// Its security groups (when it has port security).
    pub groups: &'a [String],
    /// The port takes its network's port security (Neutron's default for a port that does
    /// not say), read under the network's lock.
    pub inherit_security: bool,
    /// The server the port is made for: the create is refused if it is deleted, read under a
    /// share lock in the same statement as the network's lock, so that a delete committing
    /// meanwhile (whose release of the server's ports ran before this one existed) waits for
    /// this transaction and then releases the port too.
    pub server: Option<uuid::Uuid>,
}

/// Stores a new port with its addresses, in one transaction: the MAC given (unique on the
/// network) or a random one (another if it clashes), the addresses as [`choose`] finds them,
/// within the project's port quota. A refusal writes nothing.
pub async fn create(
    db: &Db,
    port: &mut Port,
    options: CreateOptions<'_>,
) -> DbResult<Result<Vec<FixedIp>, Refusal>> {
    let mut attempts = 0;
    loop {
        match create_once(db, port, options).await {
            // A random MAC that another port of the network has: another one.
            Err(e) if e.is_unique_violation() && !options.mac_given && attempts < 3 => {
                attempts += 1;
                port.mac_address = ipam::random_mac(random());
            }
            other => return other,
        }
    }
}

async fn create_once(
    db: &Db,
    port: &mut Port,
    options: CreateOptions<'_>,
) -> DbResult<Result<Vec<FixedIp>, Refusal>> {
    let CreateOptions {
        mac_given,
        addresses,
        limit,
        groups,
        inherit_security,
        server,
    } = options;
    let mut tx = db.begin().await?;
    // The network's row lock and the project's port lock, in one round trip on PostgreSQL
    // (always in this order: every port create takes both with this statement), with the
    // network's port security and the server's share lock. (SQLite has one writer: reading
    // the rows is enough.)
    let row: Option<(bool, Option<bool>)> = match &mut tx {
        Tx::Pg(t) => {
            sqlx::query_as(
                "SELECT n.port_security_enabled, i.deleted FROM networks n \
                 CROSS JOIN (SELECT pg_advisory_xact_lock($2, hashtext($3))) AS l \
                 LEFT JOIN LATERAL (SELECT deleted FROM instances WHERE uuid = $4 FOR SHARE) i \
                 ON true WHERE n.id = $1 FOR UPDATE OF n",
            )
            .bind(&port.network_id)
            .bind(PORT_LOCK_CLASS)
            .bind(&port.project_id)
            .bind(server)
            .fetch_optional(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            sqlx::query_as(
                "SELECT n.port_security_enabled, \
                 (SELECT deleted FROM instances WHERE uuid = $2) FROM networks n WHERE n.id = $1",
            )
            .bind(&port.network_id)
            .bind(server)
            .fetch_optional(&mut **t)
            .await?
        }
    };
    let Some((secured, deleted)) = row else {
        return Ok(Err(refusal(
            "NetworkNotFound",
            false,
            format!("Network {} could not be found.", port.network_id),
        )));
    };
    if let Some(uuid) = server {
        if deleted != Some(false) {
            return Ok(Err(refusal(
                "InstanceNotFound",
                false,
                format!("Instance {uuid} was deleted while its ports were made."),
            )));
        }
    }
    // A port that does not say takes its network's port security, and without it no groups
    // (Neutron's default for the attribute).
    if inherit_security {
        port.port_security_enabled = secured;
    }
    let groups = if port.port_security_enabled {
        groups
    } else {
        &[]
    };
    let (count,): (i64,) = on_tx!(&mut tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM ports WHERE project_id = $1")
            .bind(&port.project_id)
            .fetch_one(&mut *c)
            .await?
    });
    if limit >= 0 && count >= limit {
        return Ok(Err(refusal(
            "OverQuota",
            true,
            "Quota exceeded for resources: ['port'].".into(),
        )));
    }
    if mac_given && mac_taken(&mut tx, &port.network_id, &port.mac_address).await? {
        return Ok(Err(refusal(
            "MacAddressInUse",
            true,
            format!(
                "Unable to complete operation for network {}. The mac address {} is in use.",
                port.network_id, port.mac_address
            ),
        )));
    }
    // A random MAC is not checked first (a query on every port): the one-in-sixteen-million
    // clash with another port of the network is refused by their unique constraint, and
    // [`create`] tries another.
    let subnets = of_network_tx(&mut tx, &port.network_id).await?;
    let ips = match choose(&mut tx, &port.network_id, &subnets, addresses, &[]).await? {
        Ok(ips) => ips,
        Err(r) => return Ok(Err(r)),
    };
    let sql = format!(
        "INSERT INTO ports ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17)"
    );
    on_tx!(&mut tx, c => {
        sqlx::query(&sql)
            .bind(&port.id)
            .bind(&port.network_id)
            .bind(&port.project_id)
            .bind(&port.name)
            .bind(&port.description)
            .bind(&port.mac_address)
            .bind(port.admin_state_up)
            .bind(&port.status)
            .bind(&port.device_id)
            .bind(&port.device_owner)
            .bind(&port.host_id)
            .bind(port.compute_owned)
            .bind(&port.tags)
            .bind(port.revision_number)
            .bind(port.created_at)
            .bind(port.updated_at)
            .bind(port.port_security_enabled)
            .execute(&mut *c)
            .await?;
    });
    insert_allocations(&mut tx, &port.id, &ips).await?;
    if let Err(r) = set_groups(&mut tx, &port.id, groups).await? {
        return Ok(Err(r));
    }
    tx.commit().await?;
    // An unbound port is no host's to filter (its binding bumps, when it comes).
    if !port.host_id.is_empty() {
        crate::firewall::bump_soon(db);
    }
    Ok(Ok(ips))
}

/// Writes what an update may change, if the port is at the revision it was read at (else a
/// 409 refusal: nothing another writer did meanwhile is undone), and, when `addresses` is
/// given, replaces the port's addresses as [`choose`] finds them (keeping those asked for
/// again); `Ok(None)` if the port is gone.
pub async fn update(
    db: &Db,
    port: &Port,
    addresses: Option<&Addresses>,
    groups: Option<&[String]>,
) -> DbResult<Result<Option<Vec<FixedIp>>, Refusal>> {
    let mut tx = db.begin().await?;
    lock_network(&mut tx, &port.network_id).await?;
    let done = on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE ports SET name = $2, description = $3, admin_state_up = $4, status = $5, \
             device_id = $6, device_owner = $7, host_id = $8, tags = $9, updated_at = $10, \
             port_security_enabled = $12, revision_number = revision_number + 1 \
             WHERE id = $1 AND revision_number = $11",
        )
        .bind(&port.id)
        .bind(&port.name)
        .bind(&port.description)
        .bind(port.admin_state_up)
        .bind(&port.status)
        .bind(&port.device_id)
        .bind(&port.device_owner)
        .bind(&port.host_id)
        .bind(&port.tags)
        .bind(port.updated_at)
        .bind(port.revision_number)
        .bind(port.port_security_enabled)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if done == 0 {
        // Gone, or changed since it was read (a server's build bound it, say): its fields
        // were read before, so writing them back could undo that change.
        drop(tx);
        return Ok(match get(db, &port.id).await? {
            None => Ok(None),
            Some(now) => Err(refusal(
                "PortChanged",
                true,
                format!(
                    "Port {} changed while it was updated (revision {} now); try again.",
                    port.id, now.revision_number
                ),
            )),
        });
    }
    let ips = match addresses {
        None => None,
        Some(addresses) => {
            let kept: Vec<FixedIp> = {
                let rows: Vec<(String, String)> = on_tx!(&mut tx, c => {
                    sqlx::query_as(
                        "SELECT subnet_id, ip_address FROM ip_allocations WHERE port_id = $1 \
                         ORDER BY position",
                    )
                    .bind(&port.id)
                    .fetch_all(&mut *c)
                    .await?
                });
                rows.into_iter()
                    .map(|(subnet_id, ip_address)| FixedIp {
                        subnet_id,
                        ip_address,
                    })
                    .collect()
            };
            let subnets = of_network_tx(&mut tx, &port.network_id).await?;
            let ips = match choose(&mut tx, &port.network_id, &subnets, addresses, &kept).await? {
                Ok(ips) => ips,
                Err(r) => return Ok(Err(r)),
            };
            on_tx!(&mut tx, c => {
                sqlx::query("DELETE FROM ip_allocations WHERE port_id = $1")
                    .bind(&port.id)
                    .execute(&mut *c)
                    .await?;
            });
            insert_allocations(&mut tx, &port.id, &ips).await?;
            Some(ips)
        }
    };
    if let Some(groups) = groups {
        on_tx!(&mut tx, c => {
            sqlx::query("DELETE FROM port_security_groups WHERE port_id = $1")
                .bind(&port.id)
                .execute(&mut *c)
                .await?;
        });
        if let Err(r) = set_groups(&mut tx, &port.id, groups).await? {
            return Ok(Err(r));
        }
    }
    tx.commit().await?;
    crate::firewall::bump(db).await?;
    Ok(Ok(Some(ips.unwrap_or_default())))
}

/// Deletes a port and its addresses; `false` if it was gone.
pub async fn delete(db: &Db, id: &str) -> DbResult<bool> {
    // The port's row only: its addresses go with it (ON DELETE CASCADE), so that every write
    // takes the port's row before its addresses' (an update does), and none deadlocks.
    let mut tx = db.begin().await?;
    let done = on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM ports WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    tx.commit().await?;
    crate::firewall::bump(db).await?;
    Ok(done > 0)
}

/// How many ports a project has (its quota's use).
pub async fn count(db: &Db, project: &str) -> DbResult<i64> {
    let (n,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM ports WHERE project_id = $1")
            .bind(project)
            .fetch_one(p)
            .await?
    });
    Ok(n)
}

/// The ids of the ports on a network (those that keep it from being deleted).
pub async fn ids_on_network(db: &Db, network: &str) -> DbResult<Vec<String>> {
    let rows: Vec<(String,)> = on_pool!(db, p => {
        sqlx::query_as("SELECT id FROM ports WHERE network_id = $1 ORDER BY created_at, id")
            .bind(network)
            .fetch_all(p)
            .await?
    });
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Neutron's default limit of ports per project (`quota_port`).
pub const DEFAULT_PORT_QUOTA: i64 = 500;

/// A NIC a server asked for: a network (with an address, perhaps), or a port of the user's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicRequest {
    pub network_id: String,
    pub port_id: Option<String>,
    pub fixed_ip: Option<IpAddr>,
    /// The security groups (ids) of a port made for it; none: the project's default group
    /// (Neutron's, for a port with port security). A user's port keeps its own.
    pub security_groups: Vec<String>,
}

/// A project's port quota (Neutron's default when it has none of its own).
pub async fn port_limit(db: &Db, project: &str) -> DbResult<i64> {
    Ok(crate::quotas::limits(db, project)
        .await?
        .get("port")
        .copied()
        .unwrap_or(DEFAULT_PORT_QUOTA))
}

impl NicRequest {
    /// What a network a server chose asks of its port.
    pub fn of(chosen: &nova_core::model::ChosenNetwork) -> Self {
        Self {
            network_id: chosen.id.clone(),
            port_id: chosen.port.clone(),
            fixed_ip: chosen.fixed_ip.as_deref().and_then(|ip| ip.parse().ok()),
            security_groups: chosen.security_groups.clone(),
        }
    }
}

/// Whom the ports of a server are bound to.
struct Binding<'a> {
    /// The server's uuid (the ports' `device_id`).
    device_id: &'a str,
    project_id: &'a str,
    /// `compute:<availability zone>`, as Nova sets it.
    device_owner: &'a str,
    host: &'a str,
}

/// Gives a server its ports on `host`, in the order asked, within its project's port quota:
/// binds the user's ports, and makes one port (with the address asked for, or the network's
/// defaults) for each network asked for. It may run again for the same server (a build
/// handed out twice): the ports it made and bound before are used again. A refusal (with the
/// index of the request refused) leaves the ports of this call made and bound, for
/// [`release_for_instance`] to undo with the server's build.
pub async fn allocate_for_instance(
    db: &Db,
    instance: &nova_core::model::Instance,
    host: &str,
    requests: &[NicRequest],
) -> DbResult<Result<Vec<Port>, (usize, Refusal)>> {
    let device = instance.uuid.0.to_string();
    let owner = format!(
        "compute:{}",
        instance.availability_zone.as_deref().unwrap_or("nova")
    );
    let binding = &Binding {
        device_id: &device,
        project_id: &instance.project_id,
        device_owner: &owner,
        host,
    };
    let limit = port_limit(db, &instance.project_id).await?;
    let mut out: Vec<Port> = Vec::new();
    let existing = of_device(db, binding.device_id).await?;
    // Whether a port was bound or used again without the server's share lock (see the end).
    let mut unchecked = false;
    let now = nova_core::time::now_ms();
    for (i, r) in requests.iter().enumerate() {
        if let Some(port_id) = &r.port_id {
            let done = on_pool!(db, p => {
                sqlx::query(
                    "UPDATE ports SET device_id = $2, device_owner = $3, host_id = $4, \
                     status = 'ACTIVE', updated_at = $5, revision_number = revision_number + 1 \
                     WHERE id = $1 AND (device_id = '' OR device_id = $2)",
                )
                .bind(port_id)
                .bind(binding.device_id)
                .bind(binding.device_owner)
                .bind(binding.host)
                .bind(now)
                .execute(p)
                .await?
                .rows_affected()
            });
            if done == 1 {
                // Its host now filters it.
                crate::firewall::bump_soon(db);
            }
            match (done, get(db, port_id).await?) {
                (1, Some(port)) => {
                    unchecked = true;
                    out.push(port)
                }
                (_, None) => {
                    return Ok(Err((
                        i,
                        refusal(
                            "PortNotFound",
                            false,
                            format!("Port {port_id} could not be found."),
                        ),
                    )))
                }
                (_, Some(_)) => {
                    return Ok(Err((
                        i,
                        refusal(
                            "PortInUse",
                            true,
                            format!("Port {port_id} is still in use."),
                        ),
                    )))
                }
            }
            continue;
        }
        // A port this server was given before on this network, not yet taken by an earlier
        // request of the list.
        if let Some(port) = existing.iter().find(|p| {
            p.compute_owned && p.network_id == r.network_id && !out.iter().any(|o| o.id == p.id)
        }) {
            // Bound to the host the build now goes to (a build handed out again may have been
            // placed elsewhere).
            if port.host_id != binding.host {
                on_pool!(db, p => {
                    sqlx::query("UPDATE ports SET host_id = $2, updated_at = $3 WHERE id = $1")
                        .bind(&port.id)
                        .bind(binding.host)
                        .bind(now)
                        .execute(p)
                        .await?;
                });
                // Its old host stops filtering it, its new one starts.
                crate::firewall::bump_soon(db);
            }
            let mut port = port.clone();
            port.host_id = binding.host.to_owned();
            out.push(port);
            unchecked = true;
            continue;
        }
        // The groups asked for, or the project's default group (ML2's); the port's port
        // security is its network's, read under the network's lock with the port's create.
        let groups = if r.security_groups.is_empty() {
            vec![
                crate::security_groups::default_for(db, binding.project_id)
                    .await?
                    .id,
            ]
        } else {
            r.security_groups.clone()
        };
        let mut port = Port {
            id: uuid::Uuid::new_v4().to_string(),
            network_id: r.network_id.clone(),
            project_id: binding.project_id.to_owned(),
            name: String::new(),
            description: String::new(),
            mac_address: ipam::random_mac(random()),
            admin_state_up: true,
            status: "ACTIVE".into(),
            device_id: binding.device_id.to_owned(),
            device_owner: binding.device_owner.to_owned(),
            host_id: binding.host.to_owned(),
            compute_owned: true,
            tags: "[]".into(),
            revision_number: 0,
            created_at: now,
            updated_at: now,
            port_security_enabled: true,
        };
        let addresses = match r.fixed_ip {
            Some(ip) => Addresses::Asked(vec![IpRequest {
                subnet_id: None,
                ip_address: Some(ip),
            }]),
            None => Addresses::Default,
        };
        let options = CreateOptions {
            mac_given: false,
            addresses: &addresses,
            limit,
            groups: &groups,
            inherit_security: true,
            server: Some(instance.uuid.0),
        };
        match create(db, &mut port, options).await? {
            Ok(_) => out.push(port),
            Err(refusal) => return Ok(Err((i, refusal))),
        }
    }
    // A delete of the server that committed meanwhile (its release ran before these ports
    // were there) must not leave them behind. A port made here checked that under the
    // server's share lock in its own transaction; a user's port bound (one statement) or a
    // port of an earlier dispatch used again did not: then read the server under a share
    // lock (which waits for a delete in flight) and undo them if it is gone.
    if unchecked && !server_live(db, binding.device_id).await? {
        let mut tx = db.begin().await?;
        release_for_instance(&mut tx, binding.device_id).await?;
        tx.commit().await?;
        crate::firewall::bump(db).await?;
        return Ok(Err((
            0,
            refusal(
                "InstanceNotFound",
                false,
                format!(
                    "Instance {} was deleted while its ports were made.",
                    binding.device_id
                ),
            ),
        )));
    }
    Ok(Ok(out))
}

/// Undoes a server's ports, in the transaction that deletes the server or fails its build:
/// the ports made for it are deleted with their addresses, the user's are unbound and kept
/// (Nova's preserve_on_delete).
pub async fn release_for_instance(tx: &mut Tx, device_id: &str) -> DbResult<()> {
    on_tx!(tx, c => {
        // Their addresses go with them (ON DELETE CASCADE).
        sqlx::query("DELETE FROM ports WHERE device_id = $1 AND compute_owned = $2")
            .bind(device_id)
            .bind(true)
            .execute(&mut *c)
            .await?;
        sqlx::query(
            "UPDATE ports SET device_id = '', device_owner = '', host_id = '', \
             status = 'DOWN', revision_number = revision_number + 1 \
             WHERE device_id = $1 AND host_id <> ''",
        )
        .bind(device_id)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// The NICs of `ports` as a driver needs them: MAC, and each address with its subnet's CIDR
/// and gateway.
pub async fn nics(db: &Db, ports: &[Port]) -> DbResult<Vec<nova_core::rpc::Nic>> {
    let mut addresses = addresses_of(db, AddressesOf::Ports(ports)).await?;
    Ok(ports
        .iter()
        .map(|port| nova_core::rpc::Nic {
            network_id: port.network_id.clone(),
            port_id: port.id.clone(),
            mac: port.mac_address.clone(),
            ips: addresses
                .remove(&port.id)
                .map(|(_, _, ips)| ips)
                .unwrap_or_default(),
            firewall: None,
        })
        .collect())
}

/// Whose addresses [`addresses_of`] reads.
enum AddressesOf<'a> {
    Ports(&'a [Port]),
    Device(&'a str),
}

/// The addresses of some ports (with their subnets' CIDR and gateway), in one query: each
/// port's network, MAC and addresses in its order, keyed by the port's id; ports in order of
/// creation.
async fn addresses_of(
    db: &Db,
    of: AddressesOf<'_>,
) -> DbResult<BTreeMap<String, (String, String, Vec<nova_core::rpc::NicIp>)>> {
    let select = "SELECT p.id, p.network_id, p.mac_address, a.ip_address, s.cidr, s.gateway_ip, \
                  s.ip_version FROM ports p JOIN ip_allocations a ON a.port_id = p.id \
                  JOIN subnets s ON s.id = a.subnet_id";
    type Row = (String, String, String, String, String, Option<String>, i64);
    let rows: Vec<Row> = match of {
        AddressesOf::Ports([]) => Vec::new(),
        AddressesOf::Ports(ports) => {
            let marks = crate::placeholders(1, ports.len());
            let sql = format!(
                "{select} WHERE p.id IN ({}) ORDER BY p.created_at, p.id, a.position",
                marks
            );
            on_pool!(db, p => {
                let mut q = sqlx::query_as(&sql);
                for port in ports {
                    q = q.bind(&port.id);
                }
                q.fetch_all(p).await?
            })
        }
        AddressesOf::Device(device) => {
            let sql = format!(
                "{select} WHERE p.device_id = $1 AND p.host_id <> '' \
                 ORDER BY p.created_at, p.id, a.position"
            );
            on_pool!(db, p => {
                sqlx::query_as(&sql).bind(device).fetch_all(p).await?
            })
        }
    };
    let mut out: BTreeMap<String, (String, String, Vec<nova_core::rpc::NicIp>)> = BTreeMap::new();
    for (port, network, mac, address, cidr, gateway, version) in rows {
        out.entry(port)
            .or_insert_with(|| (network, mac, Vec::new()))
            .2
            .push(nova_core::rpc::NicIp {
                address,
                cidr,
                gateway,
                version: u8::try_from(version).unwrap_or(4),
            });
    }
    Ok(out)
}

/// The port that holds an address of a subnet, if one does.
pub async fn holder_of(db: &Db, subnet: &str, address: &str) -> DbResult<Option<Port>> {
    let sql = format!(
        "SELECT {} FROM ports WHERE id = (SELECT port_id FROM ip_allocations \
         WHERE subnet_id = $1 AND ip_address = $2)",
        COLUMNS
    );
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(subnet).bind(address).fetch_optional(p).await?
    }))
}

/// A server's addresses: those its ports hold (the networking service's, which Nova shows
/// from its network info rather than from the hypervisor), each under its network's name as
/// the server chose it (else as the network is named now), then the `reported` addresses
/// (from its host) of NICs without such a port, such as a network without subnets whose
/// addresses the host's network gives.
pub async fn server_addresses(
    db: &Db,
    device_id: &str,
    chosen: &[nova_core::model::ChosenNetwork],
    reported: Vec<nova_core::model::Address>,
) -> DbResult<Vec<nova_core::model::Address>> {
    // One query: the ports of the server that hold addresses, with them.
    let mut held_by: Vec<(String, String, Vec<nova_core::rpc::NicIp>)> =
        addresses_of(db, AddressesOf::Device(device_id))
            .await?
            .into_values()
            .collect();
    // In the order of the server's networks, then the others.
    held_by.sort_by_key(|(network, _, _)| {
        chosen
            .iter()
            .position(|c| c.id == *network)
            .unwrap_or(usize::MAX)
    });
    let mut out = Vec::new();
    for (network_id, mac, ips) in &held_by {
        let network = match chosen.iter().find(|c| c.id == *network_id) {
            Some(c) => c.name.clone(),
            None => crate::networks::get(db, network_id)
                .await?
                .map_or_else(|| network_id.clone(), |n| n.name),
        };
        for ip in ips {
            out.push(nova_core::model::Address {
                network: network.clone(),
                addr: ip.address.clone(),
                version: ip.version,
                mac: Some(mac.clone()),
            });
        }
    }
    let held: Vec<&str> = held_by.iter().map(|(_, mac, _)| mac.as_str()).collect();
    let reported: Vec<_> = reported
        .into_iter()
        .filter(|a| a.mac.as_deref().is_none_or(|m| !held.contains(&m)))
        .filter(|a| !out.iter().any(|o| o.addr == a.addr))
        .collect();
    out.extend(reported);
    Ok(out)
}

/// Undoes one port of a server (an interface detached, or an attach that failed): deleted if
/// it was made for the server, unbound if it is the user's.
pub async fn release_port(db: &Db, port: &Port) -> DbResult<()> {
    if port.compute_owned {
        delete(db, &port.id).await?;
        return Ok(());
    }
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, c => {
        sqlx::query(
            "UPDATE ports SET device_id = '', device_owner = '', host_id = '', \
             status = 'DOWN', revision_number = revision_number + 1 WHERE id = $1",
        )
        .bind(&port.id)
        .execute(&mut *c)
        .await?;
    });
    tx.commit().await?;
    crate::firewall::bump(db).await?;
    Ok(())
}

/// Whether the server (a port's device) is not deleted, read under a share lock on
/// PostgreSQL (one statement: it waits for a delete in flight to commit, then reads it).
async fn server_live(db: &Db, device_id: &str) -> DbResult<bool> {
    let Ok(uuid) = uuid::Uuid::parse_str(device_id) else {
        return Ok(true);
    };
    let sql = match db {
        Db::Pg(_) => "SELECT deleted FROM instances WHERE uuid = $1 FOR SHARE",
        Db::Sqlite(_) => "SELECT deleted FROM instances WHERE uuid = $1",
    };
    let row: Option<(bool,)> = on_pool!(db, p => {
        sqlx::query_as(sql).bind(uuid).fetch_optional(p).await?
    });
    Ok(row.is_some_and(|(deleted,)| !deleted))
}

/// Gives a port these security groups (in its transaction); Neutron's SecurityGroupNotFound
/// for one deleted since it was checked (its delete refuses groups in use, so it cannot
/// vanish from under a port later).
async fn set_groups(tx: &mut Tx, port: &str, groups: &[String]) -> DbResult<Result<(), Refusal>> {
    for g in groups {
        let done = on_tx!(tx, c => {
            sqlx::query(
                "INSERT INTO port_security_groups (port_id, security_group_id) \
                 SELECT $1, id FROM security_groups WHERE id = $2",
            )
            .bind(port)
            .bind(g)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
        });
        match done {
            Ok(1) => {}
            Ok(_) => return Ok(Err(group_not_found(g))),
            // PostgreSQL: the group's delete took its row first.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Ok(Err(group_not_found(g)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok(()))
}

fn group_not_found(id: &str) -> Refusal {
    refusal(
        "SecurityGroupNotFound",
        false,
        format!("Security group {id} does not exist"),
    )
}

/// The security groups of each of `ports` (ids), oldest group first.
pub async fn security_groups_of(
    db: &Db,
    ports: &[&str],
) -> DbResult<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if ports.is_empty() {
        return Ok(out);
    }
    let marks = crate::placeholders(1, ports.len());
    let sql = format!(
        "SELECT b.port_id, b.security_group_id FROM port_security_groups b \
         JOIN security_groups g ON g.id = b.security_group_id WHERE b.port_id IN ({}) \
         ORDER BY b.port_id, g.created_at, g.id",
        marks
    );
    let rows: Vec<(String, String)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for id in ports {
            q = q.bind(*id);
        }
        q.fetch_all(p).await?
    });
    for (port, group) in rows {
        out.entry(port).or_default().push(group);
    }
    Ok(out)
}

/// The security groups of each server's ports, as Nova's server view lists them
/// (`get_instances_security_groups_bindings`): one name per port per group (the id when the
/// group has no name), its ports in order of creation; servers without ports are absent.
pub async fn server_security_groups(
    db: &Db,
    devices: &[String],
) -> DbResult<std::collections::HashMap<String, Vec<String>>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    if devices.is_empty() {
        return Ok(out);
    }
    let marks = crate::placeholders(1, devices.len());
    let sql = format!(
        "SELECT p.device_id, g.name, g.id FROM ports p \
         JOIN port_security_groups b ON b.port_id = p.id \
         JOIN security_groups g ON g.id = b.security_group_id \
         WHERE p.device_id IN ({}) AND p.host_id <> '' \
         ORDER BY p.device_id, p.created_at, p.id, g.created_at, g.id",
        marks
    );
    let rows: Vec<(String, String, String)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for d in devices {
            q = q.bind(d);
        }
        q.fetch_all(p).await?
    });
    for (device, name, id) in rows {
        out.entry(device)
            .or_default()
            .push(if name.is_empty() { id } else { name });
    }
    Ok(out)
}

/// Adds a security group to a port (nothing if it holds it already).
pub async fn add_security_group(db: &Db, port: &str, group: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO port_security_groups (port_id, security_group_id) \
             SELECT $1, id FROM security_groups WHERE id = $2 \
             ON CONFLICT (port_id, security_group_id) DO NOTHING",
        )
        .bind(port)
        .bind(group)
        .execute(p)
        .await?;
    });
    crate::firewall::bump(db).await
}

/// Takes a security group from a port; `false` if it did not hold it.
pub async fn remove_security_group(db: &Db, port: &str, group: &str) -> DbResult<bool> {
    let done = on_pool!(db, p => {
        sqlx::query(
            "DELETE FROM port_security_groups WHERE port_id = $1 AND security_group_id = $2",
        )
        .bind(port)
        .bind(group)
        .execute(p)
        .await?
        .rows_affected()
    });
    crate::firewall::bump(db).await?;
    Ok(done > 0)
}
