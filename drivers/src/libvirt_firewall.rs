//! Security groups on guests: one libvirt nwfilter per NIC, named as Nova's libvirt firewall
//! named them (`nova-instance-<domain>-<mac hex>`), referenced by the NIC's `<filterref>`.
//! Redefining a filter (same name and UUID) changes the running guest's rules at once, so a
//! group or rule change is a redefinition, never a domain change. The filter is written whole
//! from the port's resolved rules: its MAC and address only out of it (anti-spoofing), DHCP,
//! what its groups allow (libvirt's rules are stateful: replies pass), and a drop of the rest.
//! Protocols nwfilter has no element for (GRE, a bare number) are left out: narrower, never
//! wider, than the group asks.

use crate::libvirt::esc;
use nova_core::firewall::{Direction, FirewallRule, PortFirewall};
use std::fmt::Write as _;

/// The filter of a guest's NIC (`instance-<uuid>`, its MAC).
pub fn filter_name(domain: &str, mac: &str) -> String {
    let hex: String = mac.chars().filter(char::is_ascii_hexdigit).collect();
    format!("nova-instance-{domain}-{}", hex.to_ascii_lowercase())
}

/// nwfilter's element for a rule's protocol and family, if it has one.
fn element(protocol: Option<&str>, family: u8) -> Option<&'static str> {
    Some(match (protocol, family) {
        (None, 4) => "all",
        (None, _) => "all-ipv6",
        (Some("tcp"), 4) => "tcp",
        (Some("udp"), 4) => "udp",
        (Some("sctp"), 4) => "sctp",
        (Some("icmp"), 4) => "icmp",
        (Some("50"), 4) => "esp",
        (Some("51"), 4) => "ah",
        (Some("udplite"), 4) => "udplite",
        (Some("tcp"), 6) => "tcp-ipv6",
        (Some("udp"), 6) => "udp-ipv6",
        (Some("sctp"), 6) => "sctp-ipv6",
        (Some("ipv6-icmp"), 6) => "icmpv6",
        (Some("50"), 6) => "esp-ipv6",
        (Some("51"), 6) => "ah-ipv6",
        (Some("udplite"), 6) => "udplite-ipv6",
        _ => return None,
    })
}

/// A CIDR as nwfilter's address and mask attributes.
fn address_attrs(prefix: &str, which: &str) -> String {
    let (ip, len) = prefix.split_once('/').unwrap_or((prefix, ""));
    let mut a = format!(" {which}ipaddr='{}'", esc(ip));
    if !len.is_empty() {
        let _ = write!(a, " {which}ipmask='{}'", esc(len));
    }
    a
}

fn rule_xml(r: &FirewallRule) -> Option<String> {
    let Some(el) = element(r.protocol.as_deref(), r.ethertype) else {
        tracing::warn!(protocol = ?r.protocol, "a security group rule nwfilter cannot express; left out");
        return None;
    };
    let (direction, which) = match r.direction {
        Direction::Ingress => ("in", "src"),
        Direction::Egress => ("out", "dst"),
    };
    let mut attrs = String::new();
    if let Some(remote) = &r.remote {
        attrs.push_str(&address_attrs(remote, which));
    }
    match (el, r.port_min) {
        ("icmp" | "icmpv6", Some(t)) => {
            let _ = write!(attrs, " type='{t}'");
            if let Some(c) = r.port_max {
                let _ = write!(attrs, " code='{c}'");
            }
        }
        (
            "tcp" | "udp" | "sctp" | "udplite" | "tcp-ipv6" | "udp-ipv6" | "sctp-ipv6"
            | "udplite-ipv6",
            Some(min),
        ) => {
            let max = r.port_max.unwrap_or(min);
            let _ = write!(attrs, " dstportstart='{min}' dstportend='{max}'");
        }
        _ => {}
    }
    Some(format!(
        "  <rule action='accept' direction='{direction}' priority='300'><{el}{attrs}/></rule>\n"
    ))
}

/// The filter of one NIC. Port security off: a filter with no rules (nothing filtered), so
/// that turning it on later is a redefinition too.
pub fn filter_xml(name: &str, port: &PortFirewall) -> String {
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes());
    let mut x = format!(
        "<filter name='{}' chain='root'>\n  <uuid>{uuid}</uuid>\n",
        esc(name)
    );
    if port.enabled {
        let v4: Vec<&String> = port.ips.iter().filter(|ip| !ip.contains(':')).collect();
        let has_v6 = port.ips.iter().any(|ip| ip.contains(':'));
        // Only its own MAC leaves it (ebtables).
        let _ = writeln!(
            x,
            "  <rule action='drop' direction='out' priority='-700'><mac match='no' srcmacaddr='{}'/></rule>",
            esc(&port.mac)
        );
        // DHCP: the client's requests out, the subnets' DHCP servers' answers in.
        x.push_str(
            "  <rule action='accept' direction='out' priority='100'><udp srcportstart='68' dstportstart='67'/></rule>\n",
        );
        for server in &port.dhcp_servers {
            if !server.contains(':') {
                let _ = writeln!(
                    x,
                    "  <rule action='accept' direction='in' priority='100'><udp srcipaddr='{}' srcportstart='67' dstportstart='68'/></rule>",
                    esc(server)
                );
            }
        }
        // Only its own IPv4 address leaves it (one address: nwfilter's negated match takes
        // one value).
        if let [ip] = v4.as_slice() {
            let _ = writeln!(
                x,
                "  <rule action='drop' direction='out' priority='200'><all match='no' srcipaddr='{}'/></rule>",
                esc(ip)
            );
        }
        if has_v6 {
            // Neighbour discovery, which IPv6 needs to work at all (Neutron's allowed ICMPv6:
            // MLD queries, router advertisements, solicitations and advertisements in; out all
            // but router advertisements, which a guest may not send).
            for t in [130, 134, 135, 136] {
                let _ = writeln!(
                    x,
                    "  <rule action='accept' direction='in' priority='200'><icmpv6 type='{t}'/></rule>"
                );
            }
            x.push_str(
                "  <rule action='drop' direction='out' priority='190'><icmpv6 type='134'/></rule>\n",
            );
            x.push_str("  <rule action='accept' direction='out' priority='200'><icmpv6/></rule>\n");
        }
        for r in &port.rules {
            if let Some(rule) = rule_xml(r) {
                x.push_str(&rule);
            }
        }
        x.push_str("  <rule action='drop' direction='inout' priority='1000'><all/></rule>\n");
        x.push_str("  <rule action='drop' direction='inout' priority='1000'><all-ipv6/></rule>\n");
    }
    x.push_str("</filter>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nic_filter_holds_its_groups_rules() {
        let port = PortFirewall {
            port_id: "p".into(),
            instance: "i".into(),
            mac: "fa:16:3e:11:22:33".into(),
            ips: vec!["10.0.0.5".into()],
            dhcp_servers: vec!["10.0.0.1".into()],
            enabled: true,
            rules: vec![
                FirewallRule {
                    direction: Direction::Ingress,
                    ethertype: 4,
                    protocol: Some("tcp".into()),
                    port_min: Some(22),
                    port_max: Some(22),
                    remote: None,
                },
                FirewallRule {
                    direction: Direction::Ingress,
                    ethertype: 4,
                    protocol: None,
                    port_min: None,
                    port_max: None,
                    remote: Some("10.0.0.7/32".into()),
                },
                FirewallRule {
                    direction: Direction::Ingress,
                    ethertype: 4,
                    protocol: Some("icmp".into()),
                    port_min: Some(8),
                    port_max: Some(0),
                    remote: Some("192.168.0.0/16".into()),
                },
                FirewallRule {
                    direction: Direction::Egress,
                    ethertype: 4,
                    protocol: Some("gre".into()),
                    port_min: None,
                    port_max: None,
                    remote: None,
                },
            ],
        };
        let name = filter_name("instance-6b1c", "fa:16:3e:11:22:33");
        assert_eq!(name, "nova-instance-instance-6b1c-fa163e112233");
        let x = filter_xml(&name, &port);
        for want in [
            "<filter name='nova-instance-instance-6b1c-fa163e112233' chain='root'>",
            "<tcp dstportstart='22' dstportend='22'/>",
            "<all srcipaddr='10.0.0.7' srcipmask='32'/>",
            "<icmp srcipaddr='192.168.0.0' srcipmask='16' type='8' code='0'/>",
            "<udp srcipaddr='10.0.0.1' srcportstart='67' dstportstart='68'/>",
            "<all match='no' srcipaddr='10.0.0.5'/>",
            "<rule action='drop' direction='inout' priority='1000'><all/></rule>",
        ] {
            assert!(x.contains(want), "missing {want} in\n{x}");
        }
        assert!(!x.contains("gre"), "{x}");
        let mut off = port.clone();
        off.enabled = false;
        assert!(!filter_xml(&name, &off).contains("<rule"));
    }
}
