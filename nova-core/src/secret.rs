//! Secrets (a BMC's password) and their sealing at rest.
//!
//! A [`Secret`] prints as `******` through `Debug` and `Display`, so that a secret inside a
//! struct that is logged or formatted into an error does not leak; only [`Secret::expose`]
//! gives its text, at the one place that sends it (an HTTP `Authorization` header).
//!
//! [`SealingKey`] encrypts a secret for the database and the bus (AES-256-GCM, a fresh random
//! nonce per seal) with a key from the key repository: a reader of the database or of the
//! broker's store sees only [`Sealed`] text, and a sealed value moved to another column or
//! another node does not open (the node's id is the associated data).

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Text that must not be shown: `******` in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// How the API and the logs show a secret (Ironic's mask).
pub const MASK: &str = "******";

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret's text, for the one call that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

/// A sealed secret as stored and sent: `v1:` and the base64 of the nonce and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(pub String);

const SEALED_PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the sealed secret does not open with this key (another key, or altered)")]
    Open,
}

/// The key that seals and opens secrets.
pub struct SealingKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(******)")
    }
}

impl SealingKey {
    /// From 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        // A 32-byte key is what AES-256-GCM takes: this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key");
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// Reads the key at `path` (32 bytes); a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        if !path.exists() {
            return Err(SealError::Key {
                path: path.display().to_string(),
                reason: "missing (the API that seals the secrets creates it; this process only \
                         reads it)"
                    .into(),
            });
        }
        Self::load_or_create(path)
    }

    /// Reads the key at `path` (32 bytes), creating it (mode 0600, atomically) when missing.
    /// Every process that seals or opens secrets must read the same file.
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        let err = |reason: String| SealError::Key {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(|b: Vec<u8>| err(format!("{} bytes, not 32", b.len())))?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| err("no randomness".into()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
                write_private(&tmp, &bytes).map_err(|e| err(e.to_string()))?;
                // Two processes creating it at once: the first link wins and both read it.
                match std::fs::hard_link(&tmp, path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(err(e.to_string()));
                    }
                }
                let _ = std::fs::remove_file(&tmp);
                Self::load_or_create(path)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Seals `secret` for the record named `context` (a node's uuid).
    pub fn seal(&self, secret: &Secret, context: &str) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's random source does not fail on the platforms this runs on; a nonce
        // that is not random would be worse than stopping.
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut data = secret.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .expect("AES-GCM sealing of a short text");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Sealed(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens what [`Self::seal`] sealed for the same `context`.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Secret, SealError> {
        let body = sealed
            .0
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Open)?;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SealError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Open)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec())
            .map(Secret)
            .map_err(|_| SealError::Open)
    }
}

/// Signs and checks the URLs a BMC fetches an image from without a token: an HMAC-SHA256 (key
/// derived from the key repository's `baremetal.key`, for this purpose only) of the image and
/// the time the URL expires.
pub struct UrlSigner {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(******)")
    }
}

impl UrlSigner {
    /// The signer whose key derives from the file at `path`, created as
    /// [`SealingKey::load_or_create`] creates it when missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        SealingKey::load_or_create(path)?;
        Self::load(path)
    }

    /// The signer whose key derives from the file at `path`, which must exist.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        // Checks the file (its length) as the sealing key does; its bytes are read again here.
        SealingKey::load(path)?;
        let bytes = std::fs::read(path).map_err(|e| SealError::Key {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes);
        let derived = ring::hmac::sign(&root, b"nova image url for a BMC, v1");
        Ok(Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    fn message(image: &str, expires: i64) -> String {
        format!("{image}\n{expires}")
    }

    /// The signature (URL-safe base64) of `image` until `expires` (ms since the epoch).
    pub fn sign(&self, image: &str, expires: i64) -> String {
        let tag = ring::hmac::sign(&self.key, Self::message(image, expires).as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `signature` is this signer's for `image` until `expires`, and `now` is before
    /// `expires` (constant time in the signature).
    pub fn verify(&self, image: &str, expires: i64, signature: &str, now: i64) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        now < expires
            && ring::hmac::verify(&self.key, Self::message(image, expires).as_bytes(), &tag).is_ok()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_masked_and_seal_to_text_that_opens_only_in_context() {
        let s = Secret::new("hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "****** ****** Some(******)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/baremetal.key");
        let key = SealingKey::load_or_create(&path).unwrap();
        let sealed = key.seal(&s, "node-1");
        assert!(!sealed.0.contains("hunter2"));
        assert_ne!(sealed, key.seal(&s, "node-1"), "a fresh nonce each time");
        // The same file gives the same key.
        let again = SealingKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, "node-1").unwrap(), s);
        assert!(again.open(&sealed, "node-2").is_err());
        let mut altered = sealed.0.clone();
        altered.push('A');
        assert!(again.open(&Sealed(altered), "node-1").is_err());
        let other = SealingKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open(&sealed, "node-1").is_err());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let signer = UrlSigner::load_or_create(&path).unwrap();
        let sig = signer.sign("img-1", 2_000);
        assert!(signer.verify("img-1", 2_000, &sig, 1_999));
        assert!(!signer.verify("img-1", 2_000, &sig, 2_000), "expired");
        assert!(!signer.verify("img-2", 2_000, &sig, 1_000), "another image");
        assert!(
            !signer.verify("img-1", 3_000, &sig, 1_000),
            "another expiry"
        );
        let other = UrlSigner::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(!other.verify("img-1", 2_000, &sig, 1_000), "another key");
    }
}
