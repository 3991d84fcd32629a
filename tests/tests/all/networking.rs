//! The networking service's subnets, ports and IPAM over HTTP, on both shapes (SQLite and
//! PostgreSQL): Neutron's defaults and views, its refusals (each with Neutron's body, and
//! nothing written), filters, paging, tags, quotas, and addresses handed out once under
//! concurrent creates.

use e2e::client::{Client, Reply};
use e2e::on_both_shapes;
use e2e::stack::{Options, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn client(stack: &dyn Stack, who: &str) -> Client {
    Client::new(stack.api_url(), &format!("{who}:{who}"))
}

/// Neutron's fault: its status, `type` and message.
fn assert_fault(r: &Reply, status: u16, kind: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["NeutronError"]["type"], json!(kind), "{}", r.body);
    assert_eq!(
        r.body["NeutronError"]["message"],
        json!(message),
        "{}",
        r.body
    );
    assert_eq!(r.body["NeutronError"]["detail"], json!(""), "{}", r.body);
}

async fn post(c: &Client, path: &str, kind: &str, body: Value) -> anyhow::Result<Reply> {
    c.networking(Method::POST, path, Some(&json!({ kind: body })))
        .await
}

async fn count(c: &Client, path: &str, key: &str) -> anyhow::Result<usize> {
    let r = c.networking(Method::GET, path, None).await?;
    anyhow::ensure!(r.status == 200, "{path}: {} {}", r.status, r.body);
    Ok(r.body[key].as_array().map_or(0, Vec::len))
}

/// `POST /servers` of a server of the test image on flavor 1, with `more` (networks, counts,
/// security groups…) in its body.
async fn boot(c: &Client, name: &str, more: Value) -> anyhow::Result<Reply> {
    let mut server = json!({"name": name, "imageRef": e2e::client::IMAGE, "flavorRef": "1"});
    if let (Some(s), Some(m)) = (server.as_object_mut(), more.as_object()) {
        s.extend(m.clone());
    }
    c.post("/servers", &json!({ "server": server })).await
}

/// The id of the server a create answered.
fn id_of(r: &Reply) -> String {
    r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

on_both_shapes!(subnets_and_ports_have_neutrons_ipam, Options::default());
async fn subnets_and_ports_have_neutrons_ipam(stack: &dyn Stack) -> anyhow::Result<()> {
    let (admin, demo) = (client(stack, "admin"), client(stack, "demo"));
    let net = admin
        .create_network(json!({"name": "ipam-net", "shared": true}))
        .await?;

    // A subnet with Neutron's defaults: the gateway first, the pool the rest.
    let r = post(
        &admin,
        "/subnets",
        "subnet",
        json!({"network_id": net, "ip_version": 4,
        "cidr": "10.20.0.5/28", "name": "small", "dns_nameservers": ["10.0.0.53", "10.0.0.54"]}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let s = &r.body["subnet"];
    let subnet = s["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(s["cidr"], "10.20.0.0/28");
    assert_eq!(s["gateway_ip"], "10.20.0.1");
    assert_eq!(
        s["allocation_pools"],
        json!([{"start": "10.20.0.2", "end": "10.20.0.14"}])
    );
    assert_eq!(s["dns_nameservers"], json!(["10.0.0.53", "10.0.0.54"]));
    assert_eq!(
        (&s["enable_dhcp"], &s["ip_version"]),
        (&json!(true), &json!(4))
    );
    assert_eq!(s["project_id"], s["tenant_id"]);
    let r = demo
        .networking(Method::GET, &format!("/networks/{net}"), None)
        .await?;
    assert_eq!(r.body["network"]["subnets"], json!([subnet]), "{}", r.body);
    // Members see a shared network's subnets, and the list filters and pages.
    let r = demo
        .networking(
            Method::GET,
            &format!("/subnets?network_id={net}&fields=cidr"),
            None,
        )
        .await?;
    assert_eq!(
        r.body["subnets"],
        json!([{"cidr": "10.20.0.0/28"}]),
        "{}",
        r.body
    );

    // Bad subnets: Neutron's body, and nothing written.
    let bad_subnets = [
        (json!({"network_id": net, "ip_version": 4, "cidr": "10.20.0.0/24"}), 400, "InvalidInput",
         format!("Invalid input for operation: Requested subnet with cidr: 10.20.0.0/24 for network: {net} overlaps with another subnet.")),
        (json!({"network_id": net, "ip_version": 4, "cidr": "10.21.0.0/24",
                "allocation_pools": [{"start": "10.21.0.10", "end": "10.21.1.5"}]}),
         400, "OutOfBoundsAllocationPool",
         "The allocation pool 10.21.0.10-10.21.1.5 spans beyond the subnet cidr 10.21.0.0/24.".to_owned()),
        (json!({"network_id": net, "ip_version": 4, "cidr": "10.21.0.0/24",
                "allocation_pools": [{"start": "10.21.0.1", "end": "10.21.0.9"}]}),
         409, "GatewayConflictWithAllocationPools",
         "Gateway ip 10.21.0.1 conflicts with allocation pool 10.21.0.1-10.21.0.9.".to_owned()),
        (json!({"network_id": net, "ip_version": 4, "cidr": "10.21.0.0/33"}), 400, "HTTPBadRequest",
         "Invalid input for cidr. Reason: '10.21.0.0/33' is not a valid IP subnet.".to_owned()),
        (json!({"network_id": net, "ip_version": 6, "cidr": "10.21.0.0/24"}), 400, "InvalidInput",
         "Invalid input for operation: cidr '10.21.0.0/24' does not match the ip_version '6'.".to_owned()),
    ];
    for (body, status, kind, message) in bad_subnets {
        let r = post(&admin, "/subnets", "subnet", body).await?;
        assert_fault(&r, status, kind, &message);
    }
    // The network is an admin's: members add no subnets to it (Neutron's create_subnet).
    let r = post(
        &demo,
        "/subnets",
        "subnet",
        json!({"network_id": net, "ip_version": 4, "cidr": "10.22.0.0/24"}),
    )
    .await?;
    assert_fault(
        &r,
        403,
        "PolicyNotAuthorized",
        "(rule:create_subnet) is disallowed by policy",
    );
    assert_eq!(
        count(&admin, &format!("/subnets?network_id={net}"), "subnets").await?,
        1
    );

    // A given address: the network owner's to choose, once, inside the subnet (first, so
    // that no random choice takes it).
    let r = post(
        &admin,
        "/ports",
        "port",
        json!({"network_id": net,
        "fixed_ips": [{"ip_address": "10.20.0.9"}]}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["port"]["fixed_ips"],
        json!([{"subnet_id": subnet, "ip_address": "10.20.0.9"}])
    );
    // A member's port on the shared network: a MAC under fa:16:3e, an address of the pool,
    // DOWN until a server's host has it.
    let r = post(
        &demo,
        "/ports",
        "port",
        json!({"network_id": net, "name": "mine"}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let p = &r.body["port"];
    let demo_port = p["id"].as_str().unwrap_or_default().to_owned();
    assert!(
        p["mac_address"]
            .as_str()
            .is_some_and(|m| m.starts_with("fa:16:3e:")),
        "{p}"
    );
    assert_eq!(p["status"], "DOWN");
    assert_eq!(p["fixed_ips"][0]["subnet_id"], json!(subnet));
    let demo_ip = p["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(p.get("binding:host_id").is_none(), "admin-only: {p}");

    let r = post(
        &admin,
        "/ports",
        "port",
        json!({"network_id": net,
        "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.20.0.9"}]}),
    )
    .await?;
    assert_fault(
        &r,
        409,
        "IpAddressAlreadyAllocated",
        &format!("IP address 10.20.0.9 already allocated in subnet {subnet}"),
    );
    let r = post(
        &admin,
        "/ports",
        "port",
        json!({"network_id": net,
        "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.20.1.9"}]}),
    )
    .await?;
    assert_fault(
        &r,
        400,
        "InvalidIpForSubnet",
        "IP address 10.20.1.9 is not a valid IP for the specified subnet.",
    );
    let r = post(
        &demo,
        "/ports",
        "port",
        json!({"network_id": net,
        "fixed_ips": [{"ip_address": "10.20.0.10"}]}),
    )
    .await?;
    assert_fault(
        &r,
        403,
        "PolicyNotAuthorized",
        "(rule:create_port:fixed_ips:ip_address) is disallowed by policy",
    );
    // Another project's network that is not shared.
    let private = admin
        .create_network(json!({"name": "ipam-private"}))
        .await?;
    let r = post(&demo, "/ports", "port", json!({"network_id": private})).await?;
    assert_fault(
        &r,
        403,
        "PolicyNotAuthorized",
        "(rule:create_port) is disallowed by policy",
    );
    assert_eq!(
        count(&admin, &format!("/ports?network_id={net}"), "ports").await?,
        2
    );

    // The rest of the /28 under concurrent creates: each address once, then Neutron's 409.
    let tries = 20;
    let creates = (0..tries).map(|i| {
        let c = admin.clone();
        let net = net.clone();
        async move {
            post(
                &c,
                "/ports",
                "port",
                json!({"network_id": net, "name": format!("c{i}")}),
            )
            .await
        }
    });
    let replies = futures::future::join_all(creates).await;
    let mut addresses = BTreeSet::new();
    let mut refused = 0;
    for r in replies {
        let r = r?;
        match r.status {
            201 => {
                let ip = r.body["port"]["fixed_ips"][0]["ip_address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(addresses.insert(ip.clone()), "{ip} given twice");
            }
            _ => {
                assert_fault(
                    &r,
                    409,
                    "IpAddressGenerationFailure",
                    &format!("No more IP addresses available on network {net}."),
                );
                refused += 1;
            }
        }
    }
    // 13 in the pool, less the member's and the given one.
    assert_eq!(addresses.len(), 11, "{addresses:?}");
    assert_eq!(refused, tries - 11);
    assert!(!addresses.contains(&demo_ip) && !addresses.contains("10.20.0.9"));

    // Filters Nova, Horizon and the CLI send.
    let r = admin
        .networking(
            Method::GET,
            "/ports?fixed_ips=ip_address%3D10.20.0.9&fields=fixed_ips",
            None,
        )
        .await?;
    assert_eq!(
        r.body["ports"],
        json!([{"fixed_ips": [{"subnet_id": subnet, "ip_address": "10.20.0.9"}]}]),
        "{}",
        r.body
    );
    assert_eq!(
        count(
            &admin,
            "/ports?fixed_ips=ip_address_substr%3D10.20.0.",
            "ports"
        )
        .await?,
        13
    );
    assert_eq!(
        count(
            &admin,
            &format!("/ports?id={demo_port}&device_owner="),
            "ports"
        )
        .await?,
        1
    );
    assert_eq!(
        count(&demo, "/ports", "ports").await?,
        1,
        "a member sees their own ports"
    );
    let r = admin
        .networking(
            Method::GET,
            &format!("/ports?network_id={net}&limit=5&sort_key=name&sort_dir=asc"),
            None,
        )
        .await?;
    assert_eq!(r.body["ports"].as_array().map(Vec::len), Some(5));
    assert!(
        r.body["ports_links"][0]["href"]
            .as_str()
            .is_some_and(|h| h.contains("marker=")),
        "{}",
        r.body
    );
    let r = admin
        .networking(Method::GET, "/ports?colour=red", None)
        .await?;
    assert_fault(
        &r,
        400,
        "HTTPBadRequest",
        "['colour'] is invalid attribute for filtering",
    );

    // Tags on subnets and ports, and their filters.
    let r = admin
        .networking(Method::PUT, &format!("/subnets/{subnet}/tags/blue"), None)
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin
        .networking(
            Method::PUT,
            &format!("/ports/{demo_port}/tags"),
            Some(&json!({"tags": ["a", "b"]})),
        )
        .await?;
    assert_eq!(r.body, json!({"tags": ["a", "b"]}));
    assert_eq!(count(&admin, "/subnets?tags=blue", "subnets").await?, 1);
    assert_eq!(count(&admin, "/ports?tags-any=b,c", "ports").await?, 1);

    // An IPv6 subnet beside it (stateful: addresses from the pool, the gateway the network
    // address), and a port then takes one address of each family.
    let r = post(&admin, "/subnets", "subnet", json!({"network_id": private, "ip_version": 6,
        "cidr": "fd00:20::/64", "ipv6_address_mode": "dhcpv6-stateful", "ipv6_ra_mode": "dhcpv6-stateful"})).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["subnet"]["gateway_ip"], "fd00:20::");
    assert_eq!(
        r.body["subnet"]["allocation_pools"],
        json!([{"start": "fd00:20::1", "end": "fd00:20::ffff:ffff:ffff:ffff"}])
    );
    let r = post(
        &admin,
        "/subnets",
        "subnet",
        json!({"network_id": private, "ip_version": 4, "cidr": "10.20.0.0/28"}),
    )
    .await?;
    assert_eq!(r.status, 201, "other networks may overlap: {}", r.body);
    let r = post(&admin, "/ports", "port", json!({"network_id": private})).await?;
    let versions: Vec<bool> = r.body["port"]["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ip| ip["ip_address"].as_str().is_some_and(|a| a.contains(':')))
        .collect();
    assert_eq!(versions, vec![false, true], "{}", r.body);
    let private_port = r.body["port"]["id"].as_str().unwrap_or_default().to_owned();

    // Quotas count subnets and ports; a port over the limit is Neutron's OverQuota.
    let r = admin
        .networking(Method::GET, "/quotas/admin/details", None)
        .await?;
    assert_eq!(
        r.body["quota"]["subnet"],
        json!({"limit": 100, "used": 3, "reserved": 0})
    );
    assert_eq!(r.body["quota"]["port"]["used"], json!(13));
    let r = admin
        .networking(
            Method::PUT,
            "/quotas/demo",
            Some(&json!({"quota": {"port": 1}})),
        )
        .await?;
    assert_eq!(r.body["quota"]["port"], json!(1), "{}", r.body);
    let r = post(
        &demo,
        "/ports",
        "port",
        json!({"network_id": net, "fixed_ips": []}),
    )
    .await?;
    assert_fault(
        &r,
        409,
        "OverQuota",
        "Quota exceeded for resources: ['port'].",
    );
    admin
        .networking(Method::DELETE, "/quotas/demo", None)
        .await?;

    // In use: a subnet with ports, a network with ports; free once the ports are gone.
    let r = admin
        .networking(Method::DELETE, &format!("/subnets/{subnet}"), None)
        .await?;
    assert_fault(&r, 409, "SubnetInUse", &format!("Unable to complete operation on subnet {subnet}: One or more ports have an IP allocation from this subnet."));
    let r = admin
        .networking(Method::DELETE, &format!("/networks/{private}"), None)
        .await?;
    assert_fault(&r, 409, "NetworkInUse", &format!("Unable to complete operation on network {private}. There are one or more ports still in use on the network, id for these ports is: {private_port}."));
    let r = demo
        .networking(Method::DELETE, &format!("/ports/{private_port}"), None)
        .await?;
    assert_fault(
        &r,
        404,
        "PortNotFound",
        &format!("Port {private_port} could not be found."),
    );
    let r = admin
        .networking(Method::DELETE, &format!("/ports/{private_port}"), None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = admin
        .networking(Method::DELETE, &format!("/networks/{private}"), None)
        .await?;
    assert_eq!(r.status, 204, "a network goes with its subnets: {}", r.body);
    assert_eq!(
        count(&admin, &format!("/subnets?network_id={private}"), "subnets").await?,
        0
    );
    // A freed address is free again.
    let r = admin
        .networking(Method::DELETE, &format!("/ports/{demo_port}"), None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = post(
        &admin,
        "/ports",
        "port",
        json!({"network_id": net,
        "fixed_ips": [{"ip_address": demo_ip}]}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);

    // What is not here answers Neutron's 404; the extensions list does not claim it.
    for path in ["/routers", "/floatingips", "/trunks"] {
        let r = demo.networking(Method::GET, path, None).await?;
        assert_fault(&r, 404, "HTTPNotFound", "The resource could not be found.");
    }
    let r = demo.networking(Method::GET, "/extensions", None).await?;
    let aliases: Vec<&str> = r.body["extensions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["alias"].as_str())
        .collect();
    assert!(
        aliases.contains(&"binding")
            && aliases.contains(&"port-security")
            && !aliases.contains(&"router"),
        "{aliases:?}"
    );
    Ok(())
}

/// Polls the project's servers until none is building; returns them.
async fn settled(c: &Client, within: std::time::Duration) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let r = c.get("/servers/detail").await?;
        anyhow::ensure!(r.status == 200, "{} {}", r.status, r.body);
        let servers = r.body["servers"].as_array().cloned().unwrap_or_default();
        if servers.iter().all(|s| s["status"] != "BUILD") {
            return Ok(servers);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "still building: {}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

on_both_shapes!(
    servers_get_ports_with_addresses_of_their_subnets,
    Options::default()
);
/// A server on a network with a subnet gets a port (made at build, deleted with it) whose MAC
/// and address its `addresses` show; a user's port is bound and then kept; a fixed IP is
/// honoured once; and 50 concurrent creates on a /28 give exactly its 13 addresses, the rest
/// ERROR with Nova's fault.
async fn servers_get_ports_with_addresses_of_their_subnets(
    stack: &dyn Stack,
) -> anyhow::Result<()> {
    let wait = std::time::Duration::from_secs(60);
    let (admin, demo) = (client(stack, "admin"), client(stack, "demo"));
    let net = admin
        .create_network(json!({"name": "port-net", "shared": true}))
        .await?;
    let r = post(
        &admin,
        "/subnets",
        "subnet",
        json!({"network_id": net, "ip_version": 4, "cidr": "10.30.0.0/28"}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let subnet = r.body["subnet"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // A server on the network: its port, and its addresses from it.
    let r = boot(&demo, "p1", json!({"networks": [{"uuid": net}]})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let first = id_of(&r);
    let server = demo.wait_status(&first, "ACTIVE", wait).await?;
    let r = admin
        .networking(Method::GET, &format!("/ports?device_id={first}"), None)
        .await?;
    let port = r.body["ports"][0].clone();
    assert_eq!(
        r.body["ports"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    assert_eq!(port["device_owner"], "compute:nova", "{port}");
    assert_eq!(port["status"], "ACTIVE");
    assert_eq!(
        port["binding:host_id"],
        server["OS-EXT-SRV-ATTR:host"]
            .clone()
            .as_str()
            .map_or(json!(port["binding:host_id"]), |h| json!(h))
    );
    assert_eq!(port["fixed_ips"][0]["subnet_id"], json!(subnet));
    let ip = port["fixed_ips"][0]["ip_address"].clone();
    assert_eq!(
        server["addresses"]["port-net"],
        json!([{"addr": ip, "version": 4,
        "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}]),
        "{server}"
    );
    let r = demo.get(&format!("/servers/{first}/ips/port-net")).await?;
    assert_eq!(r.body["port-net"][0]["addr"], ip, "{}", r.body);

    // A server's port is not deleted (nor its addresses changed) under it: Neutron's
    // PortInUse; the server's os-interface detach comes first.
    let port_id = port["id"].as_str().unwrap_or_default();
    let r = admin
        .networking(Method::DELETE, &format!("/ports/{port_id}"), None)
        .await?;
    assert_fault(&r, 409, "PortInUse", &format!("Unable to complete operation on port {port_id} for network {net}. Port already has an attached device {first}."));

    // The user's own port: bound while the server lives, then unbound and kept.
    let r = post(
        &demo,
        "/ports",
        "port",
        json!({"network_id": net, "name": "own"}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let own = r.body["port"]["id"].as_str().unwrap_or_default().to_owned();
    let own_ip = r.body["port"]["fixed_ips"][0]["ip_address"].clone();
    let r = boot(&demo, "p2", json!({"networks": [{"port": own}]})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let second = id_of(&r);
    let server = demo.wait_status(&second, "ACTIVE", wait).await?;
    assert_eq!(
        server["addresses"]["port-net"][0]["addr"], own_ip,
        "{server}"
    );
    let r = boot(&demo, "p3", json!({"networks": [{"port": own}]})).await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        json!(format!("Port {own} is still in use."))
    );

    // A fixed IP (one the random choices above did not take): honoured, then in use.
    let fixed = ["10.30.0.14", "10.30.0.13", "10.30.0.12"]
        .into_iter()
        .find(|f| json!(f) != ip && json!(f) != own_ip)
        .unwrap_or_default();
    let r = boot(
        &admin,
        "p4",
        json!({"networks": [{"uuid": net, "fixed_ip": fixed}]}),
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let fourth = id_of(&r);
    let server = admin.wait_status(&fourth, "ACTIVE", wait).await?;
    assert_eq!(
        server["addresses"]["port-net"][0]["addr"], fixed,
        "{server}"
    );
    let r = boot(
        &admin,
        "p5",
        json!({"networks": [{"uuid": net, "fixed_ip": fixed}]}),
    )
    .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!(format!(
            "Fixed IP address {fixed} is already in use on instance {fourth}."
        ))
    );

    // Deleting the servers: the port made for the first goes, the user's stays, unbound.
    for id in [&first, &second] {
        assert_eq!(demo.delete(&format!("/servers/{id}")).await?.status, 204);
        demo.wait_gone(id, wait).await?;
    }
    assert_eq!(
        count(&admin, &format!("/ports?device_id={first}"), "ports").await?,
        0
    );
    let r = demo
        .networking(Method::GET, &format!("/ports/{own}"), None)
        .await?;
    assert_eq!(
        (&r.body["port"]["device_id"], &r.body["port"]["status"]),
        (&json!(""), &json!("DOWN")),
        "{}",
        r.body
    );
    assert_eq!(
        demo.networking(Method::DELETE, &format!("/ports/{own}"), None)
            .await?
            .status,
        204
    );
    assert_eq!(
        admin.delete(&format!("/servers/{fourth}")).await?.status,
        204
    );
    admin.wait_gone(&fourth, wait).await?;

    // 50 concurrent creates on the /28: its 13 addresses, once each; the rest ERROR.
    let r = admin
        .put(
            "/os-quota-sets/ipam-race",
            &json!({"quota_set":
        {"instances": -1, "cores": -1, "ram": -1}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let racer = Client::new(stack.api_url(), "racer:ipam-race");
    let creates = (0..50).map(|i| {
        let c = racer.clone();
        let net = net.clone();
        async move {
            boot(
                &c,
                &format!("race{i}"),
                json!({"networks": [{"uuid": net}]}),
            )
            .await
        }
    });
    for r in futures::future::try_join_all(creates).await? {
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let servers = settled(&racer, std::time::Duration::from_secs(120)).await?;
    let active: Vec<&Value> = servers.iter().filter(|s| s["status"] == "ACTIVE").collect();
    let errors: Vec<&Value> = servers.iter().filter(|s| s["status"] == "ERROR").collect();
    assert_eq!((active.len(), errors.len()), (13, 37), "{servers:?}");
    let addresses: BTreeSet<String> = active
        .iter()
        .filter_map(|s| {
            s["addresses"]["port-net"][0]["addr"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(addresses.len(), 13, "each address once: {addresses:?}");
    for s in errors {
        assert_eq!(s["fault"]["message"], json!(format!("Build of instance {} aborted: Failed to allocate the network(s) with error No fixed IP addresses available for network: {net}, not rescheduling.", s["id"].as_str().unwrap_or_default())), "{s}");
    }
    // A failed build keeps no port; the live servers hold one each.
    assert_eq!(
        count(&admin, &format!("/ports?network_id={net}"), "ports").await?,
        13
    );
    Ok(())
}

on_both_shapes!(interfaces_are_attached_and_detached, Options::default());
/// `os-interface`: a live server's ports listed; a port made on another network (with its
/// address in the server's addresses) or the user's own attached, then detached: the one made
/// goes, the user's is unbound and kept. Refusals change nothing.
async fn interfaces_are_attached_and_detached(stack: &dyn Stack) -> anyhow::Result<()> {
    let wait = std::time::Duration::from_secs(60);
    let (admin, demo) = (client(stack, "admin"), client(stack, "demo"));
    let mut nets = Vec::new();
    for (name, cidr) in [("if-a", "10.40.0.0/28"), ("if-b", "10.41.0.0/28")] {
        let net = admin
            .create_network(json!({"name": name, "shared": true}))
            .await?;
        let r = post(
            &admin,
            "/subnets",
            "subnet",
            json!({"network_id": net, "ip_version": 4, "cidr": cidr}),
        )
        .await?;
        assert_eq!(r.status, 201, "{}", r.body);
        nets.push(net);
    }
    let r = boot(&demo, "if", json!({"networks": [{"uuid": nets[0]}]})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = id_of(&r);
    demo.wait_status(&id, "ACTIVE", wait).await?;
    let r = demo.get(&format!("/servers/{id}/os-interface")).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = &r.body["interfaceAttachments"][0];
    // From 2.70 with its device tag (none here), as the schema of that version has it.
    let r70 = demo
        .clone()
        .at_microversion("2.70")
        .get(&format!("/servers/{id}/os-interface"))
        .await?;
    assert_eq!(
        r70.body["interfaceAttachments"][0]["tag"],
        Value::Null,
        "{}",
        r70.body
    );
    assert!(
        r70.body["interfaceAttachments"][0]
            .as_object()
            .is_some_and(|o| o.contains_key("tag")),
        "{}",
        r70.body
    );
    assert_eq!(
        (&first["net_id"], &first["port_state"]),
        (&json!(nets[0]), &json!("ACTIVE")),
        "{}",
        r.body
    );

    // A port made on the other network: in the list and the server's addresses.
    let r = demo
        .post(
            &format!("/servers/{id}/os-interface"),
            &json!({"interfaceAttachment": {"net_id": nets[1]}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let attached = r.body["interfaceAttachment"].clone();
    let port = attached["port_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(attached["net_id"], json!(nets[1]));
    let ip = attached["fixed_ips"][0]["ip_address"].clone();
    let server = demo.server(&id).await?.body["server"].clone();
    assert_eq!(server["addresses"]["if-b"][0]["addr"], ip, "{server}");
    assert_eq!(
        server["addresses"]["if-b"][0]["OS-EXT-IPS-MAC:mac_addr"],
        attached["mac_addr"]
    );
    let r = demo
        .get(&format!("/servers/{id}/os-interface/{port}"))
        .await?;
    assert_eq!(
        r.body["interfaceAttachment"]["port_id"],
        json!(port),
        "{}",
        r.body
    );
    assert_eq!(count(&demo, "/ports", "ports").await?, 2);

    // Nova's 404 for a network or a port it cannot find.
    let ghost = uuid::Uuid::new_v4();
    let r = demo
        .post(
            &format!("/servers/{id}/os-interface"),
            &json!({"interfaceAttachment": {"net_id": ghost}}),
        )
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        json!(format!("Network {ghost} could not be found."))
    );

    // The same network again: a second NIC on it, as Nova's VM drivers take (a container
    // would refuse: `a_container_joins_a_network_once`); detached again.
    let r = demo
        .post(
            &format!("/servers/{id}/os-interface"),
            &json!({"interfaceAttachment": {"net_id": nets[1]}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.body["interfaceAttachment"]["port_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(second, port);
    let server = demo.server(&id).await?.body["server"].clone();
    assert_eq!(
        server["addresses"]["if-b"].as_array().map(Vec::len),
        Some(2),
        "{server}"
    );
    let r = demo
        .delete(&format!("/servers/{id}/os-interface/{second}"))
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let server = demo.server(&id).await?.body["server"].clone();
    assert_eq!(server["addresses"]["if-b"][0]["addr"], ip, "{server}");
    assert_eq!(
        server["addresses"]["if-b"].as_array().map(Vec::len),
        Some(1),
        "{server}"
    );

    // Refusals: the server's own port again, both a network and a port, an address without
    // a network; nothing changes.
    let r = demo
        .post(
            &format!("/servers/{id}/os-interface"),
            &json!({"interfaceAttachment": {"port_id": port}}),
        )
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        json!(format!("Port {port} is still in use."))
    );
    for (body, message) in [
        (
            json!({"interfaceAttachment": {"net_id": nets[1], "port_id": port}}),
            Some("Must not input both network_id and port_id"),
        ),
        (
            json!({"interfaceAttachment": {"fixed_ips": [{"ip_address": "10.41.0.9"}]}}),
            Some("Must input network_id when request IP address"),
        ),
    ] {
        let r = demo
            .post(&format!("/servers/{id}/os-interface"), &body)
            .await?;
        assert_eq!(r.status, 400, "{}", r.body);
        if let Some(m) = message {
            assert_eq!(r.body["badRequest"]["message"], json!(m));
        }
    }
    assert_eq!(count(&demo, "/ports", "ports").await?, 2);

    // Two NICs on one network at create (Tempest's `test_verify_duplicate_network_nics`):
    // a port and an address each; one port named twice is Nova's 400.
    let r = boot(
        &demo,
        "dup",
        json!({"networks": [{"uuid": nets[0]}, {"uuid": nets[1]}, {"uuid": nets[0]}]}),
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let dup = id_of(&r);
    demo.wait_status(&dup, "ACTIVE", wait).await?;
    let server = demo.server(&dup).await?.body["server"].clone();
    let twice: BTreeSet<&str> = server["addresses"]["if-a"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["addr"].as_str())
        .collect();
    assert_eq!(twice.len(), 2, "{server}");
    assert_eq!(
        server["addresses"]["if-b"].as_array().map(Vec::len),
        Some(1),
        "{server}"
    );
    let r = demo.get(&format!("/servers/{dup}/os-interface")).await?;
    assert_eq!(
        r.body["interfaceAttachments"].as_array().map(Vec::len),
        Some(3),
        "{}",
        r.body
    );
    assert_eq!(demo.delete(&format!("/servers/{dup}")).await?.status, 204);
    demo.wait_gone(&dup, wait).await?;
    let r = post(&demo, "/ports", "port", json!({"network_id": nets[0]})).await?;
    let mine = r.body["port"]["id"].as_str().unwrap_or_default().to_owned();
    let before = count(&demo, "/ports", "ports").await?;
    let r = boot(
        &demo,
        "dup-port",
        json!({"networks": [{"port": mine}, {"port": mine}]}),
    )
    .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!(format!(
            "Port ID '{mine}' was specified twice: you cannot attach a port multiple times."
        ))
    );
    assert_eq!(count(&demo, "/ports", "ports").await?, before);
    let r = demo
        .networking(Method::DELETE, &format!("/ports/{mine}"), None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);

    // Detached: the port made for it goes, and its address with it.
    let r = demo
        .delete(&format!("/servers/{id}/os-interface/{port}"))
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = demo
        .networking(Method::GET, &format!("/ports/{port}"), None)
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    let server = demo.server(&id).await?.body["server"].clone();
    assert!(server["addresses"].get("if-b").is_none(), "{server}");
    let r = demo
        .delete(&format!("/servers/{id}/os-interface/{port}"))
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);

    // The port quota at create, as Nova: room for one more port makes a create of one to
    // three servers make one; no room is Nova's 403.
    let used = i64::try_from(count(&demo, "/ports", "ports").await?)?;
    let r = admin
        .networking(
            Method::PUT,
            "/quotas/demo",
            Some(&json!({"quota": {"port": used + 1}})),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = boot(
        &demo,
        "q",
        json!({"networks": [{"uuid": nets[0]}], "min_count": 1, "max_count": 3}),
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let listed = demo.get("/servers?name=%5Eq").await?;
    let made: Vec<String> = listed.body["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(made.len(), 1, "{}", listed.body);
    demo.wait_status(&made[0], "ACTIVE", wait).await?;
    let r = boot(&demo, "q2", json!({"networks": [{"uuid": nets[0]}]})).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["forbidden"]["message"],
        json!("Maximum number of ports exceeded")
    );
    admin
        .networking(Method::DELETE, "/quotas/demo", None)
        .await?;
    assert_eq!(
        demo.delete(&format!("/servers/{}", made[0])).await?.status,
        204
    );
    demo.wait_gone(&made[0], wait).await?;

    // The user's own port: attached with its address, detached and kept, unbound.
    let r = post(&demo, "/ports", "port", json!({"network_id": nets[1]})).await?;
    let own = r.body["port"]["id"].as_str().unwrap_or_default().to_owned();
    let r = demo
        .post(
            &format!("/servers/{id}/os-interface"),
            &json!({"interfaceAttachment": {"port_id": own}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = demo
        .networking(Method::GET, &format!("/ports/{own}"), None)
        .await?;
    assert_eq!(r.body["port"]["device_id"], json!(id), "{}", r.body);
    let r = demo
        .delete(&format!("/servers/{id}/os-interface/{own}"))
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = demo
        .networking(Method::GET, &format!("/ports/{own}"), None)
        .await?;
    assert_eq!(
        (&r.body["port"]["device_id"], &r.body["port"]["status"]),
        (&json!(""), &json!("DOWN")),
        "{}",
        r.body
    );
    assert_eq!(
        demo.get(&format!("/servers/{id}/os-interface")).await?.body["interfaceAttachments"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    Ok(())
}

on_both_shapes!(security_groups_have_neutrons_rules, Options::default());
/// Security groups and rules as Neutron's: the `default` group made on first use with its
/// four rules, a new group with its two egress rules, rules normalised, checked and refused
/// with Neutron's words (nothing written), duplicates, the default's protections, quotas.
async fn security_groups_have_neutrons_rules(stack: &dyn Stack) -> anyhow::Result<()> {
    let (admin, demo) = (client(stack, "admin"), client(stack, "demo"));
    let r = demo
        .networking(Method::GET, "/security-groups", None)
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let groups = r.body["security_groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(groups.len(), 1, "{}", r.body);
    let default = &groups[0];
    assert_eq!(
        (&default["name"], &default["description"]),
        (&json!("default"), &json!("Default security group"))
    );
    let rules = default["security_group_rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rules.len(), 4, "{default}");
    assert!(rules
        .iter()
        .all(|r| r["belongs_to_default_sg"] == json!(true)));
    let ingress: Vec<&Value> = rules
        .iter()
        .filter(|r| r["direction"] == "ingress")
        .collect();
    assert!(
        ingress
            .iter()
            .all(|r| r["remote_group_id"] == default["id"]),
        "{default}"
    );
    let default_id = default["id"].as_str().unwrap_or_default().to_owned();

    let r = post(
        &demo,
        "/security-groups",
        "security_group",
        json!({"name": "web", "description": "front"}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let web = r.body["security_group"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let egress: Vec<&str> = r.body["security_group"]["security_group_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["direction"] == "egress")
        .map(|r| r["ethertype"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(egress, vec!["IPv4", "IPv6"], "{}", r.body);
    let r = post(
        &demo,
        "/security-groups",
        "security_group",
        json!({"name": "Default"}),
    )
    .await?;
    assert_fault(
        &r,
        409,
        "SecurityGroupDefaultAlreadyExists",
        "Default security group already exists.",
    );

    // A rule as the CLI sends it (any prefix), normalised; the same by number is a duplicate.
    let r = post(
        &demo,
        "/security-group-rules",
        "security_group_rule",
        json!({"security_group_id": web,
        "direction": "ingress", "ethertype": "IPv4", "protocol": "TCP", "port_range_min": 22,
        "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let ssh = r.body["security_group_rule"].clone();
    assert_eq!(
        (
            &ssh["protocol"],
            &ssh["normalized_cidr"],
            &ssh["belongs_to_default_sg"]
        ),
        (&json!("tcp"), &json!("0.0.0.0/0"), &json!(false)),
        "{ssh}"
    );
    let r = post(
        &demo,
        "/security-group-rules",
        "security_group_rule",
        json!({"security_group_id": web,
        "direction": "ingress", "protocol": "6", "port_range_min": 22, "port_range_max": 22}),
    )
    .await?;
    assert_fault(
        &r,
        409,
        "SecurityGroupRuleExists",
        &format!(
            "Security group rule already exists. Rule id is {}.",
            ssh["id"].as_str().unwrap_or_default()
        ),
    );
    let bad_rules = [
        (json!({"direction": "sideways"}), "HTTPBadRequest", "Invalid input for direction. Reason: 'sideways' is not in ['ingress', 'egress']."),
        (json!({"direction": "ingress", "port_range_min": 22}), "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range is given."),
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 22}), "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max"),
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 0, "port_range_max": 22}), "SecurityGroupInvalidPortValue", "Invalid value for port 0"),
        (json!({"direction": "ingress", "protocol": "gre", "port_range_min": 1, "port_range_max": 2}), "SecurityGroupInvalidProtocolForPort", "Ports cannot be specified for protocol 47. Ports are only supported for DCCP, SCTP, TCP, UDP."),
        (json!({"direction": "ingress", "protocol": "icmp", "port_range_max": 3}), "SecurityGroupMissingIcmpType", "ICMP code (port-range-max) 3 is provided but ICMP type (port-range-min) is missing."),
        (json!({"direction": "ingress", "protocol": "icmp", "port_range_min": 256}), "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP type (port-range-min) 256. It must be 0 to 255."),
        (json!({"direction": "ingress", "protocol": "ipv6-icmp"}), "SecurityGroupEthertypeConflictWithProtocol", "Invalid ethertype IPv4 for protocol ipv6-icmp."),
        (json!({"direction": "ingress", "remote_ip_prefix": "fd00::/64"}), "SecurityGroupRuleParameterConflict", "Conflicting value ethertype IPv4 for CIDR fd00::/64"),
        (json!({"direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": default_id}), "SecurityGroupMultipleRemoteEntites", "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided."),
        (json!({"direction": "ingress", "ethertype": "IPv5"}), "SecurityGroupRuleInvalidEtherType", "Security group rule for ethertype 'IPv5' not supported. Allowed values are ['IPv4', 'IPv6']."),
    ];
    for (mut body, kind, message) in bad_rules {
        body["security_group_id"] = json!(web);
        let r = post(&demo, "/security-group-rules", "security_group_rule", body).await?;
        assert_fault(&r, 400, kind, message);
    }
    let r = post(
        &demo,
        "/security-group-rules",
        "security_group_rule",
        json!({"security_group_id": web,
        "direction": "ingress", "protocol": "bogus"}),
    )
    .await?;
    assert_eq!(
        r.body["NeutronError"]["type"], "SecurityGroupRuleInvalidProtocol",
        "{}",
        r.body
    );
    let ghost = uuid::Uuid::new_v4().to_string();
    let r = post(
        &demo,
        "/security-group-rules",
        "security_group_rule",
        json!({"security_group_id": web,
        "direction": "ingress", "remote_group_id": ghost}),
    )
    .await?;
    assert_fault(
        &r,
        404,
        "SecurityGroupNotFound",
        &format!("Security group {ghost} does not exist"),
    );
    assert_eq!(
        count(
            &demo,
            &format!("/security-group-rules?security_group_id={web}"),
            "security_group_rules"
        )
        .await?,
        3
    );
    let r = demo.networking(Method::GET, &format!("/security-group-rules?security_group_id={web}&direction=ingress&fields=port_range_min"), None).await?;
    assert_eq!(
        r.body["security_group_rules"],
        json!([{"port_range_min": 22}]),
        "{}",
        r.body
    );

    // Another project's groups are not seen; the default is kept from rename and delete.
    let r = admin
        .networking(Method::GET, "/security-groups?name=default&fields=id", None)
        .await?;
    let admins_default = r.body["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["id"] != json!(default_id))
        .map(|g| g["id"].clone())
        .unwrap_or_default();
    let r = demo
        .networking(
            Method::GET,
            &format!(
                "/security-groups/{}",
                admins_default.as_str().unwrap_or_default()
            ),
            None,
        )
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = demo
        .networking(
            Method::PUT,
            &format!("/security-groups/{default_id}"),
            Some(&json!({"security_group": {"name": "other"}})),
        )
        .await?;
    assert_fault(
        &r,
        409,
        "SecurityGroupCannotUpdateDefault",
        "Updating default security group not allowed.",
    );
    let r = demo
        .networking(
            Method::DELETE,
            &format!("/security-groups/{default_id}"),
            None,
        )
        .await?;
    assert_fault(
        &r,
        409,
        "SecurityGroupCannotRemoveDefault",
        "Insufficient rights for removing default security group.",
    );

    // Quotas count them; a port cannot hold a group while port security is off.
    let r = demo
        .networking(Method::GET, "/quotas/demo/details", None)
        .await?;
    assert_eq!(
        r.body["quota"]["security_group"],
        json!({"limit": 10, "used": 2, "reserved": 0}),
        "{}",
        r.body
    );
    assert_eq!(r.body["quota"]["security_group_rule"]["used"], json!(7));
    let net = admin
        .create_network(json!({"name": "sg-net", "shared": true}))
        .await?;
    let r = post(
        &demo,
        "/ports",
        "port",
        json!({"network_id": net, "port_security_enabled": false, "security_groups": [web]}),
    )
    .await?;
    assert_fault(&r, 400, "PortSecurityAndIPRequiredForSecurityGroups",
        "Port security must be enabled and port must have an IP address in order to use security groups.");

    // A server asking for a group: Nova's answers for an unknown one, and for one on a
    // network without port security.
    for (group, message) in [
        ("web", "Network requires port_security_enabled and subnet associated in order to apply security groups."),
        ("nope", "Unable to find security_group with name or id 'nope'"),
    ] {
        let r = boot(&demo, "sg", json!({"networks": [{"uuid": net}], "security_groups": [{"name": group}]})).await?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["badRequest"]["message"], json!(message));
    }

    // Deleting the group takes its rules.
    assert_eq!(
        demo.networking(
            Method::DELETE,
            &format!(
                "/security-group-rules/{}",
                ssh["id"].as_str().unwrap_or_default()
            ),
            None
        )
        .await?
        .status,
        204
    );
    assert_eq!(
        demo.networking(Method::DELETE, &format!("/security-groups/{web}"), None)
            .await?
            .status,
        204
    );
    assert_eq!(
        count(
            &demo,
            &format!("/security-group-rules?security_group_id={web}"),
            "security_group_rules"
        )
        .await?,
        0
    );
    Ok(())
}

/// Waits until the fake driver's last firewall sync has a port for which `check` holds.
async fn synced(
    stack: &dyn Stack,
    what: &str,
    check: impl Fn(&[nova_core::firewall::PortFirewall]) -> bool,
) -> anyhow::Result<Vec<nova_core::firewall::PortFirewall>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = stack.driver().firewall();
        if check(&now) {
            return Ok(now);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the host's firewall never got {what}: {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

on_both_shapes!(
    security_groups_apply_to_ports_and_servers,
    Options::default()
);
/// Security groups on ports and servers: a port gets its project's default group (port
/// security on, an address), groups by name or by id (as Horizon sends them) at server create,
/// the server's view and `os-security-groups` from its ports, add/removeSecurityGroup with
/// Nova's refusals, a group in use kept from delete, and each change reaching the host's
/// filter (the conductor's sync) with remote groups resolved to their members' addresses.
async fn security_groups_apply_to_ports_and_servers(stack: &dyn Stack) -> anyhow::Result<()> {
    use nova_core::firewall::Direction;
    let wait = std::time::Duration::from_secs(60);
    let (admin, demo) = (client(stack, "admin"), client(stack, "demo"));
    let net = admin
        .create_network(json!({"name": "sg-apply", "shared": true}))
        .await?;
    admin.create_subnet(&net, "10.60.0.0/24").await?;
    let r = demo
        .networking(Method::GET, "/security-groups?name=default", None)
        .await?;
    let default = r.body["security_groups"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = post(
        &demo,
        "/security-groups",
        "security_group",
        json!({"name": "web"}),
    )
    .await?;
    let web = r.body["security_group"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = post(
        &demo,
        "/security-group-rules",
        "security_group_rule",
        json!({"security_group_id": web, "direction": "ingress", "protocol": "tcp",
               "port_range_min": 80, "port_range_max": 80}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);

    // A port of the user's: the default group; refused groups change nothing.
    let r = post(&demo, "/ports", "port", json!({"network_id": net})).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (
            &r.body["port"]["security_groups"],
            &r.body["port"]["port_security_enabled"]
        ),
        (&json!([default]), &json!(true)),
        "{}",
        r.body
    );
    let own_port = r.body["port"]["id"].as_str().unwrap_or_default().to_owned();
    // ML2's port security needs no address: a port on a network without subnets gets the
    // default group too (its host does not filter it: nothing there is keyed to it).
    let bare = admin
        .create_network(json!({"name": "sg-bare", "shared": true}))
        .await?;
    let r = post(&demo, "/ports", "port", json!({"network_id": bare})).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["port"]["security_groups"],
        json!([default]),
        "{}",
        r.body
    );
    let bare_port = r.body["port"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        demo.networking(Method::DELETE, &format!("/ports/{bare_port}"), None)
            .await?
            .status,
        204
    );
    let ghost = uuid::Uuid::new_v4().to_string();
    let r = demo
        .networking(
            Method::PUT,
            &format!("/ports/{own_port}"),
            Some(&json!({"port": {"security_groups": [ghost]}})),
        )
        .await?;
    assert_fault(
        &r,
        404,
        "SecurityGroupNotFound",
        &format!("Security group {ghost} does not exist"),
    );
    let r = demo
        .networking(
            Method::PUT,
            &format!("/ports/{own_port}"),
            Some(&json!({"port": {"port_security_enabled": false}})),
        )
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.body["NeutronError"]["type"],
        "PortSecurityPortHasSecurityGroup"
    );
    let r = demo
        .networking(
            Method::PUT,
            &format!("/ports/{own_port}"),
            Some(&json!({"port": {"security_groups": [web, default]}})),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let held: BTreeSet<&str> = r.body["port"]["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(held, BTreeSet::from([web.as_str(), default.as_str()]));
    assert_eq!(
        count(&demo, &format!("/ports?security_groups={web}"), "ports").await?,
        1
    );

    // A server in `web` by name, another by the group's id (Horizon's form); the default
    // group's ingress-from-itself rule lets each in from the other.
    let r = boot(&demo, "sg-a", json!({"networks": [{"uuid": net}], "security_groups": [{"name": "web"}, {"name": "default"}]})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        r.body["server"]["security_groups"],
        json!([{"name": "web"}, {"name": "default"}])
    );
    let a = id_of(&r);
    let r = boot(
        &demo,
        "sg-b",
        json!({"networks": [{"uuid": net}], "security_groups": [{"name": default}]}),
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let b = id_of(&r);
    let server_a = demo.wait_status(&a, "ACTIVE", wait).await?;
    let server_b = demo.wait_status(&b, "ACTIVE", wait).await?;
    let names = |s: &Value| -> BTreeSet<String> {
        s["security_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(&server_a),
        BTreeSet::from(["web".to_owned(), "default".to_owned()])
    );
    assert_eq!(names(&server_b), BTreeSet::from(["default".to_owned()]));
    let ip_of = |s: &Value| {
        s["addresses"]["sg-apply"][0]["addr"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (ip_a, ip_b) = (ip_of(&server_a), ip_of(&server_b));
    assert!(
        !ip_a.is_empty() && !ip_b.is_empty(),
        "{server_a} {server_b}"
    );

    // The host's filter: a's port lets in TCP 80 from anywhere and everything from b.
    let port_a =
        |fw: &[nova_core::firewall::PortFirewall]| fw.iter().find(|p| p.instance == a).cloned();
    let fw = synced(stack, "server a's port with b as a member", |fw| {
        port_a(fw).is_some_and(|p| {
            p.rules
                .iter()
                .any(|r| r.remote.as_deref() == Some(&format!("{ip_b}/32")))
        })
    })
    .await?;
    let pa = port_a(&fw).expect("found");
    assert!(pa.enabled && pa.ips == vec![ip_a.clone()], "{pa:?}");
    assert!(
        pa.rules.iter().any(|r| r.direction == Direction::Ingress
            && r.protocol.as_deref() == Some("tcp")
            && r.port_min == Some(80)
            && r.remote.is_none()),
        "{pa:?}"
    );
    assert!(
        !pa.rules
            .iter()
            .any(|r| r.remote.as_deref() == Some(&format!("{ip_a}/32"))),
        "own address: {pa:?}"
    );

    // `os-security-groups`: one entry per port per group, ingress rules only, Nova's format.
    let r = demo
        .get(&format!("/servers/{a}/os-security-groups"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.body["security_groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 2, "{}", r.body);
    let web_view = listed
        .iter()
        .find(|g| g["name"] == "web")
        .expect("web listed");
    assert_eq!(
        web_view["rules"].as_array().map(Vec::len),
        Some(1),
        "{web_view}"
    );
    assert_eq!(
        (
            &web_view["rules"][0]["ip_protocol"],
            &web_view["rules"][0]["from_port"],
            &web_view["rules"][0]["to_port"],
            &web_view["rules"][0]["ip_range"]
        ),
        (
            &json!("tcp"),
            &json!(80),
            &json!(80),
            &json!({"cidr": "0.0.0.0/0"})
        )
    );
    let default_view = listed
        .iter()
        .find(|g| g["name"] == "default")
        .expect("default listed");
    assert_eq!(
        default_view["rules"][0]["group"]["name"],
        json!("default"),
        "{default_view}"
    );

    // A rule added reaches the host.
    let r = post(
        &demo,
        "/security-group-rules",
        "security_group_rule",
        json!({"security_group_id": web, "direction": "ingress", "protocol": "icmp",
               "port_range_min": 8, "port_range_max": 0, "remote_ip_prefix": "192.168.0.0/16"}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    synced(stack, "the ICMP rule", |fw| {
        port_a(fw).is_some_and(|p| {
            p.rules.iter().any(|r| {
                r.protocol.as_deref() == Some("icmp")
                    && r.remote.as_deref() == Some("192.168.0.0/16")
            })
        })
    })
    .await?;

    // add/removeSecurityGroup, and Nova's refusals (nothing changes).
    let action = |id: &str, body: Value| {
        let c = demo.clone();
        let path = format!("/servers/{id}/action");
        async move { c.post(&path, &body).await }
    };
    for (body, status, message) in [
        (
            json!({"addSecurityGroup": {}}),
            400,
            "Security group not specified".to_owned(),
        ),
        (
            json!({"addSecurityGroup": {"name": " "}}),
            400,
            "Security group name cannot be empty".to_owned(),
        ),
        (
            json!({"addSecurityGroup": {"name": "nope"}}),
            404,
            "Security group nope is not found for project demo".to_owned(),
        ),
        (
            json!({"removeSecurityGroup": {"name": "web"}}),
            404,
            format!("Security group web not associated with the instance {b}"),
        ),
    ] {
        let r = action(&b, body).await?;
        assert_eq!(r.status, status, "{}", r.body);
        let fault = r
            .body
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or_default();
        assert_eq!(fault["message"], json!(message), "{}", r.body);
    }
    // A name two groups have: Nova's NoUniqueMatch (409), at create and in the action.
    let mut twins = Vec::new();
    for _ in 0..2 {
        let r = post(
            &demo,
            "/security-groups",
            "security_group",
            json!({"name": "twin"}),
        )
        .await?;
        assert_eq!(r.status, 201, "{}", r.body);
        twins.push(
            r.body["security_group"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let ambiguous =
        "Multiple security groups found matching 'twin'. Use an ID to be more specific.";
    let r = boot(
        &demo,
        "sg-twin",
        json!({"networks": [{"uuid": net}], "security_groups": [{"name": "twin"}]}),
    )
    .await?;
    assert_eq!(
        (r.status, &r.body["conflictingRequest"]["message"]),
        (409, &json!(ambiguous)),
        "{}",
        r.body
    );
    let r = action(&b, json!({"addSecurityGroup": {"name": "twin"}})).await?;
    assert_eq!(
        (r.status, &r.body["conflictingRequest"]["message"]),
        (409, &json!(ambiguous)),
        "{}",
        r.body
    );
    for id in &twins {
        let r = demo
            .networking(Method::DELETE, &format!("/security-groups/{id}"), None)
            .await?;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let r = action(&b, json!({"addSecurityGroup": {"name": "web"}})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        names(&demo.server(&b).await?.body["server"]),
        BTreeSet::from(["web".to_owned(), "default".to_owned()])
    );
    synced(stack, "web on server b", |fw| {
        fw.iter()
            .any(|p| p.instance == b && p.rules.iter().any(|r| r.port_min == Some(80)))
    })
    .await?;
    let r = action(&b, json!({"removeSecurityGroup": {"name": "web"}})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        names(&demo.server(&b).await?.body["server"]),
        BTreeSet::from(["default".to_owned()])
    );

    // A group that ports hold is not deleted (Neutron's SecurityGroupInUse); with its
    // servers gone, it is.
    let r = demo
        .networking(Method::DELETE, &format!("/security-groups/{web}"), None)
        .await?;
    assert_fault(
        &r,
        409,
        "SecurityGroupInUse",
        &format!("Security Group {web} in use."),
    );
    for id in [&a, &b] {
        assert_eq!(demo.delete(&format!("/servers/{id}")).await?.status, 204);
        demo.wait_gone(id, wait).await?;
    }
    synced(stack, "no port of the deleted servers", |fw| {
        !fw.iter().any(|p| p.instance == a || p.instance == b)
    })
    .await?;
    let r = demo
        .networking(Method::DELETE, &format!("/ports/{own_port}"), None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = demo
        .networking(Method::DELETE, &format!("/security-groups/{web}"), None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    Ok(())
}

on_both_shapes!(
    the_compute_apis_security_group_proxy_answers_until_2_35,
    Options::default()
);
/// Nova's deprecated `os-security-groups` proxy (until 2.35) over the networking service's
/// groups: Nova's views (ingress rules only, in Nova's format), Nova's rule checks and its
/// mapping of Neutron's refusals, the same rows as the networking API's, and 404 from 2.36.
async fn the_compute_apis_security_group_proxy_answers_until_2_35(
    stack: &dyn Stack,
) -> anyhow::Result<()> {
    let c = client(stack, "demo").at_microversion("2.35");
    let r = c
        .post(
            "/os-security-groups",
            &json!({"security_group": {"name": " web ", "description": "the web"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let group = r.body["security_group"].clone();
    assert_eq!(
        (&group["name"], &group["tenant_id"], &group["rules"]),
        (&json!(" web "), &json!("demo"), &json!([])),
        "spaces kept, egress rules not shown: {group}"
    );
    let web = group["id"].as_str().unwrap_or_default().to_owned();
    let r = c
        .post(
            "/os-security-groups",
            &json!({"security_group": {"name": "Default", "description": ""}}),
        )
        .await?;
    assert_eq!(
        r.status, 403,
        "Neutron's conflict is Nova's 403: {}",
        r.body
    );
    let r = c
        .post(
            "/os-security-groups",
            &json!({"security_group": {"name": "x"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let listed = c.get("/os-security-groups").await?;
    let names: Vec<&Value> = listed.body["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| &g["name"])
        .collect();
    assert_eq!(names, [&json!(" web "), &json!("default")], "by name");
    let default = listed.body["security_groups"][1]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let rule = |body: Value| {
        let c = c.clone();
        async move {
            c.post(
                "/os-security-group-rules",
                &json!({"security_group_rule": body}),
            )
            .await
        }
    };
    let r = rule(json!({"parent_group_id": web, "ip_protocol": "tcp",
                        "from_port": 22, "to_port": 22}))
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let ssh = r.body["security_group_rule"].clone();
    assert_eq!(
        (
            &ssh["ip_range"],
            &ssh["group"],
            &ssh["from_port"],
            &ssh["parent_group_id"]
        ),
        (
            &json!({"cidr": "0.0.0.0/0"}),
            &json!({}),
            &json!(22),
            &json!(web)
        )
    );
    let unknown = "8c6b7f3e-0000-4000-8000-000000000000";
    for (body, status, message) in [
        (
            json!({"parent_group_id": web, "ip_protocol": "tcp", "from_port": 22, "to_port": 22}),
            400,
            format!("This rule already exists in group {web}"),
        ),
        (
            json!({"parent_group_id": web, "ip_protocol": "tcp", "from_port": 22, "to_port": 21}),
            400,
            "Invalid port range 22:21. Former value cannot be greater than the later".into(),
        ),
        (
            json!({"parent_group_id": web, "ip_protocol": "tcp", "from_port": 1, "to_port": 65536}),
            400,
            "Invalid port range 1:65536. Valid TCP ports should be between 1-65535".into(),
        ),
        (
            json!({"parent_group_id": web, "ip_protocol": "xyz", "from_port": 1, "to_port": 2}),
            400,
            "Invalid IP protocol xyz.".into(),
        ),
        (
            json!({"parent_group_id": web, "ip_protocol": "tcp", "from_port": 1, "to_port": 2,
                   "cidr": "10.0.0.1"}),
            400,
            "10.0.0.1 is not a valid IP network.".into(),
        ),
        (
            json!({"parent_group_id": web, "cidr": "10.0.0.0/8"}),
            400,
            "Not enough parameters to build a valid rule.".into(),
        ),
        (
            json!({"parent_group_id": unknown, "ip_protocol": "tcp", "from_port": 1,
                   "to_port": 2}),
            404,
            format!("Security group {unknown} does not exist"),
        ),
    ] {
        let r = rule(body.clone()).await?;
        let key = if status == 400 {
            "badRequest"
        } else {
            "itemNotFound"
        };
        assert_eq!(
            (r.status, &r.body[key]["message"]),
            (status, &json!(message)),
            "{body}"
        );
    }
    assert_eq!(rule(json!({"parent_group_id": "nope"})).await?.status, 400);
    // From a group: ICMP without ports is every type and code.
    let r =
        rule(json!({"parent_group_id": web, "group_id": default, "ip_protocol": "icmp"})).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let from_default = r.body["security_group_rule"].clone();
    assert_eq!(
        (&from_default["group"], &from_default["ip_range"]),
        (&json!({"name": "default", "tenant_id": "demo"}), &json!({}))
    );
    assert_eq!(
        (&from_default["from_port"], &from_default["to_port"]),
        (&json!(-1), &json!(-1))
    );
    // The networking API's rows: the two ingress rules beside Neutron's two egress ones.
    let r = c
        .networking(
            Method::GET,
            &format!("/security-group-rules?security_group_id={web}"),
            None,
        )
        .await?;
    let rules = r.body["security_group_rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rules.len(), 4, "{}", r.body);
    assert!(rules.iter().any(|r| r["protocol"] == json!("tcp")
        && r["port_range_min"] == json!(22)
        && r["direction"] == json!("ingress")));
    let shown = c.get(&format!("/os-security-groups/{web}")).await?;
    assert_eq!(
        shown.body["security_group"]["rules"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let r = c
        .put(
            &format!("/os-security-groups/{web}"),
            &json!({"security_group": {"name": "www", "description": "renamed"}}),
        )
        .await?;
    assert_eq!(
        (r.status, &r.body["security_group"]["name"]),
        (200, &json!("www"))
    );
    let r = c
        .put(
            &format!("/os-security-groups/{default}"),
            &json!({"security_group": {"name": "other", "description": ""}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(c.get("/os-security-groups/nope").await?.status, 400);
    assert_eq!(
        c.get(&format!("/os-security-groups/{unknown}"))
            .await?
            .status,
        404
    );
    let ssh_id = ssh["id"].as_str().unwrap_or_default();
    assert_eq!(
        c.delete(&format!("/os-security-group-rules/{ssh_id}"))
            .await?
            .status,
        202
    );
    assert_eq!(
        c.delete(&format!("/os-security-group-rules/{ssh_id}"))
            .await?
            .status,
        404
    );
    let r = c.delete(&format!("/os-security-groups/{default}")).await?;
    assert_eq!(
        (r.status, &r.body["badRequest"]["message"]),
        (
            400,
            &json!("Insufficient rights for removing default security group.")
        )
    );
    assert_eq!(
        c.delete(&format!("/os-security-groups/{web}"))
            .await?
            .status,
        202
    );
    assert_eq!(
        c.get(&format!("/os-security-groups/{web}")).await?.status,
        404
    );
    // Gone from 2.36, as in Nova.
    let r = c.at_microversion("2.36").get("/os-security-groups").await?;
    assert_eq!(r.status, 404, "{}", r.body);
    Ok(())
}

on_both_shapes!(bulk_creates_make_all_or_none, Options::default());
/// Neutron's bulk creates of networks, subnets and ports: each made as its own create would
/// be, all in one answer; one refused, and those made before it are gone again.
async fn bulk_creates_make_all_or_none(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = client(stack, "demo");
    let before = count(&c, "/networks", "networks").await?;
    let r = post(
        &c,
        "/networks",
        "networks",
        json!([{"name": "b1"}, {"name": "b2"}]),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let made: Vec<String> = r.body["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(made.len(), 2, "{}", r.body);
    assert_eq!(r.body["networks"][1]["name"], json!("b2"));
    let r = post(
        &c,
        "/subnets",
        "subnets",
        json!([{"network_id": made[0], "cidr": "10.61.0.0/24", "ip_version": 4},
               {"network_id": made[1], "cidr": "10.62.0.0/24", "ip_version": 4}]),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["subnets"].as_array().map(Vec::len), Some(2));
    let r = post(
        &c,
        "/ports",
        "ports",
        json!([{"network_id": made[0]}, {"network_id": made[1]}]),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let address = r.body["ports"][1]["fixed_ips"][0]["ip_address"].clone();
    assert!(
        address.as_str().is_some_and(|a| a.starts_with("10.62.0.")),
        "an address of its own network's subnet: {address}"
    );
    // The second refused (a cidr that is not one): the first is not left behind.
    let subnets = count(&c, "/subnets", "subnets").await?;
    let r = post(
        &c,
        "/subnets",
        "subnets",
        json!([{"network_id": made[0], "cidr": "10.63.0.0/24", "ip_version": 4},
               {"network_id": made[1], "cidr": "bogus", "ip_version": 4}]),
    )
    .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(count(&c, "/subnets", "subnets").await?, subnets);
    let r = post(&c, "/networks", "networks", json!([])).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(count(&c, "/networks", "networks").await?, before + 2);
    Ok(())
}

on_both_shapes!(
    external_networks_are_seen_by_all_and_used_by_admins,
    Options::default()
);
/// Neutron's external networks (`router:external`): an admin's, seen by every project and
/// listed by the attribute; a member neither makes one, nor a port or a server on it (Nova's
/// ExternalNetworkAttachForbidden), unless it is shared too.
async fn external_networks_are_seen_by_all_and_used_by_admins(
    stack: &dyn Stack,
) -> anyhow::Result<()> {
    let a = client(stack, "admin");
    let c = client(stack, "demo");
    let r = post(
        &a,
        "/networks",
        "network",
        json!({"name": "ext", "router:external": true}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["network"]["router:external"], json!(true));
    let ext = r.body["network"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = c
        .networking(Method::GET, "/networks?router:external=true", None)
        .await?;
    let ids: Vec<&Value> = r.body["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(ids, [&json!(ext)], "a member sees it: {}", r.body);
    let r = post(&c, "/ports", "port", json!({"network_id": ext})).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    // Not a network a member's server is put on when it names none (Nova's available
    // networks: the project's own and shared ones).
    let r = boot(&c, "auto", json!({})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = boot(&c, "on-ext", json!({"networks": [{"uuid": ext}]})).await?;
    assert_eq!(
        (r.status, &r.body["forbidden"]["message"]),
        (
            403,
            &json!(format!(
                "It is not allowed to create an interface on external network {ext}"
            ))
        )
    );
    let r = post(
        &c,
        "/networks",
        "network",
        json!({"name": "x", "router:external": true}),
    )
    .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = c
        .networking(
            Method::PUT,
            &format!("/networks/{ext}"),
            Some(&json!({"network": {"router:external": false}})),
        )
        .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    // No longer external: an admin's private network again, which members do not see.
    let r = a
        .networking(
            Method::PUT,
            &format!("/networks/{ext}"),
            Some(&json!({"network": {"router:external": false}})),
        )
        .await?;
    assert_eq!(
        r.body["network"]["router:external"],
        json!(false),
        "{}",
        r.body
    );
    let r = c
        .networking(Method::GET, &format!("/networks/{ext}"), None)
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    Ok(())
}
