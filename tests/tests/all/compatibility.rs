//! What real clients send and read, accepted and answered as Nova answers it: the Terraform
//! OpenStack provider's create body, Tempest's request shapes (string booleans, `{}` as an
//! action's argument, flavor paging and filters, x509 key pairs, the hypervisor routes before
//! 2.53, the version documents), what Horizon reads (usage, volume attachments, Glance's
//! schemas through python-glanceclient), and the inputs Nova refuses.

use e2e::client::{Client, IMAGE};
use e2e::on_both_shapes;
use e2e::stack::{AllInOneStack, Options, Stack};
use keystone_auth::{AuthSettings, Strategy};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn admin(stack: &dyn Stack) -> Client {
    Client::new(stack.api_url(), "admin:admin")
}

/// The all-in-one with Keystone tokens issued here (passwords `admin-pw`, `demo-pw`).
async fn keystone_stack() -> anyhow::Result<AllInOneStack> {
    AllInOneStack::start(Options {
        auth: Some(AuthSettings {
            strategy: Strategy::Keystone,
            admin_password: Some("admin-pw".into()),
            demo_password: Some("demo-pw".into()),
            ..Default::default()
        }),
        ..Options::default()
    })
    .await
}

fn demo(stack: &dyn Stack, version: &str) -> Client {
    Client::new(stack.api_url(), "demo:demo").at_microversion(version)
}

on_both_shapes!(
    the_terraform_providers_create_body_is_accepted,
    Options::default()
);
async fn the_terraform_providers_create_body_is_accepted(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.52");
    let network = admin(stack)
        .create_network(json!({"name": "tf-net", "shared": true}))
        .await?;
    // Imported with its trailing newline, as the provider reads a key file.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl tf@example\n";
    let r = c
        .post(
            "/os-keypairs",
            &json!({"keypair": {"name": "tf-key", "public_key": key}}),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["keypair"]["public_key"], json!(key));
    let r = c.get("/os-keypairs/tf-key").await?;
    assert_eq!(r.body["keypair"]["public_key"], json!(key), "byte for byte");
    // The provider's body, as it sends it for a server with a network, a key pair, metadata
    // and tags.
    let body = json!({"server": {
        "name": "tf-server",
        "imageRef": IMAGE,
        "flavorRef": "1",
        "key_name": "tf-key",
        "metadata": {"owner": "terraform"},
        "networks": [{"uuid": network}],
        "config_drive": false,
        "user_data": "",
        "security_groups": [{"name": "default"}],
        "tags": ["tf"],
    }});
    let r = c.post("/servers", &body).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = c.wait_status(&id, "ACTIVE", WAIT).await?;
    assert_eq!(s["key_name"], json!("tf-key"));
    assert_eq!(s["metadata"]["owner"], json!("terraform"));
    assert_eq!(s["tags"], json!(["tf"]));
    assert_eq!(s["config_drive"], json!(""));
    let chosen = nova_db::instances::get(stack.db(), id.parse()?)
        .await?
        .map(|i| i.networks);
    assert!(
        matches!(&chosen, Some(nova_core::model::NetworkRequest::Chosen(n)) if n[0].id == network),
        "{chosen:?}"
    );
    Ok(())
}

on_both_shapes!(create_fields_nova_accepts_are_accepted, Options::default());
async fn create_fields_nova_accepts_are_accepted(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.1");
    // adminPass is returned as given; access IPs are kept and shown; config_drive shows.
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "fields", "imageRef": IMAGE, "flavorRef": "1",
                "adminPass": "s3cret!", "accessIPv4": "192.0.2.7", "accessIPv6": "2001:db8::7",
                "config_drive": "True", "personality": [], "block_device_mapping": []}}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["server"]["adminPass"], json!("s3cret!"));
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = c.wait_status(&id, "ACTIVE", WAIT).await?;
    assert_eq!(s["accessIPv4"], json!("192.0.2.7"));
    assert_eq!(s["accessIPv6"], json!("2001:db8::7"));
    assert_eq!(s["config_drive"], json!("True"));
    let r = c
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"accessIPv4": "192.0.2.8",
                               "accessIPv6": "0000:0000:0000:0000:0000:babe:220.12.22.2"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["server"]["accessIPv4"], json!("192.0.2.8"));
    // Kept as an address, read back in its canonical spelling (as Tempest checks).
    assert_eq!(r.body["server"]["accessIPv6"], json!("::babe:dc0c:1602"));
    // Bad values are still Nova's 400, with nothing written.
    for bad in [
        json!({"accessIPv4": "not-an-address"}),
        json!({"accessIPv6": "192.0.2.1"}),
        json!({"config_drive": "maybe"}),
        json!({"personality": [{"path": "/etc/x", "contents": "%%%"}]}),
    ] {
        let mut server = json!({"name": "bad", "imageRef": IMAGE, "flavorRef": "1"});
        for (k, v) in bad.as_object().into_iter().flatten() {
            server[k] = v.clone();
        }
        let r = c.post("/servers", &json!({ "server": server })).await?;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    // personality is gone from 2.57.
    let r = demo(stack, "2.57")
        .post(
            "/servers",
            &json!({"server": {"name": "p", "imageRef": IMAGE, "flavorRef": "1",
                "networks": "none", "personality": []}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    // return_reservation_id: the reservation instead of a server.
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "rsv", "imageRef": IMAGE, "flavorRef": "1",
                "min_count": 2, "return_reservation_id": true}}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body["reservation_id"]
        .as_str()
        .is_some_and(|r| r.starts_with("r-")));
    // trusted_image_certificates (2.63): kept and shown.
    let c63 = demo(stack, "2.63");
    let r = c63
        .post(
            "/servers",
            &json!({"server": {"name": "certs", "imageRef": IMAGE, "flavorRef": "1",
                "networks": "none", "trusted_image_certificates": ["cert-1", "cert-2"]}}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = c63.wait_status(&id, "ACTIVE", WAIT).await?;
    assert_eq!(s["trusted_image_certificates"], json!(["cert-1", "cert-2"]));
    // host (2.74) is for admins, and must name a host.
    let body = json!({"server": {"name": "h", "imageRef": IMAGE, "flavorRef": "1",
        "networks": "none", "host": "no-such-host"}});
    let r = demo(stack, "2.74").post("/servers", &body).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = admin(stack)
        .at_microversion("2.74")
        .post("/servers", &body)
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!("Compute host no-such-host could not be found.")
    );
    Ok(())
}

on_both_shapes!(
    an_image_too_big_for_the_flavor_is_refused,
    Options::default()
);
async fn an_image_too_big_for_the_flavor_is_refused(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.1");
    let flavor = admin(stack)
        .post(
            "/flavors",
            &json!({"flavor": {"name": "small", "id": "small", "ram": 256, "vcpus": 1, "disk": 1}}),
        )
        .await?;
    assert_eq!(flavor.status, 200, "{}", flavor.body);
    let http = reqwest::Client::new();
    let images = format!("{}/image/v2/images", stack.api_url());
    for (field, value, message) in [
        ("min_ram", 512, "Flavor's memory is too small for requested image."),
        ("min_disk", 2, "Flavor's disk is too small for requested image. Flavor disk is 1073741824 bytes, minimum size is 2147483648 bytes."),
    ] {
        let created: Value = http
            .post(&images)
            .header("X-Auth-Token", "demo:demo")
            .json(&json!({"name": field, "container_format": "bare", "disk_format": "raw",
                          field: value}))
            .send()
            .await?
            .json()
            .await?;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        let r = http
            .put(format!("{images}/{id}/file"))
            .header("X-Auth-Token", "demo:demo")
            .header("Content-Type", "application/octet-stream")
            .body(b"disk".to_vec())
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 204);
        let before = nova_db::instances::count_all(stack.db()).await?;
        let r = c
            .post(
                "/servers",
                &json!({"server": {"name": "big", "imageRef": id, "flavorRef": "small"}}),
            )
            .await?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["badRequest"]["message"], json!(message));
        assert_eq!(nova_db::instances::count_all(stack.db()).await?, before);
    }
    Ok(())
}

on_both_shapes!(
    flavors_are_listed_and_made_as_tempest_asks,
    Options::default()
);
async fn flavors_are_listed_and_made_as_tempest_asks(stack: &dyn Stack) -> anyhow::Result<()> {
    let a = admin(stack);
    // is_public in any of Nova's boolean spellings.
    for (n, spelling, public) in [
        (1, json!("True"), true),
        (2, json!("false"), false),
        (3, json!("1"), true),
        (4, json!("no"), false),
    ] {
        let r = a
            .post(
                "/flavors",
                &json!({"flavor": {"name": format!("pub-{n}"), "id": format!("pub-{n}"),
                    "ram": 64 * n, "vcpus": 1, "disk": n, "os-flavor-access:is_public": spelling}}),
            )
            .await?;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["flavor"]["os-flavor-access:is_public"],
            json!(public)
        );
    }
    let r = a
        .post(
            "/flavors",
            &json!({"flavor": {"name": "pub-x", "ram": 64, "vcpus": 1, "disk": 1,
                "os-flavor-access:is_public": "perhaps"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let ids = |r: &Value| -> Vec<String> {
        r["flavors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["id"].as_str().map(str::to_owned))
            .collect()
    };
    let all = ids(&a.get("/flavors?is_public=none").await?.body);
    // Paged by limit and marker, by flavor id.
    let r = a.get("/flavors?is_public=none&limit=2").await?;
    assert_eq!(ids(&r.body), all[..2]);
    assert!(r.body["flavors_links"][0]["href"]
        .as_str()
        .is_some_and(|h| h.contains(&format!("marker={}", all[1]))));
    let r = a
        .get(&format!("/flavors/detail?is_public=none&marker={}", all[1]))
        .await?;
    assert_eq!(ids(&r.body), all[2..]);
    // minRam and minDisk.
    let r = a
        .get("/flavors/detail?is_public=none&minRam=192&minDisk=3")
        .await?;
    let detail = r.body["flavors"].as_array().cloned().unwrap_or_default();
    assert!(!detail.is_empty());
    assert!(detail
        .iter()
        .all(|f| f["ram"].as_i64() >= Some(192) && f["disk"].as_i64() >= Some(3)));
    // Sorted by a key Nova knows; one it does not is a 400.
    let r = a
        .get("/flavors?is_public=none&sort_key=memory_mb&sort_dir=desc")
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(a.get("/flavors?sort_key=bogus").await?.status, 400);
    assert_eq!(a.get("/flavors?marker=no-such-flavor").await?.status, 400);
    // An extra spec value over 255 characters is refused.
    let r = a
        .post(
            "/flavors/pub-1/os-extra_specs",
            &json!({"extra_specs": {"hw:long": "x".repeat(256)}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    Ok(())
}

on_both_shapes!(tempests_request_shapes_are_accepted, Options::default());
async fn tempests_request_shapes_are_accepted(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.1");
    let id = c.create_server("shapes", "1").await?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    // {"os-stop": {}}: Tempest's empty argument.
    assert_eq!(c.action(&id, &json!({"os-stop": {}})).await?.status, 202);
    c.wait_status(&id, "SHUTOFF", WAIT).await?;
    assert_eq!(c.action(&id, &json!({"os-start": {}})).await?.status, 202);
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    assert_eq!(
        c.action(&id, &json!({"os-stop": {"x": 1}})).await?.status,
        400
    );
    // x509 key pairs (2.2): generated, and imported.
    let c22 = demo(stack, "2.2");
    let r = c22
        .post(
            "/os-keypairs",
            &json!({"keypair": {"name": "cert", "type": "x509"}}),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["keypair"]["type"], json!("x509"));
    let pem = r.body["keypair"]["public_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(
        r.body["keypair"]["fingerprint"]
            .as_str()
            .map(|f| f.split(':').count()),
        Some(20),
        "a SHA-1 fingerprint"
    );
    let r = c22
        .post(
            "/os-keypairs",
            &json!({"keypair": {"name": "cert2", "type": "x509", "public_key": pem}}),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    // The version documents every link of `GET /` leads to.
    let http = reqwest::Client::new();
    let root: Value = http.get(stack.api_url()).send().await?.json().await?;
    for v in root["versions"].as_array().into_iter().flatten() {
        let href = v["links"][0]["href"].as_str().unwrap_or_default();
        let r = http
            .get(href)
            .header("X-Auth-Token", "demo:demo")
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 200, "{href}");
        let doc: Value = r.json().await?;
        assert_eq!(doc["version"]["id"], v["id"]);
    }
    Ok(())
}

on_both_shapes!(
    the_hypervisor_routes_follow_the_microversion,
    Options::default()
);
async fn the_hypervisor_routes_follow_the_microversion(stack: &dyn Stack) -> anyhow::Result<()> {
    let a = admin(stack).at_microversion("2.52");
    let id = demo(stack, "2.1").create_server("on-node", "1").await?;
    demo(stack, "2.1").wait_status(&id, "ACTIVE", WAIT).await?;
    let list = a.get("/os-hypervisors").await?.body;
    let hypervisor = list["hypervisors"][0].clone();
    let name = hypervisor["hypervisor_hostname"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = a.get(&format!("/os-hypervisors/{name}/search")).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["hypervisors"][0]["hypervisor_hostname"], json!(name));
    let r = a.get(&format!("/os-hypervisors/{name}/servers")).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let servers = r.body["hypervisors"][0]["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(servers.iter().any(|s| s["uuid"] == json!(id)), "{}", r.body);
    assert_eq!(
        a.get("/os-hypervisors/no-such-node/search").await?.status,
        404
    );
    let member = demo(stack, "2.52");
    assert_eq!(
        member
            .get(&format!("/os-hypervisors/{name}/search"))
            .await?
            .status,
        403
    );
    // Gone from 2.53, as in Nova.
    let a53 = admin(stack).at_microversion("2.53");
    assert_eq!(
        a53.get(&format!("/os-hypervisors/{name}/search"))
            .await?
            .status,
        404
    );
    // The uptime, asked of the host: for admins, from the host's agent.
    let hid = hypervisor["id"].to_string();
    assert_eq!(
        member
            .get(&format!("/os-hypervisors/{hid}/uptime"))
            .await?
            .status,
        403
    );
    let r = a.get(&format!("/os-hypervisors/{hid}/uptime")).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["hypervisor"]["uptime"]
        .as_str()
        .is_some_and(|u| u.contains(" up ") && u.contains("load average")));
    Ok(())
}

on_both_shapes!(
    horizon_reads_usage_and_volume_attachments,
    Options::default()
);
async fn horizon_reads_usage_and_volume_attachments(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.40");
    let old = demo(stack, "2.1");
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = old.create_server(&format!("used-{n}"), "1").await?;
        c.wait_status(&id, "ACTIVE", WAIT).await?;
        ids.push(id);
    }
    assert_eq!(c.delete(&format!("/servers/{}", ids[2])).await?.status, 204);
    c.wait_gone(&ids[2], WAIT).await?;
    let window = "start=2000-01-01T00:00:00&end=2100-01-01T00:00:00";
    // One project's usage: every server that ran in the period, the deleted one too.
    let r = c
        .get(&format!("/os-simple-tenant-usage/demo?{window}"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let usage = &r.body["tenant_usage"];
    assert_eq!(usage["tenant_id"], json!("demo"));
    let servers = usage["server_usages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(servers.len(), 3, "{usage}");
    assert!(servers
        .iter()
        .any(|s| s["state"] == json!("terminated") && s["ended_at"].is_string()));
    assert!(usage["total_hours"].as_f64().is_some_and(|h| h > 0.0));
    // Paged by server from 2.40.
    let r = c
        .get(&format!("/os-simple-tenant-usage/demo?{window}&limit=2"))
        .await?;
    let page = r.body["tenant_usage"]["server_usages"]
        .as_array()
        .map(Vec::len);
    assert_eq!(page, Some(2));
    assert!(r.body["tenant_usage_links"][0]["href"].is_string());
    // All projects for admins, detailed on request; members may not.
    let a = admin(stack).at_microversion("2.40");
    let r = a
        .get(&format!("/os-simple-tenant-usage?{window}&detailed=1"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["tenant_usages"]
        .as_array()
        .is_some_and(|u| u.iter().any(|t| t["tenant_id"] == json!("demo"))));
    assert_eq!(
        c.get(&format!("/os-simple-tenant-usage?{window}"))
            .await?
            .status,
        403
    );
    assert_eq!(
        c.get("/os-simple-tenant-usage/demo?start=2100-01-01T00:00:00&end=2000-01-01T00:00:00")
            .await?
            .status,
        400
    );
    assert_eq!(
        c.get("/os-simple-tenant-usage/demo?start=yesterday")
            .await?
            .status,
        400
    );
    assert_eq!(
        c.get("/os-simple-tenant-usage/someone-else").await?.status,
        403
    );
    // No block storage: no volumes attached, and any one is not found.
    let r = c
        .get(&format!("/servers/{}/os-volume_attachments", ids[0]))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"volumeAttachments": []}));
    let r = c
        .get(&format!("/servers/{}/os-volume_attachments/vol-1", ids[0]))
        .await?;
    assert_eq!(r.status, 404);
    Ok(())
}

on_both_shapes!(routes_answer_as_novas_do, Options::default());
async fn routes_answer_as_novas_do(stack: &dyn Stack) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = stack.api_url();
    // Without a token, a path that does not exist is a 401, as Nova's auth runs first.
    let r = http.get(format!("{url}/v2.1/no-such-thing")).send().await?;
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(format!("{url}/v2.1/no-such-thing"))
        .header("X-Auth-Token", "demo:demo")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 404);
    // A method a path does not take: 405 with Allow, in Nova's fault body.
    let r = http
        .request(
            reqwest::Method::from_bytes(b"TRACE")?,
            format!("{url}/v2.1/flavors"),
        )
        .header("X-Auth-Token", "demo:demo")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 405);
    let allow = r
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = r.json().await?;
    assert_eq!(body["badMethod"]["code"], json!(405));
    // Neutron's extension list and each extension by alias (Tempest, Horizon).
    let get = |path: &str| {
        http.get(format!("{url}/network/v2.0/{path}"))
            .header("X-Auth-Token", "demo:demo")
            .send()
    };
    let all: Value = get("extensions").await?.json().await?;
    assert!(
        all["extensions"].as_array().is_some_and(|e| !e.is_empty()),
        "{all}"
    );
    let one: Value = get("extensions/provider").await?.json().await?;
    assert_eq!(one["extension"]["alias"], json!("provider"));
    let r = get("extensions/no-such").await?;
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await?;
    assert_eq!(
        body["NeutronError"]["type"],
        json!("ExtensionNotFound"),
        "{body}"
    );
    Ok(())
}

/// With identity here, a project named in a request must exist (Nova asks Keystone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_named_in_requests_must_exist() -> anyhow::Result<()> {
    let stack = keystone_stack().await?;
    let url = stack.api_url().to_owned();
    let token = e2e::client::password_token(&url, "admin", "admin-pw", "admin").await?;
    let a = Client::new(&url, &token);
    let r = a
        .put(
            "/os-quota-sets/no-such-project",
            &json!({"quota_set": {"instances": 5}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!("Project ID no-such-project is not a valid project.")
    );
    let r = a
        .post(
            "/flavors",
            &json!({"flavor": {"name": "priv", "id": "priv", "ram": 64, "vcpus": 1, "disk": 1,
                "os-flavor-access:is_public": false}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a
        .post(
            "/flavors/priv/action",
            &json!({"addTenantAccess": {"tenant": "no-such-project"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    // A project that exists is fine.
    let demo = nova_db::identity::projects(stack.db(), Some("demo"), None)
        .await?
        .first()
        .map(|p| p.id.clone())
        .unwrap_or_default();
    let r = a
        .put(
            &format!("/os-quota-sets/{demo}"),
            &json!({"quota_set": {"instances": 5}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a
        .post(
            "/flavors/priv/action",
            &json!({"addTenantAccess": {"tenant": demo}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    Ok(())
}

on_both_shapes!(
    the_image_proxy_answers_until_its_microversion,
    Options::default()
);
/// The compute API's `/images` proxy (until 2.35) and image metadata (until 2.38), as the
/// Tempest image tests and older novaclients use them.
async fn the_image_proxy_answers_until_its_microversion(stack: &dyn Stack) -> anyhow::Result<()> {
    let old = demo(stack, "2.35");
    let id = old
        .create_image("proxied", "bare", "raw", b"0123456789".to_vec())
        .await?;
    assert!(stack.image_store().join(&id).exists());
    let r = old.get(&format!("/images/{id}")).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["image"]["status"], json!("ACTIVE"));
    assert_eq!(r.body["image"]["OS-EXT-IMG-SIZE:size"], json!(10));
    let r = old.get("/images/detail?name=proxied").await?;
    let ids: Vec<&Value> = r.body["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(ids, vec![&json!(id)], "{}", r.body);
    let r = old.get("/images?status=SAVING").await?;
    assert_eq!(r.body["images"], json!([]), "active images are not saving");

    let r = demo(stack, "2.36").get(&format!("/images/{id}")).await?;
    assert_eq!(r.status, 404, "gone at 2.36: {}", r.body);

    // Metadata stays until 2.38, within the metadata_items quota.
    let meta = demo(stack, "2.38");
    let r = meta
        .post(
            &format!("/images/{id}/metadata"),
            &json!({"metadata": {"os_distro": "busybox"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = meta
        .get(&format!("/images/{id}/metadata/os_distro"))
        .await?;
    assert_eq!(r.body, json!({"meta": {"os_distro": "busybox"}}));
    let r = meta
        .put(
            &format!("/images/{id}/metadata/other"),
            &json!({"meta": {"os_distro": "x"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "body and URI mismatch: {}", r.body);
    let r = meta
        .delete(&format!("/images/{id}/metadata/missing"))
        .await?;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        json!("Invalid metadata key")
    );
    let many: serde_json::Map<String, Value> =
        (0..129).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = meta
        .put(
            &format!("/images/{id}/metadata"),
            &json!({"metadata": many}),
        )
        .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["forbidden"]["message"],
        json!("Image metadata limit exceeded")
    );
    let r = meta.get(&format!("/images/{id}/metadata")).await?;
    assert_eq!(
        r.body,
        json!({"metadata": {"os_distro": "busybox"}}),
        "unchanged"
    );
    // Nova's property filters, in SQL on both backends.
    let listed = |r: &e2e::client::Reply| {
        r.body["images"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["id"] == json!(id))
    };
    let r = old.get("/images?property-os_distro=busybox").await?;
    assert!(listed(&r), "{}", r.body);
    let r = old.get("/images?property-os_distro=debian").await?;
    assert!(!listed(&r), "{}", r.body);
    let r = old.get("/images?type=snapshot").await?;
    assert!(!listed(&r), "{}", r.body);
    let r = demo(stack, "2.39")
        .get(&format!("/images/{id}/metadata"))
        .await?;
    assert_eq!(r.status, 404);

    // Another project can neither see nor delete it; its owner deletes record and data.
    let other = Client::new(stack.api_url(), "eve:other").at_microversion("2.1");
    assert_eq!(other.delete(&format!("/images/{id}")).await?.status, 404);
    let r = old.delete(&format!("/images/{id}")).await?;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(old.get(&format!("/images/{id}")).await?.status, 404);
    assert!(!stack.image_store().join(&id).exists(), "its data is gone");
    Ok(())
}

on_both_shapes!(servers_are_found_by_their_addresses, Options::default());
/// Nova's `ip` and `ip6` list filters: a regular expression matched from the start of each of
/// the server's addresses of that version (Tempest's test_list_servers_filtered_by_ip).
async fn servers_are_found_by_their_addresses(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.1");
    let network = admin(stack)
        .create_network(json!({"name": "ip-net", "shared": true}))
        .await?;
    let mut by_addr = std::collections::BTreeMap::new();
    for n in 0..3 {
        let r = c
            .post(
                "/servers",
                &json!({"server": {"name": format!("ip-{n}"), "imageRef": IMAGE,
                                   "flavorRef": "1", "networks": [{"uuid": network}]}}),
            )
            .await?;
        assert_eq!(r.status, 202, "{}", r.body);
        let id = r.body["server"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let s = c.wait_status(&id, "ACTIVE", WAIT).await?;
        let addr = s["addresses"]["ip-net"][0]["addr"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        by_addr.insert(addr, id);
    }
    let ids = |r: &e2e::client::Reply| -> Vec<String> {
        r.body["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect()
    };
    for (addr, id) in &by_addr {
        // Escaped, each address finds its own server only.
        let r = c
            .get(&format!("/servers?ip={}", regex::escape(addr)))
            .await?;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(ids(&r), vec![id.clone()], "{addr}");
    }
    // A prefix finds every server whose address starts with it; the start is anchored.
    let r = c.get("/servers?ip=10%5C.").await?;
    assert_eq!(ids(&r).len(), 3, "{}", r.body);
    let r = c.get("/servers?ip=0%5C.").await?;
    assert_eq!(ids(&r), Vec::<String>::new(), "matched from the start only");
    // No server has an IPv6 address; `ip6` is an admin's filter before 2.5 (ignored then).
    let r = c.get("/servers?ip6=.*").await?;
    assert_eq!(ids(&r).len(), 3, "ignored before 2.5: {}", r.body);
    let c25 = demo(stack, "2.5");
    let r = c25.get("/servers?ip6=.*").await?;
    assert_eq!(ids(&r), Vec::<String>::new());
    // Both: a server matching either.
    let (first_addr, first_id) = by_addr
        .iter()
        .next()
        .map(|(a, i)| (a.clone(), i.clone()))
        .unwrap_or_default();
    let r = c25
        .get(&format!(
            "/servers?ip={}&ip6=.*",
            regex::escape(&first_addr)
        ))
        .await?;
    assert_eq!(ids(&r), vec![first_id], "{}", r.body);
    // A pattern checked as it is used: a comment must not swallow the anchor's parenthesis.
    let r = c.get("/servers?ip=(%3Fx)10%2301").await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["badRequest"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("parameters ip.")),
        "{}",
        r.body
    );
    let r = c.get("/servers?ip=(").await?;
    assert_eq!(r.status, 400, "{}", r.body);
    Ok(())
}

on_both_shapes!(the_legacy_admin_apis_answer_as_novas_do, Options::default());
/// The deprecated proxies and admin APIs Tempest still tests: os-hosts (until 2.42),
/// os-networks and os-tenant-networks (until 2.35), the usage audit log, quota classes,
/// server passwords, os-resetState, forceDelete/restore and the extension list.
async fn the_legacy_admin_apis_answer_as_novas_do(stack: &dyn Stack) -> anyhow::Result<()> {
    let a = admin(stack).at_microversion("2.42");
    let member = demo(stack, "2.42");

    // os-hosts: the compute host and the conductor (internal zone).
    let r = a.get("/os-hosts").await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let hosts = r.body["hosts"].as_array().cloned().unwrap_or_default();
    assert!(
        hosts.contains(&json!({"host_name": "compute-1", "service": "compute", "zone": "nova"})),
        "{hosts:?}"
    );
    assert!(
        hosts.contains(
            &json!({"host_name": "compute-1", "service": "conductor", "zone": "internal"})
        ),
        "{hosts:?}"
    );
    let r = a.get("/os-hosts?zone=internal").await?;
    assert_eq!(
        r.body["hosts"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    let r = a.get("/os-hosts/compute-1").await?;
    assert_eq!(r.body["host"][0]["resource"]["project"], json!("(total)"));
    assert_eq!(member.get("/os-hosts").await?.status, 403);
    assert_eq!(
        admin(stack)
            .at_microversion("2.43")
            .get("/os-hosts")
            .await?
            .status,
        404
    );
    // Updates: Nova's schema first, then policy, then the host; enabling a host this way is
    // not supported (as with Nova's libvirt driver): os-services does it.
    for (body, status) in [
        (json!({}), 400),
        (json!({"status": "maybe"}), 400),
        (json!({"maintenance_mode": "on"}), 400),
        (json!({"status": "enable", "other": 1}), 400),
        (json!({"status": "enable"}), 501),
        (json!({"maintenance_mode": "DISABLE"}), 501),
    ] {
        let r = a.put("/os-hosts/compute-1", &body).await?;
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    assert_eq!(
        a.put("/os-hosts/nowhere", &json!({"status": "enable"}))
            .await?
            .status,
        404
    );
    assert_eq!(
        member
            .put("/os-hosts/compute-1", &json!({"status": "enable"}))
            .await?
            .status,
        403
    );
    for action in ["startup", "shutdown", "reboot"] {
        let path = format!("/os-hosts/compute-1/{action}");
        assert_eq!(member.get(&path).await?.status, 403);
        let r = a.get(&path).await?;
        assert_eq!(r.status, 501, "{}", r.body);
        assert_eq!(
            r.body["notImplemented"]["message"],
            json!("The requested functionality is not supported.")
        );
        assert_eq!(
            a.get(&format!("/os-hosts/nowhere/{action}")).await?.status,
            404
        );
    }

    // os-networks / os-tenant-networks: the networks the caller sees, until 2.35.
    let network = a
        .create_network(json!({"name": "legacy-net", "shared": true}))
        .await?;
    let r = demo(stack, "2.35").get("/os-tenant-networks").await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.body["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == json!(network))
        .cloned();
    // Nova prints a Neutron network's missing cidr with Python's `str(None)`.
    assert_eq!(
        listed,
        Some(json!({"id": network, "label": "legacy-net", "cidr": "None"})),
        "{}",
        r.body
    );
    let r = admin(stack)
        .at_microversion("2.35")
        .get(&format!("/os-networks/{network}"))
        .await?;
    assert_eq!(r.body["network"]["label"], json!("legacy-net"));
    assert_eq!(
        demo(stack, "2.36").get("/os-tenant-networks").await?.status,
        404
    );

    // The usage audit log: no audit has run.
    let r = a.get("/os-instance_usage_audit_log").await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["instance_usage_audit_logs"]["total_instances"],
        json!(0)
    );
    assert_eq!(
        member.get("/os-instance_usage_audit_log").await?.status,
        403
    );

    // Quota classes: the default class is every project's defaults.
    let r = a
        .put(
            "/os-quota-class-sets/default",
            &json!({"quota_class_set": {"instances": 33}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = member.get("/os-quota-sets/demo/defaults").await?;
    assert_eq!(r.body["quota_set"]["instances"], json!(33), "{}", r.body);
    assert_eq!(
        a.put(
            "/os-quota-class-sets/default",
            &json!({"quota_class_set": {"bogus": 1}})
        )
        .await?
        .status,
        400
    );

    // A server: its (empty) password, an admin's reset, a forced delete; nothing to restore.
    let member = demo(stack, "2.1");
    let id = member.create_server("legacy", "1").await?;
    member.wait_status(&id, "ACTIVE", WAIT).await?;
    let r = member
        .get(&format!("/servers/{id}/os-server-password"))
        .await?;
    assert_eq!(r.body, json!({"password": ""}));
    assert_eq!(
        member
            .delete(&format!("/servers/{id}/os-server-password"))
            .await?
            .status,
        204
    );
    assert_eq!(
        member
            .action(&id, &json!({"os-resetState": {"state": "error"}}))
            .await?
            .status,
        403
    );
    assert_eq!(
        a.action(&id, &json!({"os-resetState": {"state": "paused"}}))
            .await?
            .status,
        400
    );
    assert_eq!(
        a.action(&id, &json!({"os-resetState": {"state": "error"}}))
            .await?
            .status,
        202
    );
    member.wait_status(&id, "ERROR", WAIT).await?;
    // Migration is off by policy until servers can move between hosts: the server is looked
    // up first (404), then nobody may (403); so there are no migration records.
    let r = a
        .action(
            "9c6b84cc-6b8b-4c0a-8f5e-000000000000",
            &json!({"migrate": null}),
        )
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    for action in [
        json!({"migrate": null}),
        json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
    ] {
        let r = a.action(&id, &action).await?;
        assert_eq!(r.status, 403, "{action}: {}", r.body);
    }
    let r = a.get("/os-migrations").await?;
    assert_eq!(r.body, json!({"migrations": []}));
    assert_eq!(member.get("/os-migrations").await?.status, 403);
    let at = |v: &str| admin(stack).at_microversion(v);
    assert_eq!(at("2.59").get("/os-migrations?bogus=1").await?.status, 400);
    assert_eq!(at("2.58").get("/os-migrations?bogus=1").await?.status, 200);
    assert_eq!(at("2.59").get("/os-migrations?marker=x").await?.status, 400);
    assert_eq!(at("2.59").get("/os-migrations?limit=-1").await?.status, 400);
    let r = at("2.23").get(&format!("/servers/{id}/migrations")).await?;
    assert_eq!(r.body, json!({"migrations": []}), "{}", r.body);
    assert_eq!(
        at("2.23")
            .get(&format!("/servers/{id}/migrations/1"))
            .await?
            .status,
        404
    );
    let r = member.action(&id, &json!({"restore": null})).await?;
    assert_eq!(r.status, 409, "never soft-deleted: {}", r.body);
    assert_eq!(
        member
            .action(&id, &json!({"forceDelete": null}))
            .await?
            .status,
        202
    );
    member.wait_gone(&id, WAIT).await?;

    // The frozen extension list.
    let r = member.get("/extensions").await?;
    assert!(r.body["extensions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["alias"] == json!("OS-DCF")));
    let r = member.get("/extensions/OS-DCF").await?;
    assert_eq!(r.body["extension"]["name"], json!("DiskConfig"));
    assert_eq!(member.get("/extensions/nope").await?.status, 404);
    Ok(())
}

/// `os-server-external-events`, for the service role or admins (Nova's `service_or_admin`),
/// each event answered as Nova does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_events_are_for_services() -> anyhow::Result<()> {
    use nova_db::identity as ids;
    let stack = keystone_stack().await?;
    let url = stack.api_url().to_owned();
    let admin_token = e2e::client::password_token(&url, "admin", "admin-pw", "admin").await?;
    let a = Client::new(&url, &admin_token);
    let id = a.create_server("evented", "1").await?;
    a.wait_status(&id, "ACTIVE", WAIT).await?;
    let events = json!({"events": [
        {"name": "network-changed", "server_uuid": id},
        {"name": "network-vif-plugged", "server_uuid": "9c6b84cc-6b8b-4c0a-8f5e-000000000000",
         "tag": "port"},
    ]});
    // A member may not; an admin may (Nova's `service_or_admin`).
    let demo_token = e2e::client::password_token(&url, "demo", "demo-pw", "demo").await?;
    let r = Client::new(&url, &demo_token)
        .post("/os-server-external-events", &events)
        .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a.post("/os-server-external-events", &events).await?;
    assert_eq!(r.status, 207, "{}", r.body);

    // And so may a service user that is not an admin.
    let db = stack.db();
    let demo_user = ids::user_by_name(db, "default", "demo")
        .await?
        .map(|u| u.id)
        .unwrap_or_default();
    let project = ids::project_by_name(db, "default", "demo")
        .await?
        .map(|p| p.id)
        .unwrap_or_default();
    let service = ids::role_by_name(db, "service")
        .await?
        .map(|r| r.id)
        .unwrap_or_default();
    ids::grant(db, &demo_user, &service, &project, "").await?;
    let s = Client::new(
        &url,
        &e2e::client::password_token(&url, "demo", "demo-pw", "demo").await?,
    );
    let r = s.post("/os-server-external-events", &events).await?;
    assert_eq!(r.status, 207, "one unknown server: {}", r.body);
    assert_eq!(r.body["events"][0]["code"], json!(200));
    assert_eq!(r.body["events"][0]["status"], json!("completed"));
    assert_eq!(r.body["events"][1]["code"], json!(404));
    let r = s
        .post(
            "/os-server-external-events",
            &json!({"events": [{"name": "network-changed", "server_uuid": id}]}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    // power-update needs 2.76 and a tag.
    let power = json!({"events": [{"name": "power-update", "server_uuid": id}]});
    assert_eq!(
        s.post("/os-server-external-events", &power).await?.status,
        400
    );
    let r = s
        .at_microversion("2.76")
        .post("/os-server-external-events", &power)
        .await?;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(r.body["events"][0]["code"], json!(400));
    for bad in [
        json!({"events": []}),
        json!({"events": [{"name": "network-changed"}]}),
        json!({"events": [{"name": "network-changed", "server_uuid": "x"}]}),
    ] {
        assert_eq!(
            s.post("/os-server-external-events", &bad).await?.status,
            400,
            "{bad}"
        );
    }
    Ok(())
}

on_both_shapes!(names_are_printable_as_nova_wants_them, Options::default());
/// #15: control characters (a terminal escape sequence among them), format characters and line
/// separators are refused in the names Nova checks — servers, flavors, aggregates — and in a
/// server's description; what Nova accepts (any script, symbols, inner spaces) is accepted.
async fn names_are_printable_as_nova_wants_them(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.19");
    let a = admin(stack);
    let server =
        |name: &str| json!({"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1"}});
    for bad in [
        "evil\u{1b}[31mred",
        "tab\there",
        "zero\u{200b}width",
        "line\u{2028}sep",
    ] {
        let r = c.post("/servers", &server(bad)).await?;
        assert_eq!(r.status, 400, "server name {bad:?}: {}", r.body);
        let r = a
            .post(
                "/flavors",
                &json!({"flavor": {"name": bad, "ram": 64, "vcpus": 1, "disk": 1}}),
            )
            .await?;
        assert_eq!(r.status, 400, "flavor name {bad:?}: {}", r.body);
        let r = a
            .post("/os-aggregates", &json!({"aggregate": {"name": bad}}))
            .await?;
        assert_eq!(r.status, 400, "aggregate name {bad:?}: {}", r.body);
    }
    let mut described = server("described");
    described["server"]["description"] = json!("bell\u{7}");
    assert_eq!(c.post("/servers", &described).await?.status, 400);
    let r = c.post("/servers", &server("Zürich • 東京 web-1")).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    Ok(())
}

on_both_shapes!(
    a_client_that_trickles_its_body_is_cut_off,
    Options {
        body_timeout_s: 1,
        ..Options::default()
    }
);
/// #15: a request body sent one byte every few seconds is cut off once the body timeout has
/// passed (the connection answered and closed), and the service goes on answering others.
async fn a_client_that_trickles_its_body_is_cut_off(stack: &dyn Stack) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = stack.api_url().trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST /v2.1/servers HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: demo:demo\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    sock.write_all(head.as_bytes()).await?;
    let started = std::time::Instant::now();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if sock.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let mut answer = Vec::new();
    // A well-behaved client is served meanwhile.
    let other = demo(stack, "2.1").get("/flavors").await?;
    assert_eq!(other.status, 200);
    tokio::select! {
        _ = trickle => {}
        _ = tokio::time::sleep(Duration::from_secs(20)) => {}
    }
    let elapsed = started.elapsed();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 4"),
        "cut off with an error: {text:?}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "cut off near the timeout: {elapsed:?}"
    );
    Ok(())
}
