//! The Docker driver through the whole service (distributed shape: API, conductor and agent
//! over RabbitMQ and PostgreSQL) against the real Docker Engine that `scripts/test.sh` starts.
//! Containers run with `--network none`, or on an internal Docker network the test creates
//! itself, whose addresses are read from the engine's configuration: nothing here sends
//! traffic to a container.

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use bollard::Docker;
use compute_agent::settings::DriverKind;
use drivers::docker::{DockerSettings, LABEL_INSTANCE};
use e2e::client::Client;
use e2e::docker::{test_image, RemoveContainersOf, TestNetwork};
use e2e::stack::{Distributed, Options, Stack};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// The stack's options, the config-drive directory, and a guard that removes the host's
/// containers however the test ends.
fn options() -> anyhow::Result<(Options, tempfile::TempDir, RemoveContainersOf)> {
    let state = tempfile::tempdir()?;
    let options = Options {
        driver: DriverKind::Docker,
        docker: DockerSettings {
            state_dir: state.path().to_owned(),
            soft_reboot_timeout_s: 10,
            firewall: e2e::docker::no_firewall(),
            ..Default::default()
        },
        graceful_shutdown_s: 10,
        // Several test stacks share the engine; each agent sees only its own host's containers.
        host: format!("docker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        ..Options::default()
    };
    let guard = RemoveContainersOf(options.host.clone());
    Ok((options, state, guard))
}

fn engine() -> anyhow::Result<Docker> {
    Ok(Docker::connect_with_local_defaults()?)
}

/// A flavor for containers (`node:type=container`), created as an admin.
async fn container_flavor(stack: &dyn Stack, id: &str, ram: u64, vcpus: u32) -> anyhow::Result<()> {
    let admin = Client::new(stack.api_url(), "admin:admin");
    let r = admin
        .post(
            "/flavors",
            &json!({"flavor": {"name": format!("c-{id}"), "id": id, "ram": ram,
                               "vcpus": vcpus, "disk": 1}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "flavor create: {} {}", r.status, r.body);
    let r = admin
        .post(
            &format!("/flavors/{id}/os-extra_specs"),
            &json!({"extra_specs": {"node:type": "container"}}),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "extra specs: {} {}", r.status, r.body);
    Ok(())
}

async fn docker_image(c: &Client) -> anyhow::Result<String> {
    let image = test_image().await?;
    c.create_image("busybox", "docker", "raw", std::fs::read(&image.archive)?)
        .await
}

/// The containers of one instance, whatever their state.
async fn containers_of(docker: &Docker, id: &str) -> anyhow::Result<usize> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_INSTANCE}={id}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    Ok(docker.list_containers(Some(options)).await?.len())
}

/// The engine's inspect of the server's container.
async fn inspect_of(docker: &Docker, id: &str) -> anyhow::Result<ContainerInspectResponse> {
    Ok(docker
        .inspect_container(&format!("nova-{id}"), None::<InspectContainerOptions>)
        .await?)
}

/// The network mode the container was created with.
fn network_mode(inspect: &ContainerInspectResponse) -> Option<&str> {
    inspect
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
}

async fn container_state(docker: &Docker, id: &str) -> anyhow::Result<(String, String)> {
    let c = inspect_of(docker, id).await?;
    let state = c.state.unwrap_or_default();
    Ok((
        state.status.map(|s| s.to_string()).unwrap_or_default(),
        state.started_at.unwrap_or_default(),
    ))
}

async fn create_server(c: &Client, body: Value) -> anyhow::Result<String> {
    let r = c.post("/servers", &json!({ "server": body })).await?;
    anyhow::ensure!(r.status == 202, "create: {} {}", r.status, r.body);
    Ok(r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_server_lives_its_whole_life_through_the_api() -> anyhow::Result<()> {
    let (options, state, _cleanup) = options()?;
    let stack = Distributed::start(options).await?;
    let docker = engine()?;
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.37");
    container_flavor(&stack, "c1", 256, 2).await?;
    // The node reports the engine's version in Nova's integer encoding.
    let admin = Client::new(stack.api_url(), "admin:admin");
    let hypervisors = admin.get("/os-hypervisors/detail").await?;
    let engine_version = docker.version().await?.version.unwrap_or_default();
    assert_eq!(
        hypervisors.body["hypervisors"][0]["hypervisor_version"],
        json!(nova_core::model::version_to_int(&engine_version)),
        "{engine_version}"
    );
    assert_eq!(
        hypervisors.body["hypervisors"][0]["hypervisor_type"],
        json!("docker")
    );
    let image = docker_image(&c).await?;
    let user_data = "#!/bin/sh\necho configured by user data\n";
    let id = create_server(
        &c,
        json!({"name": "Web Server_1", "imageRef": image, "flavorRef": "c1", "networks": "none",
               "metadata": {"role": "web"},
               "user_data": base64_encode(user_data.as_bytes())}),
    )
    .await?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;

    // The engine runs it with the flavor's limits, no network, named and labelled.
    let inspect = inspect_of(&docker, &id).await?;
    let host_config = inspect.host_config.clone().unwrap_or_default();
    assert_eq!(host_config.memory, Some(256 * 1024 * 1024));
    assert_eq!(host_config.nano_cpus, Some(2_000_000_000));
    assert_eq!(host_config.network_mode.as_deref(), Some("none"));
    // Created from the image id the archive's manifest names (loaded, not pulled).
    assert_eq!(
        inspect.image.as_deref(),
        Some(test_image().await?.id.as_str())
    );
    let config = inspect.config.clone().unwrap_or_default();
    assert_eq!(config.hostname.as_deref(), Some("web-server-1"));
    let labels = config.labels.unwrap_or_default();
    assert_eq!(labels.get(LABEL_INSTANCE), Some(&id));
    assert_eq!(
        labels.get("org.openstack.nova.project").map(String::as_str),
        Some("demo")
    );
    assert_eq!(container_state(&docker, &id).await?.0, "running");

    // The config drive: metadata and user data, read-only, and the console shows both.
    let drive = state.path().join(&id).join("openstack/latest");
    let meta: Value = serde_json::from_slice(&std::fs::read(drive.join("meta_data.json"))?)?;
    assert_eq!(meta["meta"]["role"], json!("web"));
    assert_eq!(meta["uuid"], json!(id));
    let mount = inspect.mounts.unwrap_or_default();
    assert!(mount
        .iter()
        .any(|m| m.destination.as_deref() == Some("/mnt/config") && m.rw == Some(false)));
    // The console through the API: os-getConsoleOutput is answered by the host's agent
    // over the bus, from the container's log.
    let console_of = |length: Value| {
        let c = c.clone();
        let id = id.clone();
        async move {
            let r = c
                .action(&id, &json!({"os-getConsoleOutput": {"length": length}}))
                .await?;
            anyhow::ensure!(r.status == 200, "console: {} {}", r.status, r.body);
            Ok(r.body["output"].as_str().unwrap_or_default().to_owned())
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let console = loop {
        let text = console_of(Value::Null).await?;
        if text.contains("configured by user data") || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(console.contains("hello from web-server-1"), "{console}");
    assert!(console.contains("configured by user data"), "{console}");
    // Nova's `length`: the last lines only, counted as Nova splits them (the empty piece after
    // the final newline is one).
    let last = console_of(json!(2)).await?;
    assert_eq!(last, "echo configured by user data\n");

    // Diagnostics from the engine's stats: in the driver's own keys before 2.48; 2.48's format
    // names only Nova's kinds of driver, so a container's is 501 there.
    let path = format!("/servers/{id}/diagnostics");
    let r = admin.at_microversion("2.47").get(&path).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["memory"],
        json!(256 * 1024),
        "the flavor's limit: {}",
        r.body
    );
    // A shell uses under a MiB; the engine's usage is shown in whole MiB.
    assert!(
        r.body["memory-rss"].as_i64().is_some_and(|m| m >= 0),
        "{}",
        r.body
    );
    assert!(
        r.body["cpu0_time"].as_i64().is_some_and(|t| t > 0),
        "{}",
        r.body
    );
    let r = admin.at_microversion("2.48").get(&path).await?;
    assert_eq!(r.status, 501, "{}", r.body);
    // No way to set a container's password (Nova's 501 for a driver without one), nor to
    // rescue it.
    let r = c
        .action(&id, &json!({"changePassword": {"adminPass": "n3w"}}))
        .await?;
    assert_eq!(r.status, 501, "{}", r.body);
    assert_eq!(
        r.body["notImplemented"]["message"],
        json!("Unable to set password on instance")
    );
    assert_eq!(c.action(&id, &json!({"rescue": null})).await?.status, 501);

    // Stop, start, reboot soft and hard.
    let r = c.action(&id, &json!({"os-stop": null})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let s = c.wait_status(&id, "SHUTOFF", WAIT).await?;
    assert_eq!(s["OS-EXT-STS:power_state"], json!(4));
    assert_eq!(container_state(&docker, &id).await?.0, "exited");
    let r = c.action(&id, &json!({"os-start": null})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    for kind in ["SOFT", "HARD"] {
        let (status, before) = container_state(&docker, &id).await?;
        assert_eq!(status, "running");
        let r = c.action(&id, &json!({"reboot": {"type": kind}})).await?;
        assert_eq!(r.status, 202, "{}", r.body);
        // REBOOT / HARD_REBOOT, then ACTIVE again, with a new start time.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = c.server(&id).await?.body["server"].clone();
            let (status, started) = container_state(&docker, &id).await?;
            if s["status"] == json!("ACTIVE") && status == "running" && started != before {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "{kind} reboot: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Pause is the engine's; a hard reboot thaws a paused container (Nova allows it). The
    // engine cannot suspend a container: refused as Nova refuses what a driver lacks.
    let r = c.action(&id, &json!({"pause": null})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let s = c.wait_status(&id, "PAUSED", WAIT).await?;
    assert_eq!(s["OS-EXT-STS:power_state"], json!(3));
    assert_eq!(container_state(&docker, &id).await?.0, "paused");
    assert_eq!(c.action(&id, &json!({"unpause": null})).await?.status, 202);
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    assert_eq!(container_state(&docker, &id).await?.0, "running");
    assert_eq!(c.action(&id, &json!({"pause": null})).await?.status, 202);
    c.wait_status(&id, "PAUSED", WAIT).await?;
    let r = c.action(&id, &json!({"reboot": {"type": "HARD"}})).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    assert_eq!(container_state(&docker, &id).await?.0, "running");
    let r = c.action(&id, &json!({"suspend": null})).await?;
    assert_eq!(r.status, 501, "{}", r.body);
    assert_eq!(
        r.body["notImplemented"]["message"],
        json!("The requested functionality is not supported: a container cannot be suspended (the engine cannot save its memory).")
    );
    assert_eq!(
        c.server(&id).await?.body["server"]["status"],
        json!("ACTIVE")
    );

    // Rebuild: a new container from the image, the server's id and state the same.
    let before = inspect_of(&docker, &id).await?.id;
    let r = c
        .action(
            &id,
            &json!({"rebuild": {"imageRef": image, "name": "rebuilt"}}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    let after = inspect_of(&docker, &id).await?;
    assert_ne!(after.id, before, "a new container");
    assert_eq!(container_state(&docker, &id).await?.0, "running");
    assert_eq!(containers_of(&docker, &id).await?, 1);

    // Resize: the engine updates the running container's limits in place; a revert sets the
    // old ones again, a confirm keeps the new ones.
    container_flavor(&stack, "c2", 384, 1).await?;
    let limits = |inspect: &ContainerInspectResponse| {
        let h = inspect.host_config.clone().unwrap_or_default();
        (h.memory, h.nano_cpus, h.memory_swap)
    };
    let container = inspect_of(&docker, &id).await?.id;
    let mib = |n: i64| Some(n * 1024 * 1024);
    for (end, expected) in [
        ("revertResize", (mib(256), Some(2_000_000_000), mib(256))),
        ("confirmResize", (mib(384), Some(1_000_000_000), mib(384))),
    ] {
        let r = c
            .action(&id, &json!({"resize": {"flavorRef": "c2"}}))
            .await?;
        assert_eq!(r.status, 202, "{}", r.body);
        c.wait_status(&id, "VERIFY_RESIZE", WAIT).await?;
        let inspect = inspect_of(&docker, &id).await?;
        assert_eq!(limits(&inspect), (mib(384), Some(1_000_000_000), mib(384)));
        assert_eq!(container_state(&docker, &id).await?.0, "running");
        let r = c.action(&id, &json!({ end: null })).await?;
        assert!(matches!(r.status, 202 | 204), "{end}: {}", r.body);
        c.wait_status(&id, "ACTIVE", WAIT).await?;
        let inspect = inspect_of(&docker, &id).await?;
        assert_eq!(limits(&inspect), expected, "after {end}");
        assert_eq!(inspect.id, container, "the same container throughout");
        assert_eq!(container_state(&docker, &id).await?.0, "running");
    }

    // A snapshot: the container's filesystem committed and saved as an archive image, which
    // boots as a new server (the engine loads it as any image).
    let r = c
        .at_microversion("2.45")
        .action(&id, &json!({"createImage": {"name": "c-snap"}}))
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let snap = r.body["image_id"].as_str().unwrap_or_default().to_owned();
    let doc = c.wait_image_status(&snap, "active", WAIT).await?;
    assert_eq!(
        (&doc["container_format"], &doc["disk_format"]),
        (&json!("docker"), &json!("raw"))
    );
    assert_eq!(c.wait_idle(&id, WAIT).await?["status"], "ACTIVE");
    assert_eq!(container_state(&docker, &id).await?.0, "running");
    let from = create_server(
        &c,
        json!({"name": "from-snap", "imageRef": snap, "flavorRef": "c1", "networks": "none"}),
    )
    .await?;
    c.wait_status(&from, "ACTIVE", WAIT).await?;
    assert_eq!(container_state(&docker, &from).await?.0, "running");
    let base = inspect_of(&docker, &id).await?.image;
    assert_ne!(
        inspect_of(&docker, &from).await?.image,
        base,
        "the snapshot's image, not the base"
    );
    assert_eq!(c.delete(&format!("/servers/{from}")).await?.status, 204);
    c.wait_gone(&from, WAIT).await?;

    // Shelve: the container committed into an image and removed; unshelve: a new container
    // from that image.
    let before = inspect_of(&docker, &id).await?.id;
    assert_eq!(c.action(&id, &json!({"shelve": null})).await?.status, 202);
    c.wait_status(&id, "SHELVED_OFFLOADED", WAIT).await?;
    assert_eq!(containers_of(&docker, &id).await?, 0, "offloaded");
    assert_eq!(c.action(&id, &json!({"unshelve": null})).await?.status, 202);
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    let after = inspect_of(&docker, &id).await?;
    assert_ne!(after.id, before, "a new container");
    assert_ne!(after.image, base, "from the shelved image");
    assert_eq!(container_state(&docker, &id).await?.0, "running");

    // Delete leaves nothing: no container, no config drive. (Paused first: the engine
    // removes a frozen container too.)
    assert_eq!(c.action(&id, &json!({"pause": null})).await?.status, 202);
    c.wait_status(&id, "PAUSED", WAIT).await?;
    assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    c.wait_gone(&id, WAIT).await?;
    assert_eq!(containers_of(&docker, &id).await?, 0);
    assert!(!state.path().join(&id).exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_behind_the_services_back_are_noticed_and_a_restarted_agent_adopts(
) -> anyhow::Result<()> {
    let (options, _state, _cleanup) = options()?;
    let mut stack = Distributed::start(options).await?;
    let docker = engine()?;
    let c = Client::new(stack.api_url(), "demo:demo");
    container_flavor(&stack, "c2", 128, 1).await?;
    let image = docker_image(&c).await?;
    let a = create_server(
        &c,
        json!({"name": "a", "imageRef": image, "flavorRef": "c2"}),
    )
    .await?;
    let b = create_server(
        &c,
        json!({"name": "b", "imageRef": image, "flavorRef": "c2"}),
    )
    .await?;
    for id in [&a, &b] {
        c.wait_status(id, "ACTIVE", WAIT).await?;
    }

    // The agent restarts while both run: it adopts them, it does not build them again.
    stack.stop_agent();
    stack.start_agent();
    // Its first power-state sync has re-adopted what the engine runs; the rounds after it
    // would have seen anything rebuilt.
    stack.wait_for_agent_sync_rounds(3, WAIT).await?;
    for id in [&a, &b] {
        assert_eq!(containers_of(&docker, id).await?, 1);
        assert_eq!(
            c.server(id).await?.body["server"]["status"],
            json!("ACTIVE")
        );
    }

    // Killed outside the service: SHUTOFF.
    docker
        .kill_container(
            &format!("nova-{a}"),
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await?;
    let s = c.wait_status(&a, "SHUTOFF", WAIT).await?;
    assert_eq!(s["OS-EXT-STS:power_state"], json!(4));

    // Removed outside the service: ERROR with a fault, as Nova's power sync does.
    docker
        .remove_container(
            &format!("nova-{b}"),
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await?;
    let s = c.wait_error(&b, WAIT).await?;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing"),
        "{s}"
    );

    for id in [&a, &b] {
        assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
        c.wait_gone(id, WAIT).await?;
        assert_eq!(containers_of(&docker, id).await?, 0);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_archive_or_an_oversized_flavor_ends_in_error() -> anyhow::Result<()> {
    let (options, _state, _cleanup) = options()?;
    let stack = Distributed::start(options).await?;
    let docker = engine()?;
    let c = Client::new(stack.api_url(), "demo:demo");
    container_flavor(&stack, "c3", 128, 1).await?;

    let junk = c
        .create_image("junk", "docker", "raw", b"not a tar archive".repeat(1000))
        .await?;
    let id = create_server(
        &c,
        json!({"name": "junk", "imageRef": junk, "flavorRef": "c3"}),
    )
    .await?;
    let s = c.wait_error(&id, WAIT).await?;
    let message = s["fault"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("corrupt"), "{s}");
    assert_eq!(containers_of(&docker, &id).await?, 0);

    // More memory than the Docker host has: no host can take it.
    container_flavor(&stack, "huge", 64 * 1024 * 1024, 1).await?;
    let image = docker_image(&c).await?;
    let id = create_server(
        &c,
        json!({"name": "huge", "imageRef": image, "flavorRef": "huge"}),
    )
    .await?;
    let s = c.wait_error(&id, WAIT).await?;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("No valid host"),
        "{s}"
    );
    assert_eq!(containers_of(&docker, &id).await?, 0);
    Ok(())
}

/// A server that asks for no network gets none; one that takes what the host gives joins the
/// host's configured network, and its address and MAC there (as the engine assigned them) are
/// its `addresses` and `/ips`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_the_hosts_network_shows_its_address() -> anyhow::Result<()> {
    let network = format!(
        "nova-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // Declared first, so dropped last: after the containers on it are removed.
    let _network = TestNetwork::create(&network).await?;
    let (mut options, _state, _cleanup) = options()?;
    options.docker.network_mode = network.clone();
    let stack = Distributed::start(options).await?;
    let docker = engine()?;
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.47");
    container_flavor(&stack, "cn", 128, 1).await?;
    let image = docker_image(&c).await?;

    let id = create_server(
        &c,
        json!({"name": "on-net", "imageRef": image, "flavorRef": "cn", "networks": "auto"}),
    )
    .await?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    let inspect = inspect_of(&docker, &id).await?;
    assert_eq!(network_mode(&inspect), Some(network.as_str()));
    let endpoint = inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&network))
        .ok_or_else(|| anyhow::anyhow!("the container is not on {network}"))?;
    let (ip, mac) = (
        endpoint.ip_address.unwrap_or_default(),
        endpoint.mac_address.unwrap_or_default(),
    );
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    let s = c.server(&id).await?.body["server"].clone();
    assert_eq!(
        s["addresses"],
        json!({ network.as_str(): [{"version": 4, "addr": ip, "OS-EXT-IPS:type": "fixed",
                                    "OS-EXT-IPS-MAC:mac_addr": mac}] })
    );
    let r = c.get(&format!("/servers/{id}/ips")).await?;
    assert_eq!(
        r.body,
        json!({"addresses": { network.as_str(): [{"version": 4, "addr": ip}] }})
    );
    let r = c.get(&format!("/servers/{id}/ips/{network}")).await?;
    assert_eq!(
        r.body,
        json!({ network.as_str(): [{"version": 4, "addr": ip}] })
    );
    assert_eq!(
        c.get(&format!("/servers/{id}/ips/other")).await?.status,
        404
    );
    let listed = c.get("/servers/detail").await?;
    assert_eq!(listed.body["servers"][0]["addresses"], s["addresses"]);

    let alone = create_server(
        &c,
        json!({"name": "alone", "imageRef": image, "flavorRef": "cn", "networks": "none"}),
    )
    .await?;
    c.wait_status(&alone, "ACTIVE", WAIT).await?;
    let inspect = inspect_of(&docker, &alone).await?;
    assert_eq!(network_mode(&inspect), Some("none"));
    assert_eq!(
        c.server(&alone).await?.body["server"]["addresses"],
        json!({})
    );

    for server in [&id, &alone] {
        assert_eq!(c.delete(&format!("/servers/{server}")).await?.status, 204);
        c.wait_gone(server, WAIT).await?;
    }
    Ok(())
}

/// Networks chosen by uuid: the container joins each one's engine network (the first at
/// create, the others before it starts) and the server's addresses are keyed by the networks'
/// names, not the engine's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_chosen_networks_shows_an_address_on_each() -> anyhow::Result<()> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let engine_networks = [format!("nova-a-{suffix}"), format!("nova-b-{suffix}")];
    // Declared first, so dropped last: after the containers on them are removed.
    let _first = TestNetwork::create(&engine_networks[0]).await?;
    let _second = TestNetwork::create(&engine_networks[1]).await?;
    let (options, _state, _cleanup) = options()?;
    let stack = Distributed::start(options).await?;
    let docker = engine()?;
    let admin = Client::new(stack.api_url(), "admin:admin");
    let mut ids = Vec::new();
    for (name, engine_network) in ["front", "back"].iter().zip(&engine_networks) {
        ids.push(
            admin
                .create_network(json!({"name": name, "shared": true,
                    "provider:physical_network": engine_network}))
                .await?,
        );
    }
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.47");
    container_flavor(&stack, "cn", 128, 1).await?;
    let image = docker_image(&c).await?;
    let id = create_server(
        &c,
        json!({"name": "two-nets", "imageRef": image, "flavorRef": "cn",
            "networks": [{"uuid": ids[0]}, {"uuid": ids[1]}]}),
    )
    .await?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    // One network twice: a 400 for a container (one endpoint per engine network).
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "twice", "imageRef": image, "flavorRef": "cn",
                "networks": [{"uuid": ids[0]}, {"uuid": ids[0]}]}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.body["badRequest"]["message"].as_str().unwrap_or_default();
    assert!(
        message.ends_with("a container is on each host network once."),
        "{message}"
    );
    let inspect = inspect_of(&docker, &id).await?;
    assert_eq!(network_mode(&inspect), Some(engine_networks[0].as_str()));
    let mut endpoints = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let mut expected = serde_json::Map::new();
    for (name, engine_network) in ["front", "back"].iter().zip(&engine_networks) {
        let endpoint = endpoints
            .remove(engine_network)
            .ok_or_else(|| anyhow::anyhow!("the container is not on {engine_network}"))?;
        let ip = endpoint.ip_address.unwrap_or_default();
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        expected.insert(
            (*name).to_owned(),
            json!([{"version": 4, "addr": ip, "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": endpoint.mac_address.unwrap_or_default()}]),
        );
    }
    assert!(endpoints.is_empty(), "on more networks: {endpoints:?}");
    let s = c.server(&id).await?.body["server"].clone();
    assert_eq!(s["addresses"], Value::Object(expected));

    // A network the host does not have: ERROR with a fault that names it.
    let missing = format!("nova-missing-{suffix}");
    let ghost = admin
        .create_network(json!({"name": "ghost", "shared": true,
            "provider:physical_network": missing}))
        .await?;
    let lost = create_server(
        &c,
        json!({"name": "lost", "imageRef": image, "flavorRef": "cn",
            "networks": [{"uuid": ghost}]}),
    )
    .await?;
    let s = c.wait_error(&lost, WAIT).await?;
    let fault = s["fault"]["message"].as_str().unwrap_or_default();
    assert!(fault.contains(&missing), "{s}");
    for server in [&id, &lost] {
        assert_eq!(c.delete(&format!("/servers/{server}")).await?.status, 204);
        c.wait_gone(server, WAIT).await?;
    }
    Ok(())
}

/// A network with a subnet: the driver makes its engine network with the subnet's CIDR and
/// gateway (the host lacked it), and the container takes its port's address and MAC, which
/// the server's addresses show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_takes_its_ports_address_and_mac() -> anyhow::Result<()> {
    let random = uuid::Uuid::new_v4();
    let suffix = &random.simple().to_string()[..8];
    let engine_network = format!("nova-sub-{suffix}");
    // Removes the engine network the driver makes, after the containers (dropped last).
    let _network = TestNetwork(engine_network.clone());
    let (options, _state, _cleanup) = options()?;
    let stack = Distributed::start(options).await?;
    let docker = engine()?;
    let admin = Client::new(stack.api_url(), "admin:admin");
    let net = admin
        .create_network(json!({"name": "subnetted", "shared": true,
            "provider:physical_network": engine_network}))
        .await?;
    // A /28 few hosts use, so that the engine finds it free.
    let b = random.as_bytes();
    let cidr = format!("10.239.{}.{}/28", b[0], b[1] & 0xf0);
    let subnet = admin.create_subnet(&net, &cidr).await?;
    let gateway = subnet["gateway_ip"].as_str().unwrap_or_default().to_owned();
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.47");
    container_flavor(&stack, "cn", 128, 1).await?;
    let image = docker_image(&c).await?;
    let id = create_server(
        &c,
        json!({"name": "on-subnet", "imageRef": image, "flavorRef": "cn",
            "networks": [{"uuid": net}]}),
    )
    .await?;
    let server = c.wait_status(&id, "ACTIVE", WAIT).await?;
    let r = admin
        .networking(
            reqwest::Method::GET,
            &format!("/ports?device_id={id}"),
            None,
        )
        .await?;
    let port = &r.body["ports"][0];
    let ip = port["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap_or_default();
    let mac = port["mac_address"].as_str().unwrap_or_default();
    assert!(!ip.is_empty() && mac.starts_with("fa:16:3e:"), "{}", r.body);
    // The engine's view: the network with the subnet, the endpoint with the port's address
    // and MAC.
    let network = docker.inspect_network(&engine_network, None).await?;
    let ipam = network.ipam.and_then(|i| i.config).unwrap_or_default();
    assert_eq!(ipam.len(), 1, "{ipam:?}");
    assert_eq!(ipam[0].subnet.as_deref(), Some(cidr.as_str()));
    assert_eq!(ipam[0].gateway.as_deref(), Some(gateway.as_str()));
    let inspect = inspect_of(&docker, &id).await?;
    let endpoint = inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&engine_network))
        .ok_or_else(|| anyhow::anyhow!("the container is not on {engine_network}"))?;
    assert_eq!(endpoint.ip_address.as_deref(), Some(ip));
    assert_eq!(endpoint.ip_prefix_len, Some(28));
    assert_eq!(endpoint.gateway.as_deref(), Some(gateway.as_str()));
    assert_eq!(endpoint.mac_address.as_deref(), Some(mac));
    assert_eq!(
        server["addresses"],
        json!({"subnetted": [{"version": 4, "addr": ip, "OS-EXT-IPS:type": "fixed",
            "OS-EXT-IPS-MAC:mac_addr": mac}]})
    );

    // An interface attached on a second network with a subnet: the running container joins
    // its engine network (made for it) at the port's address; detached, it leaves it.
    let second_network = format!("nova-sub2-{suffix}");
    let _second = TestNetwork(second_network.clone());
    let net2 = admin
        .create_network(json!({"name": "second", "shared": true,
            "provider:physical_network": second_network}))
        .await?;
    let cidr2 = format!("10.238.{}.{}/28", b[2], b[3] & 0xf0);
    admin.create_subnet(&net2, &cidr2).await?;
    let r = c
        .post(
            &format!("/servers/{id}/os-interface"),
            &json!({"interfaceAttachment": {"net_id": net2}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let attached = r.body["interfaceAttachment"].clone();
    let ip2 = attached["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap_or_default();
    let endpoints = inspect_of(&docker, &id)
        .await?
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert_eq!(
        endpoints
            .get(&second_network)
            .and_then(|e| e.ip_address.as_deref()),
        Some(ip2),
        "{endpoints:?}"
    );
    // A container joins an engine network once: a second NIC on it is refused (a VM would
    // take it, as Nova's drivers do), and nothing is made.
    let r = c
        .post(
            &format!("/servers/{id}/os-interface"),
            &json!({"interfaceAttachment": {"net_id": net2}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!(format!(
            "Networks {net2} and {net2} are the same network on the hosts ({second_network}): \
             a container is on each host network once."
        ))
    );
    let r = c.get(&format!("/servers/{id}/os-interface")).await?;
    assert_eq!(
        r.body["interfaceAttachments"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.body
    );
    let port2 = attached["port_id"].as_str().unwrap_or_default();
    let r = c
        .delete(&format!("/servers/{id}/os-interface/{port2}"))
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let endpoints = inspect_of(&docker, &id)
        .await?
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert!(!endpoints.contains_key(&second_network), "{endpoints:?}");

    assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    c.wait_gone(&id, WAIT).await?;
    let r = admin
        .networking(
            reqwest::Method::GET,
            &format!("/ports?device_id={id}"),
            None,
        )
        .await?;
    assert_eq!(
        r.body["ports"],
        json!([]),
        "the server's ports went with it"
    );
    Ok(())
}

/// The driver on its own: every call idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_driver_call_is_idempotent() -> anyhow::Result<()> {
    use drivers::Compute;
    use nova_core::model::PowerState;
    let (options, _state, _cleanup) = options()?;
    let driver =
        drivers::docker::DockerDriver::connect(&options.host, options.docker.clone()).await?;
    let docker = engine()?;
    let image = test_image().await?;
    let spec = nova_core::rpc::InstanceSpec {
        uuid: nova_core::ids::InstanceUuid::new_v4(),
        name: "idem".into(),
        project_id: "p".into(),
        user_id: "u".into(),
        node: options.host.clone(),
        flavor: nova_core::model::Flavor {
            flavorid: "x".into(),
            name: "x".into(),
            memory_mb: 64,
            vcpus: 1,
            root_gb: 0,
            ephemeral_gb: 0,
            swap: 0,
            rxtx_factor: 1.0,
            is_public: true,
            disabled: false,
            description: None,
            extra_specs: Default::default(),
        },
        image_ref: "img".into(),
        image: None,
        metadata: Default::default(),
        user_data: None,
        key_name: None,
        key_data: None,
        hostname: None,
        networks: nova_core::model::NetworkRequest::None,
        config_drive: true,
        kernel: None,
        ramdisk: None,
        os_command_line: None,
        bmc: None,
        nics: Vec::new(),
    };
    let id = spec.uuid.to_string();
    let first = driver
        .spawn(&spec, &drivers::BootImages::disk(&image.archive))
        .await?;
    let second = driver
        .spawn(&spec, &drivers::BootImages::disk(&image.archive))
        .await?;
    assert_eq!(first, second);
    assert_eq!(containers_of(&docker, &id).await?, 1);
    for _ in 0..2 {
        driver.power_off(spec.uuid, Duration::from_secs(5)).await?;
        assert_eq!(driver.power_state(spec.uuid).await?, PowerState::Shutdown);
    }
    // A spawn of a stopped instance finds it as it is.
    let again = driver
        .spawn(&spec, &drivers::BootImages::disk(&image.archive))
        .await?;
    assert_eq!(again.power_state, PowerState::Shutdown);
    for _ in 0..2 {
        driver.power_on(spec.uuid).await?;
        assert_eq!(driver.power_state(spec.uuid).await?, PowerState::Running);
    }
    for _ in 0..2 {
        driver.pause(spec.uuid).await?;
        assert_eq!(driver.power_state(spec.uuid).await?, PowerState::Paused);
    }
    for _ in 0..2 {
        driver.unpause(spec.uuid).await?;
        assert_eq!(driver.power_state(spec.uuid).await?, PowerState::Running);
    }
    let listed = driver.list_instances().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].uuid, spec.uuid);
    for _ in 0..2 {
        driver.destroy(spec.uuid).await?;
    }
    assert_eq!(containers_of(&docker, &id).await?, 0);
    assert!(matches!(
        driver.power_state(spec.uuid).await,
        Err(drivers::DriverError::NotFound(_))
    ));
    assert!(driver.list_instances().await?.is_empty());
    Ok(())
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `config_drive` honoured: on a host that does not force one, a server that asks for a
/// config drive gets it (mounted read-only, with its metadata) and shows `config_drive` "True";
/// one that does not ask (the Terraform provider's `false`) gets none and shows "".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_drive_is_there_when_asked_for() -> anyhow::Result<()> {
    let (mut options, state, _cleanup) = options()?;
    options.docker.force_config_drive = false;
    let stack = Distributed::start(options).await?;
    let docker = engine()?;
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.52");
    container_flavor(&stack, "cd1", 64, 1).await?;
    let image = docker_image(&c).await?;
    let with = create_server(
        &c,
        json!({"name": "with", "imageRef": image, "flavorRef": "cd1", "networks": "none",
               "config_drive": true, "metadata": {"role": "db"}}),
    )
    .await?;
    let without = create_server(
        &c,
        json!({"name": "without", "imageRef": image, "flavorRef": "cd1", "networks": "none",
               "config_drive": false, "user_data": ""}),
    )
    .await?;
    for id in [&with, &without] {
        c.wait_status(id, "ACTIVE", WAIT).await?;
    }
    let mounted = |inspect: &ContainerInspectResponse| {
        inspect
            .mounts
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|m| m.destination.as_deref() == Some("/mnt/config"))
    };
    assert!(mounted(&inspect_of(&docker, &with).await?));
    let meta: Value = serde_json::from_slice(&std::fs::read(
        state
            .path()
            .join(&with)
            .join("openstack/latest/meta_data.json"),
    )?)?;
    assert_eq!(meta["meta"]["role"], json!("db"));
    assert!(!mounted(&inspect_of(&docker, &without).await?));
    assert!(!state.path().join(&without).exists());
    let shown = c.server(&with).await?.body["server"]["config_drive"].clone();
    assert_eq!(shown, json!("True"));
    let shown = c.server(&without).await?.body["server"]["config_drive"].clone();
    assert_eq!(shown, json!(""));
    for id in [&with, &without] {
        assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
        c.wait_gone(id, WAIT).await?;
    }
    Ok(())
}

/// #15: containers are confined by default (no new privileges, a pids limit, a reduced
/// capability set), a flavor gives back only Docker's own default capabilities, and an archive
/// whose manifest names an image it does not hold (one the engine already has, say another
/// project's) is refused instead of run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_confined_and_archives_must_hold_their_image() -> anyhow::Result<()> {
    let (options, _state, _cleanup) = options()?;
    let stack = Distributed::start(options).await?;
    let docker = engine()?;
    let c = Client::new(stack.api_url(), "demo:demo");
    let admin = Client::new(stack.api_url(), "admin:admin");
    container_flavor(&stack, "cf", 128, 1).await?;
    let image = docker_image(&c).await?;

    let id = create_server(
        &c,
        json!({"name": "confined", "imageRef": image, "flavorRef": "cf"}),
    )
    .await?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    let host = inspect_of(&docker, &id)
        .await?
        .host_config
        .unwrap_or_default();
    assert!(
        host.security_opt
            .unwrap_or_default()
            .iter()
            .any(|o| o.starts_with("no-new-privileges")),
        "no-new-privileges"
    );
    assert_eq!(host.pids_limit, Some(1024));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    let mut caps = host.cap_add.unwrap_or_default();
    caps.sort();
    assert_eq!(caps, drivers::docker::KEPT_CAPS);

    // A flavor gives back NET_RAW and sets its own pids limit.
    container_flavor(&stack, "cr", 128, 1).await?;
    let r = admin
        .post(
            "/flavors/cr/os-extra_specs",
            &json!({"extra_specs": {"docker:cap_add": "net_raw", "docker:pids_limit": "64"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let raw = create_server(
        &c,
        json!({"name": "raw", "imageRef": image, "flavorRef": "cr"}),
    )
    .await?;
    c.wait_status(&raw, "ACTIVE", WAIT).await?;
    let host = inspect_of(&docker, &raw)
        .await?
        .host_config
        .unwrap_or_default();
    assert_eq!(host.pids_limit, Some(64));
    assert!(host
        .cap_add
        .unwrap_or_default()
        .contains(&"NET_RAW".to_owned()));
    // More than Docker's defaults: refused, nothing runs.
    container_flavor(&stack, "cx", 128, 1).await?;
    admin
        .post(
            "/flavors/cx/os-extra_specs",
            &json!({"extra_specs": {"docker:cap_add": "SYS_ADMIN"}}),
        )
        .await?;
    let root = create_server(
        &c,
        json!({"name": "root", "imageRef": image, "flavorRef": "cx"}),
    )
    .await?;
    let s = c.wait_error(&root, WAIT).await?;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("SYS_ADMIN"),
        "{s}"
    );
    assert_eq!(containers_of(&docker, &root).await?, 0);

    // Archives that name the image above, which the engine has, without holding all of it: the
    // manifest alone, and the manifest with the image's config but none of its layers (which
    // `docker load` itself accepts when the engine has the layers).
    let archive = std::fs::read(&e2e::docker::test_image().await?.archive)?;
    let mut files = std::collections::HashMap::new();
    for entry in tar::Archive::new(archive.as_slice()).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        files.insert(path, bytes);
    }
    let manifest = files
        .get("manifest.json")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the test image has no manifest"))?;
    let parsed: Value = serde_json::from_slice(&manifest)?;
    let config_name = parsed[0]["Config"].as_str().unwrap_or_default().to_owned();
    let config = files
        .get(&config_name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no config blob {config_name}"))?;
    let mut stolen = Vec::new();
    for (name, files) in [
        ("manifest-only", vec![("manifest.json", manifest.clone())]),
        (
            "no-layers",
            vec![
                (config_name.as_str(), config.clone()),
                ("manifest.json", manifest.clone()),
            ],
        ),
    ] {
        let mut forged = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            forged.append_data(&mut header, path, bytes.as_slice())?;
        }
        let forged = forged.into_inner()?;
        let forged = c.create_image(name, "docker", "raw", forged).await?;
        let server = create_server(
            &c,
            json!({"name": name, "imageRef": forged, "flavorRef": "cf"}),
        )
        .await?;
        let s = c.wait_error(&server, WAIT).await?;
        let message = s["fault"]["message"].as_str().unwrap_or_default();
        let missing = if name == "no-layers" {
            "layer"
        } else {
            config_name.as_str()
        };
        assert!(
            message.contains(&format!("names {missing}"))
                && message.contains("which the archive does not contain"),
            "{name}: {s}"
        );
        assert_eq!(containers_of(&docker, &server).await?, 0, "{name}");
        stolen.push(server);
    }

    for server in [&id, &raw, &root].into_iter().chain(&stolen) {
        assert_eq!(c.delete(&format!("/servers/{server}")).await?.status, 204);
        c.wait_gone(server, WAIT).await?;
    }
    Ok(())
}

/// Polls the namespace's `iptables -S` until `check` holds.
async fn iptables_until(
    ns: &e2e::docker::TestNetns,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rules = ns.rules("iptables")?;
        if check(&rules) {
            return Ok(rules);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "iptables never showed {what}:\n{rules}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Security groups enforced on a container: its port's chains in the host's packet filter
/// (here a network namespace of the test's own, which the driver is pointed at), keyed to the
/// port's address, with the group's rules, anti-spoofing, and the final drop; a rule added
/// reaches them; the server deleted, they go. Asserted on `iptables -S`, never with traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_are_the_containers_iptables_chains() -> anyhow::Result<()> {
    let ns = e2e::docker::TestNetns::create()?;
    let random = uuid::Uuid::new_v4();
    let engine_network = format!("nova-sg-{}", &random.simple().to_string()[..8]);
    let _network = TestNetwork(engine_network.clone());
    let (mut options, _state, _cleanup) = options()?;
    options.docker.firewall = ns.firewall();
    let stack = Distributed::start(options).await?;
    let admin = Client::new(stack.api_url(), "admin:admin");
    let net = admin
        .create_network(json!({"name": "filtered", "shared": true,
            "provider:physical_network": engine_network}))
        .await?;
    let b = random.as_bytes();
    admin
        .create_subnet(&net, &format!("10.237.{}.{}/28", b[0], b[1] & 0xf0))
        .await?;
    let c = Client::new(stack.api_url(), "demo:demo").at_microversion("2.47");
    let web = c
        .networking(
            reqwest::Method::POST,
            "/security-groups",
            Some(&json!({"security_group": {"name": "web"}})),
        )
        .await?
        .body["security_group"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let rule = |body: Value| {
        let c = c.clone();
        async move {
            c.networking(
                reqwest::Method::POST,
                "/security-group-rules",
                Some(&json!({ "security_group_rule": body })),
            )
            .await
        }
    };
    let r = rule(
        json!({"security_group_id": web, "direction": "ingress", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    container_flavor(&stack, "cn", 128, 1).await?;
    let image = docker_image(&c).await?;
    let id = create_server(
        &c,
        json!({"name": "filtered", "imageRef": image, "flavorRef": "cn",
            "networks": [{"uuid": net}], "security_groups": [{"name": "web"}]}),
    )
    .await?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    let r = admin
        .networking(
            reqwest::Method::GET,
            &format!("/ports?device_id={id}"),
            None,
        )
        .await?;
    let port = r.body["ports"][0].clone();
    let ip = port["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap_or_default();
    let mac = port["mac_address"].as_str().unwrap_or_default();
    let [i, o, s] = drivers::docker_firewall::chain_names(port["id"].as_str().unwrap_or_default());
    // In place when the container started (the build carried them).
    let rules = ns.rules("iptables")?;
    for want in [
        "-A FORWARD -j nova-sg".to_owned(),
        format!("-A nova-sg -d {ip}/32 -j {i}"),
        format!("-A nova-sg -m mac --mac-source {mac} -j {o}"),
        format!("-A nova-sg -s {ip}/32 -j {o}"),
        format!("-A {i} -m state --state RELATED,ESTABLISHED -j RETURN"),
        format!("-A {i} -p tcp -m tcp --dport 22 -j RETURN"),
        format!("-A {i} -j DROP"),
        format!("-A {o} -j {s}"),
        format!("-A {o} -j RETURN"),
        format!("-A {s} -s {ip}/32 -j RETURN"),
        format!("-A {s} -j DROP"),
    ] {
        assert!(
            rules.lines().any(|l| l == want),
            "missing {want:?} in\n{rules}"
        );
    }
    // A rule added to the group reaches the chain.
    let r = rule(
        json!({"security_group_id": web, "direction": "ingress", "protocol": "udp",
        "port_range_min": 5000, "port_range_max": 5010, "remote_ip_prefix": "192.168.0.0/16"}),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let want = format!("-A {i} -s 192.168.0.0/16 -p udp -m multiport --dports 5000:5010 -j RETURN");
    iptables_until(&ns, &want, |r| r.lines().any(|l| l == want)).await?;
    // The server deleted: its chains go.
    assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    c.wait_gone(&id, WAIT).await?;
    let gone = format!("-N {i}");
    iptables_until(&ns, "the port's chains removed", |r| {
        !r.lines().any(|l| l == gone) && !r.contains(&s)
    })
    .await?;
    Ok(())
}
