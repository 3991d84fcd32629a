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

/// Hashing and checking off the request-serving threads, at most [`pool_size`] at a time: an
/// argon2 check costs tens of milliseconds of CPU, and a flood of wrong passwords must not
/// stall every other API call (it waits here instead, behind the semaphore).
fn pool() -> &'static tokio::sync::Semaphore {
    static POOL: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    POOL.get_or_init(|| tokio::sync::Semaphore::new(pool_size()))
}

/// One core fewer than the machine has (at least one), so that password checks never take
/// all of it.
pub fn pool_size() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _permit = pool().acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// Checks `password` against `stored` in the pool. With no stored hash (an unknown, locked or
/// password-less user) a fixed hash is checked instead and the answer is false: every refusal
/// costs what a wrong password costs, so the time to answer tells nothing.
pub async fn check(password: &str, stored: Option<String>) -> bool {
    let password = password.to_owned();
    off_thread(move || match stored {
        Some(h) => verify(&password, &h),
        None => {
            verify_nothing(&password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// [`hash`], in the pool.
pub async fn hash_off_thread(password: &str) -> Result<String, String> {
    let password = password.to_owned();
    off_thread(move || hash(&password))
        .await
        .unwrap_or_else(|| Err("the password pool is closed".into()))
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
