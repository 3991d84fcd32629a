//! Subnet address arithmetic, as Neutron's IPAM has it (neutron/ipam/utils.py and the checks
//! of ipam_backend_mixin.py): a subnet's usable range, its default gateway and allocation
//! pools, the validation of pools and requested addresses, and the choice of a free address.
//! Pure functions over `u128` addresses; the database keeps the allocations and their
//! uniqueness (`nova_db::ports`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ipnet::IpNet;

/// An address as a number, IPv4 in the low 32 bits.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of a number, in the family of `like`.
pub fn from_u128(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    }
}

pub fn version_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

/// A range of addresses, both ends included (Neutron's allocation pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pool {
    pub start: IpAddr,
    pub end: IpAddr,
}

impl Pool {
    fn bounds(&self) -> (u128, u128) {
        (to_u128(self.start), to_u128(self.end))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (s, e) = self.bounds();
        version_of(ip) == version_of(self.start) && (s..=e).contains(&to_u128(ip))
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u128 {
        let (s, e) = self.bounds();
        e.saturating_sub(s) + 1
    }
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A CIDR as Neutron takes it: a valid prefix, normalised to its network address
/// (`10.0.0.5/24` is `10.0.0.0/24`). `None` for anything that is not a CIDR.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().map(|n| n.trunc())
}

fn first_last(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// The addresses pools may hold (ipam_backend_mixin's validate_allocation_pools): IPv4 without
/// its network and broadcast addresses (a /31 and a /32 keep both), IPv6 without the
/// network address (the subnet-router anycast address; IPv6 has no broadcast).
pub fn usable_range(net: &IpNet) -> (u128, u128) {
    let (first, last) = first_last(net);
    match net {
        IpNet::V4(_) if net.prefix_len() >= 31 => (first, last),
        IpNet::V4(_) => (first + 1, last - 1),
        IpNet::V6(_) if net.prefix_len() == 128 => (first, last),
        IpNet::V6(_) => (first + 1, last),
    }
}

/// Neutron's default gateway: the first address after the network's for IPv4, the network
/// address itself for IPv6 (ipam_backend_mixin.py, since 2019).
pub fn default_gateway(net: &IpNet) -> IpAddr {
    let (first, _) = first_last(net);
    match net {
        IpNet::V4(_) => from_u128(first.saturating_add(1).min(u128::from(u32::MAX)), false),
        IpNet::V6(_) => from_u128(first, true),
    }
}

/// The default pools (generate_pools): the usable range without the gateway.
pub fn default_pools(net: &IpNet, gateway: Option<IpAddr>) -> Vec<Pool> {
    let v6 = matches!(net, IpNet::V6(_));
    let (lo, hi) = usable_range(net);
    let mut ranges = vec![(lo, hi)];
    if let Some(g) = gateway.filter(|g| version_of(*g) == version_of(net.network())) {
        let g = to_u128(g);
        if (lo..=hi).contains(&g) {
            ranges.clear();
            if g > lo {
                ranges.push((lo, g - 1));
            }
            if g < hi {
                ranges.push((g + 1, hi));
            }
        }
    }
    ranges
        .into_iter()
        .map(|(s, e)| Pool {
            start: from_u128(s, v6),
            end: from_u128(e, v6),
        })
        .collect()
}

/// Why a subnet's addresses were refused, with Neutron's exception name and words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Neutron's exception class name (its fault body's `type`).
    pub kind: &'static str,
    /// 409 rather than 400.
    pub conflict: bool,
    pub message: String,
}

fn bad(kind: &'static str, message: String) -> Refusal {
    Refusal {
        kind,
        conflict: false,
        message,
    }
}

fn conflict(kind: &'static str, message: String) -> Refusal {
    Refusal {
        kind,
        conflict: true,
        message,
    }
}

/// Neutron's checks of explicit pools, in its order: each one a range of the subnet's family
/// within the usable range, no two overlapping, and the gateway in none of them.
pub fn validate_pools(net: &IpNet, pools: &[Pool], gateway: Option<IpAddr>) -> Result<(), Refusal> {
    let family = version_of(net.network());
    let (lo, hi) = usable_range(net);
    for p in pools {
        if version_of(p.start) != family || version_of(p.end) != family {
            return Err(bad(
                "InvalidAllocationPool",
                format!("The allocation pool {p} is not valid."),
            ));
        }
        let (s, e) = p.bounds();
        if s > e {
            return Err(bad(
                "InvalidAllocationPool",
                format!(
                    "The allocation pool {{'start': '{}', 'end': '{}'}} is not valid.",
                    p.start, p.end
                ),
            ));
        }
        if s < lo || e > hi {
            return Err(bad(
                "OutOfBoundsAllocationPool",
                format!("The allocation pool {p} spans beyond the subnet cidr {net}."),
            ));
        }
    }
    let mut sorted: Vec<&Pool> = pools.iter().collect();
    sorted.sort_by_key(|p| p.bounds());
    for pair in sorted.windows(2) {
        if pair[1].bounds().0 <= pair[0].bounds().1 {
            return Err(conflict(
                "OverlappingAllocationPools",
                format!(
                    "Found overlapping allocation pools: {} {} for subnet {net}.",
                    pair[0], pair[1]
                ),
            ));
        }
    }
    if let Some(g) = gateway {
        if let Some(p) = pools.iter().find(|p| p.contains(g)) {
            return Err(conflict(
                "GatewayConflictWithAllocationPools",
                format!("Gateway ip {g} conflicts with allocation pool {p}."),
            ));
        }
    }
    Ok(())
}

/// Whether a port may hold `ip` on the subnet (Neutron's check_subnet_ip): inside the CIDR and,
/// for IPv4 subnets larger than a /31, neither the network nor the broadcast address (for
/// IPv6, not the network address, which is for routers). It need
/// not be in a pool, and may even be the gateway, as in Neutron.
pub fn check_subnet_ip(net: &IpNet, ip: IpAddr) -> bool {
    if version_of(ip) != version_of(net.network()) || !net.contains(&ip) {
        return false;
    }
    let (first, last) = first_last(net);
    let n = to_u128(ip);
    match net {
        IpNet::V4(_) if net.prefix_len() < 31 => n != first && n != last,
        // IPv6's network address is the subnet-router anycast address, for routers only
        // (there are none here).
        IpNet::V6(_) if net.prefix_len() < 128 => n != first,
        _ => true,
    }
}

/// How many of the first free addresses a choice is made among (Neutron's MAX_WIN): random,
/// so that an address just freed is not handed out again at once, and concurrent allocators
/// on a big subnet rarely pick the same one.
pub const WINDOW: usize = 1000;

/// A free address of the pools, not in `taken`: one of the first [`WINDOW`] free ones, chosen
/// by `random`; `None` when the pools are full. Steps over at most `WINDOW + taken.len()`
/// addresses, whatever the pools' size.
pub fn pick_free(pools: &[Pool], taken: &BTreeSet<u128>, random: u128) -> Option<IpAddr> {
    let v6 = pools.first().is_some_and(|p| p.start.is_ipv6());
    let mut free = Vec::new();
    let mut ranges: Vec<(u128, u128)> = pools.iter().map(Pool::bounds).collect();
    ranges.sort_unstable();
    'pools: for (s, e) in ranges {
        let mut taken_here = taken.range(s..=e).peekable();
        let mut n = s;
        loop {
            while taken_here.peek().is_some_and(|t| **t < n) {
                taken_here.next();
            }
            if taken_here.peek() != Some(&&n) {
                free.push(n);
                if free.len() == WINDOW {
                    break 'pools;
                }
            }
            if n == e {
                break;
            }
            n += 1;
        }
    }
    if free.is_empty() {
        return None;
    }
    let i = usize::try_from(random % free.len() as u128).unwrap_or(0);
    Some(from_u128(free[i], v6))
}

/// How many addresses the pools hold outside `taken` (capped at `u64::MAX`).
pub fn free_count(pools: &[Pool], taken: &BTreeSet<u128>) -> u64 {
    let total: u128 = pools.iter().map(Pool::size).sum();
    let used = pools
        .iter()
        .map(|p| taken.range(p.bounds().0..=p.bounds().1).count() as u128)
        .sum::<u128>();
    u64::try_from(total.saturating_sub(used)).unwrap_or(u64::MAX)
}

/// A random MAC address under Neutron's base `fa:16:3e:00:00:00` (the OUI kept, the rest
/// random), lowercase with colons, as Neutron writes them.
pub fn random_mac(random: u128) -> String {
    let b = random.to_be_bytes();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// A MAC address in Neutron's form (lowercase, colon-separated), from any of the usual
/// spellings (colons, dashes, or none); `None` if it is not a unicast-or-multicast EUI-48.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    let octets: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
    Some(octets.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(s: &str, e: &str) -> Pool {
        Pool {
            start: ip(s),
            end: ip(e),
        }
    }

    #[test]
    fn defaults_are_neutrons() {
        let net = parse_cidr("10.0.0.5/28").unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/28");
        let gw = default_gateway(&net);
        assert_eq!(gw, ip("10.0.0.1"));
        assert_eq!(
            default_pools(&net, Some(gw)),
            vec![pool("10.0.0.2", "10.0.0.14")]
        );
        // A gateway in the middle splits the range; none leaves it whole.
        assert_eq!(
            default_pools(&net, Some(ip("10.0.0.8"))),
            vec![pool("10.0.0.1", "10.0.0.7"), pool("10.0.0.9", "10.0.0.14")]
        );
        assert_eq!(
            default_pools(&net, None),
            vec![pool("10.0.0.1", "10.0.0.14")]
        );
        let v6 = parse_cidr("2001:db8::/64").unwrap();
        assert_eq!(default_gateway(&v6), ip("2001:db8::"));
        assert_eq!(
            default_pools(&v6, Some(default_gateway(&v6))),
            vec![pool("2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff")]
        );
        let p31 = parse_cidr("10.0.0.0/31").unwrap();
        assert_eq!(
            default_pools(&p31, Some(default_gateway(&p31))),
            vec![pool("10.0.0.0", "10.0.0.0")]
        );
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("foo").is_none());
    }

    #[test]
    fn pools_are_checked_as_neutron_checks_them() {
        let net = parse_cidr("10.0.0.0/24").unwrap();
        let gw = Some(ip("10.0.0.1"));
        assert!(validate_pools(&net, &[pool("10.0.0.10", "10.0.0.20")], gw).is_ok());
        let out = validate_pools(&net, &[pool("10.0.0.10", "10.0.1.20")], gw).unwrap_err();
        assert_eq!(out.kind, "OutOfBoundsAllocationPool");
        assert_eq!(
            out.message,
            "The allocation pool 10.0.0.10-10.0.1.20 spans beyond the subnet cidr 10.0.0.0/24."
        );
        let bcast = validate_pools(&net, &[pool("10.0.0.10", "10.0.0.255")], gw).unwrap_err();
        assert_eq!(bcast.kind, "OutOfBoundsAllocationPool");
        let gwc = validate_pools(&net, &[pool("10.0.0.1", "10.0.0.20")], gw).unwrap_err();
        assert!(gwc.conflict);
        assert_eq!(
            gwc.message,
            "Gateway ip 10.0.0.1 conflicts with allocation pool 10.0.0.1-10.0.0.20."
        );
        let over = validate_pools(
            &net,
            &[
                pool("10.0.0.30", "10.0.0.40"),
                pool("10.0.0.10", "10.0.0.30"),
            ],
            gw,
        )
        .unwrap_err();
        assert_eq!(over.kind, "OverlappingAllocationPools");
        assert!(over.conflict);
        let reversed = validate_pools(&net, &[pool("10.0.0.9", "10.0.0.3")], gw).unwrap_err();
        assert_eq!(reversed.kind, "InvalidAllocationPool");
    }

    #[test]
    fn requested_addresses_follow_check_subnet_ip() {
        let net = parse_cidr("10.0.0.0/28").unwrap();
        assert!(check_subnet_ip(&net, ip("10.0.0.1")));
        assert!(check_subnet_ip(&net, ip("10.0.0.14")));
        assert!(!check_subnet_ip(&net, ip("10.0.0.0")));
        assert!(!check_subnet_ip(&net, ip("10.0.0.15")));
        assert!(!check_subnet_ip(&net, ip("10.0.0.16")));
        assert!(!check_subnet_ip(&net, ip("::1")));
        let v6 = parse_cidr("fd00::/64").unwrap();
        assert!(!check_subnet_ip(&v6, ip("fd00::")));
        assert!(check_subnet_ip(&v6, ip("fd00::1")));
    }

    #[test]
    fn a_free_address_is_found_until_the_pools_are_full() {
        let pools = [pool("10.0.0.2", "10.0.0.4"), pool("10.0.0.8", "10.0.0.8")];
        let mut taken = BTreeSet::new();
        for r in [7u128, 0, 3, 1] {
            let got = pick_free(&pools, &taken, r).expect("a free address");
            assert!(pools.iter().any(|p| p.contains(got)));
            assert!(taken.insert(to_u128(got)), "{got} given twice");
        }
        assert_eq!(free_count(&pools, &taken), 0);
        assert_eq!(pick_free(&pools, &taken, 5), None);
        // The window bounds the work on a big subnet.
        let big = [pool("10.0.0.1", "10.255.255.254")];
        let got = pick_free(&big, &BTreeSet::new(), 123_456).unwrap();
        assert!(to_u128(got) <= to_u128(ip("10.0.0.1")) + WINDOW as u128);
    }

    #[test]
    fn macs_are_neutrons_form() {
        assert_eq!(random_mac(0), "fa:16:3e:00:00:00");
        assert_eq!(
            normalize_mac("FA-16-3E-AA-BB-0C").as_deref(),
            Some("fa:16:3e:aa:bb:0c")
        );
        assert_eq!(
            normalize_mac("fa16.3eaa.bb0c").as_deref(),
            Some("fa:16:3e:aa:bb:0c")
        );
        assert_eq!(normalize_mac("fa:16:3e:aa:bb"), None);
        assert_eq!(normalize_mac("zz:16:3e:aa:bb:0c"), None);
    }
}
