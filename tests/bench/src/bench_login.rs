//! Password checks under attack: what a flood of wrong passwords costs every other API call,
//! and whether the time of a refused login tells why it was refused.
//!
//! `cargo run --release -p e2e --bin bench-login -- [--seconds S] [--flood N]`
//!
//! On the all-in-one (SQLite, Keystone tokens, lockout after 3 failures):
//! 1. The median time of a login that is refused because the password is wrong, the user does
//!    not exist, the user is disabled, or the account is locked, next to a successful login.
//!    Each refusal does the same work (one argon2 check in the password pool), so the four
//!    should match.
//! 2. `GET /v2.1/flavors` (a token validation and a query) from one client, p50 and p99, alone
//!    and while N clients (16 by default) send wrong passwords as fast as they are answered,
//!    and their ratio. Argon2 checks run in a bounded pool off the request-serving threads.

use e2e::client::{password_token, Client};
use e2e::stack::{AllInOneStack, Options, Stack};
use keystone_auth::{AuthSettings, Strategy};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One client for every login, so that each rides the same kept-alive connection (and so the
/// same server worker): what differs between cases is then the service's work alone.
fn http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(reqwest::Client::new)
}

async fn login(url: &str, user: &str, password: &str) -> anyhow::Result<(u16, Duration)> {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}}, "scope": "unscoped"}});
    let start = Instant::now();
    let r = http()
        .post(format!("{url}/identity/v3/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    let status = r.status().as_u16();
    r.bytes().await?;
    Ok((status, start.elapsed()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// GET /flavors from one client for `seconds`: the sorted latencies.
async fn reads(c: &Client, seconds: u64) -> anyhow::Result<Vec<Duration>> {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut out = Vec::new();
    while Instant::now() < end {
        let start = Instant::now();
        let r = c.get("/flavors").await?;
        anyhow::ensure!(r.status == 200, "GET /flavors: {}", r.status);
        out.push(start.elapsed());
    }
    out.sort_unstable();
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut seconds = 5;
    let mut flood = 16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().unwrap_or_default().parse()?,
            "--flood" => flood = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let auth = AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some("admin-secret".into()),
        demo_password: Some("demo-secret".into()),
        lockout_failure_attempts: Some(3),
        lockout_duration_s: 3600,
        ..Default::default()
    };
    let stack = AllInOneStack::start(Options {
        auth: Some(auth),
        ..Options::default()
    })
    .await?;
    let url = stack.api_url().to_owned();
    let admin = password_token(&url, "admin", "admin-secret", "admin").await?;
    for (name, enabled) in [("disabled", false), ("to-lock", true)] {
        let r = reqwest::Client::new()
            .post(format!("{url}/identity/v3/users"))
            .header("X-Auth-Token", &admin)
            .json(&json!({"user": {"name": name, "password": "pw", "enabled": enabled}}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 201, "create {name}: {}", r.status());
        let _: Value = r.json().await?;
    }
    for _ in 0..3 {
        login(&url, "to-lock", "wrong").await?;
    }

    // Round robin over the cases, so that a drift of the machine's speed hits them alike.
    println!("login, median of 31 (ms):");
    let cases: [(&str, &str, &str, u16); 6] = [
        ("right password", "demo", "demo-secret", 201),
        ("wrong password", "demo", "wrong", 401),
        ("unknown user", "nobody", "pw", 401),
        ("disabled user", "disabled", "pw", 401),
        ("disabled, wrong", "disabled", "wrong", 401),
        ("locked user", "to-lock", "pw", 401),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..31 {
        for (i, (what, user, password, want)) in cases.iter().enumerate() {
            let (status, t) = login(&url, user, password).await?;
            anyhow::ensure!(status == *want, "{what}: {status}");
            times[i].push(t);
        }
    }
    for (i, (what, ..)) in cases.iter().enumerate() {
        times[i].sort_unstable();
        println!("  {what:<16} {:7.1}", ms(percentile(&times[i], 0.5)));
    }

    let token = password_token(&url, "demo", "demo-secret", "demo").await?;
    let c = Client::new(&url, &token);
    reads(&c, 1).await?; // warm-up
    let alone = reads(&c, seconds).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let mut flooders = Vec::new();
    for i in 0..flood {
        let (url, stop, attempts) = (url.clone(), stop.clone(), attempts.clone());
        flooders.push(tokio::spawn(async move {
            // Unknown users: each costs an argon2 check and locks nobody.
            while !stop.load(Ordering::Relaxed) {
                if login(&url, &format!("intruder-{i}"), "guess").await.is_ok() {
                    attempts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = reads(&c, seconds).await?;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await?;
    }
    let (a50, a99) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    let (f50, f99) = (percentile(&flooded, 0.5), percentile(&flooded, 0.99));
    println!("GET /v2.1/flavors, one client, {seconds} s each (ms):");
    println!(
        "  alone                 p50 {:6.2}  p99 {:6.2}",
        ms(a50),
        ms(a99)
    );
    println!(
        "  {flood} wrong-password clients p50 {:6.2}  p99 {:6.2}  ({} login attempts answered)",
        ms(f50),
        ms(f99),
        attempts.load(Ordering::Relaxed)
    );
    println!(
        "  ratio flooded/alone   p50 {:.1}x  p99 {:.1}x (password pool: {} thread(s))",
        ms(f50) / ms(a50).max(1e-9),
        ms(f99) / ms(a99).max(1e-9),
        keystone_auth::password::pool_size()
    );
    Ok(())
}
