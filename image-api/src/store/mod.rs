//! Where image data is kept, behind one trait ([`ImageStore`]), chosen by configuration
//! (`[image.store] backend`):
//!
//! - `local`: a file per image in a directory of the API's disk (one API, or replicas sharing
//!   a file system);
//! - `s3`: an object per image in a bucket of an S3-compatible object store, which API
//!   replicas on different machines share.
//!
//! An upload is written under a name of its own and becomes the image's data only when it is
//! committed, so a reader never sees half an image, and an interrupted upload leaves nothing
//! behind under the image's name.

pub mod local;
pub mod s3;

use actix_web::web::Bytes;
use futures::stream::BoxStream;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image store: {0}")]
    Io(#[from] std::io::Error),
    #[error("image store: {0}")]
    Object(#[from] object_store::Error),
    #[error("image store configuration: {0}")]
    Config(String),
}

/// The data of an image: its length and its bytes, chunk by chunk.
pub struct ImageData {
    pub len: u64,
    pub chunks: BoxStream<'static, Result<Bytes, StoreError>>,
}

#[async_trait::async_trait]
pub trait ImageStore: Send + Sync {
    /// Starts writing the data of image `id`.
    async fn start_upload(&self, id: &str) -> Result<Box<dyn Upload>, StoreError>;
    /// The committed data of image `id`.
    async fn read(&self, id: &str) -> Result<ImageData, StoreError>;
    /// Removes the data of image `id`, and any partial data of an upload that died, if there
    /// is any.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;
}

/// An upload in progress. Dropped without [`Upload::commit`], it leaves nothing under the
/// image's name (call [`Upload::abort`] to also clean up at once).
#[async_trait::async_trait]
pub trait Upload: Send {
    /// Takes the next chunk. The store keeps the chunk itself until it is written: no copy.
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;
    /// Makes everything written durable, then the image's data.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// Discards what was written.
    async fn abort(self: Box<Self>);
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Local,
    S3,
}

/// `[image.store]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    pub backend: Backend,
    /// `local`: the directory of the image files.
    pub dir: PathBuf,
    /// `s3`: the bucket and how to reach it.
    pub s3: S3Settings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            dir: "images".into(),
            s3: S3Settings::default(),
        }
    }
}

/// An S3-compatible object store.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// The service's URL; unset: AWS's for the region.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Objects are named `<prefix><image id>`.
    pub prefix: String,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            bucket: "images".into(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            prefix: String::new(),
        }
    }
}

/// The configured store.
pub fn open(settings: &StoreSettings) -> Result<Arc<dyn ImageStore>, StoreError> {
    Ok(match settings.backend {
        Backend::Local => Arc::new(local::LocalStore::new(settings.dir.clone())),
        Backend::S3 => Arc::new(s3::S3Store::new(&settings.s3)?),
    })
}
