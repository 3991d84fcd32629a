//! The `rebuild` action (Nova's `_rebuild`): the server built again on its host from an image
//! (a new one or the same), keeping its id, host, ports and addresses; what the request names
//! besides (name, metadata, description, key pair from 2.54, user data from 2.57, access
//! addresses, hostname from 2.90, …) changes with it. A SHUTOFF server is SHUTOFF again after;
//! a failed rebuild leaves the server in ERROR (its old guest is gone), as Nova's.

use super::create::{
    check_kernel_and_ramdisk, check_personality, image_fits_flavor, image_for_server,
    parse_disk_config, parse_key_name, parse_trusted_certs, parse_user_data,
};
use super::params::{access_ip, parse_description, parse_hostname, parse_metadata, parse_name};
use super::{publish_task, visible};
use crate::versions::ApiVersion;
use crate::{views, AppState};
use actix_web::{HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::model::VmState;
use nova_db::instances::{self, TransitionError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The properties of Nova's rebuild schema, with the microversions that know them (from, and
/// until inclusive).
const PROPERTIES: &[(&str, u16, u16)] = &[
    ("imageRef", 1, u16::MAX),
    ("name", 1, u16::MAX),
    ("adminPass", 1, u16::MAX),
    ("metadata", 1, u16::MAX),
    ("preserve_ephemeral", 1, u16::MAX),
    ("OS-DCF:diskConfig", 1, u16::MAX),
    ("accessIPv4", 1, u16::MAX),
    ("accessIPv6", 1, u16::MAX),
    ("personality", 1, 56),
    ("description", 19, u16::MAX),
    ("key_name", 54, u16::MAX),
    ("user_data", 57, u16::MAX),
    ("trusted_image_certificates", 63, u16::MAX),
    ("hostname", 90, u16::MAX),
];

/// What a rebuild request changes, each `None` when not given. A nullable field given as null
/// is `Some(None)`.
#[derive(Default)]
struct Changes {
    image: String,
    name: Option<String>,
    admin_pass: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    disk_config: Option<bool>,
    access_ip_v4: Option<String>,
    access_ip_v6: Option<String>,
    personality_files: usize,
    description: Option<Option<String>>,
    key_name: Option<Option<String>>,
    user_data: Option<Option<String>>,
    trusted_certs: Option<Option<Vec<String>>>,
    hostname: Option<String>,
}

fn parse(arg: &Value, version: ApiVersion) -> ApiResult<Changes> {
    let obj = arg
        .as_object()
        .ok_or_else(|| invalid("rebuild", arg, &format!("{arg} is not of type 'object'")))?;
    for key in obj.keys() {
        let known = PROPERTIES.iter().any(|(name, from, until)| {
            name == key && version.at_least(*from) && !version.at_least(until.saturating_add(1))
        });
        if !known {
            return Err(body::unexpected(key));
        }
    }
    let image = match obj.get("imageRef") {
        None => return Err(invalid("rebuild", arg, "'imageRef' is a required property")),
        // Nova's rebuild schema: an image id (a uuid), not an href.
        Some(v) => match v.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()) {
            Some(u) => u.hyphenated().to_string(),
            None => return Err(invalid("imageRef", v, &format!("{v} is not a 'uuid'"))),
        },
    };
    let mut c = Changes {
        image,
        ..Changes::default()
    };
    for (key, v) in obj {
        match key.as_str() {
            "name" => c.name = Some(parse_name(v)?),
            "adminPass" => {
                c.admin_pass = Some(
                    v.as_str()
                        .ok_or_else(|| {
                            invalid("adminPass", v, &format!("{v} is not of type 'string'"))
                        })?
                        .to_owned(),
                )
            }
            "metadata" => c.metadata = Some(parse_metadata(v)?),
            "preserve_ephemeral" => {
                // No ephemeral disks here: checked as Nova's boolean, and nothing to keep.
                body::boolean("preserve_ephemeral", v)?;
            }
            "OS-DCF:diskConfig" => c.disk_config = Some(parse_disk_config(v)?),
            "accessIPv4" => c.access_ip_v4 = Some(access_ip("accessIPv4", v)?),
            "accessIPv6" => c.access_ip_v6 = Some(access_ip("accessIPv6", v)?),
            "personality" => c.personality_files = check_personality(v)?,
            "description" => c.description = Some(parse_description(v)?),
            "key_name" => c.key_name = Some(parse_key_name(v)?),
            "user_data" => c.user_data = Some(parse_user_data(v)?),
            "trusted_image_certificates" => c.trusted_certs = Some(parse_trusted_certs(v)?),
            "hostname" => c.hostname = Some(parse_hostname(v, version)?),
            _ => {}
        }
    }
    Ok(c)
}

pub(super) async fn rebuild(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    let version = ApiVersion::of(req);
    let changes = parse(arg, version)?;
    let current = visible(state, ctx, id).await?;
    NOVA.require_write(ctx, "os_compute_api:servers:rebuild")?;
    // The lock and the state first, as Nova's decorators check them before the image (the
    // transaction below checks them again, atomically).
    if current.locked_by.is_some() && !ctx.is_admin() {
        return Err(refused(id, TransitionError::Locked));
    }
    if !REBUILDABLE.contains(&current.vm_state) || current.task_state.is_some() {
        return Err(refused(
            id,
            TransitionError::Conflict {
                vm_state: current.vm_state,
                task_state: current.task_state,
            },
        ));
    }
    // A server whose build failed holds no host's resources (its claim went with the build):
    // there is nothing to rebuild it on. (Nova's conductor would schedule it afresh.)
    if nova_db::nodes::allocation(&state.db, current.uuid)
        .await?
        .is_none()
    {
        return Err(ApiError::Conflict(format!("Instance {id} is not ready")));
    }
    // The image as a create checks it, for the server's flavor and node type (Nova's
    // `_check_requested_image`); "Cannot find image for rebuild" when it is not there.
    let image = match image_for_server(state, ctx, &changes.image).await {
        Err(ApiError::BadRequest(m)) if m.ends_with("could not be found.") => {
            return Err(bad("Cannot find image for rebuild"))
        }
        other => other?,
    };
    let node_type = current.node_type;
    let (container, disk) = (
        image.container_format.as_deref().unwrap_or_default(),
        image.disk_format.as_deref().unwrap_or_default(),
    );
    if !node_type.boots(container, disk) {
        return Err(bad(format!(
            "Image {} (container_format {container}, disk_format {disk}) cannot boot on a \
             {node_type} node.",
            image.id
        )));
    }
    image_fits_flavor(&image, &current.flavor)?;
    check_kernel_and_ramdisk(state, ctx, &image).await?;
    // As Nova: the caller's own key pair, its public key copied onto the server.
    let key = match &changes.key_name {
        Some(Some(name)) => Some(Some((
            name.clone(),
            nova_db::keypairs::get(&state.db, &ctx.user_id, name)
                .await?
                .ok_or_else(|| bad("Invalid key_name provided."))?
                .public_key,
        ))),
        Some(None) => Some(None),
        None => None,
    };
    let limits = crate::quotas::limits_of(&state.db, &current.project_id).await?;
    if let Some(m) = &changes.metadata {
        crate::quotas::check_metadata_items(limits["metadata_items"], m.len())?;
    }
    let files = limits["injected_files"];
    if files >= 0 && i64::try_from(changes.personality_files).unwrap_or(i64::MAX) > files {
        return Err(ApiError::Forbidden(
            "Personality file limit exceeded".into(),
        ));
    }
    let password = changes
        .admin_pass
        .clone()
        .unwrap_or_else(super::create::admin_pass);
    let who = super::actions::requester(ctx);
    let project = super::actions::scope(ctx);
    let image_id = image.id.clone();
    let started = instances::begin_rebuild::<TransitionError, _>(
        &state.db,
        current.uuid,
        project,
        ctx.is_admin(),
        &who,
        |i| {
            i.image_ref = image_id;
            if let Some(name) = changes.name {
                i.name = name;
            }
            if let Some(m) = changes.metadata {
                i.metadata = m;
            }
            if let Some(d) = changes.disk_config {
                i.auto_disk_config = d;
            }
            if let Some(v4) = changes.access_ip_v4 {
                i.access_ip_v4 = Some(v4);
            }
            if let Some(v6) = changes.access_ip_v6 {
                i.access_ip_v6 = Some(v6);
            }
            if let Some(d) = changes.description {
                i.description = d;
            }
            if let Some(k) = key {
                (i.key_name, i.key_data) = match k {
                    Some((name, data)) => (Some(name), Some(data)),
                    None => (None, None),
                };
            }
            if let Some(u) = changes.user_data {
                i.user_data = u;
            }
            if let Some(t) = changes.trusted_certs {
                i.trusted_image_certificates = t;
            }
            if let Some(h) = changes.hostname {
                i.hostname = h;
            }
            Ok(())
        },
    )
    .await;
    let (instance, task) = started.map_err(|e| refused(id, e))?;
    publish_task(state, task, instance.uuid, &ctx.request_id).await;
    tracing::info!(instance = %instance.uuid, image = %instance.image_ref, "rebuild accepted");
    // The view of the server as the rebuild left it (REBUILD), not as it may be by now.
    let mut view = view(req, ctx, state, version, &instance).await?;
    view["adminPass"] = json!(password);
    if version.at_least(57) {
        view["user_data"] = json!(instance.user_data);
    }
    Ok(HttpResponse::Accepted().json(json!({ "server": view })))
}

/// Nova's rebuild view: the update's (the show's from 2.75), with the key pair from 2.54, and
/// without the admin's user data attribute (2.57 puts `user_data` in the view instead).
async fn view(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    version: ApiVersion,
    instance: &nova_core::model::Instance,
) -> ApiResult<Value> {
    let url = PublicUrl::of(req);
    let kind = if version.at_least(75) {
        views::ViewKind::Show
    } else {
        views::ViewKind::Update
    };
    let host_status = super::host_status(state, ctx, version).await?;
    let host_zones = nova_db::aggregates::host_zones(&state.db).await?;
    let security_groups =
        nova_db::ports::server_security_groups(&state.db, &[instance.uuid.to_string()]).await?;
    let server_groups = super::server_groups_of(state, version, instance).await?;
    let viewer = views::ServerViewer {
        url: &url,
        ctx,
        version,
        host_status: &host_status,
        host_zones: &host_zones,
        security_groups: &security_groups,
        server_groups: &server_groups,
        kind,
    };
    let mut view = serde_json::to_value(views::server_detail(&viewer, instance))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(obj) = view.as_object_mut() {
        obj.remove("OS-EXT-SRV-ATTR:user_data");
        if version.at_least(54) {
            obj.insert("key_name".into(), json!(instance.key_name));
        }
    }
    Ok(view)
}

/// The vm states a rebuild starts from (Nova's `check_instance_state` on `rebuild`).
const REBUILDABLE: &[VmState] = &[VmState::Active, VmState::Stopped, VmState::Error];

/// Nova's answers to a rebuild the server's state refuses: the vm state's first.
fn refused(id: &str, e: TransitionError) -> ApiError {
    super::actions::refused_state(e, id, "rebuild", REBUILDABLE)
}
