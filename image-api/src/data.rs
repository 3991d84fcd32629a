//! Image data: the upload, streamed to the image store while its md5 and sha512 are computed,
//! and the download, streamed back. Memory stays bounded whatever the image size: the data
//! never sits in memory whole.

use crate::images::{find, find_own};
use crate::store::{StoreError, Upload};
use crate::ImageState;
use actix_web::{web, HttpResponse};
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use futures::StreamExt;
use nova_db::images as store;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use std::sync::Arc;

/// How much of an upload is gathered before it goes to the hashers and the store: one
/// message per megabyte instead of one per network read.
const BATCH: usize = 1 << 20;

/// A batch of an upload's chunks, shared (not copied) by the hashers and the store.
type Batch = Arc<Vec<web::Bytes>>;

/// A digest computed on a thread of its own from the batches sent to it.
struct Hasher {
    tx: tokio::sync::mpsc::Sender<Batch>,
    done: std::thread::JoinHandle<Result<String, ErrorStack>>,
}

impl Hasher {
    /// OpenSSL's digests: its md5 and sha512 are the fastest at hand (here 786 and 1,093 MiB/s
    /// against 638 and 840 for the pure-Rust crates), and the two bound the upload's rate.
    fn start(kind: MessageDigest) -> Self {
        // Bounded: an upload's memory stays a few batches whatever its size.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(16);
        let done = std::thread::spawn(move || {
            let mut digest = openssl::hash::Hasher::new(kind)?;
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch.iter() {
                    digest.update(chunk)?;
                }
            }
            Ok(digest
                .finish()?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect())
        });
        Self { tx, done }
    }

    async fn feed(&self, batch: Batch) -> ApiResult<()> {
        self.tx
            .send(batch)
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
            .map_err(|_| ApiError::Internal("hasher panicked".into()))?
            .map_err(|e| ApiError::Internal(format!("digest: {e}")))
    }
}

fn store_failed(e: StoreError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Streams an upload's chunks to the store and to Glance's two digests (md5 for `checksum`,
/// sha512 for `os_hash_value`), each on a thread of its own: they cost more than the rest of
/// the upload together, and on two threads they run beside each other and beside the network
/// and the store. Returns the size and both digests once the store has committed the data;
/// on a failure the store keeps nothing.
async fn receive(
    state: &ImageState,
    id: &str,
    payload: &mut web::Payload,
) -> ApiResult<(i64, String, String)> {
    let mut upload = state.store.start_upload(id).await.map_err(store_failed)?;
    match pump(state, upload.as_mut(), payload).await {
        Ok(received) => {
            upload.commit().await.map_err(store_failed)?;
            Ok(received)
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

/// Feeds the payload to the upload and the hashers.
async fn pump(
    state: &ImageState,
    upload: &mut dyn Upload,
    payload: &mut web::Payload,
) -> ApiResult<(i64, String, String)> {
    let md5 = Hasher::start(MessageDigest::md5());
    let sha = Hasher::start(MessageDigest::sha512());
    let mut size: i64 = 0;
    let mut batch = Vec::new();
    let mut batch_len = 0;
    let mut ended = false;
    while !ended {
        match payload.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| bad(format!("The upload was interrupted: {e}")))?;
                size += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                if size > state.size_cap {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "Image exceeds the storage quota: the limit is {} bytes.",
                        state.size_cap
                    )));
                }
                batch_len += chunk.len();
                batch.push(chunk);
                if batch_len < BATCH {
                    continue;
                }
            }
            None => ended = true,
        }
        let full: Batch = Arc::new(std::mem::take(&mut batch));
        batch_len = 0;
        md5.feed(full.clone()).await?;
        sha.feed(full.clone()).await?;
        for chunk in full.iter() {
            upload.write(chunk.clone()).await.map_err(store_failed)?;
        }
    }
    Ok((size, md5.finish().await?, sha.finish().await?))
}

/// `PUT /v2/images/{id}/file`: streams the data to the image store, hashing it; `active` only
/// once all of it is stored with its hashes recorded. A failure puts the image back to
/// `queued` and leaves no data.
pub(crate) async fn upload(
    ctx: RequestContext,
    state: web::Data<ImageState>,
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
    let mut saving = Saving {
        db: state.db.clone(),
        id: id.clone(),
        settled: false,
    };
    let _alive = Alive::start(&state, &id);
    let received = receive(&state, &id, &mut payload).await;
    saving.settled = true;
    match received {
        Ok((size, md5, sha)) => {
            if !store::finish_upload(&state.db, &id, size, &md5, &sha).await? {
                // Deleted meanwhile.
                let _ = state.store.delete(&id).await;
                return Err(ApiError::Conflict(format!(
                    "Image {id} changed during the upload."
                )));
            }
            Ok(HttpResponse::NoContent().finish())
        }
        Err(e) => {
            store::set_status(&state.db, &id, &["saving"], "queued").await?;
            tracing::warn!(image = %id, error = %e, "upload failed; the image is queued again");
            Err(e)
        }
    }
}

/// Says that an upload is alive, on a timer, from its start until its end (receiving, storing,
/// recording): an upload that stops saying so died with its process, and is recovered (see
/// `uploads`). A timer, not the data: a slow client or a slow store is not a dead process.
struct Alive(tokio::task::JoinHandle<()>);

impl Alive {
    fn start(state: &ImageState, id: &str) -> Self {
        let (db, id, every) = (
            state.db.clone(),
            id.to_owned(),
            state.upload_clock.touch_every,
        );
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // `saving` was set just now
            loop {
                tick.tick().await;
                if let Err(e) = store::touch_saving(&db, &id).await {
                    tracing::warn!(image = %id, error = %e, "upload not marked alive");
                }
            }
        }))
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An image whose upload is under way: if the request goes away before it is settled (the
/// handler dropped, as when the client's connection closes or the server stops), the image
/// goes back to `queued` rather than staying `saving`.
struct Saving {
    db: nova_db::Db,
    id: String,
    settled: bool,
}

impl Drop for Saving {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (db, id) = (self.db.clone(), self.id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store::set_status(&db, &id, &["saving"], "queued").await {
                    tracing::warn!(image = %id, error = %e, "an abandoned upload stays saving");
                }
            });
        }
    }
}

/// `GET /v2/images/{id}/file`: streams the data (204 when there is none yet).
pub(crate) async fn download(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let image = find(&state, &ctx, &id).await?;
    // As Glance: a deactivated image's data is for admins only.
    if image.status == "deactivated" && !ctx.is_admin() {
        return Err(ApiError::Forbidden(
            "The requested image has been deactivated. Image data download is prohibited.".into(),
        ));
    }
    if image.status != "active" && image.status != "deactivated" {
        return Ok(HttpResponse::NoContent().finish());
    }
    let data = state
        .store
        .read(&id)
        .await
        .map_err(|e| ApiError::Internal(format!("image data of {id}: {e}")))?;
    let mut res = HttpResponse::Ok()
        .content_type("application/octet-stream")
        .no_chunking(data.len)
        .streaming(data.chunks);
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

/// `GET /v2/bmc-images/{id}/{expires}/{signature}/image.iso`: an image's data for a BMC, which
/// has no token: the URL itself is the permission, signed by the bare-metal agent with the
/// key repository's key for this image until `expires` (ms since the epoch). Only active
/// images; a bad or expired signature is refused as Glance refuses a forbidden download.
pub(crate) async fn download_signed(
    state: web::Data<ImageState>,
    path: web::Path<(String, i64, String)>,
) -> ApiResult<HttpResponse> {
    let (id, expires, signature) = path.into_inner();
    let Some(signer) = &state.bmc_signer else {
        return Err(ApiError::NotFound("Not Found".into()));
    };
    if !signer.verify(&id, expires, &signature, nova_core::time::now_ms()) {
        return Err(ApiError::Forbidden(
            "The image URL is not valid, or it has expired.".into(),
        ));
    }
    let Some(image) = nova_db::images::get(&state.db, &id).await? else {
        return Err(ApiError::NotFound(format!("No image found with ID {id}")));
    };
    if image.status != "active" {
        return Err(ApiError::Forbidden(format!(
            "Image {id} is {}: its data is not served.",
            image.status
        )));
    }
    let data = state
        .store
        .read(&id)
        .await
        .map_err(|e| ApiError::Internal(format!("image data of {id}: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .no_chunking(data.len)
        .streaming(data.chunks))
}
