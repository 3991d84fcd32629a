//! The host's image cache: image data fetched from the image service once per host and shared
//! by every instance booted from it, as Nova's `_base` directory is.
//!
//! Layout under the cache directory:
//! - `<sha512 hex>`: an image's data, put there (by rename) only after its hash was checked, so
//!   a file of that name is always whole and verified. Its mtime is the last time an instance
//!   used it.
//! - `tmp/`: fetches in progress (emptied at start: a fetch cut short by a crash is garbage).
//! - `instances/<uuid>`: the hash the instance was built from, so that eviction spares images
//!   in use, across agent restarts.
//!
//! Two builds of one new image fetch it once: fetches of one hash are serialised, and the
//! second finds the first one's file.

use crate::credential::Credential;
use futures::StreamExt;
use nova_core::ids::InstanceUuid;
use nova_core::rpc::ImageSpec;
use serde::Deserialize;
use sha2::{Digest, Sha512};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// `[agent.images]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ImageSettings {
    pub cache_dir: PathBuf,
    /// The image service's endpoint, `http://host:8774/image` (what the catalog lists).
    pub endpoint: Option<String>,
    /// An image no instance on this host uses is removed once it has been unused this long
    /// (Nova's `remove_unused_original_minimum_age_seconds`).
    pub max_unused_age_s: u64,
    pub eviction_interval_s: u64,
    /// A fetch that receives nothing (no answer, no data) for this long fails, so that a stalled
    /// download does not hold every build of that image on this host (they wait for its flight).
    pub stall_timeout_s: u64,
    /// The slowest download a fetch accepts, on average: a fetch fails once it took longer than
    /// the stall timeout plus the image's size at this rate. The stall timeout alone restarts
    /// at every byte, so a service (or a path) that trickles would hold the builds for ever.
    pub min_rate_kib_s: u64,
    /// Connecting to the image service.
    pub connect_timeout_s: u64,
    /// Tries of a fetch that failed on the way (no connection, a 5xx, a transfer cut short),
    /// one second apart and then doubling: the image service restarting does not fail the
    /// builds waiting for it (Nova's `[glance] num_retries`, 3, is 4 tries).
    pub fetch_attempts: u32,
    pub auth: crate::credential::CredentialSettings,
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            cache_dir: "image-cache".into(),
            endpoint: None,
            max_unused_age_s: 86_400,
            eviction_interval_s: 600,
            stall_timeout_s: 30,
            min_rate_kib_s: 1024,
            connect_timeout_s: 10,
            fetch_attempts: 4,
            auth: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no image service is configured for this compute host (agent.images.endpoint)")]
    NotConfigured,
    #[error("image {0} has no usable sha512 hash")]
    NoHash(String),
    #[error("image {id} could not be fetched: {reason}")]
    Fetch {
        id: String,
        reason: String,
        /// Whether another try may succeed (the service was out of reach, not refusing).
        transient: bool,
    },
    #[error("image {id} failed verification: {reason}")]
    Verify { id: String, reason: String },
    #[error("image cache: {0}")]
    Io(#[from] std::io::Error),
}

/// One image's single flight: its turn, and how the last fetch failed (when).
#[derive(Default)]
struct Flight {
    failed: Option<(tokio::time::Instant, String)>,
}

pub struct ImageCache {
    dir: PathBuf,
    endpoint: Option<String>,
    credential: Option<Arc<dyn Credential>>,
    client: reqwest::Client,
    /// One lock per hash being fetched or checked: the single flight.
    flights: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Flight>>>>,
    fetches: AtomicU64,
    fetch_attempts: u32,
    stall_timeout: Duration,
    min_rate_bytes_s: u64,
}

impl ImageCache {
    /// Opens (creating) the cache directory. `credential` overrides the configured one.
    pub fn open(
        settings: &ImageSettings,
        credential: Option<Arc<dyn Credential>>,
    ) -> std::io::Result<Self> {
        let dir = settings.cache_dir.clone();
        std::fs::create_dir_all(dir.join("instances"))?;
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self {
            dir,
            endpoint: settings
                .endpoint
                .as_ref()
                .map(|e| e.trim_end_matches('/').to_owned()),
            credential: credential.or_else(|| settings.auth.build()),
            // reqwest's read timeout restarts at every read: it bounds a stall, not a download.
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(settings.connect_timeout_s))
                .read_timeout(Duration::from_secs(settings.stall_timeout_s))
                .build()
                .map_err(std::io::Error::other)?,
            flights: Default::default(),
            fetches: AtomicU64::new(0),
            fetch_attempts: settings.fetch_attempts.max(1),
            stall_timeout: Duration::from_secs(settings.stall_timeout_s),
            min_rate_bytes_s: settings.min_rate_kib_s.max(1).saturating_mul(1024),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many times image data was downloaded (cache misses).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The verified data of `image` for `instance`, fetched if this host lacks it.
    pub async fn acquire(
        &self,
        image: &ImageSpec,
        instance: InstanceUuid,
    ) -> Result<PathBuf, CacheError> {
        let hash = checked_hash(image)?;
        let path = self.dir.join(&hash);
        let flight = self.flight(&hash);
        let waiting_since = tokio::time::Instant::now();
        let result = async {
            let mut turn = flight.lock().await;
            let present = tokio::fs::metadata(&path)
                .await
                .is_ok_and(|m| m.len() == image.size);
            if !present {
                // The builds that waited for a fetch share its failure: each trying again in
                // turn would hold the last one for as many fetches as there were builds.
                if let Some((at, why)) = &turn.failed {
                    if *at >= waiting_since {
                        return Err(CacheError::Fetch {
                            id: image.id.clone(),
                            reason: format!("the fetch this build waited for failed: {why}"),
                            transient: false,
                        });
                    }
                }
                if let Err(e) = self.fetch_with_retries(image, &hash, &path).await {
                    turn.failed = Some((tokio::time::Instant::now(), e.to_string()));
                    return Err(e);
                }
                turn.failed = None;
            }
            touch(&path)?;
            // Recorded while the turn is held, so that eviction (which takes the same turn)
            // never removes an image between its fetch and its first user.
            // One line per image the instance uses (a VM booted directly uses three).
            let record = self.dir.join("instances").join(instance.to_string());
            let mut hashes = match std::fs::read_to_string(&record) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e.into()),
            };
            if !hashes.lines().any(|h| h.trim() == hash) {
                if !hashes.is_empty() && !hashes.ends_with('\n') {
                    hashes.push('\n');
                }
                hashes.push_str(&hash);
                hashes.push('\n');
                // Replaced whole, never truncated in place: eviction reads it meanwhile, and
                // losing a line would let it remove an image a guest's disk stands on.
                let partial = record.with_extension("part");
                std::fs::write(&partial, hashes)?;
                std::fs::rename(&partial, &record)?;
            }
            Ok(())
        }
        .await;
        self.forget_flight(&hash, flight);
        result.map(|()| path)
    }

    /// The instance now uses these images only (it was rebuilt from them): the others it used
    /// are its no longer, and eviction may take them. They were acquired first, so the record
    /// never lacks an image a guest stands on.
    pub fn keep_only(&self, instance: InstanceUuid, images: &[&ImageSpec]) -> std::io::Result<()> {
        let mut text = String::new();
        for image in images {
            if let Ok(hash) = checked_hash(image) {
                text.push_str(&hash);
                text.push('\n');
            }
        }
        let record = self.dir.join("instances").join(instance.to_string());
        let partial = record.with_extension("part");
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &record)
    }

    /// The instance no longer uses its image (it was destroyed), nor a rescue image.
    pub fn release(&self, instance: InstanceUuid) -> std::io::Result<()> {
        let record = self.dir.join("instances").join(instance.to_string());
        remove_if_there(&record.with_extension(RESCUE))?;
        remove_if_there(&record)
    }

    /// The instance is to boot a rescue image beside its own: what it used before is kept
    /// aside (and counts as in use: eviction reads every record) for [`Self::end_rescue`].
    /// A second call keeps the first's.
    pub fn begin_rescue(&self, instance: InstanceUuid) -> std::io::Result<()> {
        let record = self.dir.join("instances").join(instance.to_string());
        let kept = record.with_extension(RESCUE);
        if kept.exists() {
            return Ok(());
        }
        let hashes = match std::fs::read_to_string(&record) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            read => read?,
        };
        let partial = record.with_extension("part");
        std::fs::write(&partial, hashes)?;
        std::fs::rename(&partial, &kept)
    }

    /// The instance boots its own disk again: it uses what it used before its rescue (the
    /// rescue image is its no longer). Nothing changes when no rescue was begun.
    pub fn end_rescue(&self, instance: InstanceUuid) -> std::io::Result<()> {
        let record = self.dir.join("instances").join(instance.to_string());
        match std::fs::rename(record.with_extension(RESCUE), &record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes images that no instance uses and that were last used longer ago than
    /// `max_unused_age`; returns their hashes.
    pub async fn evict(&self, max_unused_age: Duration) -> std::io::Result<Vec<String>> {
        let mut in_use = HashSet::new();
        for entry in std::fs::read_dir(self.dir.join("instances"))? {
            if let Ok(hashes) = std::fs::read_to_string(entry?.path()) {
                in_use.extend(hashes.lines().map(|h| h.trim().to_owned()));
            }
        }
        let now = SystemTime::now();
        let mut evicted = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_sha512_hex(&name) || in_use.contains(&name) {
                continue;
            }
            let flight = self.flight(&name);
            // A fetch or a use of this image is under way: not now.
            let Ok(_turn) = flight.try_lock() else {
                continue;
            };
            let age = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            // Checked again under the turn: an instance may have taken it meanwhile.
            let taken = self.dir.join("instances").read_dir()?.any(|e| {
                e.ok()
                    .and_then(|e| std::fs::read_to_string(e.path()).ok())
                    .is_some_and(|hashes| hashes.lines().any(|h| h.trim() == name))
            });
            if age >= max_unused_age && !taken {
                std::fs::remove_file(entry.path())?;
                tracing::info!(hash = %&name[..16], "evicted an unused image");
                evicted.push(name.clone());
            }
            drop(_turn);
            self.forget_flight(&name, flight);
        }
        Ok(evicted)
    }

    fn flight(&self, hash: &str) -> Arc<tokio::sync::Mutex<Flight>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        flights.entry(hash.to_owned()).or_default().clone()
    }

    /// Drops the lock of `hash` from the map once nobody else holds or waits for it.
    fn forget_flight(&self, hash: &str, flight: Arc<tokio::sync::Mutex<Flight>>) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and ours: nobody else has it.
        if Arc::strong_count(&flight) == 2 {
            flights.remove(hash);
        }
    }

    async fn fetch_with_retries(
        &self,
        image: &ImageSpec,
        hash: &str,
        path: &Path,
    ) -> Result<(), CacheError> {
        let mut pause = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            match self.fetch(image, hash, path).await {
                Err(CacheError::Fetch {
                    transient: true,
                    reason,
                    ..
                }) if attempt < self.fetch_attempts => {
                    tracing::warn!(image = %image.id, attempt, %reason, ?pause, "image fetch failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn fetch(&self, image: &ImageSpec, hash: &str, path: &Path) -> Result<(), CacheError> {
        let id = image.id.clone();
        let fail = |reason: String| CacheError::Fetch {
            id: id.clone(),
            reason,
            transient: true,
        };
        let endpoint = self.endpoint.as_deref().ok_or(CacheError::NotConfigured)?;
        let credential = self.credential.as_ref().ok_or(CacheError::NotConfigured)?;
        let url = format!("{endpoint}/v2/images/{}/file", image.id);
        tracing::info!(image = %image.id, size = image.size, "fetching image");
        let mut renew = false;
        let resp = loop {
            let token = credential.token(renew).await.map_err(&fail)?;
            let resp = self
                .client
                .get(&url)
                .header("X-Auth-Token", token)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            break resp;
        };
        if resp.status() != reqwest::StatusCode::OK {
            return Err(CacheError::Fetch {
                id: image.id.clone(),
                reason: format!("the image service answered {}", resp.status()),
                transient: resp.status().is_server_error(),
            });
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{hash}.{}", uuid::Uuid::new_v4().simple()));
        let result = self.download(resp, &tmp, image, hash).await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&tmp, path).await?;
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Uploads the file at `path` as the data of the queued image `image_id` (a snapshot's:
    /// Nova's compute uploads it to Glance with its token too); the image service hashes it and
    /// makes the image active.
    pub async fn upload(&self, image_id: &str, path: &Path) -> Result<(), CacheError> {
        let fail = |reason: String, transient: bool| CacheError::Fetch {
            id: image_id.to_owned(),
            reason,
            transient,
        };
        let endpoint = self.endpoint.as_deref().ok_or(CacheError::NotConfigured)?;
        let credential = self.credential.as_ref().ok_or(CacheError::NotConfigured)?;
        let url = format!("{endpoint}/v2/images/{image_id}/file");
        let size = tokio::fs::metadata(path).await?.len();
        tracing::info!(image = %image_id, size, "uploading a snapshot");
        let mut renew = false;
        loop {
            let token = credential.token(renew).await.map_err(|e| fail(e, true))?;
            let file = tokio::fs::File::open(path).await?;
            let chunks = futures::stream::unfold(file, |mut file| async move {
                use tokio::io::AsyncReadExt as _;
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok::<_, std::io::Error>(buf), file))
                    }
                    Err(e) => Some((Err(e), file)),
                }
            });
            let resp = self
                .client
                .put(&url)
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", size)
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
                .map_err(|e| fail(e.to_string(), true))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            if resp.status() != reqwest::StatusCode::NO_CONTENT {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                return Err(fail(
                    format!("the image service answered {status}: {body}"),
                    status.is_server_error(),
                ));
            }
            return Ok(());
        }
    }

    /// Deletes an image (a backup rotated out) through the image service, which deletes its
    /// data too; one that is gone already is fine.
    pub async fn delete_image(&self, image_id: &str) -> Result<(), CacheError> {
        let fail = |reason: String| CacheError::Fetch {
            id: image_id.to_owned(),
            reason,
            transient: true,
        };
        let endpoint = self.endpoint.as_deref().ok_or(CacheError::NotConfigured)?;
        let credential = self.credential.as_ref().ok_or(CacheError::NotConfigured)?;
        let url = format!("{endpoint}/v2/images/{image_id}");
        let mut renew = false;
        loop {
            let token = credential.token(renew).await.map_err(&fail)?;
            let resp = self
                .client
                .delete(&url)
                .header("X-Auth-Token", token)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            match resp.status() {
                reqwest::StatusCode::UNAUTHORIZED if !renew => renew = true,
                reqwest::StatusCode::NO_CONTENT | reqwest::StatusCode::NOT_FOUND => return Ok(()),
                other => return Err(fail(format!("the image service answered {other}"))),
            }
        }
    }

    /// Streams the body into `tmp`, hashing as it goes, and checks size and hash.
    async fn download(
        &self,
        resp: reqwest::Response,
        tmp: &Path,
        image: &ImageSpec,
        hash: &str,
    ) -> Result<(), CacheError> {
        let file = tokio::fs::File::create(tmp).await?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha512::new();
        let mut size: u64 = 0;
        let mut body = resp.bytes_stream();
        let allowed = self
            .stall_timeout
            .saturating_add(Duration::from_secs(image.size / self.min_rate_bytes_s));
        // (A year stands for "never" where the settings ask for more than an Instant holds.)
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(allowed)
            .unwrap_or(now + Duration::from_secs(365 * 86_400));
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, body.next()).await else {
                // Not transient: a path this slow stays slow, and another try would hold the
                // builds waiting for this image as long again.
                return Err(CacheError::Fetch {
                    id: image.id.clone(),
                    reason: format!(
                        "the download took longer than {}s ({size} of {} bytes received; \
                         agent.images.min_rate_kib_s is {})",
                        allowed.as_secs(),
                        image.size,
                        self.min_rate_bytes_s / 1024
                    ),
                    transient: false,
                });
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| CacheError::Fetch {
                id: image.id.clone(),
                reason: format!("transfer cut short: {e}"),
                transient: true,
            })?;
            size += chunk.len() as u64;
            if size > image.size {
                break;
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        out.into_inner().sync_all().await?;
        let verify = |reason: String| CacheError::Verify {
            id: image.id.clone(),
            reason,
        };
        if size > image.size {
            return Err(verify(format!(
                "expected {} bytes, received more",
                image.size
            )));
        }
        if size < image.size {
            return Err(verify(format!(
                "expected {} bytes, received {size}",
                image.size
            )));
        }
        let got = format!("{:x}", hasher.finalize());
        if got != hash {
            return Err(verify(format!(
                "sha512 is {}…, the image service recorded {}…",
                &got[..16],
                &hash[..16]
            )));
        }
        Ok(())
    }
}

/// The image's sha512 as a file name, refusing anything else (a hash is also a path here).
fn checked_hash(image: &ImageSpec) -> Result<String, CacheError> {
    let hash = image.hash_value.to_ascii_lowercase();
    if image.hash_algo != "sha512" || !is_sha512_hex(&hash) {
        return Err(CacheError::NoHash(image.id.clone()));
    }
    Ok(hash)
}

fn is_sha512_hex(s: &str) -> bool {
    s.len() == 128
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The extension of the record of what an instance used before its rescue.
const RESCUE: &str = "rescue";

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Marks the image as used now (its mtime is its last use).
fn touch(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.set_modified(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(algo: &str, value: &str) -> ImageSpec {
        ImageSpec {
            id: "i".into(),
            container_format: None,
            disk_format: None,
            size: 1,
            hash_algo: algo.into(),
            hash_value: value.into(),
        }
    }

    struct Fixed;

    #[async_trait::async_trait]
    impl crate::credential::Credential for Fixed {
        async fn token(&self, _renew: bool) -> Result<String, String> {
            Ok("t".into())
        }
    }

    /// A stalled download fails once nothing arrives for the stall timeout (and leaves no
    /// partial file), so the builds waiting for that image are not held for ever.
    #[tokio::test]
    async fn a_stalled_fetch_fails_after_the_stall_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers the headers and the first byte of ten, then sends nothing more.
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nx")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let dir = tempfile::tempdir().unwrap();
        let settings = ImageSettings {
            cache_dir: dir.path().to_owned(),
            endpoint: Some(format!("http://{addr}")),
            stall_timeout_s: 1,
            fetch_attempts: 1,
            ..ImageSettings::default()
        };
        let cache = ImageCache::open(&settings, Some(Arc::new(Fixed))).unwrap();
        let mut spec = image("sha512", &"ab".repeat(64));
        spec.size = 10;
        let started = std::time::Instant::now();
        let got = cache.acquire(&spec, InstanceUuid::new_v4()).await;
        assert!(matches!(got, Err(CacheError::Fetch { .. })), "{got:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "bounded by the stall timeout"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        server.abort();
    }

    /// A download that trickles (a byte now and then, so the stall timeout never fires) fails
    /// once it took longer than the stall timeout plus the image's size at the minimum rate,
    /// for every build that waited for it.
    #[tokio::test]
    async fn a_trickling_fetch_fails_at_the_minimum_rate() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // 2048 bytes, one every 100 ms (200 s in all), to every connection; counted.
        let connections = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let server = tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2048\r\n\r\n")
                        .await;
                    for _ in 0..2048 {
                        if sock.write_all(b"x").await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let settings = ImageSettings {
            cache_dir: dir.path().to_owned(),
            endpoint: Some(format!("http://{addr}")),
            stall_timeout_s: 1,
            // 2048 bytes at 1 KiB/s: 2 s, plus the stall timeout.
            min_rate_kib_s: 1,
            fetch_attempts: 2,
            ..ImageSettings::default()
        };
        let cache = ImageCache::open(&settings, Some(Arc::new(Fixed))).unwrap();
        let mut spec = image("sha512", &"ab".repeat(64));
        spec.size = 2048;
        let started = std::time::Instant::now();
        // Two builds of the image: the second waits for the first one's fetch, and shares its
        // failure instead of fetching (and waiting) again.
        let (got, other) = tokio::join!(
            cache.acquire(&spec, InstanceUuid::new_v4()),
            cache.acquire(&spec, InstanceUuid::new_v4())
        );
        let elapsed = started.elapsed();
        for got in [&got, &other] {
            assert!(
                matches!(got, Err(CacheError::Fetch { reason, transient: false, .. })
                    if reason.contains("took longer than 3s")),
                "{got:?}"
            );
        }
        // One fetch (not tried again, not repeated by the waiting build), at about 3 s.
        assert_eq!(connections.load(Ordering::Relaxed), 1);
        assert!(
            elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(6),
            "{elapsed:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        server.abort();
    }

    /// An image service that is briefly out of reach (a 503 while it restarts, then a refused
    /// connection) costs tries, not the build; a refusal (404) is not tried again.
    #[tokio::test]
    async fn a_fetch_is_tried_again_while_the_service_is_out_of_reach() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let data = b"0123456789";
        let hash = format!("{:x}", Sha512::digest(data));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answers: Vec<Vec<u8>> = vec![
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec(),
            [
                &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"[..],
                &data[..],
            ]
            .concat(),
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ];
        let server = tokio::spawn(async move {
            for answer in answers {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&answer).await;
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let settings = ImageSettings {
            cache_dir: dir.path().to_owned(),
            endpoint: Some(format!("http://{addr}")),
            ..ImageSettings::default()
        };
        let cache = ImageCache::open(&settings, Some(Arc::new(Fixed))).unwrap();
        let mut spec = image("sha512", &hash);
        spec.size = 10;
        let path = cache.acquire(&spec, InstanceUuid::new_v4()).await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(cache.fetches(), 1);
        // The third answer, a 404, ends the next fetch at once.
        let mut other = image("sha512", &"cd".repeat(64));
        other.size = 10;
        let got = cache.acquire(&other, InstanceUuid::new_v4()).await;
        assert!(
            matches!(
                got,
                Err(CacheError::Fetch {
                    transient: false,
                    ..
                })
            ),
            "{got:?}"
        );
        server.await.unwrap();
    }

    /// A rescue image is in use beside the instance's own while it is rescued; after the
    /// unrescue only the own is, and eviction may take the rescue image.
    #[tokio::test]
    async fn a_rescue_image_is_in_use_until_the_unrescue() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ImageSettings {
            cache_dir: dir.path().to_owned(),
            ..ImageSettings::default()
        };
        let cache = ImageCache::open(&settings, None).unwrap();
        let (own, rescue) = (
            image("sha512", &"ab".repeat(64)),
            image("sha512", &"cd".repeat(64)),
        );
        for i in [&own, &rescue] {
            std::fs::write(dir.path().join(&i.hash_value), "x").unwrap();
        }
        let instance = InstanceUuid::new_v4();
        cache.acquire(&own, instance).await.unwrap();
        for _ in 0..2 {
            cache.begin_rescue(instance).unwrap();
        }
        cache.acquire(&rescue, instance).await.unwrap();
        assert!(cache.evict(Duration::ZERO).await.unwrap().is_empty());
        cache.end_rescue(instance).unwrap();
        assert_eq!(
            cache.evict(Duration::ZERO).await.unwrap(),
            vec![rescue.hash_value.clone()]
        );
        assert!(dir.path().join(&own.hash_value).exists());
        // A rescued instance destroyed: neither record is left.
        cache.begin_rescue(instance).unwrap();
        cache.release(instance).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("instances"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn only_a_sha512_hex_digest_names_a_cache_file() {
        let good = "ab".repeat(64);
        assert_eq!(
            checked_hash(&image("sha512", &good)).ok(),
            Some(good.clone())
        );
        assert_eq!(
            checked_hash(&image("sha512", &good.to_uppercase())).ok(),
            Some(good.clone())
        );
        for bad in ["", "../../etc/passwd", &"ab".repeat(63), &"zz".repeat(64)] {
            assert!(checked_hash(&image("sha512", bad)).is_err(), "{bad}");
        }
        assert!(checked_hash(&image("md5", &good)).is_err());
    }
}
