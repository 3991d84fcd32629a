//! The service catalog: Keystone's regions, services and endpoints, kept in the database
//! (`nova_db::catalog`) and listed in tokens. The deployment's own services — identity,
//! compute, image, network and bare metal, each with a public and an internal endpoint in the
//! configured region — are written at every start, as `keystone-manage bootstrap` writes
//! Keystone's own; an admin adds others through the catalog API (`api::catalog`).

use crate::settings::AuthSettings;
use nova_db::catalog::{self as store, Endpoint, Region, Service};
use nova_db::{Db, DbError};
use serde_json::{json, Value};

/// Keystone's substitution for the public address a client reached, in the URLs of the
/// deployment's own endpoints when no public URL is configured: the catalog follows the
/// address the client used (filled in per request, see [`catalog`]).
pub const PUBLIC_URL: &str = "$(public_url)s";

/// A stable id for an entry of the deployment's own (Keystone's are uuids; these derive from
/// what they name, so that every start, and every API process, writes the same ones).
fn entry_id(parts: &[&str]) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, parts.join("|").as_bytes())
        .simple()
        .to_string()
}

/// The deployment's own services, as (type, name, URL).
fn own_services(settings: &AuthSettings) -> Vec<(&'static str, &'static str, String)> {
    let base = settings
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| PUBLIC_URL.to_owned());
    vec![
        ("identity", "keystone", format!("{base}/identity")),
        ("compute", "nova", format!("{base}/v2.1")),
        // The image service is served next to compute unless configured elsewhere.
        (
            "image",
            "glance",
            settings
                .image_url
                .clone()
                .unwrap_or_else(|| format!("{base}/image")),
        ),
        // Networks (a Neutron subset) and bare-metal enrolment (an Ironic subset), served next
        // to compute.
        ("network", "neutron", format!("{base}/network")),
        ("baremetal", "ironic", format!("{base}/baremetal")),
    ]
}

/// Writes the configured region and the deployment's own services and endpoints: missing ones
/// are created, and an endpoint's URL follows the configuration. Entries an admin added are
/// left as they are.
pub async fn bootstrap(db: &Db, settings: &AuthSettings) -> Result<(), DbError> {
    let region = settings.region.as_str();
    store::create_region(
        db,
        &Region {
            id: region.to_owned(),
            description: String::new(),
            parent_region_id: None,
            extra: "{}".into(),
        },
    )
    .await?;
    for (kind, name, url) in own_services(settings) {
        let service = Service {
            id: entry_id(&[kind]),
            kind: kind.to_owned(),
            enabled: true,
            extra: json!({"name": name}).to_string(),
        };
        store::ensure_service(db, &service).await?;
        for interface in ["public", "internal"] {
            store::ensure_endpoint(
                db,
                &Endpoint {
                    id: entry_id(&[kind, interface]),
                    service_id: service.id.clone(),
                    interface: interface.to_owned(),
                    region_id: Some(region.to_owned()),
                    url: url.clone(),
                    enabled: true,
                    extra: "{}".into(),
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// An endpoint's URL with Keystone's substitutions filled in, or `None` when it names one this
/// token cannot fill (Keystone leaves such an endpoint out of the catalog).
fn substituted(url: &str, base: &str, project_id: Option<&str>, user_id: &str) -> Option<String> {
    let mut out = url
        .replace(PUBLIC_URL, base)
        .replace("$(user_id)s", user_id);
    if let Some(p) = project_id {
        out = out.replace("$(project_id)s", p).replace("$(tenant_id)s", p);
    }
    (!out.contains("$(")).then_some(out)
}

/// Whether every `$(…)s` in `url` is a substitution the catalog fills (Keystone refuses an
/// endpoint naming another at create).
pub fn substitutions_known(url: &str) -> bool {
    substituted(url, "b", Some("p"), "u").is_some()
}

/// A service's `name` (kept in its `extra`, as Keystone keeps it).
pub fn service_name(s: &Service) -> String {
    serde_json::from_str::<Value>(&s.extra)
        .ok()
        .and_then(|e| e["name"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The catalog of a token of `user_id` (scoped to `project_id`, if to a project), for a client
/// that reached the deployment at `base`: every enabled service with its enabled endpoints.
pub async fn catalog(
    db: &Db,
    base: &str,
    project_id: Option<&str>,
    user_id: &str,
) -> Result<Value, DbError> {
    // A project with endpoint-filter associations sees only those endpoints (and only the
    // services left with some).
    let only = match project_id {
        // Associations that name no endpoint (any more) filter nothing (Keystone's).
        Some(p) => store::endpoints_of_project(db, p)
            .await?
            .filter(|ids| !ids.is_empty()),
        None => None,
    };
    let services = store::enabled_catalog(db)
        .await?
        .into_iter()
        .filter_map(|(s, endpoints)| {
            let endpoints: Vec<Value> = endpoints
                .iter()
                .filter(|e| only.as_ref().is_none_or(|ids| ids.contains(&e.id)))
                .filter_map(|e| {
                    let url = substituted(&e.url, base, project_id, user_id)?;
                    Some(json!({
                        "id": e.id,
                        "interface": e.interface,
                        "region": e.region_id,
                        "region_id": e.region_id,
                        "url": url,
                    }))
                })
                .collect();
            if only.is_some() && endpoints.is_empty() {
                return None;
            }
            Some(json!({"id": s.id, "type": s.kind, "name": service_name(&s), "endpoints": endpoints}))
        })
        .collect();
    Ok(Value::Array(services))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_fill_what_the_token_has_and_drop_what_it_lacks() {
        assert_eq!(
            substituted("$(public_url)s/v2.1", "http://h:1", None, "u").as_deref(),
            Some("http://h:1/v2.1")
        );
        assert_eq!(
            substituted("http://x/v1/$(project_id)s", "b", Some("p1"), "u").as_deref(),
            Some("http://x/v1/p1")
        );
        assert_eq!(substituted("http://x/$(tenant_id)s", "b", None, "u"), None);
        assert_eq!(substituted("http://x/$(bogus)s", "b", Some("p"), "u"), None);
    }
}
