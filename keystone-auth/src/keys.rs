//! The token signing keys: one ES256 key signs, every key in the repository verifies, so that a
//! new key can be introduced (and the old one kept for verification until its tokens expire)
//! without logging anyone out. As Keystone's `jws` provider: private keys and public keys are
//! PEM files in a key repository directory.
//!
//! Layout: `<dir>/private.pem` (the signing key) and `<dir>/public/<kid>.pem` (verification
//! keys; the signing key's public half is one of them). The key id is the first 16 hex digits
//! of the SHA-256 of the public key's DER.

use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key repository {0}: {1}")]
    Io(String, std::io::Error),
    #[error("bad key {0}: {1}")]
    Bad(String, String),
}

pub struct KeyRing {
    pub signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

fn kid_of(public: &p256::PublicKey) -> Result<String, KeyError> {
    let der = public
        .to_public_key_der()
        .map_err(|e| KeyError::Bad("public".into(), e.to_string()))?;
    let digest = Sha256::digest(der.as_bytes());
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

impl KeyRing {
    /// Loads the repository at `dir`, creating it with a fresh key pair when it is empty.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let io = |e| KeyError::Io(dir.display().to_string(), e);
        let private_path = dir.join("private.pem");
        let public_dir = dir.join("public");
        std::fs::create_dir_all(&public_dir).map_err(io)?;
        if !private_path.exists() {
            Self::rotate(dir)?;
        }
        let pem = std::fs::read_to_string(&private_path).map_err(io)?;
        let secret = p256::SecretKey::from_pkcs8_pem(&pem)
            .map_err(|e| KeyError::Bad(private_path.display().to_string(), e.to_string()))?;
        let signing_kid = kid_of(&secret.public_key())?;
        let signing = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| KeyError::Bad(private_path.display().to_string(), e.to_string()))?;
        let mut verifying = HashMap::new();
        for entry in std::fs::read_dir(&public_dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let kid = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let pem = std::fs::read(&path).map_err(io)?;
            let key = DecodingKey::from_ec_pem(&pem)
                .map_err(|e| KeyError::Bad(path.display().to_string(), e.to_string()))?;
            verifying.insert(kid, key);
        }
        if !verifying.contains_key(&signing_kid) {
            return Err(KeyError::Bad(
                signing_kid,
                "the signing key has no public key in public/".into(),
            ));
        }
        Ok(Self {
            signing_kid,
            signing,
            verifying,
        })
    }

    /// Makes a new signing key; the old public keys stay and keep verifying.
    pub fn rotate(dir: &Path) -> Result<String, KeyError> {
        let io = |e| KeyError::Io(dir.display().to_string(), e);
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let kid = kid_of(&secret.public_key())?;
        let private = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Bad("new key".into(), e.to_string()))?;
        let public = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Bad("new key".into(), e.to_string()))?;
        std::fs::create_dir_all(dir.join("public")).map_err(io)?;
        std::fs::write(dir.join("public").join(format!("{kid}.pem")), public).map_err(io)?;
        let tmp = dir.join("private.pem.tmp");
        write_secret(&tmp, private.as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, dir.join("private.pem")).map_err(io)?;
        Ok(kid)
    }

    pub fn signing(&self) -> &EncodingKey {
        &self.signing
    }

    pub fn verifying(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }
}

/// Writes a file only its owner can read (a private key).
fn write_secret(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
