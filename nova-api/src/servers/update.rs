//! `PUT /servers/{id}`: rename, description, hostname.

use super::params::{access_ip, parse_description, parse_hostname, parse_name};
use super::{host_status, not_found, OneServer};
use crate::versions::ApiVersion;
use crate::{views, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_db::instances::{self};

/// `PUT /servers/{id}`: renames the server and (2.19) changes its description. Nova answers
/// with its basic server view.
pub(super) async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:servers:update")?;
    let version = ApiVersion::of(&req);
    let body = body::json(&raw)?;
    let root = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    body::only(root, &["server"])?;
    let server_v = root
        .get("server")
        .ok_or_else(|| invalid("server", &body, "'server' is a required property"))?;
    let server = server_v.as_object().ok_or_else(|| {
        invalid(
            "server",
            server_v,
            &format!("{server_v} is not of type 'object'"),
        )
    })?;
    let mut name = None;
    let mut description = None;
    let mut hostname = None;
    let mut access_v4 = None;
    let mut access_v6 = None;
    let mut disk_config = None;
    for (key, v) in server {
        match key.as_str() {
            "name" => name = Some(parse_name(v)?),
            "description" if version.at_least(19) => description = Some(parse_description(v)?),
            "hostname" if version.at_least(90) => hostname = Some(parse_hostname(v, version)?),
            "accessIPv4" => access_v4 = Some(access_ip(key, v)?),
            "accessIPv6" => access_v6 = Some(access_ip(key, v)?),
            // Kept and shown; one disk configuration is done whichever is chosen.
            "OS-DCF:diskConfig" => {
                disk_config = Some(match v.as_str() {
                    Some("AUTO") => true,
                    Some("MANUAL") => false,
                    _ => return Err(invalid(key, v, "is not one of ['AUTO', 'MANUAL']")),
                })
            }
            other => return Err(body::unexpected(other)),
        }
    }
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(&id))?;
    let project = super::actions::scope(&ctx);
    let instance = instances::modify(&state.db, uuid, project, instances::Record::No, |i| {
        if let Some(name) = name {
            i.name = name;
        }
        if let Some(description) = description {
            i.description = description;
        }
        if let Some(hostname) = hostname {
            i.hostname = hostname;
        }
        if let Some(v4) = access_v4 {
            i.access_ip_v4 = Some(v4);
        }
        if let Some(v6) = access_v6 {
            i.access_ip_v6 = Some(v6);
        }
        if let Some(auto) = disk_config {
            i.auto_disk_config = auto;
        }
        Ok::<(), ApiError>(())
    })
    .await?
    .ok_or_else(|| not_found(&id))?;
    let url = PublicUrl::of(&req);
    // As Nova: from 2.75 the update answers with every attribute GET shows.
    let kind = if version.at_least(75) {
        views::ViewKind::Show
    } else {
        views::ViewKind::Update
    };
    let host_status = host_status(&state, &ctx, version).await?;
    let host_zones = nova_db::aggregates::host_zones(&state.db).await?;
    let security_groups =
        nova_db::ports::server_security_groups(&state.db, &[instance.uuid.to_string()]).await?;
    let server_groups = super::server_groups_of(&state, version, &instance).await?;
    let viewer = views::ServerViewer {
        url: &url,
        ctx: &ctx,
        version,
        host_status: &host_status,
        host_zones: &host_zones,
        security_groups: &security_groups,
        server_groups: &server_groups,
        kind,
    };
    Ok(HttpResponse::Ok().json(&OneServer {
        server: views::server_detail(&viewer, &instance),
    }))
}
