//! The `createImage` action (Nova's `_create_image` and `snapshot`): a queued image made in the
//! project's name with the server's image's properties and the request's metadata, whose data
//! the server's host uploads (its disk flattened, or its container's filesystem); the server
//! stays in its state. The image is deleted if the snapshot fails or the server goes first.

use super::actions::{could_begin, refuse_unsupported, refused_state, requester, scope};
use super::params::{parse_metadata, parse_name};
use super::{submit, visible};
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::NOVA;
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_core::model::{Instance, NodeType, TaskState, VmState};
use nova_core::rpc::TaskKind;
use nova_core::time::now_ms;
use nova_db::instances::{self, TransitionRule};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Image properties a snapshot does not inherit from the server's image (Nova's
/// `NON_INHERITABLE_IMAGE_PROPERTIES` and the default `non_inheritable_image_properties`), and
/// those it sets itself.
const NOT_INHERITED: &[&str] = &[
    "cinder_encryption_key_id",
    "cinder_encryption_key_deletion_policy",
    "img_signature",
    "img_signature_hash_method",
    "img_signature_key_type",
    "img_signature_certificate_uuid",
    "cache_in_nova",
    "bittorrent",
];

/// Nova's snapshot: from these vm states, with no task running; the lock is not checked
/// ("lock is intended to prevent accidental change/delete of instances").
pub(super) const RULE: TransitionRule = TransitionRule {
    from_vm_states: &[
        VmState::Active,
        VmState::Stopped,
        VmState::Paused,
        VmState::Suspended,
    ],
    task_state: TaskState::ImageSnapshot,
};

pub(super) async fn create_image(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    let obj = arg.as_object().ok_or_else(|| {
        invalid(
            "createImage",
            arg,
            &format!("{arg} is not of type 'object'"),
        )
    })?;
    body::only(obj, &["name", "metadata"])?;
    let name = match obj.get("name") {
        Some(n) => parse_name(n)?,
        None => return Err(invalid("createImage", arg, "'name' is a required property")),
    };
    let metadata = match obj.get("metadata") {
        Some(m) => parse_metadata(m)?,
        None => BTreeMap::new(),
    };
    NOVA.require_write(ctx, "os_compute_api:servers:create_image")?;
    start(req, ctx, state, id, name, metadata, None).await
}

/// The `createBackup` action (Nova's os-create-backup): a snapshot whose image is a backup of
/// a type (`image_type` `backup`, `backup_type`), after which the server's older backups of
/// that type beyond `rotation` are deleted.
pub(super) async fn create_backup(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    arg: &Value,
) -> ApiResult<HttpResponse> {
    let obj = arg.as_object().ok_or_else(|| {
        invalid(
            "createBackup",
            arg,
            &format!("{arg} is not of type 'object'"),
        )
    })?;
    body::only(obj, &["name", "backup_type", "rotation", "metadata"])?;
    for required in ["name", "backup_type", "rotation"] {
        if !obj.contains_key(required) {
            return Err(invalid(
                "createBackup",
                arg,
                &format!("'{required}' is a required property"),
            ));
        }
    }
    let name = parse_name(&obj["name"])?;
    let backup_type = obj["backup_type"]
        .as_str()
        .ok_or_else(|| {
            let v = &obj["backup_type"];
            invalid("backup_type", v, &format!("{v} is not of type 'string'"))
        })?
        .to_owned();
    // Nova's non_negative_integer: an integer, or a string of digits.
    let r = &obj["rotation"];
    let rotation = match r {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .ok_or_else(|| invalid("rotation", r, &format!("{r} is not a non-negative integer")))?;
    let mut metadata = match obj.get("metadata") {
        Some(m) => parse_metadata(m)?,
        None => BTreeMap::new(),
    };
    NOVA.require_write(ctx, "os_compute_api:os-create-backup")?;
    metadata.insert("image_type".into(), "backup".into());
    metadata.insert("backup_type".into(), backup_type);
    start(req, ctx, state, id, name, metadata, Some(rotation)).await
}

/// A snapshot (`backup`: a backup's rotation) of the server: its image made queued, its task
/// started, Nova's answer per microversion.
async fn start(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    id: &str,
    name: String,
    metadata: BTreeMap<String, String>,
    backup: Option<u32>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(req);
    let action = if backup.is_some() {
        "createBackup"
    } else {
        "createImage"
    };
    let instance = visible(state, ctx, id).await?;
    // Before 2.39 the metadata counts against the metadata quota (Nova's
    // check_img_metadata_properties_quota).
    if !v.at_least(39) {
        let quota = crate::quotas::ProjectQuota::of(&state.db, &ctx.project_id).await?;
        quota.check_metadata_items(metadata.len())?;
    }
    let probe = TaskKind::Snapshot {
        image: uuid::Uuid::nil(),
        backup,
    };
    // (A lock does not keep a snapshot from being taken.)
    refuse_unsupported(&probe, &instance, could_begin(RULE, &instance, ctx, false))?;
    let image = record(state, ctx, &instance, name, metadata).await?;
    nova_db::images::create(&state.db, &image).await?;
    let image_id: uuid::Uuid = image
        .id
        .parse()
        .map_err(|_| ApiError::Internal("image id".into()))?;
    let kind = TaskKind::Snapshot {
        image: image_id,
        backup,
    };
    let who = requester(ctx);
    let begun =
        instances::begin_action(&state.db, instance.uuid, scope(ctx), true, RULE, kind, &who).await;
    let task = match begun {
        Ok(task) => task,
        Err(e) => {
            // No snapshot: no image either.
            nova_db::images::delete(&state.db, &image.id).await?;
            return Err(refused_state(e, id, action, RULE.from_vm_states));
        }
    };
    submit(state, task, instance.uuid, &ctx.request_id).await;
    if v.at_least(45) {
        return Ok(HttpResponse::Accepted().json(json!({ "image_id": image.id })));
    }
    // Before 2.45, the image's URL (Nova's points at Glance; here the image API's v2 path,
    // which a client can follow). A backup with a rotation of 0 has none (it is deleted).
    let mut response = HttpResponse::Accepted();
    if backup != Some(0) {
        let location = format!("{}/image/v2/images/{}", PublicUrl::of(req).0, image.id);
        response.insert_header(("Location", location));
    }
    Ok(response.finish())
}

/// The snapshot's image record, queued: the project's, private, in the formats the server's
/// node type writes, with what Nova's `initialize_instance_snapshot_metadata` gives it — the
/// server's image's properties (but those not inherited), its `min_ram`, its `min_disk` at
/// least the flavor's root disk, `instance_uuid`, `user_id`, `image_type` `snapshot`,
/// `base_image_ref`, and the request's metadata over them.
pub(super) async fn record(
    state: &AppState,
    ctx: &RequestContext,
    instance: &Instance,
    name: String,
    metadata: BTreeMap<String, String>,
) -> ApiResult<nova_db::images::Image> {
    let base = nova_db::images::get(&state.db, &instance.image_ref).await?;
    let mut properties: Map<String, Value> = base
        .as_ref()
        .and_then(|b| serde_json::from_str(&b.properties).ok())
        .unwrap_or_default();
    properties.retain(|k, _| !NOT_INHERITED.contains(&k.as_str()));
    properties.insert("instance_uuid".into(), json!(instance.uuid.0.to_string()));
    properties.insert("user_id".into(), json!(ctx.user_id));
    // A backup's `image_type` (and `backup_type`) come with its metadata, below.
    properties.insert("image_type".into(), json!("snapshot"));
    properties.insert("base_image_ref".into(), json!(instance.image_ref));
    for (k, val) in metadata {
        properties.insert(k, json!(val));
    }
    let (container_format, disk_format) = match instance.node_type {
        NodeType::Container => ("docker", "raw"),
        _ => ("bare", "qcow2"),
    };
    let now = now_ms();
    Ok(nova_db::images::Image {
        id: uuid::Uuid::new_v4().to_string(),
        name: Some(name),
        owner: ctx.project_id.clone(),
        status: "queued".into(),
        visibility: "private".into(),
        protected: false,
        os_hidden: false,
        container_format: Some(container_format.into()),
        disk_format: Some(disk_format.into()),
        size: None,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        min_disk: base
            .as_ref()
            .map_or(0, |b| b.min_disk)
            .max(instance.flavor.root_gb),
        min_ram: base.as_ref().map_or(0, |b| b.min_ram),
        properties: Value::Object(properties).to_string(),
        created_at: now,
        updated_at: now,
        tags: Vec::new(),
    })
}
