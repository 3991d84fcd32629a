//! Ports (Neutron's) and their addresses: the IPAM. A port's addresses are rows of
//! `ip_allocations`, whose primary key (subnet, address) is what keeps two ports from holding
//! one address. Allocation runs in the port's transaction under its network's row lock on
//! PostgreSQL (SQLite has one writer), so concurrent creates on one network take turns: each
//! sees the others' addresses, and a full subnet is told from a lost race.

use crate::listing::{self, Column, Kind, Listing, Tags};
use crate::subnets::{lock_network, of_network_tx, Subnet};
use crate::{on_pool, on_tx, Db, DbError, DbResult, Tx};
use nova_core::firewall::GroupRule;
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

/// What a port's create or update reads under its network's lock: the network's subnets, the
/// addresses their ports hold (by subnet), how many ports the project has (its quota's use),
/// and the port a server already has on the network (for a server's port: two handlers of one
/// build, a message handed out twice, make one port).
struct NetworkState {
    subnets: Vec<Subnet>,
    taken: BTreeMap<String, BTreeSet<u128>>,
    project_ports: i64,
    /// The project's port quota (none of its own: Neutron's default).
    port_limit: i64,
    /// The server's ports made on the network (for its NICs), oldest first.
    servers_ports: Vec<String>,
    /// The server's `vm_state`, `deleted` when it is, none when it is not there (or none was
    /// asked about).
    server_state: Option<String>,
}

fn to_taken(addresses: impl IntoIterator<Item = String>) -> BTreeSet<u128> {
    addresses
        .into_iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(ipam::to_u128)
        .collect()
}

/// Reads [`NetworkState`]: on PostgreSQL in one round trip (each subnet with its addresses
/// as an array and the project's count beside it; the count alone when the network has no
/// subnet), on SQLite (in process) in three plain queries.
async fn network_state(
    tx: &mut Tx,
    network: &str,
    project: &str,
    server: Option<uuid::Uuid>,
    reuse: bool,
) -> DbResult<NetworkState> {
    // The project's count and quota, the server's ports on the network (their ids joined by
    // commas, oldest first) and whether the server lives; `$1` the network, `$2` the project,
    // `$3` the server's id as its ports' `device_id` (none: no ports), `$4` the server (none:
    // no server). The aggregate is each dialect's own.
    fn scalars(ports: &str) -> String {
        format!(
            "(SELECT COUNT(*) FROM ports WHERE project_id = $2) AS project_ports, \
             (SELECT hard_limit FROM quotas WHERE project_id = $2 AND resource = 'port') \
             AS port_limit, {ports} AS servers_ports, \
             (SELECT CASE WHEN deleted THEN 'deleted' ELSE vm_state END FROM instances \
             WHERE uuid = $4) AS server_state"
        )
    }
    const OF_SERVER: &str = "FROM ports WHERE device_id = $3 AND network_id = $1 AND compute_owned";
    let split = |joined: Option<String>| -> Vec<String> {
        joined
            .map(|j| j.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let device = server.filter(|_| reuse).map(|u| u.to_string());
    let mut taken: BTreeMap<String, BTreeSet<u128>> = BTreeMap::new();
    match tx {
        Tx::Pg(t) => {
            #[derive(sqlx::FromRow)]
            struct Row {
                #[sqlx(flatten)]
                subnet: Subnet,
                project_ports: i64,
                port_limit: Option<i64>,
                servers_ports: Option<String>,
                server_state: Option<String>,
                taken: Vec<String>,
            }
            let scalars = scalars(&format!(
                "(SELECT string_agg(id, ',' ORDER BY created_at, id) {OF_SERVER})"
            ));
            let sql = format!(
                "SELECT {}, {scalars}, \
                 ARRAY(SELECT a.ip_address FROM ip_allocations a WHERE a.subnet_id = s.id) \
                 AS taken FROM subnets s WHERE s.network_id = $1 ORDER BY s.created_at, s.id",
                crate::subnets::COLUMNS
            );
            let rows: Vec<Row> = sqlx::query_as(&sql)
                .bind(network)
                .bind(project)
                .bind(&device)
                .bind(server)
                .fetch_all(&mut **t)
                .await?;
            let (project_ports, port_limit, servers_ports, server_state) = match rows.first() {
                Some(r) => (
                    r.project_ports,
                    r.port_limit,
                    r.servers_ports.clone(),
                    r.server_state.clone(),
                ),
                None => {
                    sqlx::query_as(&format!("SELECT {scalars} WHERE $1 = $1"))
                        .bind(network)
                        .bind(project)
                        .bind(&device)
                        .bind(server)
                        .fetch_one(&mut **t)
                        .await?
                }
            };
            let mut subnets = Vec::with_capacity(rows.len());
            for r in rows {
                taken.insert(r.subnet.id.clone(), to_taken(r.taken));
                subnets.push(r.subnet);
            }
            Ok(NetworkState {
                subnets,
                taken,
                project_ports,
                port_limit: port_limit.unwrap_or(DEFAULT_PORT_QUOTA),
                servers_ports: split(servers_ports),
                server_state,
            })
        }
        Tx::Sqlite(t) => {
            // (An ordered aggregate: SQLite 3.44 and later.)
            let scalars = scalars(&format!(
                "(SELECT group_concat(id, ',' ORDER BY created_at, id) {OF_SERVER})"
            ));
            let (project_ports, port_limit, servers_ports, server_state): (
                i64,
                Option<i64>,
                Option<String>,
                Option<String>,
            ) = sqlx::query_as(&format!("SELECT {scalars} WHERE $1 = $1"))
                .bind(network)
                .bind(project)
                .bind(&device)
                .bind(server)
                .fetch_one(&mut **t)
                .await?;
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT a.subnet_id, a.ip_address FROM ip_allocations a \
                 JOIN subnets s ON s.id = a.subnet_id WHERE s.network_id = $1",
            )
            .bind(network)
            .fetch_all(&mut **t)
            .await?;
            let mut by_subnet: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (subnet, address) in rows {
                by_subnet.entry(subnet).or_default().push(address);
            }
            let subnets = of_network_tx(tx, network).await?;
            for s in &subnets {
                taken.insert(
                    s.id.clone(),
                    to_taken(by_subnet.remove(&s.id).unwrap_or_default()),
                );
            }
            Ok(NetworkState {
                subnets,
                taken,
                project_ports,
                port_limit: port_limit.unwrap_or(DEFAULT_PORT_QUOTA),
                servers_ports: split(servers_ports),
                server_state,
            })
        }
    }
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
fn choose(
    network_id: &str,
    state: &mut NetworkState,
    addresses: &Addresses,
    kept: &[FixedIp],
) -> Result<Vec<FixedIp>, Refusal> {
    let subnets = &state.subnets;
    let taken_of = &mut state.taken;
    let mut chosen: Vec<FixedIp> = Vec::new();
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
                let none = BTreeSet::new();
                for s in family {
                    let taken = taken_of.get(&s.id).unwrap_or(&none);
                    if let Some(ip) = ipam::pick_free(&s.pools(), taken, random()) {
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
                        return Err(refusal(
                            "IpAddressGenerationFailure",
                            true,
                            format!("No more IP addresses available on network {network_id}."),
                        ))
                    }
                }
            }
            return Ok(chosen);
        }
    };
    if !requests.is_empty() && subnets.is_empty() {
        return Err(refusal(
            "InvalidInput",
            false,
            format!(
                "Invalid input for operation: Failed to create port on network {network_id}, \
                 because fixed_ips included invalid subnet None."
            ),
        ));
    }
    for r in &requests {
        let subnet = match (&r.subnet_id, r.ip_address) {
            (Some(id), _) => match subnets.iter().find(|s| &s.id == id) {
                Some(s) => s,
                None => {
                    return Err(refusal(
                        "InvalidInput",
                        false,
                        format!(
                            "Invalid input for operation: Failed to create port on network \
                             {network_id}, because fixed_ips included invalid subnet {id}."
                        ),
                    ))
                }
            },
            (None, Some(ip)) => {
                match subnets
                    .iter()
                    .find(|s| s.net().is_some_and(|n| ipam::check_subnet_ip(&n, ip)))
                {
                    Some(s) => s,
                    None => {
                        return Err(refusal(
                            "InvalidIpForNetwork",
                            false,
                            format!(
                                "IP address {ip} is not a valid IP for any of the subnets on \
                                 the specified network."
                            ),
                        ))
                    }
                }
            }
            (None, None) => continue,
        };
        let kept_here: Vec<&FixedIp> = kept.iter().filter(|k| k.subnet_id == subnet.id).collect();
        let taken = taken_of.entry(subnet.id.clone()).or_default();
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
                    return Err(refusal(
                        "InvalidIpForSubnet",
                        false,
                        format!("IP address {ip} is not a valid IP for the specified subnet."),
                    ));
                }
                if taken.contains(&ipam::to_u128(ip)) {
                    return Err(refusal(
                        "IpAddressAlreadyAllocated",
                        true,
                        format!("IP address {ip} already allocated in subnet {}", subnet.id),
                    ));
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
                        return Err(refusal(
                            "IpAddressGenerationFailure",
                            true,
                            format!("No more IP addresses available for subnet {}.", subnet.id),
                        ))
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
    Ok(chosen)
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
    /// Its security groups (when it has port security).
    pub groups: &'a [String],
    /// The port takes its network's port security (Neutron's default for a port that does
    /// not say), read under the network's lock.
    pub inherit_security: bool,
    /// The server the port is made for: the create is refused if it is deleted, read under a
    /// key-share lock in the same statement as the network's lock, so that a delete in flight
    /// (whose [`release_for_instance`] locks the row for update) waits for this transaction
    /// and then releases the port too. (A key-share lock, not a share lock: the scheduler's
    /// update of the row, beside which the port is made, does not wait for it.)
    pub server: Option<uuid::Uuid>,
    /// A build's NIC: the first of the server's ports on the network that is not one of
    /// these (the ports this build took already) is the answer — made for this NIC by an
    /// earlier dispatch of the build, or by another handler of it meanwhile. None (an
    /// interface attached): always a new port.
    pub reuse: Option<&'a [String]>,
}

/// Stores a new port with its addresses, in one transaction: the MAC given (unique on the
/// network) or a random one (another if it clashes), the addresses as [`choose`] finds them,
/// within the project's port quota. A refusal writes nothing.
pub async fn create(
    db: &Db,
    port: &mut Port,
    options: CreateOptions<'_>,
) -> DbResult<Result<Vec<FixedIp>, Refusal>> {
    Ok(make(db, port, options).await?.map(|made| match made {
        Made::New(ips, _) => ips,
        // Only a server's port is found made (`options.server`).
        Made::Existing(_) => Vec::new(),
    }))
}

/// What [`make`] did: made the port, with these addresses (and, for a server's port on
/// PostgreSQL, its NIC with its filter, read with its write), or found the one the server
/// already has on the network.
enum Made {
    New(Vec<FixedIp>, Option<Box<nova_core::rpc::Nic>>),
    Existing(String),
}

async fn make(
    db: &Db,
    port: &mut Port,
    options: CreateOptions<'_>,
) -> DbResult<Result<Made, Refusal>> {
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
) -> DbResult<Result<Made, Refusal>> {
    let CreateOptions {
        mac_given,
        addresses,
        groups,
        inherit_security,
        server,
        reuse,
    } = options;
    let mut tx = db.begin().await?;
    // The network's row lock and the project's port lock, in one round trip on PostgreSQL
    // (always in this order: every port create takes both with this statement), with the
    // network's port security and the server's key-share lock. Whether the server is deleted
    // is read by the next statement ([`network_state`]): a row a sub-select locks after
    // waiting is still returned as this statement's snapshot saw it, from before a delete
    // that it waited for. (SQLite has one writer: reading the rows is enough.)
    let row: Option<(bool, bool)> = match &mut tx {
        Tx::Pg(t) => {
            sqlx::query_as(
                "SELECT n.port_security_enabled, i.locked IS NOT NULL FROM networks n \
                 CROSS JOIN (SELECT pg_advisory_xact_lock($2, hashtext($3))) AS l \
                 LEFT JOIN LATERAL (SELECT 1 AS locked FROM instances WHERE uuid = $4 \
                 FOR KEY SHARE) i ON true WHERE n.id = $1 FOR UPDATE OF n",
            )
            .bind(&port.network_id)
            .bind(PORT_LOCK_CLASS)
            .bind(&port.project_id)
            .bind(server)
            .fetch_optional(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            sqlx::query_as("SELECT port_security_enabled, 1 FROM networks WHERE id = $1")
                .bind(&port.network_id)
                .fetch_optional(&mut **t)
                .await?
        }
    };
    let Some((secured, _)) = row else {
        return Ok(Err(refusal(
            "NetworkNotFound",
            false,
            format!("Network {} could not be found.", port.network_id),
        )));
    };
    let mut state = network_state(
        &mut tx,
        &port.network_id,
        &port.project_id,
        server,
        reuse.is_some(),
    )
    .await?;
    if let Some(uuid) = server {
        match state.server_state.as_deref() {
            None | Some("deleted") => {
                return Ok(Err(refusal(
                    "InstanceNotFound",
                    false,
                    format!("Instance {uuid} was deleted while its ports were made."),
                )))
            }
            // A port made before the server has a host is for its build: a build that ended
            // meanwhile (another handler of it failed it, and released its ports) gets none,
            // which nothing would release.
            Some(vm_state) if port.host_id.is_empty() && vm_state != "building" => {
                return Ok(Err(refusal(
                    "InstanceInvalidState",
                    true,
                    format!("Instance {uuid} is no longer building ({vm_state})."),
                )))
            }
            Some(_) => {}
        }
    }
    let taken = reuse.unwrap_or_default();
    if let Some(id) = state.servers_ports.iter().find(|id| !taken.contains(id)) {
        // Made for this NIC before: by an earlier dispatch of the build, or by another
        // handler of it meanwhile (read under the network's lock).
        return Ok(Ok(Made::Existing(id.clone())));
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
    // The project's port quota, read under its lock (negative: none).
    if state.port_limit >= 0 && state.project_ports >= state.port_limit {
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
    let ips = match choose(&port.network_id, &mut state, addresses, &[]) {
        Ok(ips) => ips,
        Err(r) => return Ok(Err(r)),
    };
    let filter = match insert(&mut tx, port, &ips, groups, server.is_some()).await? {
        Ok(filter) => filter,
        Err(r) => return Ok(Err(r)),
    };
    tx.commit().await?;
    // An unbound port is no host's to filter (its binding bumps, when it comes).
    if !port.host_id.is_empty() {
        crate::firewall::bump_soon(db);
    }
    // The NIC as a driver needs it, from what this transaction read: the subnets of its
    // addresses, and its groups' rules with the remote groups' members.
    let nic = filter.map(|(rules, members)| {
        let mut nic = nova_core::rpc::Nic {
            network_id: port.network_id.clone(),
            port_id: port.id.clone(),
            mac: port.mac_address.clone(),
            ips: ips
                .iter()
                .filter_map(|ip| {
                    let subnet = state.subnets.iter().find(|s| s.id == ip.subnet_id)?;
                    Some(nova_core::rpc::NicIp {
                        address: ip.ip_address.clone(),
                        cidr: subnet.cidr.clone(),
                        gateway: subnet.gateway_ip.clone(),
                        version: u8::try_from(subnet.ip_version).unwrap_or(4),
                    })
                })
                .collect(),
            firewall: None,
        };
        nic.firewall = Some(crate::firewall::filter_of(port, &nic, rules, &members));
        nic
    });
    Ok(Ok(Made::New(ips, nic.map(Box::new))))
}

/// Binds a port's columns, in [`COLUMNS`]' order, to `$1`…`$17` of a query (the insert on
/// either backend).
macro_rules! bind_port {
    ($q:expr, $port:expr) => {{
        let port: &Port = $port;
        $q.bind(&port.id)
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
    }};
}

/// What the filter of a new port is made of, read with its write: its groups' rules, and the
/// addresses of the members of the remote groups they name, by group (without the port's own,
/// which the statement's snapshot does not hold: a filter's rules leave them out anyway).
type FilterParts = (Vec<GroupRule>, BTreeMap<String, Vec<String>>);

/// Writes a new port with its addresses and groups: on PostgreSQL in one statement (a round
/// trip each was most of what a port added to a server's build), on SQLite one by one. A
/// group gone meanwhile is refused. With `filter` on PostgreSQL, the same statement reads
/// what the port's filter is made of (a server's build then reads nothing more for its NIC).
async fn insert(
    tx: &mut Tx,
    port: &Port,
    ips: &[FixedIp],
    groups: &[String],
    filter: bool,
) -> DbResult<Result<Option<FilterParts>, Refusal>> {
    if let Tx::Pg(t) = tx {
        // As `security_groups::rules_of_ports` and `firewall::remote_members` read them.
        let parts = if filter {
            "(SELECT COALESCE(json_agg(r ORDER BY r.created_at, r.id), '[]')::text \
             FROM security_group_rules r WHERE r.security_group_id = ANY($20::text[])), \
             (SELECT COALESCE(json_agg(json_build_array(b.security_group_id, a.ip_address)), \
             '[]')::text FROM port_security_groups b JOIN ip_allocations a \
             ON a.port_id = b.port_id WHERE b.security_group_id IN \
             (SELECT r.remote_group_id FROM security_group_rules r \
             WHERE r.security_group_id = ANY($20::text[]) AND r.remote_group_id IS NOT NULL))"
        } else {
            "NULL::text, NULL::text"
        };
        let sql = format!(
            "WITH p AS (INSERT INTO ports ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id), \
             a AS (INSERT INTO ip_allocations (subnet_id, ip_address, port_id, position) \
             SELECT x.subnet_id, x.ip_address, p.id, x.n - 1 FROM p, \
             unnest($18::text[], $19::text[]) WITH ORDINALITY AS x (subnet_id, ip_address, n)), \
             g AS (INSERT INTO port_security_groups (port_id, security_group_id) \
             SELECT p.id, s.id FROM p JOIN security_groups s ON s.id = ANY($20::text[]) \
             RETURNING security_group_id) \
             SELECT ARRAY(SELECT security_group_id FROM g), {parts}"
        );
        let subnet_ids: Vec<&str> = ips.iter().map(|i| i.subnet_id.as_str()).collect();
        let addresses: Vec<&str> = ips.iter().map(|i| i.ip_address.as_str()).collect();
        type Written = (Vec<String>, Option<String>, Option<String>);
        let written: Result<Written, sqlx::Error> = bind_port!(sqlx::query_as(&sql), port)
            .bind(&subnet_ids)
            .bind(&addresses)
            .bind(groups)
            .fetch_one(&mut **t)
            .await;
        return match written {
            Ok((held, rules, members)) => Ok(match groups.iter().find(|g| !held.contains(g)) {
                None => Ok(filter_parts(rules, members)?),
                Some(gone) => Err(group_not_found(gone)),
            }),
            // A group's delete took its row first: which one, its key says.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                let detail = e.message().to_owned();
                let gone = groups
                    .iter()
                    .find(|g| detail.contains(g.as_str()))
                    .or(groups.first())
                    .map_or("", String::as_str);
                Ok(Err(group_not_found(gone)))
            }
            Err(e) => Err(e.into()),
        };
    }
    let sql = format!(
        "INSERT INTO ports ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17)"
    );
    on_tx!(&mut *tx, c => {
        bind_port!(sqlx::query(&sql), port)
            .execute(&mut *c)
            .await?;
    });
    insert_allocations(tx, &port.id, ips).await?;
    Ok(set_groups(tx, &port.id, groups).await?.map(|()| None))
}

/// [`FilterParts`] from the JSON of [`insert`]'s statement (none when it did not read them).
fn filter_parts(rules: Option<String>, members: Option<String>) -> DbResult<Option<FilterParts>> {
    let (Some(rules), Some(members)) = (rules, members) else {
        return Ok(None);
    };
    let corrupt = |e: serde_json::Error| DbError::Corrupt(format!("a port's filter: {e}"));
    let rules: Vec<crate::firewall::RuleWords> = serde_json::from_str(&rules).map_err(corrupt)?;
    let pairs: Vec<(String, String)> = serde_json::from_str(&members).map_err(corrupt)?;
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, address) in pairs {
        by_group.entry(group).or_default().push(address);
    }
    Ok(Some((
        rules.into_iter().map(Into::into).collect(),
        by_group,
    )))
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
            let mut state =
                network_state(&mut tx, &port.network_id, &port.project_id, None, false).await?;
            let ips = match choose(&port.network_id, &mut state, addresses, &kept) {
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
    /// A build's NIC (a port made for it by an earlier dispatch is taken again); false for an
    /// interface attached, which always gets a new port (a server may have several NICs on
    /// one network).
    pub for_build: bool,
}

/// A project's port quota (Neutron's default when it has none of its own; negative: none)
/// and how many ports it has, in one query.
pub async fn quota_and_use(db: &Db, project: &str) -> DbResult<(i64, i64)> {
    let (limit, used): (Option<i64>, i64) = on_pool!(db, p => {
        sqlx::query_as(
            "SELECT (SELECT hard_limit FROM quotas WHERE project_id = $1 AND resource = 'port'), \
             (SELECT COUNT(*) FROM ports WHERE project_id = $1)",
        )
        .bind(project)
        .fetch_one(p)
        .await?
    });
    Ok((limit.unwrap_or(DEFAULT_PORT_QUOTA), used))
}

impl NicRequest {
    /// What a network a server chose asks of its port.
    pub fn of(chosen: &nova_core::model::ChosenNetwork) -> Self {
        Self {
            network_id: chosen.id.clone(),
            port_id: chosen.port.clone(),
            fixed_ip: chosen.fixed_ip.as_deref().and_then(|ip| ip.parse().ok()),
            security_groups: chosen.security_groups.clone(),
            for_build: true,
        }
    }
}

/// A server's port as [`allocate_for_instance`] gives it, with its NIC (its addresses and its
/// filter) when the port's own transaction read what that is made of (a port made on
/// PostgreSQL): the build then reads nothing more for it (`firewall::nics_of`).
#[derive(Clone, Debug)]
pub struct Allocated {
    pub port: Port,
    pub nic: Option<nova_core::rpc::Nic>,
}

/// Whom the ports of a server are bound to.
struct Binding<'a> {
    /// The server's uuid (the ports' `device_id`).
    device_id: &'a str,
    project_id: &'a str,
    /// `compute:<availability zone>`, as Nova sets it.
    device_owner: &'a str,
    /// None: not known yet ([`bind_to_host`] binds the ports when it is).
    host: Option<&'a str>,
}

/// Gives a server its ports on `host`, in the order asked, within its project's port quota:
/// binds the user's ports, and makes one port (with the address asked for, or the network's
/// defaults) for each network asked for (one for each time it is asked for). It may run again
/// for the same server (a build handed out twice), or twice at once: the ports made before for
/// a build's NICs are used again, each NIC taking the first of the server's ports on its
/// network that no NIC before it took. A refusal
/// (with the index of the request refused) leaves the ports of this call made and bound, for
/// [`release_for_instance`] to undo with the server's build.
///
/// `host` None: the ports are made before the server has a host (beside its scheduling), and
/// [`bind_to_host`] binds them once it has one. A user's port is only bound with its host.
pub async fn allocate_for_instance(
    db: &Db,
    instance: &nova_core::model::Instance,
    host: Option<&str>,
    requests: &[NicRequest],
) -> DbResult<Result<Vec<Allocated>, (usize, Refusal)>> {
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
    let mut out: Vec<Allocated> = Vec::new();
    // Whether a user's port was bound without the server's lock (see the end).
    let mut unchecked = false;
    let now = nova_core::time::now_ms();
    for (i, r) in requests.iter().enumerate() {
        if let Some(port_id) = &r.port_id {
            let Some(host) = binding.host else {
                return Ok(Err((
                    i,
                    refusal(
                        "PortBindingFailed",
                        false,
                        format!("Port {port_id} can only be bound with the server's host."),
                    ),
                )));
            };
            let done = on_pool!(db, p => {
                sqlx::query(
                    "UPDATE ports SET device_id = $2, device_owner = $3, host_id = $4, \
                     status = 'ACTIVE', updated_at = $5, revision_number = revision_number + 1 \
                     WHERE id = $1 AND (device_id = '' OR device_id = $2)",
                )
                .bind(port_id)
                .bind(binding.device_id)
                .bind(binding.device_owner)
                .bind(host)
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
                    out.push(Allocated { port, nic: None })
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
            // Neutron's: DOWN until a host has it.
            status: if binding.host.is_some() {
                "ACTIVE"
            } else {
                "DOWN"
            }
            .into(),
            device_id: binding.device_id.to_owned(),
            device_owner: binding.device_owner.to_owned(),
            host_id: binding.host.unwrap_or_default().to_owned(),
            compute_owned: true,
            tags: "[]".into(),
            revision_number: 0,
            // A millisecond apart in the NICs' order: the server's ports, oldest first, are
            // its NICs in order when read again (a rebuild's, a rescue's spec).
            created_at: now + i64::try_from(i).unwrap_or(0),
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
        let took: Vec<String> = out.iter().map(|a| a.port.id.clone()).collect();
        let options = CreateOptions {
            mac_given: false,
            addresses: &addresses,
            groups: &groups,
            inherit_security: true,
            server: Some(instance.uuid.0),
            reuse: r.for_build.then_some(took.as_slice()),
        };
        match make(db, &mut port, options).await? {
            Ok(Made::New(_, nic)) => out.push(Allocated {
                port,
                nic: nic.map(|n| *n),
            }),
            // Made before: by an earlier dispatch of this build, or by another handler of it
            // meanwhile (read under the network's lock, with the server's key-share lock).
            Ok(Made::Existing(id)) => match get(db, &id).await? {
                Some(made) => out.push(Allocated {
                    port: rebind(db, made, binding.host, now).await?,
                    nic: None,
                }),
                None => {
                    return Ok(Err((
                        i,
                        refusal(
                            "PortNotFound",
                            false,
                            format!("Port {id} could not be found."),
                        ),
                    )))
                }
            },
            Err(refusal) => return Ok(Err((i, refusal))),
        }
    }
    // A delete of the server that committed meanwhile (its release ran before these ports
    // were there) must not leave them behind. A port made here checked that under the
    // server's key-share lock in its own transaction; a user's port bound (one statement) did
    // not: then read the server under a share lock (which waits for a delete in flight) and
    // undo them if it is gone.
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

/// A server's port made before, bound to the host the build now goes to (a build handed out
/// again may have been placed elsewhere); unchanged while the host is not known.
async fn rebind(db: &Db, mut port: Port, host: Option<&str>, now: i64) -> DbResult<Port> {
    let Some(host) = host.filter(|h| *h != port.host_id) else {
        return Ok(port);
    };
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE ports SET host_id = $2, status = 'ACTIVE', updated_at = $3, \
             revision_number = revision_number + 1 WHERE id = $1",
        )
        .bind(&port.id)
        .bind(host)
        .bind(now)
            .execute(p)
            .await?;
    });
    // Its old host stops filtering it, its new one starts.
    crate::firewall::bump_soon(db);
    host.clone_into(&mut port.host_id);
    port.status = "ACTIVE".into();
    port.revision_number += 1;
    Ok(port)
}

/// Binds the ports made for a server before it had a host ([`allocate_for_instance`] without
/// one) to the host it was placed on.
pub async fn bind_to_host(db: &Db, device_id: &str, host: &str) -> DbResult<()> {
    // A new revision: an update that read the port unbound must not write it back so.
    const BIND: &str = "UPDATE ports SET host_id = $2, status = 'ACTIVE', updated_at = $3, \
        revision_number = revision_number + 1 \
        WHERE device_id = $1 AND compute_owned = $4 AND host_id <> $2";
    match db {
        // With the firewall's bump (their host now filters them) in the same statement: a
        // build waits for this one.
        Db::Pg(_) => {
            let sql = format!(
                "WITH bound AS ({BIND} RETURNING 1) UPDATE firewall_generation \
                 SET generation = generation + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM bound)"
            );
            on_pool!(db, p => {
                sqlx::query(&sql)
                    .bind(device_id)
                    .bind(host)
                    .bind(nova_core::time::now_ms())
                    .bind(true)
                    .execute(p)
                    .await?;
            });
        }
        Db::Sqlite(_) => {
            let done = on_pool!(db, p => {
                sqlx::query(BIND)
                    .bind(device_id)
                    .bind(host)
                    .bind(nova_core::time::now_ms())
                    .bind(true)
                    .execute(p)
                    .await?
                    .rows_affected()
            });
            if done > 0 {
                crate::firewall::bump_soon(db);
            }
        }
    }
    Ok(())
}

/// Unbinds a server's ports from their host, keeping them and their addresses (a shelved server
/// let go of its host: Nova's `shelve_offload` unbinds them), in `tx`.
pub async fn unbind_from_host(tx: &mut Tx, device_id: &str) -> DbResult<()> {
    on_tx!(tx, c => {
        sqlx::query(
            "UPDATE ports SET host_id = '', status = 'DOWN', updated_at = $2, \
             revision_number = revision_number + 1 WHERE device_id = $1",
        )
        .bind(device_id)
        .bind(nova_core::time::now_ms())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Undoes a server's ports, in the transaction that deletes the server or fails its build:
/// the ports made for it are deleted with their addresses, the user's are unbound and kept
/// (Nova's preserve_on_delete).
pub async fn release_for_instance(tx: &mut Tx, device_id: &str) -> DbResult<()> {
    // The server's row locked for update first (on PostgreSQL): a port made for it meanwhile
    // holds a key-share lock on it until its transaction ends (a lock the scheduler's update
    // of the row does not wait for), so this waits for that port, and the delete below sees
    // it; a port made after finds the server gone.
    if let (Tx::Pg(t), Ok(uuid)) = (&mut *tx, uuid::Uuid::parse_str(device_id)) {
        sqlx::query("SELECT 1 FROM instances WHERE uuid = $1 FOR UPDATE")
            .bind(uuid)
            .execute(&mut **t)
            .await?;
    }
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
