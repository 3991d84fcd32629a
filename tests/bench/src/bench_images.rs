//! Image transfer benchmark: upload and download of one file through the image API on
//! loopback. The upload is compared with `md5sum` and `sha512sum` of the same file in the same
//! run (Glance defines both digests and every upload computes them: the slower of the two
//! bounds it; target ≥ 0.9 of it), the download with `cp` (target ≥ 0.5 of it).
//!
//! The client is `curl` when it is installed (a C client in a process of its own, as the
//! API's users would send an image), else reqwest in this process.
//!
//! `cargo run --release -p e2e --bin bench-images -- [--mib N] [--runs N]`

use e2e::stack::{AllInOneStack, Options, Stack};
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Seconds `program file` takes.
fn time_command(program: &str, file: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = std::process::Command::new(program).arg(file).output()?;
    anyhow::ensure!(out.status.success(), "{program} failed");
    Ok(t.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn curl_installed() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Uploads `source` as image `id`; the seconds it took (until the 204).
async fn upload(url: &str, token: &str, source: &Path, curl: bool) -> anyhow::Result<f64> {
    let t = Instant::now();
    if curl {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-f", "-o", "/dev/null", "-X", "PUT", "-H"])
            .arg(format!("X-Auth-Token: {token}"))
            .args(["-H", "Content-Type: application/octet-stream", "-T"])
            .arg(source)
            .arg(url)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "curl upload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        let file = tokio::fs::File::open(source).await?;
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let r = reqwest::Client::new()
            .put(url)
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 204, "upload: {}", r.status());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Downloads image data from `url` into `dest`, synced; the seconds it took.
async fn download(url: &str, token: &str, dest: &Path, curl: bool) -> anyhow::Result<f64> {
    let t = Instant::now();
    if curl {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-f", "-H"])
            .arg(format!("X-Auth-Token: {token}"))
            .arg("-o")
            .arg(dest)
            .arg(url)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "curl download: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::File::open(dest)?.sync_all()?;
    } else {
        let res = reqwest::Client::new()
            .get(url)
            .header("X-Auth-Token", token)
            .send()
            .await?;
        let mut out = tokio::fs::File::create(dest).await?;
        let mut stream = res.bytes_stream();
        while let Some(part) = stream.next().await {
            out.write_all(&part?).await?;
        }
        out.sync_all().await?;
    }
    Ok(t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut mib: usize = 512;
    let mut runs: usize = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = args.next().unwrap_or_default().parse()?,
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
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
    #[allow(clippy::cast_precision_loss)]
    let rate = |s: f64| mib as f64 / s;
    let curl = curl_installed();

    let stack = AllInOneStack::start(Options::default()).await?;
    let url = stack.api_url().to_owned();
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let token = "bench:bench";
    let (mut md5s, mut shas, mut cps, mut cp_syncs, mut ups, mut downs) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        // The reference figures of this run, next to the service's, on the same file.
        md5s.push(time_command("md5sum", &source)?);
        shas.push(time_command("sha512sum", &source)?);
        let copy = dir.path().join("copy.img");
        let t = Instant::now();
        let status = std::process::Command::new("cp")
            .arg(&source)
            .arg(&copy)
            .status()?;
        anyhow::ensure!(status.success(), "cp failed");
        cps.push(t.elapsed().as_secs_f64());
        std::fs::remove_file(&copy)?;
        // The same with the copy made durable, as an uploaded image is before it is active.
        let t = Instant::now();
        let status = std::process::Command::new("cp")
            .arg(&source)
            .arg(&copy)
            .status()?;
        anyhow::ensure!(status.success(), "cp failed");
        std::fs::File::open(&copy)?.sync_all()?;
        cp_syncs.push(t.elapsed().as_secs_f64());
        std::fs::remove_file(&copy)?;

        let image: Value = http
            .post(&v2)
            .header("X-Auth-Token", token)
            .json(&json!({"name": format!("bench-{run}"), "container_format": "bare", "disk_format": "raw"}))
            .send()
            .await?
            .json()
            .await?;
        let id = image["id"].as_str().unwrap_or_default().to_owned();
        let file_url = format!("{v2}/{id}/file");
        let up = upload(&file_url, token, &source, curl).await?;
        let down_file = dir.path().join("down.img");
        let down = download(&file_url, token, &down_file, curl).await?;
        std::fs::remove_file(&down_file)?;
        println!(
            "run {run}: md5sum {:.0}, sha512sum {:.0}, upload {:.0}, cp {:.0}, cp + fsync {:.0}, download {:.0} MiB/s",
            rate(md5s[run - 1]),
            rate(shas[run - 1]),
            rate(up),
            rate(cps[run - 1]),
            rate(cp_syncs[run - 1]),
            rate(down)
        );
        ups.push(up);
        downs.push(down);
    }
    let (md5, sha, up) = (median(md5s), median(shas), median(ups));
    let (cp, cp_sync, down) = (median(cps), median(cp_syncs), median(downs));
    let slower_hash = md5.max(sha);
    println!(
        "\nimage transfer of {mib} MiB on loopback (all-in-one, release build, client {}), medians of {runs} runs:",
        if curl { "curl" } else { "reqwest" }
    );
    println!("  md5sum:     {:>7.0} MiB/s", rate(md5));
    println!("  sha512sum:  {:>7.0} MiB/s", rate(sha));
    println!(
        "  upload:     {:>7.0} MiB/s  ({:.2} of the slower hash; md5 + sha512 computed, fsync'd before active)",
        rate(up),
        slower_hash / up
    );
    println!("  cp:         {:>7.0} MiB/s", rate(cp));
    println!("  cp + fsync: {:>7.0} MiB/s", rate(cp_sync));
    println!(
        "  download:   {:>7.0} MiB/s  ({:.2} of cp, {:.2} of cp + fsync; written to a file, fsync'd)",
        rate(down),
        cp / down,
        cp_sync / down
    );
    Ok(())
}
