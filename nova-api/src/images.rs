//! The image service (a Glance v2 subset) under `/image`: records, visibility, JSON-patch
//! updates, tags, and the data, streamed to and from a local directory with its md5 and sha512
//! computed on the way in. Memory stays bounded whatever the image size: the data never sits in
//! memory whole.
//!
//! Errors here use the compute fault body too; Glance's own body differs
//! (TODO-correctness: Glance's `{"code", "title", "message"}` webob error body).

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use keystone_auth::RequestContext;
use md5::Md5;
use nova_core::db::images::{self as store, Image};
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

/// Glance's visibility rules: admins see all; others see public and community images and
/// their own project's.
fn visible(ctx: &RequestContext, i: &Image) -> bool {
    ctx.is_admin()
        || i.owner == ctx.project_id
        || matches!(i.visibility.as_str(), "public" | "community")
}

fn may_modify(ctx: &RequestContext, i: &Image) -> bool {
    ctx.is_admin() || (i.owner == ctx.project_id && ctx.can_write())
}

/// An image the caller may see, or 404.
async fn find(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    store::get(&state.db, id)
        .await?
        .filter(|i| visible(ctx, i))
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
) -> ApiResult<HttpResponse> {
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
    let mut images: Vec<Image> = store::list(&state.db)
        .await?
        .into_iter()
        .filter(|i| visible(&ctx, i))
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

async fn show(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(&find(&state, &ctx, &id).await?)))
}

async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
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

async fn delete(
    ctx: RequestContext,
    state: web::Data<AppState>,
    store_: web::Data<ImageStore>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let image = find_own(&state, &ctx, &id).await?;
    if image.protected {
        return Err(ApiError::Forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
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
) -> ApiResult<HttpResponse> {
    let image = find_own(&state, &ctx, &id).await?;
    if image.container_format.is_none() || image.disk_format.is_none() {
        return Err(bad(
            "Properties container_format and disk_format must be set prior to uploading data.",
        ));
    }
    if !store::set_status(&state.db, &id, &["queued"], "saving").await? {
        return Err(ApiError::Conflict(format!(
            "Image status transition from {} to saving is not allowed",
            image.status
        )));
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
                return Err(ApiError::Conflict(format!(
                    "Image {id} changed during the upload."
                )));
            }
            Ok(HttpResponse::NoContent().finish())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            store::set_status(&state.db, &id, &["saving"], "queued").await?;
            tracing::warn!(image = %id, error = %e, "upload failed; the image is queued again");
            Err(e)
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
) -> ApiResult<HttpResponse> {
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
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    find_own(&state, &ctx, &id).await?;
    store::add_tag(&state.db, &id, &tag).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn remove_tag(
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    find_own(&state, &ctx, &id).await?;
    if !store::remove_tag(&state.db, &id, &tag).await? {
        return Err(ApiError::NotFound(format!("Tag {tag} not found")));
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
            .route("/v2/images/{id}/tags/{tag}", web::delete().to(remove_tag)),
    );
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

/// The image a server create names, checked as Nova checks it: visible to the caller, active,
/// and (here) of a type the flavor's node type can boot.
pub async fn for_server(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    node_type: nova_core::model::NodeType,
) -> ApiResult<Image> {
    let image = store::get(&state.db, id)
        .await?
        .filter(|i| visible(ctx, i))
        .ok_or_else(|| bad(format!("Image {id} could not be found.")))?;
    if image.status != "active" {
        return Err(bad(format!("Image {id} is not active.")));
    }
    fits(node_type, &image).map_err(bad)?;
    Ok(image)
}
