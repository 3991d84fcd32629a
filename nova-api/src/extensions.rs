//! `/extensions`: the legacy extension descriptors. Nova's v2.1 API has no extensions any
//! more; it still lists the descriptors of v2.0's, frozen, for old clients. These are the
//! ones whose APIs are served here, and those Nova keeps listing whatever it serves.

use actix_web::{web, HttpResponse};
use api_toolkit::{ApiError, ApiResult, RequestContext};
use serde_json::{json, Value};

/// (alias, name, description).
const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("OS-DCF", "DiskConfig", "Disk Management Extension."),
    (
        "OS-EXT-AZ",
        "ExtendedAvailabilityZone",
        "Extended Availability Zone support.",
    ),
    (
        "OS-EXT-IPS",
        "ExtendedIps",
        "Adds type parameter to the ip list.",
    ),
    (
        "OS-EXT-IPS-MAC",
        "ExtendedIpsMac",
        "Adds mac address parameter to the ip list.",
    ),
    (
        "OS-EXT-SRV-ATTR",
        "ExtendedServerAttributes",
        "Extended Server Attributes support.",
    ),
    ("OS-EXT-STS", "ExtendedStatus", "Extended Status support."),
    (
        "OS-FLV-DISABLED",
        "FlavorDisabled",
        "Support to show the disabled status of a flavor.",
    ),
    (
        "OS-FLV-EXT-DATA",
        "FlavorExtraData",
        "Provide additional data for flavors.",
    ),
    (
        "OS-SCH-HNT",
        "SchedulerHints",
        "Pass arbitrary key/value pairs to the scheduler.",
    ),
    (
        "OS-SRV-USG",
        "ServerUsage",
        "Adds launched_at and terminated_at on Servers.",
    ),
    (
        "os-admin-actions",
        "AdminActions",
        "Enable admin-only server actions.",
    ),
    (
        "os-aggregates",
        "Aggregates",
        "Admin-only aggregate administration.",
    ),
    (
        "os-availability-zone",
        "AvailabilityZone",
        "1. Add availability_zone to the Create Server API. 2. Add availability zones describing.",
    ),
    (
        "os-console-output",
        "ConsoleOutput",
        "Console log output support, with tailing ability.",
    ),
    ("os-consoles", "Consoles", "Interactive Console support."),
    (
        "os-deferred-delete",
        "DeferredDelete",
        "Instance deferred delete.",
    ),
    ("os-flavor-access", "FlavorAccess", "Flavor access support."),
    (
        "os-flavor-extra-specs",
        "FlavorExtraSpecs",
        "Flavors extra specs support.",
    ),
    (
        "os-flavor-manage",
        "FlavorManage",
        "Flavor create/delete API support.",
    ),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    (
        "os-server-diagnostics",
        "ServerDiagnostics",
        "Allow Admins to view server diagnostics through server action.",
    ),
    (
        "os-server-external-events",
        "ServerExternalEvents",
        "Server External Event Triggers.",
    ),
    ("os-migrations", "Migrations", "Provide data on migrations."),
    (
        "os-hypervisors",
        "Hypervisors",
        "Admin-only hypervisor administration.",
    ),
    (
        "os-instance-actions",
        "InstanceActions",
        "View a log of actions and events taken on an instance.",
    ),
    ("os-keypairs", "Keypairs", "Keypair Support."),
    (
        "os-lock-server",
        "LockServer",
        "Enable lock/unlock server actions.",
    ),
    ("os-quota-sets", "Quotas", "Quotas management support."),
    (
        "os-server-password",
        "ServerPassword",
        "Server password support.",
    ),
    ("os-server-tags", "ServerTags", "Server tags support."),
    ("os-services", "Services", "Services support."),
    (
        "os-simple-tenant-usage",
        "SimpleTenantUsage",
        "Simple tenant usage extension.",
    ),
    ("os-volumes", "Volumes", "Volumes support."),
];

fn view(&(alias, name, description): &(&str, &str, &str)) -> Value {
    json!({
        "alias": alias,
        "name": name,
        "description": description,
        "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
        "updated": "2014-12-03T00:00:00Z",
        "links": [],
    })
}

async fn list(_caller: RequestContext) -> HttpResponse {
    let all: Vec<Value> = EXTENSIONS.iter().map(view).collect();
    HttpResponse::Ok().json(json!({ "extensions": all }))
}

async fn show(_caller: RequestContext, alias: web::Path<String>) -> ApiResult<HttpResponse> {
    let found = EXTENSIONS
        .iter()
        .find(|(a, _, _)| *a == alias.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("Extension {alias} could not be found.")))?;
    Ok(HttpResponse::Ok().json(json!({ "extension": view(found) })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/extensions").route(web::get().to(list)))
        .service(web::resource("/extensions/{alias}").route(web::get().to(show)));
}
