//! JSON views of servers and flavors, field for field as Nova's at each microversion
//! (nova/api/openstack/compute/views/servers.py and flavors.py). A field appears from the
//! microversion that introduced it and never before: responses at 2.1 carry nothing of later
//! versions.

use crate::links::PublicUrl;
use crate::versions::ApiVersion;
use keystone_auth::RequestContext;
use nova_core::model::sanitize_hostname;
use nova_core::model::{api_status, Flavor, Instance};
use nova_core::time::{iso8601_naive_micros, iso8601_z};
use serde_json::{json, Value};
use sha2::{Digest, Sha224};
use std::collections::HashMap;

/// Nova's `hostId`: a hash of project and host, so that a user can tell whether two of their
/// servers share a host without learning the host's name.
fn host_id(instance: &Instance) -> String {
    host_id_of(&instance.project_id, instance.host.as_deref())
}

/// Nova's `generate_hostid(host, project_id)`: empty when there is no host.
pub fn host_id_of(project_id: &str, host: Option<&str>) -> String {
    match host {
        None | Some("") => String::new(),
        Some(host) => {
            let digest = Sha224::digest(format!("{project_id}{host}").as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// The `id`, `name` and `links` of a server (`GET /servers`).
pub fn server_summary(url: &PublicUrl, i: &Instance) -> Value {
    let id = i.uuid.to_string();
    json!({"id": id, "name": i.name, "links": url.links("servers", &id)})
}

/// What a server view depends on besides the server.
pub struct ServerViewer<'a> {
    pub url: &'a PublicUrl,
    pub ctx: &'a RequestContext,
    pub version: ApiVersion,
    /// `host_status` by host (2.16, for admins): `UP`, `DOWN`, `MAINTENANCE`.
    pub host_status: &'a HashMap<String, &'static str>,
    pub kind: ViewKind,
}

/// Which of Nova's server views: they differ in what they show besides the basics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// `GET /servers/detail`.
    List,
    /// `GET /servers/{id}`: the list's fields plus `server_groups` from 2.71.
    Show,
    /// The answer to `PUT /servers/{id}`: Nova's `show` with the optional parts turned off
    /// (no AZ, key, usage, security groups, extended status/attributes or volumes), but
    /// `server_groups` from 2.71.
    Update,
}

/// A server in full (`GET /servers/{id}`, `/servers/detail`).
pub fn server_detail(viewer: &ServerViewer<'_>, i: &Instance) -> Value {
    let (url, ctx, v) = (viewer.url, viewer.ctx, viewer.version);
    let version = v;
    let id = i.uuid.to_string();
    let status = api_status(i.vm_state, i.task_state);
    if viewer.kind == ViewKind::Update {
        return server_after_update(viewer, i, status);
    }
    let mut v = json!({
        "id": id,
        "name": i.name,
        "status": status,
        "tenant_id": i.project_id,
        "user_id": i.user_id,
        "metadata": i.metadata,
        "hostId": host_id(i),
        "image": {"id": i.image_ref, "links": url.bookmark("images", &i.image_ref)},
        "flavor": server_flavor(url, v, &i.flavor),
        "created": iso8601_z(i.created_at),
        "updated": iso8601_z(i.updated_at),
        // TODO-correctness: addresses come with the network work.
        "addresses": {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": url.links("servers", &id),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": i.availability_zone.as_deref().unwrap_or("nova"),
        "config_drive": "",
        "key_name": i.key_name,
        "OS-SRV-USG:launched_at": i.launched_at.map(iso8601_naive_micros),
        "OS-SRV-USG:terminated_at": i.terminated_at.map(iso8601_naive_micros),
        "OS-EXT-STS:task_state": i.task_state.map(|t| t.as_str()),
        "OS-EXT-STS:vm_state": i.vm_state.as_str(),
        "OS-EXT-STS:power_state": i.power_state.code(),
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": "default"}],
    });
    // Nova shows progress only while it means something.
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        v["progress"] = json!(0);
    }
    let admin = ctx.is_admin();
    if admin {
        v["OS-EXT-SRV-ATTR:host"] = json!(i.host);
        v["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(i.node);
        v["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{}", i.uuid));
    }
    if admin && version.at_least(3) {
        // Nova makes one reservation id per create request; this service keeps none, so the
        // server's own id stands in for it (unique and stable).
        v["OS-EXT-SRV-ATTR:reservation_id"] = json!(format!("r-{}", &id[..8]));
        v["OS-EXT-SRV-ATTR:launch_index"] = json!(0);
        v["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
        v["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
        v["OS-EXT-SRV-ATTR:root_device_name"] = Value::Null;
        v["OS-EXT-SRV-ATTR:user_data"] = json!(i.user_data);
    }
    if (admin && version.at_least(3)) || version.at_least(90) {
        v["OS-EXT-SRV-ATTR:hostname"] = json!(sanitize_hostname(&i.name));
    }
    if admin && version.at_least(16) {
        let status = i
            .host
            .as_ref()
            .map(|h| viewer.host_status.get(h).copied().unwrap_or("UNKNOWN"))
            .unwrap_or("");
        v["host_status"] = json!(status);
    }
    versioned_basics(&mut v, version, i);
    if version.at_least(71) && viewer.kind == ViewKind::Show {
        v["server_groups"] = json!([]);
    }
    if version.at_least(96) {
        // The zone the user asked for at create, if any.
        v["pinned_availability_zone"] = json!(i.availability_zone);
    }
    add_fault(&mut v, ctx, i);
    v
}

/// The fields every server view has from the version that introduced them.
fn versioned_basics(v: &mut Value, version: ApiVersion, i: &Instance) {
    if version.at_least(9) {
        v["locked"] = json!(i.locked_by.is_some());
    }
    if version.at_least(19) {
        v["description"] = json!(i.description);
    }
    if version.at_least(26) {
        v["tags"] = json!(i.tags);
    }
    if version.at_least(63) {
        v["trusted_image_certificates"] = Value::Null;
    }
    if version.at_least(73) {
        v["locked_reason"] = json!(i.locked_reason);
    }
}

fn add_fault(v: &mut Value, ctx: &RequestContext, i: &Instance) {
    if let Some(fault) = &i.fault {
        let mut f = json!({
            "code": fault.code,
            "created": iso8601_z(fault.created_at),
            "message": fault.message,
        });
        // As Nova: details of a 500 fault are for admins only.
        if let Some(details) = &fault.details {
            if ctx.is_admin() || fault.code != 500 {
                f["details"] = json!(details);
            }
        }
        v["fault"] = f;
    }
}

/// Nova's answer to a server update: the basic show view, nothing optional.
fn server_after_update(viewer: &ServerViewer<'_>, i: &Instance, status: &str) -> Value {
    let (url, version) = (viewer.url, viewer.version);
    let id = i.uuid.to_string();
    let mut v = json!({
        "id": id,
        "name": i.name,
        "status": status,
        "tenant_id": i.project_id,
        "user_id": i.user_id,
        "metadata": i.metadata,
        "hostId": host_id(i),
        "image": {"id": i.image_ref, "links": url.bookmark("images", &i.image_ref)},
        "flavor": server_flavor(url, version, &i.flavor),
        "created": iso8601_z(i.created_at),
        "updated": iso8601_z(i.updated_at),
        "addresses": {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": url.links("servers", &id),
        "OS-DCF:diskConfig": "MANUAL",
    });
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        v["progress"] = json!(0);
    }
    versioned_basics(&mut v, version, i);
    if version.at_least(71) {
        // 2.71 added the groups to show, update and rebuild alike.
        v["server_groups"] = json!([]);
    }
    if version.at_least(90) {
        // 2.90 made the hostname updatable, so its update answer shows it.
        v["OS-EXT-SRV-ATTR:hostname"] = json!(sanitize_hostname(&i.name));
    }
    add_fault(&mut v, viewer.ctx, i);
    v
}

/// The server's flavor: a reference until 2.46, the flavor itself (as it was when the server
/// was created) from 2.47.
fn server_flavor(url: &PublicUrl, v: ApiVersion, f: &Flavor) -> Value {
    if v.at_least(47) {
        json!({
            "original_name": f.name,
            "vcpus": f.vcpus,
            "ram": f.memory_mb,
            "disk": f.root_gb,
            "ephemeral": f.ephemeral_gb,
            "swap": f.swap,
            "extra_specs": f.extra_specs,
        })
    } else {
        json!({"id": f.flavorid, "links": url.bookmark("flavors", &f.flavorid)})
    }
}

pub fn flavor_summary(url: &PublicUrl, v: ApiVersion, f: &Flavor) -> Value {
    let mut out =
        json!({"id": f.flavorid, "name": f.name, "links": url.links("flavors", &f.flavorid)});
    if v.at_least(55) {
        out["description"] = json!(f.description);
    }
    out
}

pub fn flavor_detail(url: &PublicUrl, v: ApiVersion, f: &Flavor) -> Value {
    let mut out = json!({
        "id": f.flavorid,
        "name": f.name,
        "ram": f.memory_mb,
        "disk": f.root_gb,
        "vcpus": f.vcpus,
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": f.disabled,
        // Nova shows no swap as an empty string until 2.75, as 0 from then on.
        "swap": if f.swap == 0 && !v.at_least(75) { json!("") } else { json!(f.swap) },
        "rxtx_factor": f.rxtx_factor,
        "os-flavor-access:is_public": f.is_public,
        "links": url.links("flavors", &f.flavorid),
    });
    if v.at_least(55) {
        out["description"] = json!(f.description);
    }
    if v.at_least(61) {
        out["extra_specs"] = json!(f.extra_specs);
    }
    out
}
