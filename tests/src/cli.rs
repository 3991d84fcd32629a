//! The real `openstack` CLI (python-openstackclient, installed into `.venv` by
//! `scripts/test.sh`), run against an all-in-one with the `clouds.yaml` it wrote.

use crate::stack::AllInOneStack;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn openstack() -> anyhow::Result<PathBuf> {
    let path = std::env::var("NOVA_TEST_OPENSTACK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/openstack")
        });
    anyhow::ensure!(
        path.exists(),
        "{} missing: scripts/test.sh installs python-openstackclient",
        path.display()
    );
    Ok(path)
}

/// The CLI imported once (`tests/cli/forkserver.py`): each command runs in a child forked from
/// it, through the CLI's own entry point, which saves each command the second its imports
/// take (the CLI was the largest share of the tests' CPU). Started on first use; it ends when
/// this process does (it watches its stdin). `None` when it could not start: then each
/// command is its own `openstack` process, as before.
struct ForkServer {
    socket: PathBuf,
    _stdin: std::sync::Mutex<std::process::ChildStdin>,
    _dir: tempfile::TempDir,
}

fn fork_server() -> Option<&'static ForkServer> {
    static SERVER: std::sync::OnceLock<Option<ForkServer>> = std::sync::OnceLock::new();
    SERVER
        .get_or_init(|| match start_fork_server() {
            Ok(server) => Some(server),
            Err(e) => {
                eprintln!("the CLI's fork server did not start ({e}); one process per command");
                None
            }
        })
        .as_ref()
}

fn start_fork_server() -> anyhow::Result<ForkServer> {
    use std::io::BufRead;
    if std::env::var("NOVA_TEST_CLI_FORK").as_deref() == Ok("0") {
        anyhow::bail!("NOVA_TEST_CLI_FORK=0");
    }
    let python = openstack()?
        .parent()
        .map(|bin| bin.join("python3"))
        .ok_or_else(|| anyhow::anyhow!("no venv"))?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cli/forkserver.py");
    let dir = tempfile::Builder::new().prefix("nova-cli-").tempdir()?;
    let socket = dir.path().join("cli.sock");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(&socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "ready", "it said {line:?}");
    Ok(ForkServer {
        socket,
        _stdin: std::sync::Mutex::new(stdin),
        _dir: dir,
    })
}

/// What a command printed and how it ended.
struct Ran {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn run_forked(server: &ForkServer, args: &[String], env: &[(&str, String)]) -> anyhow::Result<Ran> {
    use std::io::{Read, Write};
    let env: serde_json::Map<String, Value> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
        .collect();
    let mut conn = std::os::unix::net::UnixStream::connect(&server.socket)?;
    conn.write_all(&serde_json::to_vec(
        &serde_json::json!({"args": args, "env": env}),
    )?)?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let answer: Value = serde_json::from_slice(&answer)?;
    let status = answer["status"].as_i64().unwrap_or(-1);
    let text = |k: &str| answer[k].as_str().unwrap_or_default().as_bytes().to_vec();
    Ok(Ran {
        success: status == 0,
        status: format!("exit status: {status}"),
        stdout: text("stdout"),
        stderr: text("stderr"),
    })
}

/// Runs `openstack ARGS` as `cloud` and returns stdout; fails on a non-zero exit, with stderr.
pub async fn run(stack: &AllInOneStack, cloud: &str, args: &[&str]) -> anyhow::Result<String> {
    let clouds = stack
        .clouds_yaml
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no clouds.yaml written"))?;
    let env = vec![
        (
            "OS_CLIENT_CONFIG_FILE",
            clouds.to_string_lossy().into_owned(),
        ),
        ("OS_CLOUD", cloud.to_owned()),
    ];
    let argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let openstack = openstack()?;
    let out = tokio::task::spawn_blocking(move || -> anyhow::Result<Ran> {
        if let Some(server) = fork_server() {
            return run_forked(server, &argv, &env);
        }
        let mut cmd = Command::new(openstack);
        cmd.args(&argv).envs(env.iter().map(|(k, v)| (*k, v)));
        let out = cmd.output()?;
        Ok(Ran {
            success: out.status.success(),
            status: out.status.to_string(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    })
    .await??;
    anyhow::ensure!(
        out.success,
        "openstack {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs `openstack ARGS -f json` as `cloud` and parses the output.
pub async fn run_json(stack: &AllInOneStack, cloud: &str, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    Ok(serde_json::from_str(&run(stack, cloud, &all).await?)?)
}

/// The actions of `openstack server event list -f json`, newest first.
pub fn event_actions(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["Action"].as_str())
        .collect()
}
