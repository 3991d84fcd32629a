//! The service catalog in tokens: identity, compute, image, network and bare metal, each with a
//! public and an internal endpoint in the configured region.

use crate::settings::AuthSettings;
use serde_json::{json, Value};

/// A stable id for a catalog entry (Keystone's are uuids; ours derive from what they name).
fn entry_id(parts: &[&str]) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, parts.join("|").as_bytes())
        .simple()
        .to_string()
}

fn service(kind: &str, name: &str, url: &str, region: &str) -> Value {
    let endpoints: Vec<Value> = ["public", "internal"]
        .iter()
        .map(|interface| {
            json!({
                "id": entry_id(&[kind, interface, url]),
                "interface": interface,
                "region": region,
                "region_id": region,
                "url": url,
            })
        })
        .collect();
    json!({"id": entry_id(&[kind]), "type": kind, "name": name, "endpoints": endpoints})
}

/// The catalog for a deployment whose public base URL is `base`.
pub fn catalog(base: &str, settings: &AuthSettings) -> Value {
    let region = settings.region.as_str();
    let mut services = vec![
        service("identity", "keystone", &format!("{base}/identity"), region),
        service("compute", "nova", &format!("{base}/v2.1"), region),
    ];
    // The image service is served next to compute unless configured elsewhere.
    let image = settings
        .image_url
        .clone()
        .unwrap_or_else(|| format!("{base}/image"));
    services.push(service("image", "glance", &image, region));
    // Networks (a Neutron subset) are served next to compute.
    services.push(service(
        "network",
        "neutron",
        &format!("{base}/network"),
        region,
    ));
    // Enrolment of bare-metal machines (an Ironic subset), served next to compute.
    services.push(service(
        "baremetal",
        "ironic",
        &format!("{base}/baremetal"),
        region,
    ));
    Value::Array(services)
}
