//! A port's packet filter as its host enforces it: the rules of its security groups resolved
//! to addresses, as Neutron's server hands them to its agents (remote groups expanded to their
//! members' addresses, the port's own skipped; `securitygroups_rpc_base.py`). The conductor
//! computes it; the drivers turn it into iptables chains (Docker) or an nwfilter (libvirt).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One port's filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFirewall {
    pub port_id: String,
    /// The server the port is bound to.
    pub instance: String,
    pub mac: String,
    /// The port's own addresses (no prefix): only these may leave it (anti-spoofing).
    pub ips: Vec<String>,
    /// The DHCP servers of its subnets (their gateways, where libvirt's dnsmasq answers).
    #[serde(default)]
    pub dhcp_servers: Vec<String>,
    /// Port security: off, nothing is filtered.
    pub enabled: bool,
    /// What is let through; everything else to or from the port is dropped (stateful: the
    /// replies of an allowed connection pass).
    pub rules: Vec<FirewallRule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ingress,
    Egress,
}

/// One allowed flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FirewallRule {
    pub direction: Direction,
    /// 4 or 6.
    pub ethertype: u8,
    /// A protocol name as iptables knows it (`tcp`, `udp`, `icmp`, `ipv6-icmp`, …) or a
    /// number; none: any.
    pub protocol: Option<String>,
    /// Ports (TCP, UDP, SCTP), or the ICMP type (`port_min`) and code (`port_max`).
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    /// The other end: a CIDR; none: anywhere.
    pub remote: Option<String>,
}

/// A security group rule as stored (Neutron's attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRule {
    pub direction: Direction,
    pub ethertype: u8,
    pub protocol: Option<String>,
    pub port_range_min: Option<i64>,
    pub port_range_max: Option<i64>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
}

/// Neutron's protocol names and their numbers (`neutron_lib.constants.IP_PROTOCOL_MAP`, with
/// `ip` and the legacy `icmpv6`).
pub const PROTOCOLS: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ip", 0),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// A protocol's number, whether given by name (any case) or number.
pub fn protocol_number(p: &str) -> Option<u8> {
    let lower = p.to_ascii_lowercase();
    PROTOCOLS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, n)| *n)
        .or_else(|| lower.parse::<u8>().ok())
}

/// A rule's protocol as the filters take it: none for any; the name for those with ports or
/// ICMP types (`tcp`, `udp`, `sctp`, `dccp`, `udplite`, `icmp`, `ipv6-icmp`); otherwise the
/// number (names differ between `/etc/protocols` and Neutron: `ipv6-encap`, `ipip`, `pgm`).
fn canonical_protocol(protocol: &str, ethertype: u8) -> Option<String> {
    let lower = protocol.to_ascii_lowercase();
    if lower == "any" {
        return None;
    }
    let Some(number) = protocol_number(&lower) else {
        // Not Neutron's (the API refuses those): as given.
        return Some(lower);
    };
    Some(
        match (number, ethertype) {
            (0, _) => return None,
            (6, _) => "tcp",
            (17, _) => "udp",
            (132, _) => "sctp",
            (33, _) => "dccp",
            (136, _) => "udplite",
            (1, 4) => "icmp",
            // Neutron's legacy spelling of ICMPv6 in an IPv6 rule.
            (1 | 58, 6) => "ipv6-icmp",
            (n, _) => return Some(n.to_string()),
        }
        .to_owned(),
    )
}

/// A port's allowed flows: each rule of its groups, a remote group's as one rule per member
/// address of the rule's family (none when the group has no other member), a `/0` prefix as
/// "anywhere"; sorted, without duplicates (several groups may allow the same).
pub fn expand(
    own_ips: &[String],
    rules: &[GroupRule],
    members: &BTreeMap<String, Vec<String>>,
) -> Vec<FirewallRule> {
    let mut out: BTreeSet<FirewallRule> = BTreeSet::new();
    for r in rules {
        let protocol = r
            .protocol
            .as_deref()
            .and_then(|p| canonical_protocol(p, r.ethertype));
        let port = |v: Option<i64>| v.and_then(|v| u16::try_from(v).ok());
        let base = FirewallRule {
            direction: r.direction,
            ethertype: r.ethertype,
            protocol,
            port_min: port(r.port_range_min),
            port_max: port(r.port_range_max),
            remote: None,
        };
        let family = |ip: &str| {
            if ip.contains(':') {
                6
            } else {
                4
            }
        };
        match (&r.remote_group_id, &r.remote_ip_prefix) {
            (Some(group), _) => {
                for ip in members.get(group).into_iter().flatten() {
                    if family(ip) != r.ethertype || own_ips.contains(ip) {
                        continue;
                    }
                    let len = if r.ethertype == 4 { 32 } else { 128 };
                    out.insert(FirewallRule {
                        remote: Some(format!("{ip}/{len}")),
                        ..base.clone()
                    });
                }
            }
            (None, Some(prefix)) if !prefix.ends_with("/0") => {
                out.insert(FirewallRule {
                    remote: Some(prefix.clone()),
                    ..base
                });
            }
            (None, _) => {
                out.insert(base);
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(direction: Direction, ethertype: u8) -> GroupRule {
        GroupRule {
            direction,
            ethertype,
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: None,
        }
    }

    #[test]
    fn remote_groups_become_their_other_members_of_the_family() {
        let own = vec!["10.0.0.5".to_owned()];
        let members = BTreeMap::from([(
            "g".to_owned(),
            vec!["10.0.0.5".into(), "10.0.0.7".into(), "fd00::7".into()],
        )]);
        let rules = [
            GroupRule {
                remote_group_id: Some("g".into()),
                ..rule(Direction::Ingress, 4)
            },
            GroupRule {
                remote_group_id: Some("empty".into()),
                ..rule(Direction::Ingress, 4)
            },
            rule(Direction::Egress, 4),
        ];
        let out = expand(&own, &rules, &members);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].remote.as_deref(), Some("10.0.0.7/32"));
        assert_eq!(out[1].direction, Direction::Egress);
        assert_eq!(out[1].remote, None);
    }

    #[test]
    fn protocols_and_prefixes_are_normalised_and_deduplicated() {
        let rules = [
            GroupRule {
                protocol: Some("6".into()),
                port_range_min: Some(22),
                port_range_max: Some(22),
                remote_ip_prefix: Some("0.0.0.0/0".into()),
                ..rule(Direction::Ingress, 4)
            },
            GroupRule {
                protocol: Some("tcp".into()),
                port_range_min: Some(22),
                port_range_max: Some(22),
                ..rule(Direction::Ingress, 4)
            },
            GroupRule {
                protocol: Some("icmp".into()),
                remote_ip_prefix: Some("2001:db8::/32".into()),
                ..rule(Direction::Ingress, 6)
            },
        ];
        let out = expand(&[], &rules, &BTreeMap::new());
        assert_eq!(out.len(), 2, "{out:?}");
        let numbered = expand(
            &[],
            &[GroupRule {
                protocol: Some("ipv6-encap".into()),
                ..rule(Direction::Ingress, 4)
            }],
            &BTreeMap::new(),
        );
        assert_eq!(numbered[0].protocol.as_deref(), Some("41"));
        assert_eq!(out[0].protocol.as_deref(), Some("tcp"));
        assert_eq!(out[0].remote, None);
        assert_eq!(out[1].protocol.as_deref(), Some("ipv6-icmp"));
        assert_eq!(out[1].remote.as_deref(), Some("2001:db8::/32"));
    }
}
