//! A guest's NICs on ports: the libvirt network a port's subnet needs (defined, isolated, with
//! the subnet's gateway as its address, when the host lacks it), and the static DHCP entry
//! (MAC → address) that makes libvirt's dnsmasq hand the guest its port's IPv4 address. The
//! entries go with the domain.

use crate::libvirt::esc;
use crate::DriverError;
use nova_core::ipam;
use nova_core::rpc::{InstanceSpec, Nic, NicIp};
use virt::connect::Connect;
use virt::network::Network;
use virt::sys;

/// The port of each chosen network (the guest's NICs, in order), where it has one.
pub fn nics_of(spec: &InstanceSpec) -> Vec<Option<Nic>> {
    spec.nics_by_choice()
        .into_iter()
        .map(|n| n.cloned())
        .collect()
}

fn backend(what: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Backend(format!("{what}: {e}"))
}

/// The port's IPv4 address, the one DHCP hands out (IPv6 here is stateful: libvirt's dnsmasq
/// serves it from the same kind of entry, not done yet).
fn ipv4(nic: &Nic) -> Option<&NicIp> {
    nic.ips.iter().find(|ip| ip.version == 4)
}

/// Whether one of the network's `<ip>` elements holds `address` (its address and prefix, or
/// netmask, as libvirt writes them).
fn network_holds(xml: &str, address: &str) -> bool {
    let Ok(wanted) = address.parse::<std::net::IpAddr>() else {
        return false;
    };
    let mut rest = xml;
    while let Some(start) = rest.find("<ip ") {
        let tag = &rest[start..rest[start..].find('>').map_or(rest.len(), |e| start + e)];
        let attr = |name: &str| {
            let key = format!("{name}='");
            let i = tag.find(&key)? + key.len();
            let j = tag[i..].find('\'')?;
            Some(tag[i..i + j].to_owned())
        };
        let prefix = attr("prefix")
            .and_then(|p| p.parse::<u8>().ok())
            .or_else(|| {
                attr("netmask")
                    .and_then(|m| m.parse::<std::net::Ipv4Addr>().ok())
                    .and_then(|m| u8::try_from(u32::from(m).count_ones()).ok())
            });
        if let (Some(ip), Some(prefix)) = (attr("address"), prefix) {
            if let Some(net) = ipam::parse_cidr(&format!("{ip}/{prefix}")) {
                if net.contains(&wanted) {
                    return true;
                }
            }
        }
        rest = &rest[start + 4..];
    }
    false
}

/// Makes sure the libvirt network `name` serves the port's IPv4 subnet: defines and starts it
/// (isolated: no forwarding off the host; the subnet's gateway as its address; DHCP with
/// static entries only) when the host lacks it, refuses one that exists without the subnet.
pub fn ensure_network(conn: &Connect, name: &str, nic: &Nic) -> Result<(), DriverError> {
    let Some(ip) = ipv4(nic) else {
        return Ok(());
    };
    match Network::lookup_by_name(conn, name) {
        Ok(net) => {
            let xml = net
                .get_xml_desc(0)
                .map_err(|e| backend("network description", e))?;
            if !network_holds(&xml, &ip.address) {
                return Err(DriverError::Invalid(format!(
                    "the libvirt network {name} exists on this host without the subnet {}: a \
                     guest on it cannot take the address {}",
                    ip.cidr, ip.address
                )));
            }
            if !net.is_active().unwrap_or(false) {
                net.create().map_err(|e| backend("network start", e))?;
            }
            Ok(())
        }
        Err(e) if e.code() == virt::error::ErrorNumber::NoNetwork => {
            let Some(gateway) = &ip.gateway else {
                return Err(DriverError::Invalid(format!(
                    "the subnet {} has no gateway: a libvirt network for it needs one as the \
                     host's address",
                    ip.cidr
                )));
            };
            let xml = format!(
                "<network>\n  <name>{}</name>\n  <ip address='{gateway}' prefix='{}'>\n    \
                 <dhcp/>\n  </ip>\n</network>\n",
                esc(name),
                ip.prefix_len()
            );
            let net = match Network::define_xml(conn, &xml) {
                Ok(net) => net,
                // Defined meanwhile by a concurrent spawn: check it as found.
                Err(_) if Network::lookup_by_name(conn, name).is_ok() => {
                    return ensure_network(conn, name, nic)
                }
                Err(e) => return Err(backend("network define", e)),
            };
            let _ = net.set_autostart(true);
            if let Err(e) = net.create() {
                if !net.is_active().unwrap_or(false) {
                    return Err(backend("network start", e));
                }
            }
            tracing::info!(network = name, cidr = %ip.cidr, "libvirt network made for its subnet");
            Ok(())
        }
        Err(e) => Err(backend("network lookup", e)),
    }
}

const AFFECT: u32 = sys::VIR_NETWORK_UPDATE_AFFECT_LIVE | sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG;

/// The static DHCP entry of the port (its MAC → its IPv4 address), replacing any the MAC or the
/// address had.
pub fn add_dhcp_host(conn: &Connect, name: &str, nic: &Nic) -> Result<(), DriverError> {
    let Some(ip) = ipv4(nic) else {
        return Ok(());
    };
    let net = Network::lookup_by_name(conn, name).map_err(|e| backend("network lookup", e))?;
    // Whatever entry holds the MAC or the address (one a failed build or an earlier port left)
    // gives way: the port is the address's holder now.
    remove_dhcp_host_of(&net, &nic.mac);
    let _ = net.update(
        sys::VIR_NETWORK_UPDATE_COMMAND_DELETE,
        sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        &format!("<host ip='{}'/>", esc(&ip.address)),
        AFFECT,
    );
    let host = format!("<host mac='{}' ip='{}'/>", esc(&nic.mac), esc(&ip.address));
    net.update(
        sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        &host,
        AFFECT,
    )
    .map_err(|e| backend("DHCP host entry", e))
}

fn remove_dhcp_host_of(net: &Network, mac: &str) {
    let _ = net.update(
        sys::VIR_NETWORK_UPDATE_COMMAND_DELETE,
        sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        &format!("<host mac='{}'/>", esc(mac)),
        AFFECT,
    );
}

/// Removes the static DHCP entries of a domain's NICs (`(mac, network)`), if they have any.
pub fn remove_dhcp_hosts(conn: &Connect, nics: &[(String, String)]) {
    for (mac, network) in nics {
        if let Ok(net) = Network::lookup_by_name(conn, network) {
            if net
                .get_xml_desc(0)
                .is_ok_and(|x| x.contains(&format!("mac='{mac}'")))
            {
                remove_dhcp_host_of(&net, mac);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_holds_the_addresses_of_its_ip_elements() {
        let xml = "<network><ip address='192.168.122.1' netmask='255.255.255.0'><dhcp/></ip>\
                   <ip family='ipv6' address='fd00::1' prefix='64'/></network>";
        assert!(network_holds(xml, "192.168.122.50"));
        assert!(network_holds(xml, "fd00::9"));
        assert!(!network_holds(xml, "192.168.123.5"));
        assert!(!network_holds("<network/>", "10.0.0.1"));
    }
}
