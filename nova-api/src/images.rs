//! The image service (a Glance v2 subset) under `/image`: records, visibility, JSON-patch
//! updates, tags, and the data, streamed to and from a local directory with its md5 and sha512
//! computed on the way in. Memory stays bounded whatever the image size: the data never sits in
//! memory whole.
//!
//! Errors leave in Glance's body (webob's JSON error: `{"code", "title", "message"}`), not in
//! the compute API's fault body: [`ImageError`].

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use keystone_auth::RequestContext;
use md5::Md5;
use nova_db::images::{self as store, Image};
use nova_core::time::{iso8601_z, now_ms};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

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
const VISIBILITIES: &[&str] = &["public", "private", "community", "shared"];
/// Set by the service, never by a client (Glance answers 403 for them).
const READ_ONLY: &[&str] = &[
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
const PATCH_MEDIA_TYPE: &str = "application/openstack-images-v2.1-json-patch";

/// A digest computed on a thread of its own from chunks sent to it.
struct Hasher {
    tx: tokio::sync::mpsc::Sender<web::Bytes>,
    done: std::thread::JoinHandle<String>,
}

impl Hasher {
    fn start<D: Digest + Send + 'static>(mut digest: D) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<web::Bytes>(16);
        let done = std::thread::spawn(move || {
            while let Some(chunk) = rx.blocking_recv() {
                digest.update(&chunk);
            }
            digest
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        Self { tx, done }
    }

    async fn feed(&self, chunk: web::Bytes) -> ApiResult<()> {
        self.tx
            .send(chunk)
            .await
            .map_err(|_| ApiError::Internal("hasher stopped".into()))
    }

    /// The hex digest of everything fed.
    async fn finish(self) -> ApiResult<String> {
        drop(self.tx);
        let done = self.done;
        tokio::task::spawn_blocking(move || done.join())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|_| ApiError::Internal("hasher panicked".into()))
    }
}

/// The image API's error: the same cases as the compute API's [`ApiError`], in Glance's body.
#[derive(Debug)]
pub struct ImageError(ApiError);

pub type ImageResult<T> = Result<T, ImageError>;

impl From<ApiError> for ImageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<nova_db::DbError> for ImageError {
    fn from(e: nova_db::DbError) -> Self {
        Self(e.into())
    }
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl actix_web::ResponseError for ImageError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.0.status_code()
    }

    /// webob's JSON error, as Glance sends it: the status line as `code`, its reason as
    /// `title`, and the explanation rendered through webob's body template as `message`.
    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let explanation = match &self.0 {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "The server has either erred or is incapable of performing the requested \
                 operation."
                    .to_owned()
            }
            other => other.to_string(),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        HttpResponse::build(status).json(json!({
            "code": format!("{} {title}", status.as_u16()),
            "title": title,
            "message": format!("{explanation}<br /><br />\n\n\n"),
        }))
    }
}

/// Where image data lives and how large an image may be.
#[derive(Clone, Debug)]
pub struct ImageStore {
    pub dir: PathBuf,
    pub size_cap: i64,
}

impl ImageStore {
    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("No image found with ID {id}"))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Glance's visibility rules: admins see all; others see public and community images, their
/// own project's, and shared images offered to their project (`offered`: whether it is a
/// member, whatever its answer).
fn visible(ctx: &RequestContext, i: &Image, offered: bool) -> bool {
    ctx.is_admin()
        || i.owner == ctx.project_id
        || matches!(i.visibility.as_str(), "public" | "community")
        || (i.visibility == "shared" && offered)
}

/// Whether a shared image is offered to the caller's project (a lookup only when it matters).
async fn offered(state: &AppState, ctx: &RequestContext, i: &Image) -> ApiResult<bool> {
    if i.visibility != "shared" || i.owner == ctx.project_id || ctx.is_admin() {
        return Ok(false);
    }
    Ok(store::member(&state.db, &i.id, &ctx.project_id)
        .await?
        .is_some())
}

/// The image if the caller may see it.
async fn visible_image(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Option<Image>> {
    let Some(image) = store::get(&state.db, id).await? else {
        return Ok(None);
    };
    let offered = offered(state, ctx, &image).await?;
    Ok(visible(ctx, &image, offered).then_some(image))
}

fn may_modify(ctx: &RequestContext, i: &Image) -> bool {
    ctx.is_admin() || (i.owner == ctx.project_id && ctx.can_write())
}

/// An image the caller may see, or 404.
async fn find(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    visible_image(state, ctx, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// An image the caller may change: 404 if invisible, 403 if visible but not theirs.
async fn find_own(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
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
fn set_field(
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

async fn create(
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ImageResult<HttpResponse> {
    crate::policy::require_write(&ctx, "add_image")?;
    let body = crate::body::json(&raw)?;
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
        ))
        .into());
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
struct ListQuery {
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

fn sort_value(i: &Image, key: &str) -> String {
    match key {
        "name" => i.name.clone().unwrap_or_default(),
        "status" => i.status.clone(),
        "size" => format!("{:020}", i.size.unwrap_or(-1)),
        "id" => i.id.clone(),
        "updated_at" => format!("{:020}", i.updated_at),
        _ => format!("{:020}", i.created_at),
    }
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ImageResult<HttpResponse> {
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
        return Err(bad(format!("Invalid status value: {wanted_answer}")).into());
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
        return Err(bad(format!("Invalid sort direction: {dir}")).into());
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

async fn show(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ImageResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(&find(&state, &ctx, &id).await?)))
}

async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ImageResult<HttpResponse> {
    let media = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !media.starts_with(PATCH_MEDIA_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Unsupported media type; use {PATCH_MEDIA_TYPE}."
        ))
        .into());
    }
    let mut image = find_own(&state, &ctx, &id).await?;
    let ops = crate::body::json(&raw)?;
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
            return Err(bad(format!("Invalid path /{path}")).into());
        }
        match kind {
            "replace" | "add" => set_field(&mut image, &ctx, path, &op["value"], &mut props)?,
            "remove" => {
                if props.remove(path).is_none() {
                    return Err(
                        ApiError::Conflict(format!("Property {path} does not exist.")).into(),
                    );
                }
            }
            other => return Err(bad(format!("Unsupported operation '{other}'.")).into()),
        }
    }
    image.properties = Value::Object(props).to_string();
    store::update(&state.db, &image).await?;
    let image = store::get(&state.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(view(&image)))
}

async fn delete(
    ctx: RequestContext,
    state: web::Data<AppState>,
    store_: web::Data<ImageStore>,
    id: web::Path<String>,
) -> ImageResult<HttpResponse> {
    let image = find_own(&state, &ctx, &id).await?;
    if image.protected {
        return Err(
            ApiError::Forbidden(format!("Image {id} is protected and cannot be deleted.")).into(),
        );
    }
    store::delete(&state.db, &id).await?;
    let _ = tokio::fs::remove_file(store_.path(&id)).await;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /v2/images/{id}/file`: streams the data to disk, hashing it; `active` only once all of
/// it is on disk with its hashes recorded. A failure puts the image back to `queued`.
async fn upload(
    ctx: RequestContext,
    state: web::Data<AppState>,
    images: web::Data<ImageStore>,
    id: web::Path<String>,
    mut payload: web::Payload,
) -> ImageResult<HttpResponse> {
    let image = find_own(&state, &ctx, &id).await?;
    if image.container_format.is_none() || image.disk_format.is_none() {
        return Err(bad(
            "Properties container_format and disk_format must be set prior to uploading data.",
        )
        .into());
    }
    if !store::set_status(&state.db, &id, &["queued"], "saving").await? {
        return Err(ApiError::Conflict(format!(
            "Image status transition from {} to saving is not allowed",
            image.status
        ))
        .into());
    }
    let partial = images.dir.join(format!("{id}.partial"));
    let result: ApiResult<(i64, String, String)> = async {
        tokio::fs::create_dir_all(&images.dir)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        // Large writes: every write to a tokio file is a trip to the blocking pool.
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        // The two digests are computed on threads of their own while the data streams to disk:
        // together they cost more than the rest of the upload. The channels are bounded, so
        // memory stays bounded too.
        let md5 = Hasher::start(Md5::new());
        let sha = Hasher::start(Sha512::new());
        let mut size: i64 = 0;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| bad(format!("The upload was interrupted: {e}")))?;
            size += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
            if size > images.size_cap {
                return Err(ApiError::PayloadTooLarge(format!(
                    "Image exceeds the storage quota: the limit is {} bytes.",
                    images.size_cap
                )));
            }
            md5.feed(chunk.clone()).await?;
            sha.feed(chunk.clone()).await?;
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        file.get_ref()
            .sync_all()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((size, md5.finish().await?, sha.finish().await?))
    }
    .await;
    match result {
        Ok((size, md5, sha)) => {
            tokio::fs::rename(&partial, images.path(&id))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if !store::finish_upload(&state.db, &id, size, &md5, &sha).await? {
                // Deleted meanwhile.
                let _ = tokio::fs::remove_file(images.path(&id)).await;
                return Err(
                    ApiError::Conflict(format!("Image {id} changed during the upload.")).into(),
                );
            }
            Ok(HttpResponse::NoContent().finish())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            store::set_status(&state.db, &id, &["saving"], "queued").await?;
            tracing::warn!(image = %id, error = %e, "upload failed; the image is queued again");
            Err(e.into())
        }
    }
}

/// `GET /v2/images/{id}/file`: streams the data (204 when there is none yet).
/// How much one read of an image file takes: large reads keep the per-chunk overhead (a hop
/// to the blocking pool, a write to the socket) small against the copying itself.
const DOWNLOAD_CHUNK: usize = 1 << 20;

/// The file's data as a stream of chunks, read on the blocking pool (memory stays bounded:
/// one chunk in flight).
fn file_chunks(
    file: std::fs::File,
) -> impl futures::Stream<Item = Result<web::Bytes, std::io::Error>> {
    futures::stream::try_unfold(Some(file), |file| async move {
        let Some(mut file) = file else {
            return Ok(None);
        };
        let (file, chunk) = web::block(move || {
            use std::io::Read;
            let mut buf = vec![0u8; DOWNLOAD_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            buf.truncate(filled);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some((web::Bytes::from(chunk), Some(file))))
    })
}

async fn download(
    ctx: RequestContext,
    state: web::Data<AppState>,
    images: web::Data<ImageStore>,
    id: web::Path<String>,
) -> ImageResult<HttpResponse> {
    let image = find(&state, &ctx, &id).await?;
    if image.status != "active" {
        return Ok(HttpResponse::NoContent().finish());
    }
    let file = std::fs::File::open(images.path(&id))
        .map_err(|e| ApiError::Internal(format!("image data of {id}: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .len();
    let mut res = HttpResponse::Ok()
        .content_type("application/octet-stream")
        .no_chunking(len)
        .streaming(file_chunks(file));
    if let Some(md5) = &image.checksum {
        if let Ok(v) = md5.parse() {
            res.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("content-md5"),
                v,
            );
        }
    }
    Ok(res)
}

async fn add_tag(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ImageResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    find_own(&state, &ctx, &id).await?;
    store::add_tag(&state.db, &id, &tag).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn remove_tag(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ImageResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    find_own(&state, &ctx, &id).await?;
    if !store::remove_tag(&state.db, &id, &tag).await? {
        return Err(ApiError::NotFound(format!("Tag {tag} not found")).into());
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn versions(req: HttpRequest) -> HttpResponse {
    let base = crate::links::PublicUrl::of(&req).0;
    let href = format!("{base}/image/v2/");
    let values: Vec<Value> = (0..=16)
        .rev()
        .map(|minor| {
            let status = if minor == 16 { "CURRENT" } else { "SUPPORTED" };
            json!({"id": format!("v2.{minor}"), "status": status, "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    HttpResponse::MultipleChoices().json(json!({ "versions": values }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/image")
            .route("", web::get().to(versions))
            .route("/", web::get().to(versions))
            .route("/versions", web::get().to(versions))
            .route("/v2/images", web::get().to(list))
            .route("/v2/images", web::post().to(create))
            .route("/v2/images/{id}", web::get().to(show))
            .route("/v2/images/{id}", web::patch().to(update))
            .route("/v2/images/{id}", web::delete().to(delete))
            .route("/v2/images/{id}/file", web::put().to(upload))
            .route("/v2/images/{id}/file", web::get().to(download))
            .route("/v2/images/{id}/tags/{tag}", web::put().to(add_tag))
            .route("/v2/images/{id}/tags/{tag}", web::delete().to(remove_tag))
            .route("/v2/images/{id}/members", web::get().to(list_members))
            .route("/v2/images/{id}/members", web::post().to(add_member))
            .route(
                "/v2/images/{id}/members/{member}",
                web::get().to(show_member),
            )
            .route(
                "/v2/images/{id}/members/{member}",
                web::put().to(answer_member),
            )
            .route(
                "/v2/images/{id}/members/{member}",
                web::delete().to(remove_member),
            ),
    );
}

fn member_view(m: &store::Member) -> Value {
    json!({
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.status,
        "created_at": iso8601_z(m.created_at),
        "updated_at": iso8601_z(m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

/// The image of a members request: visible to the caller, and shared (Glance: only shared
/// images have members, 403).
async fn shared_image(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    let image = find(state, ctx, id).await?;
    if image.visibility != "shared" {
        return Err(ApiError::Forbidden(
            "Only shared images have members.".into(),
        ));
    }
    Ok(image)
}

fn member_not_found(id: &str, member: &str) -> ApiError {
    ApiError::NotFound(format!("{member} is not a member of image {id}."))
}

/// `GET /v2/images/{id}/members`: all of them for the owner, its own membership for a member.
async fn list_members(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ImageResult<HttpResponse> {
    let image = shared_image(&state, &ctx, &id).await?;
    let owner = ctx.is_admin() || image.owner == ctx.project_id;
    let members: Vec<Value> = store::members(&state.db, &id)
        .await?
        .iter()
        .filter(|m| owner || m.member_id == ctx.project_id)
        .map(member_view)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"members": members, "schema": "/v2/schemas/members"})))
}

/// `POST /v2/images/{id}/members` with `{"member": "<project>"}`: the owner offers the image.
async fn add_member(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ImageResult<HttpResponse> {
    let image = shared_image(&state, &ctx, &id).await?;
    if !may_modify(&ctx, &image) {
        return Err(ApiError::Forbidden(
            "You are not permitted to create image members for the image.".into(),
        )
        .into());
    }
    let body = crate::body::json(&raw)?;
    let member = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("member"))
        .and_then(Value::as_str)
        .filter(|m| (1..=255).contains(&m.chars().count()))
        .ok_or_else(|| bad("Member to be added not specified"))?;
    let created = store::add_member(&state.db, &id, member)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!("Member {member} is duplicated for image {id}"))
        })?;
    Ok(HttpResponse::Ok().json(member_view(&created)))
}

/// The owner sees every member, a member only itself.
async fn show_member(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ImageResult<HttpResponse> {
    let (id, member) = path.into_inner();
    let image = shared_image(&state, &ctx, &id).await?;
    let owner = ctx.is_admin() || image.owner == ctx.project_id;
    if !owner && member != ctx.project_id {
        return Err(member_not_found(&id, &member).into());
    }
    let m = store::member(&state.db, &id, &member)
        .await?
        .ok_or_else(|| member_not_found(&id, &member))?;
    Ok(HttpResponse::Ok().json(member_view(&m)))
}

/// `PUT …/members/{member}` with `{"status": …}`: only the member itself answers.
async fn answer_member(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> ImageResult<HttpResponse> {
    let (id, member) = path.into_inner();
    shared_image(&state, &ctx, &id).await?;
    let body = crate::body::json(&raw)?;
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| matches!(*s, "pending" | "accepted" | "rejected"))
        .ok_or_else(|| bad("Invalid status: it must be pending, accepted or rejected."))?;
    if member != ctx.project_id || !ctx.can_write() {
        return Err(ApiError::Forbidden(
            "You are not permitted to modify 'status' on this image member.".into(),
        )
        .into());
    }
    let m = store::set_member_status(&state.db, &id, &member, status)
        .await?
        .ok_or_else(|| member_not_found(&id, &member))?;
    Ok(HttpResponse::Ok().json(member_view(&m)))
}

/// `DELETE …/members/{member}`: the owner withdraws the offer.
async fn remove_member(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ImageResult<HttpResponse> {
    let (id, member) = path.into_inner();
    let image = shared_image(&state, &ctx, &id).await?;
    if !may_modify(&ctx, &image) {
        return Err(ApiError::Forbidden(
            "You are not permitted to delete image members for the image.".into(),
        )
        .into());
    }
    if !store::delete_member(&state.db, &id, &member).await? {
        return Err(member_not_found(&id, &member).into());
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Whether an image can boot on a node type: a `docker save` archive on a container node, a
/// disk image (`bare`/`ovf` with a disk format) on a VM or bare-metal node.
pub fn fits(node_type: nova_core::model::NodeType, image: &Image) -> Result<(), String> {
    use nova_core::model::NodeType;
    let container = image.container_format.as_deref().unwrap_or_default();
    let disk = image.disk_format.as_deref().unwrap_or_default();
    let ok = match node_type {
        NodeType::Container => container == "docker",
        NodeType::Vm => {
            matches!(container, "bare" | "ovf")
                && matches!(
                    disk,
                    "qcow2" | "raw" | "vmdk" | "vdi" | "vhd" | "vhdx" | "iso"
                )
        }
        // Whole-disk images only: written to the machine's disk as they are.
        NodeType::Baremetal => container == "bare" && matches!(disk, "raw" | "qcow2"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Image {} (container_format {container}, disk_format {disk}) cannot boot on a {} node.",
            image.id, node_type
        ))
    }
}

/// The image a server create names, checked as Nova checks it: visible to the caller and
/// active. Whether it fits the flavor's node type is [`fits`].
pub async fn for_server(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    let image = visible_image(state, ctx, id)
        .await?
        .ok_or_else(|| bad(format!("Image {id} could not be found.")))?;
    if image.status != "active" {
        return Err(bad(format!("Image {id} is not active.")));
    }
    Ok(image)
}
