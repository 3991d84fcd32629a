//! Every Compute API response a test sees is checked against tempest.lib's response schema for
//! the microversion the test asked for (`tests/schema/validate.py`, run with the Python of
//! `.venv`, where `scripts/test.sh` installs tempest). One validator process per test binary,
//! fed one exchange per line.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

struct Validator {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

static VALIDATOR: OnceLock<Result<Mutex<Validator>, String>> = OnceLock::new();

fn python() -> PathBuf {
    std::env::var("NOVA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

fn start() -> Result<Mutex<Validator>, String> {
    let python = python();
    if !python.exists() {
        return Err(format!(
            "{} missing: scripts/test.sh makes .venv and installs tempest",
            python.display()
        ));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/validate.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    Ok(Mutex::new(Validator {
        _child: child,
        stdin,
        stdout,
    }))
}

/// One response as the client saw it.
pub struct Exchange<'a> {
    pub method: &'a str,
    /// Relative to the compute endpoint (`/servers/detail?limit=1`).
    pub path: &'a str,
    pub version: Option<&'a str>,
    pub status: u16,
    pub headers: &'a reqwest::header::HeaderMap,
    pub body: &'a Value,
    pub request: Option<&'a Value>,
}

/// Checks the exchange; an error when the response breaks its schema. Routes and statuses
/// tempest has no schema for pass unchecked.
pub fn check(x: &Exchange<'_>) -> anyhow::Result<()> {
    let validator = VALIDATOR
        .get_or_init(start)
        .as_ref()
        .map_err(|e| anyhow::anyhow!("schema validator: {e}"))?;
    let headers: serde_json::Map<String, Value> = x
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), json!(v.to_str().ok()?))))
        .collect();
    let line = json!({
        "method": x.method, "path": x.path, "version": x.version, "status": x.status,
        "headers": headers,
        "body": if x.body.is_null() { Value::Null } else { x.body.clone() },
        "request": x.request,
    })
    .to_string();
    let answer = {
        let mut v = validator.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(v.stdin, "{line}")?;
        v.stdin.flush()?;
        let mut answer = String::new();
        v.stdout.read_line(&mut answer)?;
        answer
    };
    let answer: Value = serde_json::from_str(&answer)
        .map_err(|e| anyhow::anyhow!("schema validator answered {answer:?}: {e}"))?;
    match answer["result"].as_str() {
        Some("valid") | Some("unchecked") => Ok(()),
        _ => anyhow::bail!(
            "{} {} at microversion {}: response breaks tempest's schema: {}",
            x.method,
            x.path,
            x.version.unwrap_or("(none)"),
            answer["error"].as_str().unwrap_or("?")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange<'a>(
        path: &'a str,
        version: Option<&'a str>,
        body: &'a Value,
        headers: &'a reqwest::header::HeaderMap,
    ) -> Exchange<'a> {
        Exchange {
            method: "GET",
            path,
            version,
            status: 200,
            headers,
            body,
            request: None,
        }
    }

    /// The check can fail: a response missing required fields, or carrying a field of a later
    /// microversion, is refused; a conforming one passes.
    #[test]
    fn the_validator_refuses_what_tempest_refuses() {
        let h = reqwest::header::HeaderMap::new();
        let empty = json!({"server": {}});
        assert!(check(&exchange("/servers/abc", None, &empty, &h)).is_err());
        let links = json!([{"rel": "self", "href": "http://x/v2.1/flavors/1"},
                           {"rel": "bookmark", "href": "http://x/flavors/1"}]);
        let flavor = json!({"id": "1", "name": "m1.tiny", "ram": 512, "disk": 1, "vcpus": 1,
            "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": false, "swap": "",
            "rxtx_factor": 1.0, "os-flavor-access:is_public": true, "links": links});
        let ok = json!({ "flavor": flavor });
        assert!(check(&exchange("/flavors/1", None, &ok, &h)).is_ok());
        // `description` arrived with 2.55: at 2.1 it is a leak.
        let mut leaky = ok.clone();
        leaky["flavor"]["description"] = json!(null);
        assert!(check(&exchange("/flavors/1", Some("2.1"), &leaky, &h)).is_err());
        assert!(check(&exchange("/flavors/1", Some("2.55"), &leaky, &h)).is_ok());
    }
}
