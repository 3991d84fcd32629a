//! Token validation benchmark: how many tokens one core validates per second (ES256 signature,
//! expiry, revocation check), with an empty revocation list and with 10,000 revocation events.
//!
//! `cargo run --release -p e2e --bin bench-tokens -- [--seconds S]`

use keystone_auth::keys::KeyRing;
use keystone_auth::tokens::{NewToken, RoleRef, TokenService};
use nova_db::identity::RevocationEvent;
use nova_db::DatabaseSettings;
use nova_db::Db;
use std::time::{Duration, Instant};

fn measure(
    service: &TokenService,
    tokens: &[String],
    seconds: f64,
    cold: bool,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut n: u64 = 0;
    while start.elapsed() < limit {
        for t in tokens {
            if cold {
                service
                    .verify_signature(t)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            } else {
                service.validate(t).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            n += 1;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

// One worker thread: the figure is per core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut seconds = 3.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.sqlite").display()
    );
    let db = Db::connect(&DatabaseSettings {
        url: db_url,
        max_connections: 1,
    })
    .await?;
    let service = TokenService::new(KeyRing::load_or_create(&dir.path().join("keys"))?, 3600, db);
    let roles = vec![
        RoleRef {
            id: "r1".into(),
            name: "member".into(),
        },
        RoleRef {
            id: "r2".into(),
            name: "reader".into(),
        },
    ];
    let tokens: Vec<String> = (0..100)
        .map(|i| {
            let user = format!("user-{i}");
            service
                .issue(NewToken {
                    user_id: &user,
                    methods: vec!["password".into()],
                    project_id: Some(format!("project-{i}")),
                    domain_id: None,
                    system: None,
                    roles: roles.clone(),
                    parent: None,
                })
                .map(|(t, _)| t)
                .map_err(anyhow::Error::msg)
        })
        .collect::<Result<_, _>>()?;

    let cold = measure(&service, &tokens, seconds, true)?;
    let empty = measure(&service, &tokens, seconds, false)?;
    // 10,000 events: half revoke single tokens (by audit id), half all tokens of a user.
    let now = nova_core::time::now_ms();
    let events: Vec<RevocationEvent> = (0..10_000)
        .map(|i| RevocationEvent {
            id: i + 1,
            audit_id: (i % 2 == 0).then(|| format!("audit-{i}")),
            user_id: (i % 2 == 1).then(|| format!("other-user-{i}")),
            project_id: None,
            issued_before: now,
            expires_at: now + 3_600_000,
        })
        .collect();
    service.add_revocations_for_benchmark(&events);
    let full = measure(&service, &tokens, seconds, false)?;
    println!(
        "token validation on one core ({} distinct tokens):",
        tokens.len()
    );
    println!("  ES256 signature check alone (first sight of a token): {cold:>10.0} /s");
    println!("  validate, no revocations:                              {empty:>10.0} /s");
    println!(
        "  validate, {} revocation events:                     {full:>10.0} /s",
        service.revocation_count()
    );
    Ok(())
}
