//! An S3-compatible object store for tests of the image store's S3 backend: moto's server mode
//! (`moto_server`, from PyPI, installed into `.venv` by `scripts/test.sh`), started on a free
//! loopback port for one test and stopped with it. Objects are read back with plain HTTP:
//! moto does not check signatures.

use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn moto_server() -> anyhow::Result<PathBuf> {
    let path = std::env::var("NOVA_TEST_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
        });
    anyhow::ensure!(
        path.exists(),
        "{} missing: scripts/test.sh installs moto[server]",
        path.display()
    );
    Ok(path)
}

/// A running object store.
pub struct ObjectStore {
    pub url: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

impl ObjectStore {
    /// Starts `moto_server` on a free loopback port and waits until it says where.
    pub async fn start() -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(moto_server()?)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                // Werkzeug's " * Running on http://127.0.0.1:PORT".
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let url: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    return Ok(url);
                }
            }
            anyhow::bail!("moto_server exited before it listened")
        })
        .await??;
        // The rest of its log is not read; keep the pipe drained so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            url,
            http: reqwest::Client::new(),
            _child: child,
        })
    }

    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}/{bucket}", self.url))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "bucket {bucket}: {}", r.status());
        Ok(())
    }

    /// The image store's settings for `bucket` here.
    pub fn settings(&self, bucket: &str) -> image_api::store::StoreSettings {
        image_api::store::StoreSettings {
            backend: image_api::store::Backend::S3,
            s3: image_api::store::S3Settings {
                endpoint: Some(self.url.clone()),
                bucket: bucket.into(),
                region: "us-east-1".into(),
                access_key_id: "test".into(),
                secret_access_key: "test".into(),
                prefix: "images/".into(),
            },
            ..Default::default()
        }
    }

    /// The object's bytes, `None` when there is none.
    pub async fn object(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let r = self
            .http
            .get(format!("{}/{bucket}/{key}", self.url))
            .send()
            .await?;
        if r.status() == 404 {
            return Ok(None);
        }
        anyhow::ensure!(r.status().is_success(), "{key}: {}", r.status());
        Ok(Some(r.bytes().await?.to_vec()))
    }

    /// Multipart uploads begun and neither completed nor aborted.
    pub async fn open_uploads(&self, bucket: &str) -> anyhow::Result<usize> {
        let xml = self
            .http
            .get(format!("{}/{bucket}?uploads", self.url))
            .send()
            .await?
            .text()
            .await?;
        Ok(xml.matches("<Upload>").count())
    }
}
