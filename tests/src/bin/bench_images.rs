//! Image transfer benchmark: upload and download of one file through the image API on
//! loopback, against `cp` of the same file, as ratios (target ≥ 0.5 of `cp`).
//!
//! `cargo run --release -p e2e --bin bench-images -- [--mib N]`

use e2e::stack::{AllInOneStack, Options, Stack};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut mib: usize = 512;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.img");
    {
        let mut f = tokio::fs::File::create(&source).await?;
        let block: Vec<u8> = (0..1usize << 20)
            .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
            .collect();
        for _ in 0..mib {
            f.write_all(&block).await?;
        }
        f.sync_all().await?;
    }
    let bytes = (mib as f64) * 1024.0 * 1024.0;

    let copy = dir.path().join("copy.img");
    let t = Instant::now();
    let status = std::process::Command::new("cp")
        .arg(&source)
        .arg(&copy)
        .status()?;
    anyhow::ensure!(status.success(), "cp failed");
    let cp_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&copy)?;
    // The same with the copy made durable, as an uploaded image is before it is active.
    let t = Instant::now();
    let status = std::process::Command::new("cp")
        .arg(&source)
        .arg(&copy)
        .status()?;
    anyhow::ensure!(status.success(), "cp failed");
    std::fs::File::open(&copy)?.sync_all()?;
    let cp_sync_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&copy)?;

    let stack = AllInOneStack::start(Options::default()).await?;
    let url = stack.api_url().to_owned();
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let token = "bench:bench";
    let image: Value = http
        .post(&v2)
        .header("X-Auth-Token", token)
        .json(&json!({"name": "bench", "container_format": "bare", "disk_format": "raw"}))
        .send()
        .await?
        .json()
        .await?;
    let id = image["id"].as_str().unwrap_or_default().to_owned();

    let t = Instant::now();
    let file = tokio::fs::File::open(&source).await?;
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let r = http
        .put(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 204, "upload: {}", r.status());
    let up_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let res = http
        .get(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", token)
        .send()
        .await?;
    let mut out = tokio::fs::File::create(dir.path().join("down.img")).await?;
    let mut stream = res.bytes_stream();
    while let Some(part) = stream.next().await {
        out.write_all(&part?).await?;
    }
    out.sync_all().await?;
    let down_s = t.elapsed().as_secs_f64();

    let rate = |s: f64| bytes / s / (1024.0 * 1024.0);
    println!("image transfer of {mib} MiB on loopback (all-in-one, release build):");
    println!("  cp:        {:>7.0} MiB/s", rate(cp_s));
    println!("  cp + fsync:{:>7.0} MiB/s", rate(cp_sync_s));
    println!(
        "  upload:    {:>7.0} MiB/s  ({:.2} of cp, {:.2} of cp + fsync; md5 + sha512 computed, fsync'd)",
        rate(up_s),
        cp_s / up_s,
        cp_sync_s / up_s
    );
    println!(
        "  download:  {:>7.0} MiB/s  ({:.2} of cp, {:.2} of cp + fsync; written to a file, fsync'd)",
        rate(down_s),
        cp_s / down_s,
        cp_sync_s / down_s
    );
    Ok(())
}
