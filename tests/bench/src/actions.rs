//! What the server action benchmarks (Docker's and libvirt's) share: an action through the
//! service, timed to the commit that ends its task, and the table of figures.

use e2e::activations::TaskEnds;
use e2e::client::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An action through the service; returns POST → its task's end, in ms. `flavor` is a
/// resize's target.
pub async fn through_stack(
    ends: &mut TaskEnds,
    c: &Client,
    id: &str,
    action: &str,
    flavor: &str,
) -> anyhow::Result<f64> {
    let body = match action {
        "stop" => json!({"os-stop": null}),
        "start" => json!({"os-start": null}),
        "reboot" => json!({"reboot": {"type": "HARD"}}),
        "resize" => json!({"resize": {"flavorRef": flavor}}),
        "createImage" => json!({"createImage": {"name": "bench-snap"}}),
        other => json!({ other: null }),
    };
    ends.clear();
    let t0 = Instant::now();
    let r = c.action(id, &body).await?;
    anyhow::ensure!(
        matches!(r.status, 202 | 204),
        "{action}: {} {}",
        r.status,
        r.body
    );
    let at = ends.of(id, Duration::from_secs(120)).await?;
    let elapsed = crate::ms(at.duration_since(t0));
    // Checked after the clock: the action ended as it should.
    let s = c.server(id).await?.body["server"].clone();
    anyhow::ensure!(s["OS-EXT-STS:task_state"].is_null(), "{action}: {s}");
    anyhow::ensure!(
        s["fault"].is_null() || s["status"] != "ERROR",
        "{action}: {s}"
    );
    if action == "createImage" {
        let image = r.body["image_id"].as_str().unwrap_or_default().to_owned();
        c.wait_image_status(&image, "active", Duration::from_secs(60))
            .await?;
        c.delete_image(&image).await?;
    }
    Ok(elapsed)
}

/// Each action's times through the service and the raw call's, and their pairs.
#[derive(Default)]
pub struct Samples {
    service: BTreeMap<&'static str, Vec<f64>>,
    raw: BTreeMap<&'static str, Vec<f64>>,
    paired: BTreeMap<&'static str, Vec<f64>>,
}

impl Samples {
    /// One round's `action`: its time through the service and the raw call's, if it has one.
    pub fn record(&mut self, action: &'static str, service: f64, raw: Option<f64>) {
        self.service.entry(action).or_default().push(service);
        if let Some(r) = raw {
            self.raw.entry(action).or_default().push(r);
            self.paired.entry(action).or_default().push(service - r);
        }
    }

    /// Prints the table under `title`, one row per action in `actions`' order; `raw` names
    /// the raw side's column.
    pub fn print(mut self, title: &str, raw: &str, actions: &[&'static str]) {
        println!("{title}");
        println!(
            "| action | through the service p50 / p90 | {raw} p50 / p90 | overhead at p50 | paired median |"
        );
        println!("|---|---|---|---|---|");
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        for action in actions {
            let s = sorted(self.service.remove(action).unwrap_or_default());
            let (s50, s90) = (crate::percentile(&s, 0.5), crate::percentile(&s, 0.9));
            match self.raw.remove(action) {
                Some(r) => {
                    let r = sorted(r);
                    let p = sorted(self.paired.remove(action).unwrap_or_default());
                    let (r50, r90) = (crate::percentile(&r, 0.5), crate::percentile(&r, 0.9));
                    let p50 = crate::percentile(&p, 0.5);
                    println!(
                        "| {action} | {s50:.0} / {s90:.0} ms | {r50:.0} / {r90:.0} ms | {:.0} ms = {:.1} % | {p50:.0} ms |",
                        s50 - r50,
                        (s50 - r50) / r50 * 100.0
                    );
                }
                None => println!(
                    "| {action} | {s50:.0} / {s90:.0} ms | (no raw call) | {s50:.0} ms | |"
                ),
            }
        }
    }
}
