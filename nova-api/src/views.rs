//! JSON views of servers and flavors at microversion 2.1, field for field as Nova's
//! (nova/api/openstack/compute/views/servers.py and flavors.py).

use crate::links::PublicUrl;
use keystone_auth::RequestContext;
use nova_core::model::{api_status, Flavor, Instance};
use nova_core::time::{iso8601_naive_micros, iso8601_z};
use serde_json::{json, Value};
use sha2::{Digest, Sha224};

/// Nova's `hostId`: a hash of project and host, so that a user can tell whether two of their
/// servers share a host without learning the host's name.
fn host_id(instance: &Instance) -> String {
    match &instance.host {
        None => String::new(),
        Some(host) => {
            let digest = Sha224::digest(format!("{}{}", instance.project_id, host).as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// The `id`, `name` and `links` of a server (`GET /servers`).
pub fn server_summary(url: &PublicUrl, i: &Instance) -> Value {
    let id = i.uuid.to_string();
    json!({"id": id, "name": i.name, "links": url.links("servers", &id)})
}

/// A server in full (`GET /servers/{id}`, `/servers/detail`).
pub fn server_detail(url: &PublicUrl, ctx: &RequestContext, i: &Instance) -> Value {
    let id = i.uuid.to_string();
    let status = api_status(i.vm_state, i.task_state);
    let mut v = json!({
        "id": id,
        "name": i.name,
        "status": status,
        "tenant_id": i.project_id,
        "user_id": i.user_id,
        "metadata": i.metadata,
        "hostId": host_id(i),
        "image": {"id": i.image_ref, "links": url.bookmark("images", &i.image_ref)},
        "flavor": {"id": i.flavor.flavorid, "links": url.bookmark("flavors", &i.flavor.flavorid)},
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
        "key_name": null,
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
    if ctx.is_admin() {
        v["OS-EXT-SRV-ATTR:host"] = json!(i.host);
        v["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(i.node);
        v["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{}", i.uuid));
    }
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
    v
}

pub fn flavor_summary(url: &PublicUrl, f: &Flavor) -> Value {
    json!({"id": f.flavorid, "name": f.name, "links": url.links("flavors", &f.flavorid)})
}

pub fn flavor_detail(url: &PublicUrl, f: &Flavor) -> Value {
    json!({
        "id": f.flavorid,
        "name": f.name,
        "ram": f.memory_mb,
        "disk": f.root_gb,
        "vcpus": f.vcpus,
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": f.disabled,
        // Nova shows no swap as an empty string.
        "swap": if f.swap == 0 { json!("") } else { json!(f.swap) },
        "rxtx_factor": f.rxtx_factor,
        "os-flavor-access:is_public": f.is_public,
        "links": url.links("flavors", &f.flavorid),
    })
}
