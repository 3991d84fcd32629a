//! Image data as files in a directory: `<dir>/<id>`, written as `<dir>/<id>.partial` and
//! renamed into place once synced.

use super::{ImageData, ImageStore, StoreError, Upload};
use actix_web::web::Bytes;
use futures::StreamExt;
use std::io::{Read, Write};
use std::path::PathBuf;
use tokio::task::JoinHandle;

/// How much an upload gathers before it writes, and how much a read takes at once: large
/// writes and reads keep the per-call overhead (a hop to the blocking pool) small against the
/// copying itself.
const BATCH: usize = 1 << 20;

pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }
}

#[async_trait::async_trait]
impl ImageStore for LocalStore {
    async fn start_upload(&self, id: &str) -> Result<Box<dyn Upload>, StoreError> {
        let partial = self.dir.join(format!("{id}.partial"));
        let dir = self.dir.clone();
        let path = partial.clone();
        let file = blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::File::create(&path)
        })
        .await?;
        Ok(Box::new(LocalUpload {
            file: Some(file),
            writing: None,
            gathered: Vec::new(),
            gathered_len: 0,
            partial,
            target: self.path(id),
            committed: false,
        }))
    }

    async fn read(&self, id: &str) -> Result<ImageData, StoreError> {
        let path = self.path(id);
        let (file, len) = blocking(move || {
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await?;
        Ok(ImageData {
            len,
            chunks: file_chunks(file).boxed(),
        })
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Runs file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)??)
}

/// An upload to `<id>.partial`. Chunks are gathered as they came (no copy) and written a
/// batch at a time on the blocking pool, one batch in flight while the next is gathered.
struct LocalUpload {
    /// The file, when no write has it.
    file: Option<std::fs::File>,
    /// The write in flight, which gives the file back.
    writing: Option<JoinHandle<std::io::Result<std::fs::File>>>,
    gathered: Vec<Bytes>,
    gathered_len: usize,
    partial: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl LocalUpload {
    /// The file, once the write in flight (if any) is done.
    async fn take_file(&mut self) -> Result<std::fs::File, StoreError> {
        if let Some(writing) = self.writing.take() {
            return Ok(writing.await.map_err(std::io::Error::other)??);
        }
        self.file
            .take()
            .ok_or_else(|| StoreError::Io(std::io::Error::other("upload file lost")))
    }

    /// Starts writing what was gathered.
    async fn write_gathered(&mut self) -> Result<(), StoreError> {
        let mut file = self.take_file().await?;
        let chunks = std::mem::take(&mut self.gathered);
        self.gathered_len = 0;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            for chunk in &chunks {
                file.write_all(chunk)?;
            }
            Ok(file)
        }));
        Ok(())
    }
}

#[async_trait::async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.gathered_len += chunk.len();
        self.gathered.push(chunk);
        if self.gathered_len >= BATCH {
            self.write_gathered().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.write_gathered().await?;
        let file = self.take_file().await?;
        let (partial, target) = (self.partial.clone(), self.target.clone());
        blocking(move || {
            file.sync_all()?;
            std::fs::rename(&partial, &target)
        })
        .await?;
        self.committed = true;
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        // Dropping removes the partial file.
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.committed {
            if let Some(writing) = self.writing.take() {
                writing.abort();
            }
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// The file's data as a stream of chunks, read on the blocking pool (memory stays bounded:
/// one chunk in flight).
fn file_chunks(
    file: std::fs::File,
) -> impl futures::Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    futures::stream::try_unfold(Some(file), |file| async move {
        let Some(mut file) = file else {
            return Ok(None);
        };
        let (file, chunk) = blocking(move || {
            let mut buf = vec![0u8; BATCH];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            buf.truncate(filled);
            Ok((file, buf))
        })
        .await?;
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some((Bytes::from(chunk), Some(file))))
    })
}
