//! Image data as objects in a bucket of an S3-compatible object store (`object_store`):
//! `<prefix><id>`, written by a multipart upload, which the store makes visible only when it
//! completes.

use super::{ImageData, ImageStore, S3Settings, StoreError, Upload};
use actix_web::web::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};

/// The size of one part of a multipart upload (S3's least is 5 MiB, but for the last).
const PART: usize = 8 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3Store {
    store: AmazonS3,
    prefix: String,
}

impl S3Store {
    pub fn new(settings: &S3Settings) -> Result<Self, StoreError> {
        // HTTPS through rustls on ring, the provider the rest of the service uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                // A store on loopback or a private network speaks plain HTTP.
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self {
            store,
            prefix: settings.prefix.clone(),
        })
    }

    fn path(&self, id: &str) -> Path {
        Path::from(format!("{}{id}", self.prefix))
    }
}

#[async_trait::async_trait]
impl ImageStore for S3Store {
    async fn start_upload(&self, id: &str) -> Result<Box<dyn Upload>, StoreError> {
        let upload = self.store.put_multipart(&self.path(id)).await?;
        Ok(Box::new(S3Upload {
            write: Some(WriteMultipart::new_with_chunk_size(upload, PART)),
        }))
    }

    async fn read(&self, id: &str) -> Result<ImageData, StoreError> {
        let got = self.store.get(&self.path(id)).await?;
        let len = got.meta.size;
        Ok(ImageData {
            len,
            chunks: got.into_stream().map_err(StoreError::from).boxed(),
        })
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.path(id)).await {
            Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

struct S3Upload {
    /// `None` once finished or aborted.
    write: Option<WriteMultipart>,
}

#[async_trait::async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let write = self
            .write
            .as_mut()
            .ok_or_else(|| StoreError::Config("upload already ended".into()))?;
        // Bounded memory: at most this many parts wait for the store.
        write.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        write.put(chunk);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if let Some(write) = self.write.take() {
            write.finish().await?;
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(write) = self.write.take() {
            if let Err(e) = write.abort().await {
                tracing::warn!(error = %e, "abandoned multipart upload not aborted");
            }
        }
    }
}

impl Drop for S3Upload {
    /// An upload dropped unfinished (its request went away) is aborted all the same, so that
    /// the store keeps no parts of it.
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = write.abort().await {
                        tracing::warn!(error = %e, "abandoned multipart upload not aborted");
                    }
                });
            }
        }
    }
}
