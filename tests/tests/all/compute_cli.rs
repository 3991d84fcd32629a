//! The Compute API through the real `openstack` CLI (python-openstackclient in `.venv`), against
//! the all-in-one with Keystone identity: flavors, key pairs, networks, subnets and ports, a server's life, and the admin
//! views (services, hypervisors, availability zones). The CLI negotiates its microversion with
//! the service, as it does against Nova.

use e2e::stack::{AllInOneStack, Options, Stack};
use keystone_auth::{AuthSettings, Strategy};
use serde_json::{json, Value};

async fn start() -> anyhow::Result<AllInOneStack> {
    let auth = AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some("admin-secret".into()),
        demo_password: Some("demo-secret".into()),
        ..Default::default()
    };
    AllInOneStack::start(Options {
        auth: Some(auth),
        ..Options::default()
    })
    .await
}

async fn demo(stack: &AllInOneStack, args: &[&str]) -> anyhow::Result<Value> {
    e2e::cli::run_json(stack, "demo", args).await
}

async fn admin(stack: &AllInOneStack, args: &[&str]) -> anyhow::Result<Value> {
    e2e::cli::run_json(stack, "admin", args).await
}

/// The value of `field` in the CLI's JSON (`show` prints an object).
fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    &v[name]
}

/// Creates flavor `cli.small` (256 MiB, 1 vCPU, 1 GB) as the admin.
async fn create_flavor(stack: &AllInOneStack) -> anyhow::Result<Value> {
    admin(
        stack,
        &[
            "flavor",
            "create",
            "--ram",
            "256",
            "--vcpus",
            "1",
            "--disk",
            "1",
            "--id",
            "cli-1",
            "cli.small",
        ],
    )
    .await
}

// The CLI's ground is split in two tests that run side by side: the server's half waits
// (the CLI's `--wait` polls every 5 s), and one test holding both halves was the longest of
// the whole suite.

/// Flavors, key pairs, and the admin views (services, hypervisors, limits, quotas, zones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_cli_manages_flavors_key_pairs_and_quotas() -> anyhow::Result<()> {
    let stack = start().await?;

    // Flavors: create (admin), set a property, list, show.
    let flavor = create_flavor(&stack).await?;
    assert_eq!(field(&flavor, "name"), &json!("cli.small"));
    e2e::cli::run(
        &stack,
        "admin",
        &[
            "flavor",
            "set",
            "--property",
            "hw:cpu_policy=shared",
            "cli.small",
        ],
    )
    .await?;
    let shown = demo(&stack, &["flavor", "show", "cli.small"]).await?;
    assert_eq!(field(&shown, "ram"), &json!(256));
    let properties = field(&shown, "properties").to_string();
    assert!(properties.contains("hw:cpu_policy"), "{shown}");
    let list = demo(&stack, &["flavor", "list"]).await?;
    assert!(list
        .as_array()
        .is_some_and(|l| l.iter().any(|f| f["Name"] == json!("cli.small"))));

    // Key pairs: upload, list, show, delete; a generated one prints its private key.
    let dir = tempfile::tempdir()?;
    let public = dir.path().join("key.pub");
    std::fs::write(
        &public,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOrND+VXGisTsfa2ChfSWGukYJ/3CLC3kflkLOEQxhJT me@host\n",
    )?;
    let kp = demo(
        &stack,
        &[
            "keypair",
            "create",
            "--public-key",
            public.to_str().unwrap_or_default(),
            "mine",
        ],
    )
    .await?;
    assert_eq!(
        field(&kp, "fingerprint"),
        &json!("68:d0:61:50:21:d0:21:a9:a7:e6:7c:0f:af:55:75:90")
    );
    let keys = demo(&stack, &["keypair", "list"]).await?;
    assert!(keys
        .as_array()
        .is_some_and(|l| l.iter().any(|k| k["Name"] == json!("mine"))));
    e2e::cli::run(&stack, "demo", &["keypair", "delete", "mine"]).await?;
    let keys = demo(&stack, &["keypair", "list"]).await?;
    assert_eq!(keys, json!([]));

    // The admin views.
    let services = admin(&stack, &["compute", "service", "list"]).await?;
    assert!(services.as_array().is_some_and(|l| l
        .iter()
        .any(|s| s["Binary"] == json!("nova-compute") && s["State"] == json!("up"))));
    let hypervisors = admin(&stack, &["hypervisor", "list"]).await?;
    assert_eq!(
        hypervisors.as_array().map(Vec::len),
        Some(1),
        "{hypervisors}"
    );
    assert_eq!(hypervisors[0]["State"], json!("up"));
    // Limits and quotas.
    let limits = demo(&stack, &["limits", "show", "--absolute"]).await?;
    assert!(
        limits
            .as_array()
            // openstacksdk's names, or novaclient's.
            .is_some_and(
                |l| l.iter().any(|x| x["Name"] == json!("max_total_instances")
                    || x["Name"] == json!("maxTotalInstances"))
            ),
        "{limits}"
    );
    e2e::cli::run(
        &stack,
        "admin",
        &["quota", "set", "--instances", "7", "demo"],
    )
    .await?;
    let quota = admin(&stack, &["quota", "show", "demo"]).await?;
    assert!(quota.to_string().contains("\"instances\""), "{quota}");
    let instances = quota
        .as_array()
        .and_then(|l| l.iter().find(|x| x["Resource"] == json!("instances")))
        .map(|x| x["Limit"].clone())
        .or_else(|| quota.get("instances").cloned());
    assert_eq!(instances, Some(json!(7)), "{quota}");

    // A server group, as the CLI makes, shows and deletes one.
    let group = demo(
        &stack,
        &[
            "server",
            "group",
            "create",
            "--policy",
            "anti-affinity",
            "apart",
        ],
    )
    .await?;
    assert_eq!(field(&group, "policy"), &json!("anti-affinity"), "{group}");
    let listed = demo(&stack, &["server", "group", "list"]).await?;
    assert!(listed.to_string().contains("apart"), "{listed}");
    e2e::cli::run(&stack, "demo", &["server", "group", "delete", "apart"]).await?;
    assert_eq!(demo(&stack, &["server", "group", "list"]).await?, json!([]));

    let zones = demo(&stack, &["availability", "zone", "list", "--compute"]).await?;
    assert!(
        zones
            .as_array()
            .is_some_and(|l| l.iter().any(|z| z["Zone Name"] == json!("nova"))),
        "{zones}"
    );
    Ok(())
}

/// A network, then a server's life by image, flavor and network names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_cli_drives_a_servers_life() -> anyhow::Result<()> {
    let stack = start().await?;
    create_flavor(&stack).await?;

    // A network an admin offers every project; the CLI finds it by name in the networking
    // service before it asks for the server.
    let network = admin(
        &stack,
        &[
            "network",
            "create",
            "--share",
            "--provider-network-type",
            "flat",
            "--provider-physical-network",
            "cli-phys",
            "--tag",
            "cli",
            "cli-net",
        ],
    )
    .await?;
    assert_eq!(field(&network, "name"), &json!("cli-net"), "{network}");
    assert_eq!(
        field(&network, "provider:physical_network"),
        &json!("cli-phys")
    );
    let networks = demo(&stack, &["network", "list", "--tags", "cli"]).await?;
    assert!(
        networks
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["Name"] == json!("cli-net")),
        "{networks}"
    );

    // A subnet on it (the admin's, as the network's owner), and the member's own port.
    let subnet = admin(
        &stack,
        &[
            "subnet",
            "create",
            "--network",
            "cli-net",
            "--subnet-range",
            "10.50.0.0/28",
            "--dns-nameserver",
            "10.50.0.53",
            "cli-subnet",
        ],
    )
    .await?;
    assert_eq!(
        field(&subnet, "gateway_ip"),
        &json!("10.50.0.1"),
        "{subnet}"
    );
    let port = demo(
        &stack,
        &["port", "create", "--network", "cli-net", "cli-port"],
    )
    .await?;
    let port_id = field(&port, "id").as_str().unwrap_or_default().to_owned();
    let port_ip = field(&port, "fixed_ips").to_string();
    assert!(port_ip.contains("10.50.0."), "{port}");

    // A server's life, by image, flavor and network names.
    let server = demo(
        &stack,
        &[
            "server",
            "create",
            "--image",
            "test-disk",
            "--flavor",
            "cli.small",
            "--network",
            "cli-net",
            "--wait",
            "web",
        ],
    )
    .await?;
    assert_eq!(field(&server, "status"), &json!("ACTIVE"));
    let id = field(&server, "id").as_str().unwrap_or_default().to_owned();
    let servers = demo(&stack, &["server", "list"]).await?;
    assert!(servers
        .as_array()
        .is_some_and(|l| l.iter().any(|s| s["ID"] == json!(id))));
    assert!(
        field(&server, "addresses").to_string().contains("10.50.0."),
        "an address of the subnet: {server}"
    );
    // A scheduler hint, as the CLI sends it (openstacksdk's `OS-SCH-HNT:scheduler_hints`),
    // on the member's own port.
    let hint = format!("same_host={id}");
    let nic = format!("port-id={port_id}");
    let near = demo(
        &stack,
        &[
            "server",
            "create",
            "--image",
            "test-disk",
            "--flavor",
            "cli.small",
            "--nic",
            &nic,
            "--hint",
            &hint,
            "--wait",
            "near",
        ],
    )
    .await?;
    assert_eq!(field(&near, "status"), &json!("ACTIVE"), "{near}");
    let address = port_ip
        .split('"')
        .find(|s| s.starts_with("10.50.0."))
        .unwrap_or("none");
    assert!(
        field(&near, "addresses").to_string().contains(address),
        "the port's address {address}: {near}"
    );
    e2e::cli::run(&stack, "demo", &["server", "delete", "--wait", "near"]).await?;
    // A security group with a rule, added to the running server and taken off again.
    e2e::cli::run(&stack, "demo", &["security", "group", "create", "cli-web"]).await?;
    let rule = demo(
        &stack,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "cli-web",
        ],
    )
    .await?;
    assert_eq!(field(&rule, "port_range_min"), &json!(22), "{rule}");
    e2e::cli::run(
        &stack,
        "demo",
        &["server", "add", "security", "group", "web", "cli-web"],
    )
    .await?;
    let s = demo(&stack, &["server", "show", "web"]).await?;
    assert!(
        field(&s, "security_groups").to_string().contains("cli-web"),
        "{s}"
    );
    e2e::cli::run(
        &stack,
        "demo",
        &["server", "remove", "security", "group", "web", "cli-web"],
    )
    .await?;
    let s = demo(&stack, &["server", "show", "web"]).await?;
    assert!(
        !field(&s, "security_groups").to_string().contains("cli-web"),
        "{s}"
    );
    e2e::cli::run(&stack, "demo", &["security", "group", "delete", "cli-web"]).await?;
    // Each action by the CLI; its end read over HTTP (a CLI call per poll cost a second and
    // more of CPU each, and tested nothing the `server show` above does not).
    let token = e2e::client::password_token(stack.api_url(), "demo", "demo-secret", "demo").await?;
    let http = e2e::client::Client::new(stack.api_url(), &token);
    let web = field(&demo(&stack, &["server", "show", "web"]).await?, "id")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (action, status) in [
        ("stop", "SHUTOFF"),
        ("start", "ACTIVE"),
        ("pause", "PAUSED"),
        ("unpause", "ACTIVE"),
        ("suspend", "SUSPENDED"),
        ("resume", "ACTIVE"),
    ] {
        e2e::cli::run(&stack, "demo", &["server", action, "web"]).await?;
        http.wait_status(&web, status, std::time::Duration::from_secs(60))
            .await?;
    }
    // Resize, revert, resize, confirm.
    let mut bigger = nova_db::flavors::get(stack.db(), "cli-1")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no flavor cli-1"))?;
    bigger.flavorid = "cli-2".into();
    bigger.name = "cli.bigger".into();
    bigger.memory_mb = 512;
    nova_db::flavors::create(stack.db(), &bigger).await?;
    for (args, status, flavor) in [
        (
            &["server", "resize", "--flavor", "cli.bigger", "web"][..],
            "VERIFY_RESIZE",
            "cli-2",
        ),
        (
            &["server", "resize", "revert", "web"][..],
            "ACTIVE",
            "cli-1",
        ),
        (
            &["server", "resize", "--flavor", "cli-2", "web"][..],
            "VERIFY_RESIZE",
            "cli-2",
        ),
        (
            &["server", "resize", "confirm", "web"][..],
            "ACTIVE",
            "cli-2",
        ),
    ] {
        e2e::cli::run(&stack, "demo", args).await?;
        let s = http
            .wait_status(&web, status, std::time::Duration::from_secs(60))
            .await?;
        assert_eq!(s["flavor"]["id"], json!(flavor), "{args:?}");
    }
    // A snapshot, waited for by the CLI, listed as an image.
    e2e::cli::run(
        &stack,
        "demo",
        &[
            "server", "image", "create", "--name", "web-snap", "--wait", "web",
        ],
    )
    .await?;
    let image = demo(&stack, &["image", "show", "web-snap"]).await?;
    assert_eq!(field(&image, "status"), &json!("active"), "{image}");
    // Rescued from the snapshot (the CLI sends its id as the rescue image), and back.
    for (args, status) in [
        (
            &["server", "rescue", "--image", "web-snap", "web"][..],
            "RESCUE",
        ),
        (&["server", "unrescue", "web"][..], "ACTIVE"),
    ] {
        e2e::cli::run(&stack, "demo", args).await?;
        http.wait_status(&web, status, std::time::Duration::from_secs(60))
            .await?;
    }
    // Rebuilt from the snapshot (its id kept), and a backup of it, waited for by the CLI.
    e2e::cli::run(
        &stack,
        "demo",
        &["server", "rebuild", "--image", "web-snap", "--wait", "web"],
    )
    .await?;
    let s = http.server(&web).await?.body["server"].clone();
    assert_eq!(
        (&s["status"], &s["image"]["id"]),
        (&json!("ACTIVE"), field(&image, "id")),
        "{s}"
    );
    e2e::cli::run(
        &stack,
        "demo",
        &[
            "server",
            "backup",
            "create",
            "--name",
            "web-daily",
            "--type",
            "daily",
            "--rotate",
            "1",
            "--wait",
            "web",
        ],
    )
    .await?;
    let backup = demo(&stack, &["image", "show", "web-daily"]).await?;
    assert_eq!(field(&backup, "status"), &json!("active"), "{backup}");
    let properties = field(&backup, "properties");
    assert_eq!(
        (&properties["image_type"], &properties["backup_type"]),
        (&json!("backup"), &json!("daily")),
        "{backup}"
    );
    for (action, status) in [("shelve", "SHELVED_OFFLOADED"), ("unshelve", "ACTIVE")] {
        e2e::cli::run(&stack, "demo", &["server", action, "web"]).await?;
        http.wait_status(&web, status, std::time::Duration::from_secs(60))
            .await?;
    }
    e2e::cli::run(&stack, "demo", &["server", "reboot", "--wait", "web"]).await?;
    let s = demo(&stack, &["server", "show", "web"]).await?;
    assert_eq!(field(&s, "status"), &json!("ACTIVE"));

    // What else the CLI does to a server: rename, describe, properties, tags, lock, the
    // console log and the action record.
    // At 2.73, which description (2.19), tags (2.26) and lock reasons (2.73) need.
    let cli = |args: &'static [&'static str]| {
        let mut all = vec!["--os-compute-api-version", "2.73"];
        all.extend_from_slice(args);
        let stack = &stack;
        async move { e2e::cli::run(stack, "demo", &all).await }
    };
    cli(&[
        "server",
        "set",
        "--name",
        "web2",
        "--description",
        "front",
        "web",
    ])
    .await?;
    cli(&[
        "server",
        "set",
        "--property",
        "role=front",
        "--tag",
        "blue",
        "web2",
    ])
    .await?;
    let s = demo(
        &stack,
        &["--os-compute-api-version", "2.73", "server", "show", "web2"],
    )
    .await?;
    assert_eq!(field(&s, "description"), &json!("front"));
    assert!(field(&s, "properties").to_string().contains("role"), "{s}");
    assert!(field(&s, "tags").to_string().contains("blue"), "{s}");
    cli(&["server", "unset", "--property", "role", "web2"]).await?;
    cli(&["server", "lock", "--reason", "maintenance", "web2"]).await?;
    let s = demo(
        &stack,
        &["--os-compute-api-version", "2.73", "server", "show", "web2"],
    )
    .await?;
    assert_eq!(field(&s, "locked"), &json!(true));
    assert!(
        e2e::cli::run(&stack, "demo", &["server", "stop", "web2"])
            .await
            .is_err(),
        "a locked server refuses to stop"
    );
    cli(&["server", "unlock", "web2"]).await?;
    let log = cli(&["console", "log", "show", "--lines", "1", "web2"]).await?;
    assert_eq!(log.trim(), "fake: Soft reboot", "the last line: {log}");
    let events = demo(&stack, &["server", "event", "list", "web2"]).await?;
    let actions = e2e::cli::event_actions(&events);
    assert!(
        actions.contains(&"lock") && actions.contains(&"create"),
        "{events}"
    );
    cli(&["server", "set", "--name", "web", "web2"]).await?;
    e2e::cli::run(&stack, "demo", &["server", "delete", "--wait", "web"]).await?;
    assert_eq!(demo(&stack, &["server", "list"]).await?, json!([]));
    // The member's port outlived the server it was given to, unbound; it goes, and the
    // network with its subnet.
    let port = demo(&stack, &["port", "show", "cli-port"]).await?;
    assert_eq!(field(&port, "device_id"), &json!(""), "{port}");
    e2e::cli::run(&stack, "demo", &["port", "delete", "cli-port"]).await?;
    e2e::cli::run(&stack, "admin", &["network", "delete", "cli-net"]).await?;
    assert_eq!(demo(&stack, &["network", "list"]).await?, json!([]));
    Ok(())
}

/// The same ground through openstacksdk's `conn.compute` (`tests/sdk/compute.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_drives_the_compute_api() -> anyhow::Result<()> {
    let stack = start().await?;
    let python = std::env::var("NOVA_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/../.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let script = format!("{}/sdk/compute.py", env!("CARGO_MANIFEST_DIR"));
    let clouds = stack
        .clouds_yaml
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no clouds.yaml"))?;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .env("OS_CLIENT_CONFIG_FILE", clouds)
            .output()
    })
    .await??;
    anyhow::ensure!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sdk: all checks passed"));
    Ok(())
}
