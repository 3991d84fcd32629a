//! What each host's packet filter is to be, from the ports bound to it, their security groups
//! and the groups' rules (`nova_core::firewall` resolves them), and the generation that tells
//! the conductor when it changed. Every write that changes some host's filter bumps the
//! generation after it commits; the conductor pushes the whole filter again when it moves (and
//! now and then anyway, which heals a bump lost to a crash).

use crate::ports::{self, Port};
use crate::{on_pool, Db, DbResult};
use nova_core::firewall::{expand, Direction, GroupRule, PortFirewall};
use std::collections::BTreeMap;

/// Marks every host's filter as to be pushed again.
pub async fn bump(db: &Db) -> DbResult<()> {
    // On PostgreSQL without waiting for the WAL's flush: a bump lost to a crash is what the
    // conductor's full sync covers anyway, and a build waits on the flushes of its own writes.
    let sql = match db {
        Db::Pg(_) => {
            "WITH unflushed AS (SELECT set_config('synchronous_commit', 'off', true)) \
             UPDATE firewall_generation SET generation = generation + 1 FROM unflushed \
             WHERE id = 1"
        }
        Db::Sqlite(_) => "UPDATE firewall_generation SET generation = generation + 1 WHERE id = 1",
    };
    on_pool!(db, p => {
        sqlx::query(sql).execute(p).await?;
    });
    Ok(())
}

/// [`bump`] without waiting for it, for a caller whose latency counts (a server's build): a
/// bump that fails is logged, and the conductor's minutely full sync covers it.
pub fn bump_soon(db: &Db) {
    let db = db.clone();
    tokio::spawn(async move {
        if let Err(e) = bump(&db).await {
            tracing::warn!(error = %e, "firewall generation not bumped; the next full sync covers it");
        }
    });
}

pub async fn generation(db: &Db) -> DbResult<i64> {
    let (g,): (i64,) = on_pool!(db, p => {
        sqlx::query_as("SELECT generation FROM firewall_generation WHERE id = 1")
            .fetch_one(p)
            .await?
    });
    Ok(g)
}

/// The filters of every port bound to `host` (the whole of its filter: a port it does not
/// list is not to be filtered any more).
pub async fn of_host(db: &Db, host: &str) -> DbResult<Vec<PortFirewall>> {
    let sql = format!(
        "SELECT {} FROM ports WHERE host_id = $1 AND device_id <> '' ORDER BY created_at, id",
        ports::COLUMNS
    );
    let bound: Vec<Port> = on_pool!(db, p => {
        sqlx::query_as(&sql).bind(host).fetch_all(p).await?
    });
    Ok(nics(db, &bound)
        .await?
        .into_iter()
        .filter_map(|n| n.firewall)
        .collect())
}

/// The NICs of these ports as a driver needs them (`ports::nics`), each with its filter.
pub async fn nics(db: &Db, bound: &[Port]) -> DbResult<Vec<nova_core::rpc::Nic>> {
    if bound.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = bound.iter().map(|p| p.id.as_str()).collect();
    // The three at once (a build waits for them).
    let (mut nics, rules_of, members) = tokio::try_join!(
        ports::nics(db, bound),
        crate::security_groups::rules_of_ports(db, &ids),
        remote_members(db, &ids)
    )?;
    for (port, nic) in bound.iter().zip(nics.iter_mut()) {
        let rules = rules_of.get(&port.id).into_iter().flatten().map(group_rule);
        nic.firewall = Some(filter_of(port, nic, rules.collect(), &members));
    }
    Ok(nics)
}

/// The filter of a port with these addresses (`nic`), from its groups' rules and the members
/// of the remote groups they name.
pub(crate) fn filter_of(
    port: &Port,
    nic: &nova_core::rpc::Nic,
    rules: Vec<GroupRule>,
    members: &BTreeMap<String, Vec<String>>,
) -> PortFirewall {
    let ips: Vec<String> = nic.ips.iter().map(|i| i.address.clone()).collect();
    let dhcp_servers: Vec<String> = nic.ips.iter().filter_map(|i| i.gateway.clone()).collect();
    PortFirewall {
        port_id: port.id.clone(),
        instance: port.device_id.clone(),
        mac: port.mac_address.clone(),
        rules: expand(&ips, &rules, members),
        ips,
        dhcp_servers,
        // A port without an address is not filtered: nothing on the host is keyed to it (its
        // guest's address, if any, comes from the host's network, whose DHCP a filter of no
        // address would cut off).
        enabled: port.port_security_enabled && !nic.ips.is_empty(),
    }
}

/// A stored rule as the filter reads it (Neutron's `direction` and `ethertype` words).
pub(crate) fn group_rule(r: &crate::security_groups::Rule) -> GroupRule {
    RuleWords {
        direction: r.direction.clone(),
        ethertype: r.ethertype.clone(),
        protocol: r.protocol.clone(),
        port_range_min: r.port_range_min,
        port_range_max: r.port_range_max,
        remote_ip_prefix: r.remote_ip_prefix.clone(),
        remote_group_id: r.remote_group_id.clone(),
    }
    .into()
}

/// What of a stored rule the filter reads, as PostgreSQL's `json_agg` of its row gives it
/// (the port's write reads its groups' rules so, in the same statement).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RuleWords {
    direction: String,
    ethertype: String,
    protocol: Option<String>,
    port_range_min: Option<i64>,
    port_range_max: Option<i64>,
    remote_ip_prefix: Option<String>,
    remote_group_id: Option<String>,
}

impl From<RuleWords> for GroupRule {
    fn from(r: RuleWords) -> Self {
        GroupRule {
            direction: if r.direction == "egress" {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            ethertype: if r.ethertype == "IPv6" { 6 } else { 4 },
            protocol: r.protocol,
            port_range_min: r.port_range_min,
            port_range_max: r.port_range_max,
            remote_ip_prefix: r.remote_ip_prefix,
            remote_group_id: r.remote_group_id,
        }
    }
}

/// The NICs of the ports a server was given: as its allocation built it for a server of one
/// port, else read ([`nics`]). (Several ports are made one after another: the first one's
/// filter, built before the others were there, would miss their addresses in the groups
/// they share.)
pub async fn nics_of(
    db: &Db,
    allocated: &[ports::Allocated],
) -> DbResult<Vec<nova_core::rpc::Nic>> {
    if let [ports::Allocated { nic: Some(nic), .. }] = allocated {
        return Ok(vec![nic.clone()]);
    }
    let ports: Vec<Port> = allocated.iter().map(|a| a.port.clone()).collect();
    nics(db, &ports).await
}

/// The addresses of the members of every remote group the rules of these ports' groups name
/// (a remote group's members, on any host), by group.
async fn remote_members(db: &Db, ports: &[&str]) -> DbResult<BTreeMap<String, Vec<String>>> {
    let marks = crate::placeholders(1, ports.len());
    let sql = format!(
        "SELECT b.security_group_id, a.ip_address FROM port_security_groups b \
         JOIN ip_allocations a ON a.port_id = b.port_id WHERE b.security_group_id IN \
         (SELECT r.remote_group_id FROM security_group_rules r JOIN port_security_groups o \
         ON o.security_group_id = r.security_group_id WHERE o.port_id IN ({marks}) \
         AND r.remote_group_id IS NOT NULL) \
         ORDER BY b.security_group_id, a.ip_address"
    );
    let rows: Vec<(String, String)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for port in ports {
            q = q.bind(*port);
        }
        q.fetch_all(p).await?
    });
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, ip) in rows {
        out.entry(group).or_default().push(ip);
    }
    Ok(out)
}
