//! Security groups on containers: the host's packet filter, keyed to each port's addresses, as
//! Neutron's iptables firewall driver does it for a VM's tap (`iptables_firewall.py`). Per
//! port three chains (`nova-i…` ingress, `nova-o…` egress, `nova-s…` anti-spoofing; names from
//! the port id, ≤ 28 characters as iptables wants), reached from one dispatcher chain that
//! Docker's `DOCKER-USER` jumps to (its documented place for user rules, run before Docker's
//! own). What a port's groups allow RETURNs (and goes on to Docker's rules); the rest is
//! dropped. Replies of allowed connections pass (conntrack), as Neutron's stateful groups.
//!
//! The whole state is written in one `iptables-restore --noflush` (`ip6tables-restore` for
//! IPv6): the chains it names are flushed and refilled at once, chains of ports that went are
//! deleted in the same transaction, and a bad line changes nothing. Bridged traffic between
//! two containers of one engine network reaches iptables only with `br_netfilter`
//! (`net.bridge.bridge-nf-call-iptables = 1`), which the engine sets; the filter warns if not.

use crate::DriverError;
use nova_core::firewall::{Direction, FirewallRule, PortFirewall};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use tokio::sync::Mutex;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct FirewallSettings {
    /// Enforce security groups in the host's packet filter. Off: ports are not filtered here
    /// (Neutron's noop firewall driver), whatever their groups say.
    pub enabled: bool,
    /// The dispatcher chain (one per host; two agents on one host need two names).
    pub chain: String,
    /// The chain that jumps to the dispatcher, first: Docker's `DOCKER-USER` (`FORWARD` when
    /// the engine made none, as for IPv6 on engines before 20.10's `ip6tables` option).
    pub hook: String,
    /// A command that runs `iptables` elsewhere: `["ip", "netns", "exec", "<ns>"]` puts the
    /// filter into a network namespace (the tests' own, never the host's).
    pub command_prefix: Vec<String>,
}

impl Default for FirewallSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            chain: "nova-sg".into(),
            hook: "DOCKER-USER".into(),
            command_prefix: Vec::new(),
        }
    }
}

/// A port's chains: `nova-i`, `nova-o`, `nova-s` and the first 20 hex digits of its id.
pub fn chain_names(port_id: &str) -> [String; 3] {
    let hex: String = port_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(20)
        .collect::<String>()
        .to_ascii_lowercase();
    [
        format!("nova-i{hex}"),
        format!("nova-o{hex}"),
        format!("nova-s{hex}"),
    ]
}

fn family_of(ip: &str) -> u8 {
    if ip.contains(':') {
        6
    } else {
        4
    }
}

/// The IPv6 link-local address a MAC gives (EUI-64: `ff:fe` in the middle, the
/// universal/local bit flipped).
pub fn link_local(mac: &str) -> Option<std::net::Ipv6Addr> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let [a, b1, c, d, e, f] = <[u8; 6]>::try_from(b).ok()?;
    let word = |x: u8, y: u8| u16::from(x) << 8 | u16::from(y);
    Some(std::net::Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        word(a ^ 0x02, b1),
        word(c, 0xff),
        word(0xfe, d),
        word(e, f),
    ))
}

/// One allowed flow as iptables arguments (Neutron's `_convert_sgr_to_iptables_rules`).
fn rule_args(r: &FirewallRule) -> String {
    let mut a = String::new();
    if let Some(remote) = &r.remote {
        let flag = match r.direction {
            Direction::Ingress => "-s",
            Direction::Egress => "-d",
        };
        let _ = write!(a, "{flag} {remote} ");
    }
    if let Some(p) = &r.protocol {
        let _ = write!(a, "-p {p} ");
        match (p.as_str(), r.port_min, r.port_max) {
            // (Protocols come canonical from `nova_core::firewall`: these by name, others by
            // number, which every iptables takes.)
            ("tcp" | "udp" | "sctp" | "dccp", Some(min), max) if max.unwrap_or(min) == min => {
                let _ = write!(a, "-m {p} --dport {min} ");
            }
            ("tcp" | "udp" | "sctp" | "dccp" | "udplite", Some(min), max) => {
                let max = max.unwrap_or(min);
                let _ = write!(a, "-m multiport --dports {min}:{max} ");
            }
            ("icmp", Some(t), code) => {
                let _ = write!(a, "-m icmp --icmp-type {t}");
                if let Some(c) = code {
                    let _ = write!(a, "/{c}");
                }
                a.push(' ');
            }
            ("ipv6-icmp", Some(t), code) => {
                let _ = write!(a, "-m icmp6 --icmpv6-type {t}");
                if let Some(c) = code {
                    let _ = write!(a, "/{c}");
                }
                a.push(' ');
            }
            _ => {}
        }
    }
    a.push_str("-j RETURN");
    a
}

/// The `iptables-restore` input (family 4) or `ip6tables-restore` input (6) for these ports,
/// deleting the `stale` chains. `whole`: the ports are all of the host's, and the dispatcher
/// is rewritten with their jumps only; otherwise their jumps are appended to it (its other
/// rules kept).
pub fn render(
    family: u8,
    dispatcher: &str,
    ports: &[&PortFirewall],
    stale: &[String],
    whole: bool,
) -> String {
    let host_len = if family == 4 { 32 } else { 128 };
    let mut declared: Vec<String> = if whole {
        vec![dispatcher.to_owned()]
    } else {
        Vec::new()
    };
    let mut lines: Vec<String> = Vec::new();
    let mut jumps: Vec<String> = Vec::new();
    for p in ports.iter().filter(|p| p.enabled) {
        let ips: Vec<&String> = p.ips.iter().filter(|ip| family_of(ip) == family).collect();
        if ips.is_empty() {
            continue;
        }
        let [i, o, s] = chain_names(&p.port_id);
        declared.extend([i.clone(), o.clone(), s.clone()]);
        for ip in &ips {
            jumps.push(format!("-A {dispatcher} -d {ip}/{host_len} -j {i}"));
        }
        jumps.push(format!(
            "-A {dispatcher} -m mac --mac-source {} -j {o}",
            p.mac.to_ascii_lowercase()
        ));
        for ip in &ips {
            jumps.push(format!("-A {dispatcher} -s {ip}/{host_len} -j {o}"));
        }
        let rules = |d: Direction| {
            p.rules
                .iter()
                .filter(move |r| r.direction == d && r.ethertype == family)
        };
        // Ingress.
        lines.push(format!(
            "-A {i} -m state --state RELATED,ESTABLISHED -j RETURN"
        ));
        if family == 6 {
            // Neighbour discovery and MLD queries (Neutron's ICMPV6_ALLOWED_INGRESS_TYPES).
            for t in [130, 135, 136] {
                lines.push(format!(
                    "-A {i} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j RETURN"
                ));
            }
        }
        for r in rules(Direction::Ingress) {
            lines.push(format!("-A {i} {}", rule_args(r)));
        }
        lines.push(format!("-A {i} -m state --state INVALID -j DROP"));
        lines.push(format!("-A {i} -j DROP"));
        // Egress: DHCP discovery, then only the port's own addresses, no DHCP or router
        // advertisements served, then what the groups allow.
        if family == 4 {
            lines.push(format!(
                "-A {o} -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN"
            ));
        } else {
            // Duplicate address detection and MLD reports from the unspecified address
            // (Neutron's ICMPV6_ALLOWED_UNSPEC_ADDR_TYPES).
            for t in [131, 135, 143] {
                lines.push(format!(
                    "-A {o} -s ::/128 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j RETURN"
                ));
            }
        }
        lines.push(format!("-A {o} -j {s}"));
        if family == 4 {
            lines.push(format!(
                "-A {o} -p udp -m udp --sport 68 --dport 67 -j RETURN"
            ));
            lines.push(format!(
                "-A {o} -p udp -m udp --sport 67 --dport 68 -j DROP"
            ));
        } else {
            lines.push(format!(
                "-A {o} -p ipv6-icmp -m icmp6 --icmpv6-type 134 -j DROP"
            ));
            lines.push(format!("-A {o} -p ipv6-icmp -j RETURN"));
            lines.push(format!(
                "-A {o} -p udp -m udp --sport 547 --dport 546 -j DROP"
            ));
        }
        lines.push(format!(
            "-A {o} -m state --state RELATED,ESTABLISHED -j RETURN"
        ));
        for r in rules(Direction::Egress) {
            lines.push(format!("-A {o} {}", rule_args(r)));
        }
        lines.push(format!("-A {o} -m state --state INVALID -j DROP"));
        lines.push(format!("-A {o} -j DROP"));
        // Anti-spoofing: the port's addresses only. (Not its MAC as well: an engine before
        // API 1.44 gives a container's second network its own MAC, not the port's.)
        for ip in &ips {
            lines.push(format!("-A {s} -s {ip}/{host_len} -j RETURN"));
        }
        if family == 6 {
            // And its link-local address (EUI-64 of its MAC), which neighbour discovery uses.
            if let Some(ll) = link_local(&p.mac) {
                lines.push(format!("-A {s} -s {ll}/128 -j RETURN"));
            }
        }
        lines.push(format!("-A {s} -j DROP"));
    }
    let mut out = String::from("*filter\n");
    for c in declared.iter().chain(stale) {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for l in jumps.iter().chain(&lines) {
        out.push_str(l);
        out.push('\n');
    }
    for c in stale {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    out
}

/// The chains of a dispatcher's listing (`iptables -S <dispatcher>`) that are a port's: those
/// it jumps to, and their anti-spoofing companions.
fn chains_in_listing(listing: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for target in listing
        .lines()
        .filter_map(|l| l.split(" -j ").nth(1))
        .map(str::trim)
    {
        if let Some(hex) = target
            .strip_prefix("nova-i")
            .or_else(|| target.strip_prefix("nova-o"))
        {
            out.insert(format!("nova-i{hex}"));
            out.insert(format!("nova-o{hex}"));
            out.insert(format!("nova-s{hex}"));
        }
    }
    out
}

/// The host's security-group filter for containers: the desired ports, and what was applied.
pub struct Firewall {
    settings: FirewallSettings,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ports: BTreeMap<String, PortFirewall>,
    /// The port chains in the kernel, per family; `None` until read once (after a restart, the
    /// chains the previous agent left are found from the dispatcher).
    applied: [Option<BTreeSet<String>>; 2],
    /// A whole sync has come since the start. Before it, the chains a previous run left are
    /// other ports' (their containers still run): kept and reached, only added to.
    synced: bool,
    /// The dispatcher's jump is in its hook chain, per family.
    hooked: [bool; 2],
}

impl Firewall {
    pub fn new(settings: FirewallSettings) -> Self {
        if settings.enabled {
            match std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables") {
                Ok(v) if v.trim() == "1" => {}
                _ => tracing::warn!(
                    "net.bridge.bridge-nf-call-iptables is not 1 (br_netfilter): traffic \
                     between containers of one engine network bypasses the security groups"
                ),
            }
        }
        Self {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The whole desired state (a sync from the conductor).
    pub async fn replace(&self, ports: &[PortFirewall]) -> Result<(), DriverError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        state.ports = ports
            .iter()
            .map(|p| (p.port_id.clone(), p.clone()))
            .collect();
        state.synced = true;
        self.apply(&mut state).await
    }

    /// A container's ports, before it starts (a build's NICs).
    pub async fn add(&self, ports: &[PortFirewall]) -> Result<(), DriverError> {
        if !self.settings.enabled || ports.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        for p in ports {
            state.ports.insert(p.port_id.clone(), p.clone());
        }
        self.apply(&mut state).await
    }

    /// A container's ports go with it.
    pub async fn remove_instance(&self, instance: &str) -> Result<(), DriverError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let before = state.ports.len();
        state.ports.retain(|_, p| p.instance != instance);
        if state.ports.len() == before {
            return Ok(());
        }
        self.apply(&mut state).await
    }

    async fn apply(&self, state: &mut State) -> Result<(), DriverError> {
        let chain = self.settings.chain.clone();
        let ports: Vec<&PortFirewall> = state.ports.values().collect();
        let whole = state.synced;
        for (slot, family) in [(0usize, 4u8), (1, 6)] {
            let wants_family = ports
                .iter()
                .any(|p| p.enabled && p.ips.iter().any(|ip| family_of(ip) == family));
            let (program, restore) = if family == 4 {
                ("iptables", "iptables-restore")
            } else {
                ("ip6tables", "ip6tables-restore")
            };
            let applied = match &state.applied[slot] {
                Some(a) => a.clone(),
                None => {
                    // Chains a previous run left, found from the dispatcher it jumped from.
                    let listing = self
                        .run(program, &["-w", "5", "-S", &chain], None)
                        .await
                        .unwrap_or_default();
                    chains_in_listing(&listing)
                }
            };
            if !wants_family && applied.is_empty() && state.applied[slot].is_some() {
                continue;
            }
            let desired: BTreeSet<String> = ports
                .iter()
                .filter(|p| p.enabled && p.ips.iter().any(|ip| family_of(ip) == family))
                .flat_map(|p| chain_names(&p.port_id))
                .collect();
            let stale: Vec<String> = if whole {
                applied.difference(&desired).cloned().collect()
            } else {
                // Appended to: the dispatcher must exist (an error when it does is fine).
                let _ = self.run(program, &["-w", "5", "-N", &chain], None).await;
                Vec::new()
            };
            let input = render(family, &chain, &ports, &stale, whole);
            let done = async {
                self.run(restore, &["-w", "5", "--noflush"], Some(&input))
                    .await?;
                if !state.hooked[slot] {
                    self.hook(program).await?;
                }
                Ok::<_, DriverError>(())
            }
            .await;
            match done {
                Ok(()) => {
                    state.hooked[slot] = true;
                    state.applied[slot] = Some(if whole {
                        desired
                    } else {
                        applied.union(&desired).cloned().collect()
                    });
                }
                // A family no port has an address of (IPv6 off on the host, no ip6tables):
                // nothing to filter there, and no reason to fail the others.
                Err(e) if !wants_family => {
                    tracing::warn!(error = %e, family, "no packet filter for this family here");
                    state.applied[slot] = Some(BTreeSet::new());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The dispatcher's jump, first in the hook chain (once).
    async fn hook(&self, save: &str) -> Result<(), DriverError> {
        let chain = &self.settings.chain;
        for hook in [self.settings.hook.as_str(), "FORWARD"] {
            if self
                .run(save, &["-w", "5", "-C", hook, "-j", chain], None)
                .await
                .is_ok()
            {
                return Ok(());
            }
            if self
                .run(save, &["-w", "5", "-I", hook, "1", "-j", chain], None)
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(DriverError::Backend(format!(
            "{save}: no {} nor FORWARD chain to jump to {chain} from",
            self.settings.hook
        )))
    }

    async fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, DriverError> {
        use tokio::io::AsyncWriteExt;
        let prefix = &self.settings.command_prefix;
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = tokio::process::Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => tokio::process::Command::new(program),
        };
        cmd.args(args)
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| DriverError::Backend(format!("{program}: {e}")))?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input
                .write_all(text.as_bytes())
                .await
                .map_err(|e| DriverError::Backend(format!("{program}: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| DriverError::Backend(format!("{program}: {e}")))?;
        if !out.status.success() {
            return Err(DriverError::Backend(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(rules: Vec<FirewallRule>) -> PortFirewall {
        PortFirewall {
            port_id: "3f2a9c1e-7b4d-4e0f-9a1c-0123456789ab".into(),
            instance: "i".into(),
            mac: "FA:16:3E:11:22:33".into(),
            ips: vec!["10.0.0.5".into()],
            dhcp_servers: vec![],
            enabled: true,
            rules,
        }
    }

    fn allow(
        direction: Direction,
        protocol: Option<&str>,
        ports: (Option<u16>, Option<u16>),
        remote: Option<&str>,
    ) -> FirewallRule {
        FirewallRule {
            direction,
            ethertype: 4,
            protocol: protocol.map(str::to_owned),
            port_min: ports.0,
            port_max: ports.1,
            remote: remote.map(str::to_owned),
        }
    }

    #[test]
    fn a_macs_link_local_address_is_its_eui64() {
        assert_eq!(
            link_local("fa:16:3e:11:22:33")
                .map(|a| a.to_string())
                .as_deref(),
            Some("fe80::f816:3eff:fe11:2233")
        );
    }

    #[test]
    fn names_fit_iptables() {
        for name in chain_names("3f2a9c1e-7b4d-4e0f-9a1c-0123456789ab") {
            assert!(name.len() <= 28, "{name}");
        }
        assert_eq!(
            chain_names("3f2a9c1e-7b4d-4e0f-9a1c-0123456789ab")[0],
            "nova-i3f2a9c1e7b4d4e0f9a1c"
        );
    }

    #[test]
    fn a_port_gets_neutrons_chains() {
        let p = port(vec![
            allow(Direction::Ingress, None, (None, None), Some("10.0.0.7/32")),
            allow(Direction::Ingress, Some("tcp"), (Some(22), Some(22)), None),
            allow(
                Direction::Ingress,
                Some("udp"),
                (Some(8000), Some(8080)),
                Some("192.168.0.0/16"),
            ),
            allow(Direction::Ingress, Some("icmp"), (Some(8), Some(0)), None),
            allow(Direction::Egress, None, (None, None), None),
        ]);
        let text = render(4, "nova-sg", &[&p], &["nova-iold".into()], true);
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "*filter",
            ":nova-sg - [0:0]",
            ":nova-iold - [0:0]",
            "-A nova-sg -d 10.0.0.5/32 -j nova-i3f2a9c1e7b4d4e0f9a1c",
            "-A nova-sg -m mac --mac-source fa:16:3e:11:22:33 -j nova-o3f2a9c1e7b4d4e0f9a1c",
            "-A nova-i3f2a9c1e7b4d4e0f9a1c -s 10.0.0.7/32 -j RETURN",
            "-A nova-i3f2a9c1e7b4d4e0f9a1c -p tcp -m tcp --dport 22 -j RETURN",
            "-A nova-i3f2a9c1e7b4d4e0f9a1c -s 192.168.0.0/16 -p udp -m multiport --dports 8000:8080 -j RETURN",
            "-A nova-i3f2a9c1e7b4d4e0f9a1c -p icmp -m icmp --icmp-type 8/0 -j RETURN",
            "-A nova-i3f2a9c1e7b4d4e0f9a1c -j DROP",
            "-A nova-o3f2a9c1e7b4d4e0f9a1c -j nova-s3f2a9c1e7b4d4e0f9a1c",
            "-A nova-o3f2a9c1e7b4d4e0f9a1c -j RETURN",
            "-A nova-s3f2a9c1e7b4d4e0f9a1c -s 10.0.0.5/32 -j RETURN",
            "-A nova-s3f2a9c1e7b4d4e0f9a1c -j DROP",
            "-X nova-iold",
            "COMMIT",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        // The allowed flows come before the port's final drop.
        let ssh = lines.iter().position(|l| l.contains("--dport 22")).unwrap();
        let drop = lines
            .iter()
            .position(|l| *l == "-A nova-i3f2a9c1e7b4d4e0f9a1c -j DROP")
            .unwrap();
        assert!(ssh < drop);
    }

    #[test]
    fn a_port_without_port_security_or_family_is_not_filtered() {
        let mut off = port(vec![]);
        off.enabled = false;
        let text = render(4, "nova-sg", &[&off], &[], true);
        assert!(!text.contains("nova-i"), "{text}");
        let v4 = port(vec![]);
        assert!(!render(6, "nova-sg", &[&v4], &[], true).contains("nova-i"));
    }

    #[test]
    fn before_a_whole_sync_the_dispatcher_is_appended_to() {
        let text = render(4, "nova-sg", &[&port(vec![])], &[], false);
        assert!(
            !text.contains(":nova-sg "),
            "the dispatcher is not flushed: {text}"
        );
        assert!(
            text.contains("-A nova-sg -d 10.0.0.5/32 -j nova-i"),
            "{text}"
        );
    }

    #[test]
    fn leftover_chains_are_found_from_the_dispatcher() {
        let listing = "-N nova-sg\n-A nova-sg -d 10.0.0.5/32 -j nova-iaaaa\n\
                       -A nova-sg -s 10.0.0.5/32 -j nova-oaaaa\n";
        let found = chains_in_listing(listing);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["nova-iaaaa", "nova-oaaaa", "nova-saaaa"]
        );
    }
}
