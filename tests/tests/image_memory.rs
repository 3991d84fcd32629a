//! A 1 GiB image through a real `nova-api` process: its peak memory stays far below the
//! image's size (uploads and downloads are streamed), and the bytes come back as they went in.
//! A test binary of its own so that nothing else runs beside it.

use e2e::client::password_token;
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const GIB: usize = 1 << 30;
const CHUNK: usize = 1 << 20;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    let kb: u64 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
    Ok(kb * 1024)
}

/// Deterministic data for chunk `i`: byte `j` is `(i * 31 + j * 7) % 251`.
///
/// Computed once as one pattern and copied per chunk, because a byte loop in a debug build
/// spent seconds of the test on the gigabyte (twice): 7 × 36 ≡ 1 (mod 251), so chunk `i` is
/// the pattern `k * 7 % 251` read from offset `i * 31 * 36 % 251`.
fn chunk(i: usize) -> Vec<u8> {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        (0..CHUNK + 251)
            .map(|k| u8::try_from(k * 7 % 251).unwrap_or(0))
            .collect()
    });
    let offset = i * 31 * 36 % 251;
    pattern[offset..offset + CHUNK].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_image_streams_through_bounded_memory() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("nova-api"))
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    anyhow::ensure!(
        bin.exists(),
        "{} missing: run `cargo build --bins` first",
        bin.display()
    );
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let mut child = Command::new(bin)
        .env("NOVA__DATABASE__URL", db)
        .env("NOVA__API__BIND", "127.0.0.1:0")
        .env("NOVA__IMAGE__STORE__DIR", dir.path().join("images"))
        .env("NOVA__AUTH__KEY_REPOSITORY", dir.path().join("keys"))
        .env("NOVA__AUTH__ADMIN_PASSWORD", "a")
        .env("NOVA__AUTH__DEMO_PASSWORD", "d")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let child = Killed(child);
    let pid = child.0.id();
    let url = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        for line in BufReader::new(stdout).lines() {
            if let Some(u) = line?.strip_prefix("Compute API listening on ") {
                return Ok(u.trim_end_matches("/v2.1").to_owned());
            }
        }
        anyhow::bail!("nova-api did not start")
    })
    .await??;
    let token = password_token(&url, "demo", "d", "demo").await?;
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let image: Value = http
        .post(&v2)
        .header("X-Auth-Token", &token)
        .json(&json!({"name": "big", "container_format": "bare", "disk_format": "raw"}))
        .send()
        .await?
        .json()
        .await?;
    let id = image["id"].as_str().unwrap_or_default().to_owned();
    let before = peak_rss(pid)?;

    let mut expected = Sha512::new();
    for i in 0..GIB / CHUNK {
        expected.update(chunk(i));
    }
    let expected = format!("{:x}", expected.finalize());
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        (0..GIB / CHUNK).map(|i| Ok::<_, std::io::Error>(chunk(i))),
    ));
    let r = http
        .put(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let image: Value = http
        .get(format!("{v2}/{id}"))
        .header("X-Auth-Token", &token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(image["status"], json!("active"));
    assert_eq!(image["size"], json!(GIB));
    assert_eq!(image["os_hash_value"], json!(expected));

    let res = http
        .get(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", &token)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 200);
    let mut stream = res.bytes_stream();
    let (mut got, mut size) = (Sha512::new(), 0usize);
    while let Some(part) = stream.next().await {
        let part = part?;
        size += part.len();
        got.update(&part);
    }
    assert_eq!(size, GIB);
    assert_eq!(format!("{:x}", got.finalize()), expected);

    let peak = peak_rss(pid)?;
    println!(
        "nova-api peak RSS: {} MiB before the transfer, {} MiB after 1 GiB up and down",
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < 200 << 20,
        "peak RSS {} MiB is not bounded",
        peak >> 20
    );
    Ok(())
}
