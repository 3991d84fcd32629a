//! Bare-metal enrolment (the Ironic v1 subset under `/baremetal`) through the real
//! `openstack baremetal` CLI (python-ironicclient), against the all-in-one with its bare-metal
//! pool and a real Redfish BMC (sushy-tools' emulator, fake backend).

use e2e::bmc::{Bmc, FakeSystem};
use e2e::cli;
use e2e::stack::{AllInOneStack, Options};
use keystone_auth::{AuthSettings, Strategy};
use serde_json::{json, Value};
use std::time::Duration;

async fn start(baremetal_pool: bool) -> anyhow::Result<AllInOneStack> {
    let auth = AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some("admin-secret".into()),
        demo_password: Some("demo-secret".into()),
        ..Default::default()
    };
    AllInOneStack::start(Options {
        auth: Some(auth),
        baremetal_pool,
        ..Options::default()
    })
    .await
}

async fn admin(stack: &AllInOneStack, args: &[&str]) -> anyhow::Result<Value> {
    cli::run_json(stack, "admin", args).await
}

/// `openstack image create NAME` of the file at `path`, public, in `disk_format` (bare).
async fn public_image(
    stack: &AllInOneStack,
    path: &std::path::Path,
    disk_format: &str,
    name: &str,
) -> anyhow::Result<Value> {
    let file = path.display().to_string();
    admin(
        stack,
        &[
            "image",
            "create",
            "--disk-format",
            disk_format,
            "--container-format",
            "bare",
            "--file",
            &file,
            "--public",
            name,
        ],
    )
    .await
}

/// `openstack ARGS` as the admin, expected to fail: its stderr.
async fn admin_fails(stack: &AllInOneStack, args: &[&str]) -> anyhow::Result<String> {
    match cli::run(stack, "admin", args).await {
        Ok(out) => anyhow::bail!("openstack {args:?} succeeded: {out}"),
        Err(e) => Ok(e.to_string()),
    }
}

/// Enrols `system` of `bmc` as `name` with `password`.
async fn enrol(
    stack: &AllInOneStack,
    bmc: &Bmc,
    system: &FakeSystem,
    name: &str,
    password: &str,
) -> anyhow::Result<Value> {
    let address = format!("redfish_address={}", bmc.url);
    let system_id = format!("redfish_system_id={}", system.system_id());
    let username = format!("redfish_username={}", bmc.username);
    let password = format!("redfish_password={password}");
    admin(
        stack,
        &[
            "baremetal",
            "node",
            "create",
            "--driver",
            "redfish",
            "--driver-info",
            &address,
            "--driver-info",
            &system_id,
            "--driver-info",
            &username,
            "--driver-info",
            &password,
            "--property",
            "cpus=2",
            "--property",
            "memory_mb=1024",
            "--property",
            "local_gb=10",
            "--property",
            "cpu_arch=x86_64",
            "--resource-class",
            "baremetal-small",
            "--name",
            name,
        ],
    )
    .await
}

/// `openstack baremetal node manage` then `provide`, each waiting for its state.
async fn manage_and_provide(stack: &AllInOneStack, node: &str) -> anyhow::Result<()> {
    cli::run(
        stack,
        "admin",
        &["baremetal", "node", "manage", node, "--wait", "60"],
    )
    .await?;
    cli::run(
        stack,
        "admin",
        &["baremetal", "node", "provide", node, "--wait", "120"],
    )
    .await?;
    Ok(())
}

/// The node as the API shows it to the admin (over HTTP: tests poll it, and each run of the
/// CLI costs a second of CPU).
async fn show(stack: &AllInOneStack, node: &str) -> anyhow::Result<Value> {
    static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let url = e2e::stack::Stack::api_url(stack).to_owned();
    let cached = TOKENS
        .lock()
        .expect("not poisoned")
        .iter()
        .find(|(u, _)| *u == url)
        .map(|(_, t)| t.clone());
    let token = match cached {
        Some(t) => t,
        None => {
            let t = e2e::client::password_token(&url, "admin", "admin-secret", "admin").await?;
            TOKENS
                .lock()
                .expect("not poisoned")
                .push((url.clone(), t.clone()));
            t
        }
    };
    let r = reqwest::Client::new()
        .get(format!("{url}/baremetal/v1/nodes/{node}"))
        .header("X-Auth-Token", token)
        .header("X-OpenStack-Ironic-API-Version", "1.46")
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "node {node}: {}", r.status());
    Ok(r.json().await?)
}

/// Waits until the node's `field` is `want` (a power change of the fake BMC takes 1–11 s).
async fn wait_field(
    stack: &AllInOneStack,
    node: &str,
    field: &str,
    want: &str,
) -> anyhow::Result<Value> {
    let last = std::sync::Mutex::new(Value::Null);
    let what = format!("node {node}: {field} = {want}");
    let done = e2e::wait_until(Duration::from_secs(60), &what, || async {
        let node = show(stack, node).await?;
        let reached = node[field] == json!(want);
        *last.lock().expect("not poisoned") = node;
        Ok(reached)
    })
    .await;
    let last = last.into_inner().expect("not poisoned");
    done.map_err(|e| anyhow::anyhow!("{e}; last: {last}"))?;
    Ok(last)
}

/// `openstack server create` of a `bm.small` server of the `boot-iso` image, without waiting:
/// its id.
async fn create_bm_server(stack: &AllInOneStack, name: &str) -> anyhow::Result<String> {
    let server = admin(
        stack,
        &[
            "server", "create", "--flavor", "bm.small", "--image", "boot-iso", "--nic", "none",
            name,
        ],
    )
    .await?;
    Ok(server["id"].as_str().unwrap_or_default().to_owned())
}

/// Sets `node`'s resource class by a JSON patch through the bare-metal API: status and body.
async fn set_class(ironic: &Ironic, node: &str, class: &str) -> anyhow::Result<(u16, Value)> {
    let patch = json!([{"op": "replace", "path": "/resource_class", "value": class}]);
    let path = format!("/v1/nodes/{node}");
    let (status, _, body) = ironic
        .call(reqwest::Method::PATCH, &path, Some(patch), "1.46")
        .await?;
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_enrols_manages_provides_powers_and_maintains_a_machine() -> anyhow::Result<()> {
    let systems = [
        FakeSystem::new("machine-1", "On"),
        FakeSystem::new("machine-2", "Off"),
    ];
    let bmc = Bmc::start_fake(&systems).await?;
    let [machine, other] = &systems;
    let stack = start(true).await?;

    // Enrolment: `enroll`, the password masked in what the API shows.
    let created = enrol(&stack, &bmc, machine, "bm-1", &bmc.password).await?;
    assert_eq!(created["provision_state"], "enroll", "{created}");
    assert_eq!(created["driver_info"]["redfish_password"], "******");
    assert_eq!(created["resource_class"], "baremetal-small");
    let uuid = created["uuid"].as_str().unwrap_or_default().to_owned();

    // manage: the BMC answers and takes the credentials → manageable, its power known.
    cli::run(
        &stack,
        "admin",
        &["baremetal", "node", "manage", "bm-1", "--wait", "60"],
    )
    .await?;
    let node = admin(&stack, &["baremetal", "node", "show", "bm-1"]).await?;
    assert_eq!(node["provision_state"], "manageable", "{node}");
    assert_eq!(node["power_state"], "power on", "{node}");
    assert_eq!(node["last_error"], Value::Null);

    // provide: cleaning (power off, no media, no boot override) → available.
    cli::run(
        &stack,
        "admin",
        &["baremetal", "node", "provide", "bm-1", "--wait", "90"],
    )
    .await?;
    let node = show(&stack, &uuid).await?;
    assert_eq!(node["provision_state"], "available", "{node}");
    assert_eq!(node["power_state"], "power off", "{node}");
    let system = bmc.system(machine).await?;
    assert_eq!(system["PowerState"], "Off", "{system}");
    // (The emulator shows every override as `Continuous`: its target is what tells.)
    assert_eq!(
        system["Boot"]["BootSourceOverrideTarget"], "Hdd",
        "{system}"
    );

    // list, with the provision state filter.
    let list = admin(
        &stack,
        &[
            "baremetal",
            "node",
            "list",
            "--provision-state",
            "available",
        ],
    )
    .await?;
    let names: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["bm-1"], "{list}");

    // power on and off, as the BMC then reports it.
    cli::run(
        &stack,
        "admin",
        &["baremetal", "node", "power", "on", "bm-1"],
    )
    .await?;
    wait_field(&stack, "bm-1", "power_state", "power on").await?;
    assert_eq!(bmc.system(machine).await?["PowerState"], "On");
    cli::run(
        &stack,
        "admin",
        &["baremetal", "node", "power", "off", "bm-1"],
    )
    .await?;
    wait_field(&stack, "bm-1", "power_state", "power off").await?;
    assert_eq!(bmc.system(machine).await?["PowerState"], "Off");

    // maintenance, with its reason, and back.
    cli::run(
        &stack,
        "admin",
        &[
            "baremetal",
            "node",
            "maintenance",
            "set",
            "bm-1",
            "--reason",
            "disk swap",
        ],
    )
    .await?;
    let node = show(&stack, "bm-1").await?;
    assert_eq!(node["maintenance"], true);
    assert_eq!(node["maintenance_reason"], "disk swap");
    cli::run(
        &stack,
        "admin",
        &["baremetal", "node", "maintenance", "unset", "bm-1"],
    )
    .await?;
    assert_eq!(show(&stack, "bm-1").await?["maintenance"], false);

    // Bad input, each refused with the reason and nothing changed:
    // a wrong BMC password at manage: back in enroll, the BMC's refusal in last_error;
    enrol(&stack, &bmc, other, "bm-bad", "not-the-password").await?;
    let err = admin_fails(
        &stack,
        &["baremetal", "node", "manage", "bm-bad", "--wait", "60"],
    )
    .await?;
    let node = show(&stack, "bm-bad").await?;
    assert_eq!(node["provision_state"], "enroll", "{node}\n{err}");
    let last_error = node["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("refused the credentials"), "{node}");
    // Its BMC is not asked again and again (an account lockout): not synced in enroll, so not
    // put into maintenance either.
    assert_eq!(node["maintenance"], false, "{node}");
    // provide from enroll: Ironic's 400 for a transition its machine does not have;
    let err = admin_fails(&stack, &["baremetal", "node", "provide", "bm-bad"]).await?;
    assert!(
        err.contains("can not be performed") && err.contains("enroll"),
        "{err}"
    );
    // an unknown driver;
    let err = admin_fails(
        &stack,
        &[
            "baremetal",
            "node",
            "create",
            "--driver",
            "ipmi",
            "--name",
            "bm-ipmi",
        ],
    )
    .await?;
    assert!(
        err.contains("No valid host was found") && err.contains("driver ipmi"),
        "{err}"
    );
    // a node without the BMC's system: manage names what is missing, and the node stays;
    admin(
        &stack,
        &[
            "baremetal",
            "node",
            "create",
            "--driver",
            "redfish",
            "--name",
            "bm-empty",
            "--driver-info",
            &format!("redfish_address={}", bmc.url),
        ],
    )
    .await?;
    let err = admin_fails(&stack, &["baremetal", "node", "manage", "bm-empty"]).await?;
    assert!(err.contains("redfish_system_id"), "{err}");
    assert_eq!(show(&stack, "bm-empty").await?["provision_state"], "enroll");

    // The password is nowhere in clear: not in what the API shows, not in the database.
    let shown = admin(&stack, &["baremetal", "node", "list", "--long"])
        .await?
        .to_string();
    assert!(!shown.contains(&bmc.password), "{shown}");
    // (The all-in-one's SQLite database, with its journal, is in the stack's directory.)
    let dir = stack
        .key_repository
        .parent()
        .expect("the stack's directory");
    assert!(
        !in_files(dir, bmc.password.as_bytes())?,
        "the BMC password is in a file of the service in clear"
    );

    // delete: gone from the list.
    for name in ["bm-1", "bm-bad", "bm-empty"] {
        cli::run(&stack, "admin", &["baremetal", "node", "delete", name]).await?;
    }
    let list = admin(&stack, &["baremetal", "node", "list"]).await?;
    assert_eq!(list, json!([]));
    Ok(())
}

/// Whether `needle` is in any file under `dir`.
fn in_files(dir: &std::path::Path, needle: &[u8]) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if in_files(&path, needle)? {
                return Ok(true);
            }
        } else if std::fs::read(&path)?
            .windows(needle.len())
            .any(|w| w == needle)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Child processes, killed when the test ends, however it ends.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The BMC password in the distributed shape (`nova-api`, `nova-conductor` and a bare-metal
/// `nova-compute` as processes, over RabbitMQ and PostgreSQL), logging at debug: in no log,
/// no response and no database column in clear, through enrolment, `manage` (which sends it
/// to the agent, sealed, and from there to the BMC) and a password change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bmc_password_is_in_no_log_response_or_database_row() -> anyhow::Result<()> {
    use e2e::deployment::binary;
    use e2e::env;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let systems = [FakeSystem::new("machine-1", "Off")];
    let bmc = Bmc::start_fake(&systems).await?;
    let db_url = env::fresh_pg_database().await?;
    let db = nova_db::Db::connect(&nova_db::DatabaseSettings {
        url: db_url.clone(),
        max_connections: 2,
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    let prefix = env::queue_prefix();
    let amqp = env::amqp_url();
    let common = [
        ("NOVA__DATABASE__URL", db_url.as_str()),
        ("NOVA__BUS__KIND", "amqp"),
        ("NOVA__BUS__QUEUE_PREFIX", prefix.as_str()),
        ("NOVA__BUS__AMQP_URL", amqp.as_str()),
        ("RUST_LOG", "debug"),
    ];
    // Every line each process writes (its logs go to stdout), in a file of its own.
    let spawn = |name: &str,
                 extra: &[(&str, String)]|
     -> anyhow::Result<(std::process::Child, std::path::PathBuf)> {
        let log = dir.path().join(format!("{name}.log"));
        let mut child = Command::new(binary(name)?)
            .envs(common)
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(
                dir.path().join(format!("{name}.err")),
            )?)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut file = std::fs::File::create(&log)?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
            }
        });
        Ok((child, log))
    };
    let mut procs = Processes(Vec::new());
    let mut logs = Vec::new();
    let (api, api_log) = spawn(
        "nova-api",
        &[
            ("NOVA__API__BIND", "127.0.0.1:0".into()),
            (
                "NOVA__IMAGE__STORE__DIR",
                dir.path().join("images").display().to_string(),
            ),
            ("NOVA__AUTH__KEY_REPOSITORY", keys.display().to_string()),
            ("NOVA__AUTH__ADMIN_PASSWORD", "admin-pw".into()),
            ("NOVA__AUTH__DEMO_PASSWORD", "demo-pw".into()),
        ],
    )?;
    procs.0.push(api);
    logs.push(api_log.clone());
    let mut url = String::new();
    e2e::wait_until(Duration::from_secs(30), "nova-api listening", || {
        let found = std::fs::read_to_string(&api_log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Compute API listening on")
                    .map(|u| u.trim().trim_end_matches("/v2.1").to_owned())
            });
        if let Some(u) = &found {
            url = u.clone();
        }
        async move { Ok(found.is_some()) }
    })
    .await?;
    for (name, extra) in [
        ("nova-conductor", vec![]),
        (
            "nova-compute",
            vec![
                ("NOVA__AGENT__HOST", "bm-host".to_owned()),
                ("NOVA__AGENT__DRIVER", "baremetal".to_owned()),
                ("NOVA__AGENT__BAREMETAL__IMAGE_URL", format!("{url}/image")),
                ("NOVA__AGENT__HEARTBEAT_INTERVAL_MS", "500".to_owned()),
                (
                    "NOVA__AGENT__STATE_DIR",
                    dir.path().join("agent").display().to_string(),
                ),
                (
                    "NOVA__AGENT__BAREMETAL__KEY_FILE",
                    keys.join("baremetal.key").display().to_string(),
                ),
            ],
        ),
    ] {
        let (child, log) = spawn(name, &extra)?;
        procs.0.push(child);
        logs.push(log);
    }
    let token = e2e::client::password_token(&url, "admin", "admin-pw", "admin").await?;
    let http = reqwest::Client::new();
    let mut shown = String::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = http
            .request(method, format!("{url}/baremetal/v1{path}"))
            .header("X-Auth-Token", &token)
            .header("X-OpenStack-Ironic-API-Version", "1.46");
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            anyhow::Ok((status, text))
        }
    };
    // The bare-metal agent registered its driver.
    e2e::wait_until(
        Duration::from_secs(60),
        "the bare-metal agent registered",
        || async {
            let (_, text) = call(reqwest::Method::GET, "/drivers", None).await?;
            Ok(text.contains("bm-host"))
        },
    )
    .await?;
    let (status, text) = call(
        reqwest::Method::POST,
        "/nodes",
        Some(json!({
            "driver": "redfish",
            "name": "bm-secret",
            "driver_info": {
                "redfish_address": bmc.url,
                "redfish_system_id": systems[0].system_id(),
                "redfish_username": bmc.username,
                "redfish_password": bmc.password,
            },
        })),
    )
    .await?;
    assert_eq!(status, 201, "{text}");
    shown.push_str(&text);
    let (status, text) = call(
        reqwest::Method::PUT,
        "/nodes/bm-secret/states/provision",
        Some(json!({"target": "manage"})),
    )
    .await?;
    assert_eq!(status, 202, "{text}");
    e2e::wait_until(Duration::from_secs(60), "the node manageable", || async {
        let (_, text) = call(reqwest::Method::GET, "/nodes/bm-secret", None).await?;
        let node: Value = serde_json::from_str(&text)?;
        anyhow::ensure!(node["last_error"].is_null(), "manage failed: {node}");
        Ok(node["provision_state"] == "manageable")
    })
    .await?;
    // A new password through a patch: shown masked, sealed anew.
    let second = format!("second-{}", uuid::Uuid::new_v4().simple());
    let (status, text) = call(
        reqwest::Method::PATCH,
        "/nodes/bm-secret",
        Some(json!([{"op": "add", "path": "/driver_info/redfish_password", "value": second}])),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"redfish_password\":\"******\""), "{text}");
    shown.push_str(&text);
    for path in [
        "/nodes/bm-secret",
        "/nodes/detail",
        "/nodes/bm-secret/states",
        "/nodes/bm-secret/validate",
    ] {
        let (_, text) = call(reqwest::Method::GET, path, None).await?;
        shown.push_str(&text);
    }
    drop(procs);
    // The whole row, every column.
    let row = nova_db::baremetal::find(&db, "bm-secret")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the node's row is gone"))?;
    let stored = format!("{row:?}");
    assert!(
        row.bmc_password
            .as_deref()
            .is_some_and(|p| p.starts_with("v1:")),
        "{stored}"
    );
    let mut all_logs = String::new();
    for log in &logs {
        all_logs.push_str(&std::fs::read_to_string(log)?);
    }
    // The logs do tell of the node's operation (so they are the logs that would show it).
    assert!(all_logs.contains("node operation ended"), "{all_logs}");
    for secret in [bmc.password.as_str(), second.as_str()] {
        assert!(
            !shown.contains(secret),
            "a response holds a BMC password: {shown}"
        );
        assert!(
            !stored.contains(secret),
            "the database holds a BMC password: {stored}"
        );
        assert!(!all_logs.contains(secret), "a log holds a BMC password");
    }
    let queues = nova_core::rpc::Queues::new(&prefix);
    env::delete_queues(vec![
        queues.conductor_tasks(),
        queues.conductor_events(),
        queues.compute("bm-host"),
    ]);
    Ok(())
}

/// The bare-metal API over HTTP, as a client without the CLI sees it.
struct Ironic {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Ironic {
    async fn new(stack: &AllInOneStack, user: &str, password: &str) -> anyhow::Result<Self> {
        let url = e2e::stack::Stack::api_url(stack).to_owned();
        let token = e2e::client::password_token(&url, user, password, user).await?;
        Ok(Self {
            http: reqwest::Client::new(),
            base: format!("{url}/baremetal"),
            token,
        })
    }

    /// `METHOD path` at version 1.46: the status, the headers and the body (JSON, or null).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        version: &str,
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .header("X-OpenStack-Ironic-API-Version", version);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await?;
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let text = r.text().await?;
        Ok((
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        ))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let (s, _, b) = self.call(reqwest::Method::GET, path, None, "1.46").await?;
        Ok((s, b))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let (s, _, b) = self.call(method, path, Some(body), "1.46").await?;
        Ok((s, b))
    }
}

/// Ironic's error body: the faultstring inside `error_message`'s JSON text.
fn fault(body: &Value) -> String {
    let inner: Value =
        serde_json::from_str(body["error_message"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
    inner["faultstring"]
        .as_str()
        .or(inner["description"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A BMC that stops answering puts its node into maintenance with the reason (Ironic's power
/// sync), and the node comes back when it answers again; bad requests get Ironic's answers
/// and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bmc_puts_its_node_in_maintenance_and_bad_requests_change_nothing(
) -> anyhow::Result<()> {
    use reqwest::Method;
    let systems = [FakeSystem::new("machine-1", "Off")];
    let mut bmc = Bmc::start_fake(&systems).await?;
    let stack = start(true).await?;
    let admin = Ironic::new(&stack, "admin", "admin-secret").await?;
    let node = json!({
        "driver": "redfish",
        "name": "bm-sync",
        "driver_info": {
            "redfish_address": bmc.url,
            "redfish_system_id": systems[0].system_id(),
            "redfish_username": bmc.username,
            "redfish_password": bmc.password,
        },
    });
    let (status, created) = admin.send(Method::POST, "/v1/nodes", node.clone()).await?;
    assert_eq!(status, 201, "{created}");
    let (status, body) = admin
        .send(
            Method::PUT,
            "/v1/nodes/bm-sync/states/provision",
            json!({"target": "manage"}),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let wait = |want: &'static str| {
        let admin = &admin;
        async move {
            e2e::wait_until(Duration::from_secs(60), want, || async {
                let (_, node) = admin.get("/v1/nodes/bm-sync").await?;
                Ok(match want {
                    "manageable" => node["provision_state"] == "manageable",
                    "maintenance" => node["maintenance"] == true,
                    _ => node["maintenance"] == false && node["power_state"] == "power off",
                })
            })
            .await
        }
    };
    wait("manageable").await?;

    // The BMC goes silent: after the sync's retries, maintenance with the reason.
    bmc.stop();
    wait("maintenance").await?;
    let (_, shown) = admin.get("/v1/nodes/bm-sync").await?;
    assert_eq!(shown["fault"], "power failure", "{shown}");
    assert_eq!(shown["power_state"], Value::Null, "{shown}");
    let reason = shown["maintenance_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("sync_power_state") && reason.contains("did not answer"),
        "{shown}"
    );
    // It answers again: back in service, its power known.
    bmc.start().await?;
    wait("back").await?;
    let (_, shown) = admin.get("/v1/nodes/bm-sync").await?;
    assert_eq!(shown["fault"], Value::Null, "{shown}");

    // Versions: out of range → 406 naming the range; unreadable → 406 without it.
    let (status, headers, body) = admin.call(Method::GET, "/v1/nodes", None, "1.115").await?;
    assert_eq!(status, 406, "{body}");
    assert_eq!(headers["x-openstack-ironic-api-maximum-version"], "1.46");
    assert_eq!(headers["x-openstack-ironic-api-minimum-version"], "1.11");
    assert!(fault(&body).contains("[1.11, 1.46]"), "{body}");
    let (status, headers, _) = admin
        .call(Method::GET, "/v1/nodes", None, "garbage")
        .await?;
    assert_eq!(status, 406);
    assert!(!headers.contains_key("x-openstack-ironic-api-maximum-version"));
    let (status, headers, _) = admin.call(Method::GET, "/v1", None, "1.46").await?;
    assert_eq!(
        (status, &headers["x-openstack-ironic-api-version"]),
        (200, &"1.46".parse()?)
    );

    // Members may not touch nodes (Ironic's admin-only policy).
    let demo = Ironic::new(&stack, "demo", "demo-secret").await?;
    let (status, body) = demo.get("/v1/nodes").await?;
    assert_eq!(status, 403, "{body}");
    assert!(!fault(&body).is_empty(), "{body}");

    // Bad requests, each with Ironic's status and words; the node stays as it was.
    let before = admin.get("/v1/nodes/bm-sync").await?.1;
    let mut dup = node.clone();
    dup["name"] = json!("bm-sync");
    let cases: Vec<(Method, &str, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/nodes",
            dup,
            409,
            "A node with name bm-sync already exists.",
        ),
        (
            Method::POST,
            "/v1/nodes",
            json!({"driver": "redfish", "bogus": 1}),
            400,
            "('bogus' was unexpected)",
        ),
        (
            Method::POST,
            "/v1/nodes",
            json!({"name": "x"}),
            400,
            "'driver' is a required property",
        ),
        (
            Method::POST,
            "/v1/nodes",
            json!({"driver": "redfish", "name": "bad name"}),
            400,
            "invalid name",
        ),
        (
            Method::POST,
            "/v1/nodes",
            json!({"driver": "redfish", "driver_info": {"snmp_password": "x"}}),
            400,
            "would be stored in clear",
        ),
        (
            Method::PATCH,
            "/v1/nodes/bm-sync",
            json!([{"op": "replace", "path": "/provision_state", "value": "active"}]),
            400,
            "Cannot patch /provision_state",
        ),
        (
            Method::PATCH,
            "/v1/nodes/bm-sync",
            json!([{"op": "remove", "path": "/properties/none"}]),
            400,
            "can't remove a non-existent object 'none'",
        ),
        (
            Method::PATCH,
            "/v1/nodes/bm-sync",
            json!([{"op": "move", "path": "/name"}]),
            400,
            "is not one of ['add', 'replace', 'remove']",
        ),
        (
            Method::PUT,
            "/v1/nodes/bm-sync/states/provision",
            json!({"target": "manage"}),
            400,
            "can not be performed on node",
        ),
        (
            Method::PUT,
            "/v1/nodes/bm-sync/states/power",
            json!({"target": "sideways"}),
            400,
            "can not be performed on node",
        ),
        (
            Method::PUT,
            "/v1/nodes/bm-sync/states/power",
            json!({"target": "power on", "timeout": 0}),
            400,
            "timeout has to be positive integer",
        ),
        (
            Method::PUT,
            "/v1/nodes/nosuch/states/power",
            json!({"target": "power on"}),
            404,
            "Node nosuch could not be found.",
        ),
    ];
    for (method, path, body, want_status, want_text) in cases {
        let (status, answer) = admin.send(method.clone(), path, body.clone()).await?;
        assert_eq!(status, want_status, "{method} {path} {body}: {answer}");
        assert!(
            fault(&answer).contains(want_text),
            "{method} {path} {body}: {answer}"
        );
    }
    for (path, want_status, want_text) in [
        (
            "/v1/nodes?marker=nosuch",
            400,
            "Expected UUID for marker: nosuch",
        ),
        (
            "/v1/nodes?provision_state=bogus",
            400,
            "Provision state \"bogus\" is not valid",
        ),
        (
            "/v1/nodes?maintenance=maybe",
            400,
            "Unrecognized value 'maybe'",
        ),
        (
            "/v1/nodes?sort_key=driver_info",
            400,
            "invalid field for sorting",
        ),
        (
            "/v1/nodes/detail?fields=uuid",
            400,
            "Unexpected arguments: fields",
        ),
        (
            "/v1/nodes/bad%20name",
            400,
            "Expected UUID or name for node",
        ),
    ] {
        let (status, answer) = admin.get(path).await?;
        assert_eq!(status, want_status, "{path}: {answer}");
        assert!(fault(&answer).contains(want_text), "{path}: {answer}");
    }
    let after = admin.get("/v1/nodes/bm-sync").await?.1;
    for key in [
        "provision_state",
        "name",
        "properties",
        "driver_info",
        "maintenance",
    ] {
        assert_eq!(before[key], after[key], "{key} changed");
    }
    // Deleting a manageable node works; the next read is Ironic's 404.
    let (status, _, _) = admin
        .call(Method::DELETE, "/v1/nodes/bm-sync", None, "1.46")
        .await?;
    assert_eq!(status, 204);
    let (status, body) = admin.get("/v1/nodes/bm-sync").await?;
    assert_eq!(
        (status, fault(&body).as_str()),
        (404, "Node bm-sync could not be found.")
    );

    // Without a bare-metal agent, nothing can be enrolled (Ironic's "no conductor").
    let lone = start(false).await?;
    let admin = Ironic::new(&lone, "admin", "admin-secret").await?;
    let (status, body) = admin.send(Method::POST, "/v1/nodes", node).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        fault(&body).contains("No conductor service registered which supports driver redfish"),
        "{body}"
    );
    Ok(())
}

/// A server of a bare-metal flavor, through the `openstack` CLI: it takes the one machine of
/// its class whole (one hypervisor per machine), which boots its ISO from the BMC's virtual
/// media; a second finds no machine; the delete cleans the machine back into the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_a_baremetal_flavor_deploys_its_iso_on_the_machine() -> anyhow::Result<()> {
    let systems = [FakeSystem::new("machine-1", "Off")];
    let mut bmc = Bmc::start_fake(&systems).await?;
    let machine = &systems[0];
    let stack = start(true).await?;
    let node = enrol(&stack, &bmc, machine, "bm-deploy", &bmc.password).await?;
    let node_uuid = node["uuid"].as_str().unwrap_or_default().to_owned();
    manage_and_provide(&stack, "bm-deploy").await?;

    // One hypervisor per machine, named by its uuid, as Nova shows Ironic's nodes.
    let hypervisors = admin(&stack, &["hypervisor", "list"]).await?;
    let ours = hypervisors
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["Hypervisor Hostname"] == json!(node_uuid))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(ours["Hypervisor Type"], "ironic", "{hypervisors}");

    // A flavor as Nova's for Ironic: the class, standard resources zeroed.
    admin(
        &stack,
        &[
            "flavor",
            "create",
            "--ram",
            "1024",
            "--vcpus",
            "2",
            "--disk",
            "10",
            "--property",
            "resources:CUSTOM_BAREMETAL_SMALL=1",
            "--property",
            "resources:VCPU=0",
            "--property",
            "resources:MEMORY_MB=0",
            "--property",
            "resources:DISK_GB=0",
            "bm.small",
        ],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let iso = dir.path().join("boot.iso");
    std::fs::write(&iso, b"an ISO image for the test\n".repeat(100))?;
    public_image(&stack, &iso, "iso", "boot-iso").await?;
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, b"a whole disk\n".repeat(100))?;
    public_image(&stack, &raw, "raw", "whole-disk").await?;

    // A whole-disk image is refused, with why.
    let err = admin_fails(
        &stack,
        &[
            "server",
            "create",
            "--flavor",
            "bm.small",
            "--image",
            "whole-disk",
            "--nic",
            "none",
            "bm-raw",
        ],
    )
    .await?;
    assert!(
        err.contains("whole-disk image") && err.contains("agent ramdisk"),
        "{err}"
    );

    let server = admin(
        &stack,
        &[
            "server",
            "create",
            "--flavor",
            "bm.small",
            "--image",
            "boot-iso",
            "--nic",
            "none",
            "--wait",
            "bm-server",
        ],
    )
    .await?;
    assert_eq!(server["status"], "ACTIVE", "{server}");
    let server_id = server["id"].as_str().unwrap_or_default().to_owned();
    let shown = admin(&stack, &["server", "show", "bm-server"]).await?;
    assert_eq!(
        shown["OS-EXT-SRV-ATTR:hypervisor_hostname"],
        json!(node_uuid),
        "{shown}"
    );
    // A machine is neither paused nor suspended: refused (501) as Nova refuses what its
    // Ironic driver lacks, and the server stays as it is.
    for action in ["pause", "suspend"] {
        let err = admin_fails(&stack, &["server", action, "bm-server"]).await?;
        assert!(
            err.contains("The requested functionality is not supported")
                && err.contains("a bare-metal machine cannot be"),
            "{err}"
        );
    }
    // Nor resized, snapshotted or shelved (over HTTP: a CLI call each costs seconds).
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let token = e2e::client::password_token(&url, "admin", "admin-secret", "admin").await?;
    let http = e2e::client::Client::new(&url, &token);
    for body in [
        json!({"resize": {"flavorRef": "bm.small"}}),
        json!({"createImage": {"name": "bm-snap"}}),
        json!({"createBackup": {"name": "bm-b", "backup_type": "daily", "rotation": 1}}),
        json!({"shelve": null}),
    ] {
        let r = http.action(&server_id, &body).await?;
        assert_eq!(r.status, 501, "{body}: {}", r.body);
        let message = r.body["notImplemented"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.contains("a bare-metal machine cannot be"),
            "{body}: {message}"
        );
    }
    let after = admin(&stack, &["server", "show", "bm-server"]).await?;
    assert_eq!(
        (&after["status"], &after["OS-EXT-STS:task_state"]),
        (&json!("ACTIVE"), &Value::Null),
        "{after}"
    );
    let events = admin(&stack, &["server", "event", "list", "bm-server"]).await?;
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(1),
        "only the create is recorded: {events}"
    );
    let node = show(&stack, "bm-deploy").await?;
    assert_eq!(node["provision_state"], "active", "{node}");
    assert_eq!(node["instance_uuid"], json!(server_id), "{node}");
    // On the BMC: powered on, booting once from the CD, the ISO inserted from a signed URL.
    let system = bmc.system(machine).await?;
    assert_eq!(system["PowerState"], "On", "{system}");
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Cd", "{system}");
    let cd = bmc.cd(machine).await?;
    assert_eq!(cd["Inserted"], true, "{cd}");
    let url = cd["Image"].as_str().unwrap_or_default().to_owned();
    assert!(url.contains("/image/v2/bmc-images/"), "{cd}");
    // The URL works without a token, and only as signed.
    let http = reqwest::Client::new();
    let fetched = http.get(&url).send().await?;
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.bytes().await?.as_ref(),
        std::fs::read(&iso)?.as_slice()
    );
    let (head, signature) = url
        .rsplit_once("/image.iso")
        .and_then(|(h, _)| h.rsplit_once('/'))
        .ok_or_else(|| anyhow::anyhow!("no signature in {url}"))?;
    // Its first character changed (each of its bits counts; the last one's low bits may be
    // padding, and an `A` there was no change at all).
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{head}/{first}{}/image.iso", &signature[1..]);
    assert_eq!(http.get(&forged).send().await?.status(), 403);

    // The only machine of the class is taken: a second server finds none.
    let second_id = create_bm_server(&stack, "bm-second").await?;
    let c = e2e::client::Client::new(
        e2e::stack::Stack::api_url(&stack),
        &e2e::client::password_token(
            e2e::stack::Stack::api_url(&stack),
            "admin",
            "admin-secret",
            "admin",
        )
        .await?,
    );
    let failed = c.wait_error(&second_id, Duration::from_secs(60)).await?;
    let message = failed["fault"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("No valid host was found"), "{failed}");

    // Rebuild (#19): the machine cleaned and the ISO deployed again through its BMC, the
    // server on the same machine.
    e2e::cli::run(
        &stack,
        "admin",
        &[
            "server",
            "rebuild",
            "--image",
            "boot-iso",
            "--wait",
            "bm-server",
        ],
    )
    .await?;
    let rebuilt = admin(&stack, &["server", "show", "bm-server"]).await?;
    assert_eq!(rebuilt["status"], "ACTIVE", "{rebuilt}");
    let node = show(&stack, "bm-deploy").await?;
    assert_eq!(node["instance_uuid"], json!(server_id), "{node}");
    let system = bmc.system(machine).await?;
    assert_eq!(system["PowerState"], "On", "{system}");
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Cd", "{system}");
    assert_eq!(bmc.cd(machine).await?["Inserted"], true);
    let log = std::fs::read_to_string(&bmc.log)?;
    assert!(
        log.matches("EjectMedia").count() >= 1 && log.matches("InsertMedia").count() >= 2,
        "ejected and inserted again:\n{log}"
    );

    // Rescue (#19): the machine off, then booted from the rescue ISO through its BMC (its
    // local disks as they are); unrescue deploys the server's own ISO again.
    let rescue_iso = dir.path().join("rescue.iso");
    std::fs::write(&rescue_iso, b"a rescue system\n".repeat(100))?;
    let rescue_image = public_image(&stack, &rescue_iso, "iso", "rescue-iso").await?;
    let rescue_id = rescue_image["id"].as_str().unwrap_or_default().to_owned();
    let own = c.server(&server_id).await?.body;
    let own_id = own["server"]["image"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!own_id.is_empty(), "{own}");
    let booted = || async {
        let cd = bmc.cd(machine).await?;
        anyhow::ensure!(cd["Inserted"] == true, "{cd}");
        Ok::<_, anyhow::Error>(cd["Image"].as_str().unwrap_or_default().to_owned())
    };
    e2e::cli::run(
        &stack,
        "admin",
        &["server", "rescue", "--image", "rescue-iso", "bm-server"],
    )
    .await?;
    c.wait_status(&server_id, "RESCUE", Duration::from_secs(60))
        .await?;
    let url = booted().await?;
    assert!(url.contains(&format!("/bmc-images/{rescue_id}/")), "{url}");
    let system = bmc.system(machine).await?;
    assert_eq!(system["PowerState"], "On", "{system}");
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Cd", "{system}");
    e2e::cli::run(&stack, "admin", &["server", "unrescue", "bm-server"]).await?;
    c.wait_status(&server_id, "ACTIVE", Duration::from_secs(60))
        .await?;
    let url = booted().await?;
    assert!(url.contains(&format!("/bmc-images/{own_id}/")), "{url}");
    assert_eq!(bmc.system(machine).await?["PowerState"], "On");
    let events = admin(&stack, &["server", "event", "list", "bm-server"]).await?;
    let actions = cli::event_actions(&events);
    assert!(
        actions.contains(&"rescue") && actions.contains(&"unrescue"),
        "{events}"
    );

    // An active node is not deleted (Ironic's 409 for a node with an instance), and stays.
    let ironic = Ironic::new(&stack, "admin", "admin-secret").await?;
    let (status, _, body) = ironic
        .call(reqwest::Method::DELETE, "/v1/nodes/bm-deploy", None, "1.46")
        .await?;
    assert_eq!(status, 409, "{body}");
    assert!(
        fault(&body).contains(&format!("is associated with instance {server_id}")),
        "{body}"
    );
    // Nor does its class change while it holds a server (Ironic's 409, InvalidState).
    let (status, body) = set_class(&ironic, "bm-deploy", "baremetal-other").await?;
    assert_eq!(status, 409, "{body}");
    assert!(
        fault(&body).contains("can not have resource_class updated"),
        "{body}"
    );
    assert_eq!(
        show(&stack, "bm-deploy").await?["resource_class"],
        "baremetal-small"
    );
    // Its BMC goes silent: the node goes into maintenance, and the server on it is not lost:
    // ACTIVE all along (the agent's syncs do not take a machine that does not answer for one
    // that is gone). Back in service when the BMC answers.
    bmc.stop();
    e2e::wait_until(
        Duration::from_secs(60),
        "the node in maintenance",
        || async {
            let s = c.server(&server_id).await?;
            anyhow::ensure!(s.body["server"]["status"] == "ACTIVE", "server: {}", s.body);
            Ok(ironic.get("/v1/nodes/bm-deploy").await?.1["maintenance"] == true)
        },
    )
    .await?;
    bmc.start().await?;
    e2e::wait_until(
        Duration::from_secs(60),
        "the node back in service",
        || async { Ok(ironic.get("/v1/nodes/bm-deploy").await?.1["maintenance"] == false) },
    )
    .await?;
    assert_eq!(
        c.server(&server_id).await?.body["server"]["status"],
        "ACTIVE"
    );

    // The delete cleans the machine: off, no media, no boot override; available again.
    cli::run(
        &stack,
        "admin",
        &["server", "delete", "--wait", "bm-server"],
    )
    .await?;
    // (Ironic's way: cleaning, then available.)
    let node = wait_field(&stack, "bm-deploy", "provision_state", "available").await?;
    assert_eq!(node["instance_uuid"], Value::Null, "{node}");
    let system = bmc.system(machine).await?;
    assert_eq!(system["PowerState"], "Off", "{system}");
    assert_eq!(
        system["Boot"]["BootSourceOverrideTarget"], "Hdd",
        "{system}"
    );
    assert_eq!(bmc.cd(machine).await?["Inserted"], false);

    // Available, its class may change; a flavor of the old class then finds no machine.
    let (status, body) = set_class(&ironic, "bm-deploy", "baremetal-other").await?;
    assert_eq!(status, 200, "{body}");
    let other_id = create_bm_server(&stack, "bm-other").await?;
    let failed = c.wait_error(&other_id, Duration::from_secs(60)).await?;
    let message = failed["fault"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("No valid host was found"), "{failed}");
    assert_eq!(
        show(&stack, "bm-deploy").await?["provision_state"],
        "available"
    );
    let (status, body) = set_class(&ironic, "bm-deploy", "baremetal-small").await?;
    assert_eq!(status, 200, "{body}");

    // A deploy that fails (the BMC silent): the server in ERROR with a fault, and the machine
    // no longer held by it.
    bmc.stop();
    let failing_id = create_bm_server(&stack, "bm-fails").await?;
    let failed = c.wait_error(&failing_id, Duration::from_secs(120)).await?;
    assert!(failed["fault"]["message"].is_string(), "{failed}");
    // The machine is cleaned as after any instance; with its BMC silent that fails, and the
    // node waits in `clean failed` (not `available`) for an admin, as in Ironic.
    let node = wait_field(&stack, "bm-deploy", "provision_state", "clean failed").await?;
    assert_eq!(node["instance_uuid"], Value::Null, "{node}");
    assert!(node["last_error"].is_string(), "{node}");
    bmc.start().await?;
    manage_and_provide(&stack, "bm-deploy").await?;
    Ok(())
}

/// A libvirt domain of `qemu:///system` that stands for a machine: an empty disk (a machine's
/// boot override goes back to its disk), its serial console in a file; undefined (and stopped)
/// when dropped.
struct Domain {
    uuid: String,
    name: String,
    console: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Domain {
    fn define() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let name = format!("bm-test-{}", &uuid[..8]);
        let console = dir.path().join("console.log");
        let disk = dir.path().join("disk.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("64M")
            .status()?;
        anyhow::ensure!(made.success(), "qemu-img create failed");
        let xml = format!(
            "<domain type='qemu'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  \
             <memory unit='MiB'>256</memory>\n  <vcpu>1</vcpu>\n  \
             <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>\n  \
             <on_poweroff>destroy</on_poweroff>\n  <devices>\n    \
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>\n    \
             <serial type='pty'><log file='{}' append='on'/><target port='0'/></serial>\n    \
             <console type='pty'><target type='serial' port='0'/></console>\n  \
             </devices>\n</domain>\n",
            disk.display(),
            console.display()
        );
        let file = dir.path().join("domain.xml");
        std::fs::write(&file, xml)?;
        virsh(&["define", &file.display().to_string()])?;
        Ok(Self {
            uuid,
            name,
            console,
            _dir: dir,
        })
    }

    fn state(&self) -> anyhow::Result<String> {
        Ok(virsh(&["domstate", &self.name])?.trim().to_owned())
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.name]);
        let _ = virsh(&["undefine", &self.name]);
        // The ISO the emulator copied into libvirt's pool for the domain (it names it after
        // the URL's file and the domain).
        let volume = format!("image-iso-{}.img", self.uuid);
        let _ = virsh(&["vol-delete", "--pool", "default", &volume]);
    }
}

fn virsh(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The deploy onto a real machine's stand-in: sushy-emulator's libvirt backend makes a libvirt
/// domain the machine, so the server's ISO (the test guest's kernel and initramfs, isolinux)
/// is really inserted as the domain's CD-ROM and booted, and its serial console shows the
/// guest's marker. The delete powers the domain off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_boots_its_iso_on_a_libvirt_domain_behind_a_redfish_bmc() -> anyhow::Result<()> {
    let program = match std::env::var_os("NOVA_TEST_SUSHY_LIBVIRT") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        // scripts/test.sh sets it (scripts/sushy-libvirt.sh): there, a test that did not run
        // is a failure.
        _ if std::env::var_os("CI").is_some() => {
            anyhow::bail!("NOVA_TEST_SUSHY_LIBVIRT (scripts/sushy-libvirt.sh) is not set")
        }
        _ => {
            eprintln!("skipped: NOVA_TEST_SUSHY_LIBVIRT (scripts/sushy-libvirt.sh) is not set");
            return Ok(());
        }
    };
    let guest = e2e::vm::guest().await?;
    let domain = Domain::define()?;
    let bmc = Bmc::start_libvirt(program, std::slice::from_ref(&domain.uuid)).await?;
    let stack = start(true).await?;
    let system_id = format!("redfish_system_id=/redfish/v1/Systems/{}", domain.uuid);
    let address = format!("redfish_address={}", bmc.url);
    let username = format!("redfish_username={}", bmc.username);
    let password = format!("redfish_password={}", bmc.password);
    admin(
        &stack,
        &[
            "baremetal",
            "node",
            "create",
            "--driver",
            "redfish",
            "--name",
            "bm-vm",
            "--driver-info",
            &address,
            "--driver-info",
            &system_id,
            "--driver-info",
            &username,
            "--driver-info",
            &password,
            "--property",
            "cpus=1",
            "--property",
            "memory_mb=256",
            "--property",
            "local_gb=0",
            "--resource-class",
            "vm-backed",
        ],
    )
    .await?;
    manage_and_provide(&stack, "bm-vm").await?;
    admin(
        &stack,
        &[
            "flavor",
            "create",
            "--ram",
            "256",
            "--vcpus",
            "1",
            "--disk",
            "0",
            "--property",
            "resources:CUSTOM_VM_BACKED=1",
            "bm.vm",
        ],
    )
    .await?;
    public_image(&stack, &guest.iso, "iso", "guest-iso").await?;
    let server = admin(
        &stack,
        &[
            "server",
            "create",
            "--flavor",
            "bm.vm",
            "--image",
            "guest-iso",
            "--nic",
            "none",
            "--wait",
            "bm-vm-server",
        ],
    )
    .await?;
    assert_eq!(server["status"], "ACTIVE", "{server}");
    assert_eq!(domain.state()?, "running");
    e2e::wait_until(
        Duration::from_secs(120),
        "the guest's marker on the domain's console",
        || async {
            Ok(std::fs::read_to_string(&domain.console)
                .unwrap_or_default()
                .contains(e2e::vm::MARKER))
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\nconsole:\n{}\nBMC log:\n{}",
            std::fs::read_to_string(&domain.console).unwrap_or_default(),
            std::fs::read_to_string(&bmc.log).unwrap_or_default()
        )
    })?;
    let console = std::fs::read_to_string(&domain.console)?;
    assert!(
        console.contains("console=ttyS0"),
        "booted by isolinux with its command line"
    );

    cli::run(
        &stack,
        "admin",
        &["server", "delete", "--wait", "bm-vm-server"],
    )
    .await?;
    assert_eq!(domain.state()?, "shut off");
    wait_field(&stack, "bm-vm", "provision_state", "available").await?;
    Ok(())
}
