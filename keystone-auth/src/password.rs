//! Password hashing with argon2 (the crate's defaults: Argon2id with a random salt).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// True when `password` matches the stored PHC string.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Verifies against a fixed hash when the user does not exist, so that a wrong user name takes
/// as long as a wrong password and the answer does not tell which it was.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("no-such-user").unwrap_or_default());
    let _ = verify(password, stored);
}

/// A random password for bootstrap accounts (shown once).
pub fn generate() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_and_differ() {
        let a = super::hash("secret").unwrap();
        let b = super::hash("secret").unwrap();
        assert_ne!(a, b, "salted");
        assert!(super::verify("secret", &a));
        assert!(!super::verify("Secret", &a));
        assert!(!super::verify("secret", "garbage"));
    }
}
