//! Image records: create, list, show, JSON-patch update and delete, with Glance's visibility
//! rules and checks.

use crate::ImageState;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::policy::GLANCE;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::{iso8601_z, now_ms};
use nova_db::images::{self as store, Image};
use serde_json::{json, Map, Value};

pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub(crate) const VISIBILITIES: &[&str] = &["public", "private", "community", "shared"];
/// Set by the service, never by a client (Glance answers 403 for them).
pub(crate) const READ_ONLY: &[&str] = &[
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "owner",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
];
pub(crate) const PATCH_MEDIA_TYPE: &str = "application/openstack-images-v2.1-json-patch";

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("No image found with ID {id}"))
}

/// The image if the caller may see it (Glance's visibility rules, [`store::get_visible`]).
pub(crate) async fn visible_image(
    state: &ImageState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Option<Image>> {
    Ok(store::get_visible(&state.db, id, viewer(ctx)).await?)
}

fn visible(ctx: &RequestContext, i: &Image, offered: bool) -> bool {
    ctx.is_admin()
        || i.owner == ctx.project_id
        || matches!(i.visibility.as_str(), "public" | "community")
        || (i.visibility == "shared" && offered)
}

pub(crate) fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    nova_db::Viewer {
        project: &ctx.project_id,
        admin: ctx.is_admin(),
    }
}

pub(crate) fn may_modify(ctx: &RequestContext, i: &Image) -> bool {
    ctx.is_admin() || (i.owner == ctx.project_id && ctx.can_write())
}

/// An image the caller may see, or 404.
pub(crate) async fn find(state: &ImageState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    visible_image(state, ctx, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// An image the caller may change: 404 if invisible, 403 if visible but not theirs.
pub(crate) async fn find_own(
    state: &ImageState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Image> {
    let image = find(state, ctx, id).await?;
    if !may_modify(ctx, &image) {
        return Err(ApiError::Forbidden(format!(
            "You are not permitted to modify image {id}."
        )));
    }
    Ok(image)
}

pub fn view(i: &Image) -> Value {
    let mut v = json!({
        "id": i.id, "name": i.name, "status": i.status, "visibility": i.visibility,
        "protected": i.protected, "os_hidden": i.os_hidden, "checksum": i.checksum,
        "os_hash_algo": i.os_hash_algo, "os_hash_value": i.os_hash_value, "size": i.size,
        "virtual_size": null, "min_disk": i.min_disk, "min_ram": i.min_ram,
        "container_format": i.container_format, "disk_format": i.disk_format, "owner": i.owner,
        "tags": i.tags, "created_at": iso8601_z(i.created_at), "updated_at": iso8601_z(i.updated_at),
        "self": format!("/v2/images/{}", i.id), "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let (Some(obj), Ok(Value::Object(props))) = (
        v.as_object_mut(),
        serde_json::from_str::<Value>(&i.properties),
    ) {
        for (k, val) in props {
            obj.entry(k).or_insert(val);
        }
    }
    v
}

/// Applies one property to an image, with Glance's checks. `queued` allows changing the formats.
pub(crate) fn set_field(
    i: &mut Image,
    ctx: &RequestContext,
    key: &str,
    value: &Value,
    props: &mut Map<String, Value>,
) -> ApiResult<()> {
    if READ_ONLY.contains(&key) {
        return Err(ApiError::Forbidden(format!(
            "Attribute '{key}' is read-only."
        )));
    }
    let string = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("Invalid value for '{key}': {v} is not a string")))
    };
    let int = |v: &Value| {
        v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            bad(format!(
                "Invalid value for '{key}': {v} is not a non-negative integer"
            ))
        })
    };
    let boolean = |v: &Value| {
        v.as_bool()
            .ok_or_else(|| bad(format!("Invalid value for '{key}': {v} is not a boolean")))
    };
    match key {
        "id" => return Err(ApiError::Forbidden("Attribute 'id' is read-only.".into())),
        "name" => {
            i.name = if value.is_null() {
                None
            } else {
                Some(string(value)?).filter(|n| n.chars().count() <= 255)
            }
        }
        "visibility" => {
            let v = string(value)?;
            if !VISIBILITIES.contains(&v.as_str()) {
                return Err(bad(format!("Invalid visibility value: {v}")));
            }
            if v == "public" && !ctx.is_admin() {
                return Err(ApiError::Forbidden(
                    "You are not authorized to publicize images.".into(),
                ));
            }
            i.visibility = v;
        }
        "protected" => i.protected = boolean(value)?,
        "os_hidden" => i.os_hidden = boolean(value)?,
        "min_disk" => i.min_disk = int(value)?,
        "min_ram" => i.min_ram = int(value)?,
        "container_format" | "disk_format" => {
            if i.status != "queued" {
                return Err(ApiError::Forbidden(format!(
                    "Attribute {key} can be only replaced for a queued image."
                )));
            }
            let v = string(value)?;
            let allowed = if key == "container_format" {
                CONTAINER_FORMATS
            } else {
                DISK_FORMATS
            };
            if !allowed.contains(&v.as_str()) {
                return Err(bad(format!("Invalid {key} '{v}' for image.")));
            }
            if key == "container_format" {
                i.container_format = Some(v)
            } else {
                i.disk_format = Some(v)
            }
        }
        "tags" => {
            let tags = value.as_array().ok_or_else(|| bad("tags must be a list"))?;
            i.tags = tags.iter().map(&string).collect::<ApiResult<_>>()?;
        }
        other => {
            // Extra properties are strings (Glance's schema for additional properties).
            props.insert(other.to_owned(), json!(string(value)?));
        }
    }
    Ok(())
}

pub(crate) async fn create(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    GLANCE.require_write(&ctx, "add_image")?;
    let body = body::json(&raw)?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    let now = now_ms();
    let id = match obj.get("id") {
        None => uuid::Uuid::new_v4().to_string(),
        Some(v) => v
            .as_str()
            .filter(|s| uuid::Uuid::parse_str(s).is_ok())
            .ok_or_else(|| bad("id must be a uuid"))?
            .to_owned(),
    };
    let mut image = Image {
        id,
        name: None,
        owner: ctx.project_id.clone(),
        status: "queued".into(),
        visibility: "shared".into(),
        protected: false,
        os_hidden: false,
        container_format: None,
        disk_format: None,
        size: None,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        min_disk: 0,
        min_ram: 0,
        properties: "{}".into(),
        created_at: now,
        updated_at: now,
        tags: vec![],
    };
    let mut props = Map::new();
    for (k, v) in obj {
        if k != "id" {
            set_field(&mut image, &ctx, k, v, &mut props)?;
        }
    }
    image.properties = Value::Object(props).to_string();
    if store::get(&state.db, &image.id).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "Image with identifier {} already exists!",
            image.id
        )));
    }
    store::create(&state.db, &image).await?;
    let image = store::get(&state.db, &image.id)
        .await?
        .ok_or_else(|| not_found(&image.id))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v2/images/{}", image.id)))
        .json(view(&image)))
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    marker: Option<String>,
    name: Option<String>,
    id: Option<String>,
    status: Option<String>,
    visibility: Option<String>,
    os_hidden: Option<String>,
    container_format: Option<String>,
    disk_format: Option<String>,
    owner: Option<String>,
    sort_key: Option<String>,
    sort_dir: Option<String>,
    sort: Option<String>,
    member_status: Option<String>,
}

pub(crate) fn sort_value(i: &Image, key: &str) -> String {
    match key {
        "name" => i.name.clone().unwrap_or_default(),
        "status" => i.status.clone(),
        "size" => format!("{:020}", i.size.unwrap_or(-1)),
        "id" => i.id.clone(),
        "updated_at" => format!("{:020}", i.updated_at),
        _ => format!("{:020}", i.created_at),
    }
}

pub(crate) async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
) -> ApiResult<HttpResponse> {
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("Invalid query: {e}")))?;
    // Repeated `tag` parameters: every one must be on the image.
    let tags: Vec<String> = form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.into_owned())
        .collect();
    let limit = match &q.limit {
        None => 25,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| bad("limit param must be an integer"))?
            .min(1000),
    };
    let ids: Option<Vec<&str>> =
        q.id.as_deref()
            .map(|v| v.strip_prefix("in:").unwrap_or(v).split(',').collect());
    let hidden = matches!(q.os_hidden.as_deref(), Some("true" | "True" | "1"));
    // Shared images offered to the caller are listed once accepted, or with the answer asked
    // for (`member_status`), as Glance lists them.
    let wanted_answer = q.member_status.as_deref().unwrap_or("accepted");
    if !matches!(wanted_answer, "accepted" | "pending" | "rejected" | "all") {
        return Err(bad(format!("Invalid status value: {wanted_answer}")));
    }
    let answers: std::collections::HashMap<String, String> =
        store::memberships(&state.db, &ctx.project_id)
            .await?
            .into_iter()
            .map(|m| (m.image_id, m.status))
            .collect();
    let mut images: Vec<Image> = store::list(&state.db)
        .await?
        .into_iter()
        .filter(|i| {
            let listed_offer = answers
                .get(&i.id)
                .is_some_and(|a| wanted_answer == "all" || a == wanted_answer);
            visible(&ctx, i, listed_offer)
        })
        // Community images are listed only when asked for, or to their owner (as Glance).
        .filter(|i| {
            i.visibility != "community"
                || q.visibility.as_deref() == Some("community")
                || i.owner == ctx.project_id
        })
        .filter(|i| {
            q.visibility
                .as_deref()
                .is_none_or(|v| v == "all" || i.visibility == v)
        })
        .filter(|i| i.os_hidden == hidden)
        .filter(|i| {
            q.name
                .as_deref()
                .is_none_or(|n| i.name.as_deref() == Some(n))
        })
        .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.id.as_str())))
        .filter(|i| q.status.as_deref().is_none_or(|s| i.status == s))
        .filter(|i| q.owner.as_deref().is_none_or(|o| i.owner == o))
        .filter(|i| {
            q.container_format
                .as_deref()
                .is_none_or(|c| i.container_format.as_deref() == Some(c))
        })
        .filter(|i| {
            q.disk_format
                .as_deref()
                .is_none_or(|d| i.disk_format.as_deref() == Some(d))
        })
        .filter(|i| tags.iter().all(|t| i.tags.contains(t)))
        .collect();
    let (key, dir) = match &q.sort {
        Some(s) => {
            let (k, d) = s
                .split(',')
                .next()
                .unwrap_or("created_at")
                .split_once(':')
                .unwrap_or((s.as_str(), "desc"));
            (k.to_owned(), d.to_owned())
        }
        None => (
            q.sort_key.clone().unwrap_or_else(|| "created_at".into()),
            q.sort_dir.clone().unwrap_or_else(|| "desc".into()),
        ),
    };
    if !matches!(dir.as_str(), "asc" | "desc") {
        return Err(bad(format!("Invalid sort direction: {dir}")));
    }
    images.sort_by(|a, b| {
        let o = sort_value(a, &key)
            .cmp(&sort_value(b, &key))
            .then(a.id.cmp(&b.id));
        if dir == "desc" {
            o.reverse()
        } else {
            o
        }
    });
    if let Some(marker) = &q.marker {
        let pos = images.iter().position(|i| &i.id == marker).ok_or_else(|| {
            bad(format!(
                "Invalid marker. Image {marker} could not be found."
            ))
        })?;
        images.drain(..=pos);
    }
    let more = images.len() > limit;
    images.truncate(limit);
    let mut body = json!({"images": images.iter().map(view).collect::<Vec<_>>(), "first": "/v2/images", "schema": "/v2/schemas/images"});
    if more {
        if let Some(last) = images.last() {
            body["next"] = json!(format!("/v2/images?marker={}&limit={limit}", last.id));
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn show(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(&find(&state, &ctx, &id).await?)))
}

pub(crate) async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let media = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !media.starts_with(PATCH_MEDIA_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Unsupported media type; use {PATCH_MEDIA_TYPE}."
        )));
    }
    let mut image = find_own(&state, &ctx, &id).await?;
    let ops = body::json(&raw)?;
    let ops = ops
        .as_array()
        .ok_or_else(|| bad("The JSON-patch body must be a list of operations."))?;
    let mut props = match serde_json::from_str::<Value>(&image.properties) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for op in ops {
        let kind = op["op"]
            .as_str()
            .ok_or_else(|| bad("Each operation needs an 'op'."))?;
        let path = op["path"]
            .as_str()
            .and_then(|p| p.strip_prefix('/'))
            .ok_or_else(|| bad("Each operation needs a 'path' starting with '/'."))?;
        if path.contains('/') {
            return Err(bad(format!("Invalid path /{path}")));
        }
        match kind {
            "replace" | "add" => set_field(&mut image, &ctx, path, &op["value"], &mut props)?,
            "remove" => {
                if props.remove(path).is_none() {
                    return Err(ApiError::Conflict(format!(
                        "Property {path} does not exist."
                    )));
                }
            }
            other => return Err(bad(format!("Unsupported operation '{other}'."))),
        }
    }
    image.properties = Value::Object(props).to_string();
    store::update(&state.db, &image).await?;
    let image = store::get(&state.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(view(&image)))
}

pub(crate) async fn delete(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let image = find_own(&state, &ctx, &id).await?;
    if image.protected {
        return Err(ApiError::Forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    store::delete(&state.db, &id).await?;
    if let Err(e) = state.store.delete(&id).await {
        // The record is gone; the data is only garbage now.
        tracing::warn!(image = %id, error = %e, "image data not removed");
    }
    Ok(HttpResponse::NoContent().finish())
}
