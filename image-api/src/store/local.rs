//! Image data as files in a directory: `<dir>/<id>`, written as `<dir>/<id>.partial` and
//! renamed into place once synced.

use super::{ImageData, ImageStore, StoreError, Upload};
use actix_web::web::Bytes;
use futures::StreamExt;
use std::io::{Read, Write};
use std::path::PathBuf;

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
        Ok(Box::new(LocalUpload::new(file, partial, self.path(id))?))
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

    /// Removes the data and any partial data (an upload that died with its process).
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        for path in [self.path(id), self.dir.join(format!("{id}.partial"))] {
            match tokio::fs::remove_file(path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
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

/// How much written data an upload lets the kernel hold before it asks for it on disk: the
/// final sync before the image becomes active then waits for little, as the disk has kept up
/// during the upload (the kernel's own writeback would start only at gigabytes here).
const SYNC_EVERY: usize = 32 << 20;

/// Batches waiting for the writer thread: bounded, so an upload's memory stays bounded.
const QUEUE: usize = 16;

/// An upload to `<id>.partial`. Chunks are gathered as they came (no copy) and handed to a
/// writer thread of the upload's own a batch at a time; it writes them and syncs every
/// [`SYNC_EVERY`], while the network, the hashers and this side go on.
struct LocalUpload {
    gathered: Vec<Bytes>,
    gathered_len: usize,
    /// `None` once the writer was told the end.
    batches: Option<tokio::sync::mpsc::Sender<Vec<Bytes>>>,
    writer: Option<std::thread::JoinHandle<std::io::Result<std::fs::File>>>,
    partial: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl LocalUpload {
    fn new(file: std::fs::File, partial: PathBuf, target: PathBuf) -> std::io::Result<Self> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("image-writer".into())
            .spawn(move || {
                let mut file = file;
                let mut unsynced = 0;
                while let Some(batch) = rx.blocking_recv() {
                    for chunk in &batch {
                        file.write_all(chunk)?;
                        unsynced += chunk.len();
                    }
                    if unsynced >= SYNC_EVERY {
                        file.sync_data()?;
                        unsynced = 0;
                    }
                }
                Ok(file)
            })?;
        Ok(Self {
            gathered: Vec::new(),
            gathered_len: 0,
            batches: Some(tx),
            writer: Some(writer),
            partial,
            target,
            committed: false,
        })
    }

    /// Hands what was gathered to the writer.
    async fn send_gathered(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut self.gathered);
        self.gathered_len = 0;
        let sent = match &self.batches {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped: its error says why.
        Err(self
            .finish_writer()
            .await
            .err()
            .unwrap_or_else(|| StoreError::Io(std::io::Error::other("the image writer stopped"))))
    }

    /// Tells the writer the end and waits for it: the file, all written.
    async fn finish_writer(&mut self) -> Result<std::fs::File, StoreError> {
        self.batches = None;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| StoreError::Io(std::io::Error::other("upload file lost")))?;
        blocking(move || {
            writer
                .join()
                .map_err(|_| std::io::Error::other("the image writer panicked"))?
        })
        .await
    }
}

#[async_trait::async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.gathered_len += chunk.len();
        self.gathered.push(chunk);
        if self.gathered_len >= BATCH {
            self.send_gathered().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.send_gathered().await?;
        let file = self.finish_writer().await?;
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
            // The writer ends when its queue closes; the file it may still write to is
            // unlinked here.
            self.batches = None;
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
