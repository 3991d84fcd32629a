//! JSON views of servers and flavors, field for field as Nova's at each microversion
//! (nova/api/openstack/compute/views/servers.py and flavors.py). A field appears from the
//! microversion that introduced it and never before: responses at 2.1 carry nothing of later
//! versions.

use crate::versions::ApiVersion;
use api_toolkit::links::PublicUrl;
use api_toolkit::RequestContext;
use nova_core::model::{api_status, Flavor, Instance};
use nova_core::time::{iso8601_naive_micros, iso8601_z};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha224};
use std::collections::HashMap;
use std::fmt::Write;

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
            let mut hasher = Sha224::new();
            hasher.update(project_id.as_bytes());
            hasher.update(host.as_bytes());
            let mut out = String::with_capacity(56);
            for b in hasher.finalize() {
                // Writing to a String cannot fail.
                let _ = write!(out, "{b:02x}");
            }
            out
        }
    }
}

/// A link of a resource (`self`, `bookmark`), as Nova builds them.
#[derive(Serialize)]
pub struct Link {
    pub rel: &'static str,
    pub href: String,
}

fn self_and_bookmark(url: &PublicUrl, collection: &str, id: &str) -> [Link; 2] {
    [
        Link {
            rel: "self",
            href: format!("{}/v2.1/{collection}/{id}", url.0),
        },
        Link {
            rel: "bookmark",
            href: format!("{}/{collection}/{id}", url.0),
        },
    ]
}

/// `[self, bookmark]` links of a resource as a JSON value.
pub fn links(url: &PublicUrl, collection: &str, id: &str) -> serde_json::Value {
    serde_json::to_value(self_and_bookmark(url, collection, id)).unwrap_or_default()
}

fn bookmark(url: &PublicUrl, collection: &str, id: &str) -> [Link; 1] {
    [Link {
        rel: "bookmark",
        href: format!("{}/{collection}/{id}", url.0),
    }]
}

/// The `id`, `name` and `links` of a server (`GET /servers`).
#[derive(Serialize)]
pub struct ServerSummary<'a> {
    id: String,
    name: &'a str,
    links: [Link; 2],
}

pub fn server_summary<'a>(url: &PublicUrl, i: &'a Instance) -> ServerSummary<'a> {
    let id = i.uuid.to_string();
    let links = self_and_bookmark(url, "servers", &id);
    ServerSummary {
        id,
        name: &i.name,
        links,
    }
}

/// What a server view depends on besides the server.
pub struct ServerViewer<'a> {
    pub url: &'a PublicUrl,
    pub ctx: &'a RequestContext,
    pub version: ApiVersion,
    /// `host_status` by host (2.16, for admins): `UP`, `DOWN`, `MAINTENANCE`.
    pub host_status: &'a HashMap<String, &'static str>,
    /// Each compute host's availability zone (`nova_db::aggregates::host_zones`).
    pub host_zones: &'a HashMap<String, String>,
    /// The security groups of each server's ports, by server id
    /// (`nova_db::ports::server_security_groups`).
    pub security_groups: &'a HashMap<String, Vec<String>>,
    /// The server groups the one server shown is in (Show and Update at 2.71 and later).
    pub server_groups: &'a [String],
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

#[derive(Serialize)]
struct ImageRef<'a> {
    id: &'a str,
    links: [Link; 1],
}

#[derive(Serialize)]
struct SecurityGroup<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct FaultView<'a> {
    code: i32,
    created: String,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a str>,
}

/// An empty JSON object (the elements of `volumes_attached`, which is always empty here).
#[derive(Serialize)]
struct Empty {}

/// One of a server's addresses as Nova shows it: `version` and `addr`; in the full views also
/// its type and MAC (Nova's `extend_address`: the detail and show views, and the update's from
/// 2.75). Every address here is the one the host gave at boot: Nova's `fixed`.
#[derive(Serialize)]
pub struct AddressView<'a> {
    version: u8,
    addr: &'a str,
    #[serde(rename = "OS-EXT-IPS:type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(
        rename = "OS-EXT-IPS-MAC:mac_addr",
        skip_serializing_if = "Option::is_none"
    )]
    mac: Option<&'a str>,
}

/// A server's addresses keyed by network name (`addresses`, and `/ips`).
pub fn addresses(
    of: &[nova_core::model::Address],
    extended: bool,
) -> std::collections::BTreeMap<&str, Vec<AddressView<'_>>> {
    let mut by_network: std::collections::BTreeMap<&str, Vec<AddressView<'_>>> =
        std::collections::BTreeMap::new();
    for a in of {
        by_network
            .entry(a.network.as_str())
            .or_default()
            .push(AddressView {
                version: a.version,
                addr: &a.addr,
                kind: extended.then_some("fixed"),
                mac: a.mac.as_deref().filter(|_| extended),
            });
    }
    by_network
}

/// The parts of Nova's full server view that only some views show (`show_AZ`,
/// `show_keypair`, `show_srv_usg`, `show_sec_grp`, `show_extended_status`,
/// `show_extended_volumes` and `show_config_drive` in Nova's view builder): the detail and
/// show views have them, the update view does not.
#[derive(Serialize)]
struct Extended<'a> {
    #[serde(rename = "OS-EXT-AZ:availability_zone")]
    availability_zone: &'a str,
    config_drive: &'static str,
    key_name: Option<&'a str>,
    #[serde(rename = "OS-SRV-USG:launched_at")]
    launched_at: Option<String>,
    #[serde(rename = "OS-SRV-USG:terminated_at")]
    terminated_at: Option<String>,
    #[serde(rename = "OS-EXT-STS:task_state")]
    task_state: Option<&'static str>,
    #[serde(rename = "OS-EXT-STS:vm_state")]
    vm_state: &'static str,
    #[serde(rename = "OS-EXT-STS:power_state")]
    power_state: i32,
    #[serde(rename = "os-extended-volumes:volumes_attached")]
    volumes_attached: [Empty; 0],
    /// As Nova's view: one per port per group, absent when the server has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    security_groups: Vec<SecurityGroup<'a>>,
}

/// `OS-EXT-SRV-ATTR:*` (admins; the 2.3 ones from 2.3).
#[derive(Serialize)]
struct ServerAttributes<'a> {
    #[serde(rename = "OS-EXT-SRV-ATTR:host")]
    host: Option<&'a str>,
    #[serde(rename = "OS-EXT-SRV-ATTR:hypervisor_hostname")]
    hypervisor_hostname: Option<&'a str>,
    #[serde(rename = "OS-EXT-SRV-ATTR:instance_name")]
    instance_name: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    since_2_3: Option<ServerAttributes23<'a>>,
}

#[derive(Serialize)]
struct ServerAttributes23<'a> {
    #[serde(rename = "OS-EXT-SRV-ATTR:reservation_id")]
    reservation_id: String,
    #[serde(rename = "OS-EXT-SRV-ATTR:launch_index")]
    launch_index: i32,
    #[serde(rename = "OS-EXT-SRV-ATTR:kernel_id")]
    kernel_id: &'static str,
    #[serde(rename = "OS-EXT-SRV-ATTR:ramdisk_id")]
    ramdisk_id: &'static str,
    #[serde(rename = "OS-EXT-SRV-ATTR:root_device_name")]
    root_device_name: Option<&'static str>,
    #[serde(rename = "OS-EXT-SRV-ATTR:user_data")]
    user_data: Option<&'a str>,
}

/// A server, field for field as Nova's view at the viewer's microversion. Fields of later
/// microversions are absent (`None` here is "not shown"; a shown null is `Some(None)`).
/// Serialised directly: no JSON tree is built for a page of a thousand servers.
#[derive(Serialize)]
pub struct ServerDetail<'a> {
    id: String,
    name: &'a str,
    status: &'static str,
    tenant_id: &'a str,
    user_id: &'a str,
    metadata: &'a std::collections::BTreeMap<String, String>,
    #[serde(rename = "hostId")]
    host_id: String,
    image: ImageRef<'a>,
    flavor: ServerFlavor<'a>,
    created: String,
    updated: String,
    addresses: std::collections::BTreeMap<&'a str, Vec<AddressView<'a>>>,
    #[serde(rename = "accessIPv4")]
    access_ipv4: &'a str,
    #[serde(rename = "accessIPv6")]
    access_ipv6: &'a str,
    links: [Link; 2],
    #[serde(rename = "OS-DCF:diskConfig")]
    disk_config: &'static str,
    /// Nova shows progress only while it means something.
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<i32>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extended: Option<Extended<'a>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    attributes: Option<ServerAttributes<'a>>,
    #[serde(
        rename = "OS-EXT-SRV-ATTR:hostname",
        skip_serializing_if = "Option::is_none"
    )]
    hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_image_certificates: Option<Option<&'a [String]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_groups: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_reason: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_availability_zone: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<FaultView<'a>>,
}

/// A server in full (`GET /servers/{id}`, `/servers/detail`, and the update's answer).
pub fn server_detail<'a>(viewer: &ServerViewer<'a>, i: &'a Instance) -> ServerDetail<'a> {
    let (url, ctx, version) = (viewer.url, viewer.ctx, viewer.version);
    let id = i.uuid.to_string();
    let status = api_status(i.vm_state, i.task_state);
    let admin = ctx.is_admin();
    let full = viewer.kind != ViewKind::Update;
    let extended = full.then(|| Extended {
        // As Nova's `get_instance_availability_zone`: the host's zone once it has one, the
        // requested zone before, else empty.
        availability_zone: match &i.host {
            Some(h) => nova_db::aggregates::zone_of(viewer.host_zones, h),
            None => i.availability_zone.as_deref().unwrap_or(""),
        },
        // Nova's view: "True" when the server has a config drive, else empty.
        config_drive: if i.config_drive { "True" } else { "" },
        key_name: i.key_name.as_deref(),
        launched_at: i.launched_at.map(iso8601_naive_micros),
        terminated_at: i.terminated_at.map(iso8601_naive_micros),
        task_state: i.task_state.map(|t| t.as_str()),
        vm_state: i.vm_state.as_str(),
        power_state: i.power_state.code(),
        volumes_attached: [],
        security_groups: viewer
            .security_groups
            .get(&id)
            .into_iter()
            .flatten()
            .map(|name| SecurityGroup { name })
            .collect(),
    });
    let attributes = (full && admin).then(|| ServerAttributes {
        host: i.host.as_deref(),
        hypervisor_hostname: i.node.as_deref(),
        instance_name: format!("instance-{}", i.uuid),
        since_2_3: version.at_least(3).then(|| ServerAttributes23 {
            // Nova makes one reservation id per create request; this service keeps none,
            // so the server's own id stands in for it (unique and stable).
            reservation_id: format!("r-{}", &id[..8]),
            launch_index: 0,
            kernel_id: "",
            ramdisk_id: "",
            root_device_name: None,
            user_data: i.user_data.as_deref(),
        }),
    });
    // The update view shows the hostname from 2.90, which made it updatable.
    let hostname_shown = if full {
        (admin && version.at_least(3)) || version.at_least(90)
    } else {
        version.at_least(90)
    };
    let host_status = (full && admin && version.at_least(16)).then(|| match &i.host {
        Some(h) => viewer.host_status.get(h).copied().unwrap_or("UNKNOWN"),
        None => "",
    });
    let server_groups_shown = match viewer.kind {
        ViewKind::List => false,
        // 2.71 added the groups to show, update and rebuild alike.
        ViewKind::Show | ViewKind::Update => version.at_least(71),
    };
    let fault = i.fault.as_ref().map(|f| FaultView {
        code: f.code,
        created: iso8601_z(f.created_at),
        message: &f.message,
        // As Nova: details of a 500 fault are for admins only.
        details: f.details.as_deref().filter(|_| admin || f.code != 500),
    });
    let links = self_and_bookmark(url, "servers", &id);
    ServerDetail {
        name: &i.name,
        status,
        tenant_id: &i.project_id,
        user_id: &i.user_id,
        metadata: &i.metadata,
        host_id: host_id(i),
        image: ImageRef {
            id: &i.image_ref,
            links: bookmark(url, "images", &i.image_ref),
        },
        flavor: server_flavor(url, version, &i.flavor),
        created: iso8601_z(i.created_at),
        updated: iso8601_z(i.updated_at),
        addresses: addresses(&i.addresses, full),
        access_ipv4: i.access_ip_v4.as_deref().unwrap_or_default(),
        access_ipv6: i.access_ip_v6.as_deref().unwrap_or_default(),
        links,
        disk_config: if i.auto_disk_config { "AUTO" } else { "MANUAL" },
        progress: matches!(
            status,
            "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
        )
        .then_some(0),
        extended,
        attributes,
        hostname: hostname_shown.then(|| i.hostname.clone()),
        host_status,
        locked: version.at_least(9).then_some(i.locked_by.is_some()),
        description: version.at_least(19).then_some(i.description.as_deref()),
        tags: version.at_least(26).then_some(i.tags.as_slice()),
        trusted_image_certificates: version
            .at_least(63)
            .then_some(i.trusted_image_certificates.as_deref()),
        server_groups: server_groups_shown.then_some(viewer.server_groups),
        locked_reason: version.at_least(73).then_some(i.locked_reason.as_deref()),
        // The zone the user asked for at create, if any.
        pinned_availability_zone: (full && version.at_least(96))
            .then_some(i.availability_zone.as_deref()),
        fault,
        id,
    }
}

/// The server's flavor: a reference until 2.46, the flavor itself (as it was when the server
/// was created) from 2.47.
#[derive(Serialize)]
#[serde(untagged)]
enum ServerFlavor<'a> {
    Reference {
        id: &'a str,
        links: [Link; 1],
    },
    Embedded {
        original_name: &'a str,
        vcpus: i64,
        ram: i64,
        disk: i64,
        ephemeral: i64,
        swap: i64,
        extra_specs: &'a std::collections::BTreeMap<String, String>,
    },
}

fn server_flavor<'a>(url: &PublicUrl, v: ApiVersion, f: &'a Flavor) -> ServerFlavor<'a> {
    if v.at_least(47) {
        ServerFlavor::Embedded {
            original_name: &f.name,
            vcpus: f.vcpus,
            ram: f.memory_mb,
            disk: f.root_gb,
            ephemeral: f.ephemeral_gb,
            swap: f.swap,
            extra_specs: &f.extra_specs,
        }
    } else {
        ServerFlavor::Reference {
            id: &f.flavorid,
            links: bookmark(url, "flavors", &f.flavorid),
        }
    }
}

pub fn flavor_summary(url: &PublicUrl, v: ApiVersion, f: &Flavor) -> Value {
    let mut out =
        json!({"id": f.flavorid, "name": f.name, "links": links(url, "flavors", &f.flavorid)});
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
        "links": links(url, "flavors", &f.flavorid),
    });
    if v.at_least(55) {
        out["description"] = json!(f.description);
    }
    if v.at_least(61) {
        out["extra_specs"] = json!(f.extra_specs);
    }
    out
}
