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

    // A given address: the network owner's to choose, once, inside the subnet.
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
    for path in ["/routers", "/floatingips", "/security-groups/x"] {
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
        aliases.contains(&"binding") && !aliases.contains(&"router"),
        "{aliases:?}"
    );
    Ok(())
}
