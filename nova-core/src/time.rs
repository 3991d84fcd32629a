//! Timestamps. The database stores them as milliseconds since the Unix epoch in both backends,
//! so that comparisons (heartbeat age, build timeout) behave the same on PostgreSQL and SQLite.

use chrono::{DateTime, TimeZone, Utc};

pub type Millis = i64;

pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

pub fn to_datetime(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Nova's API format for most timestamps: `2012-12-05T00:00:00Z` (seconds, with Z).
pub fn iso8601_z(ms: Millis) -> String {
    to_datetime(ms).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Nova's format for `OS-SRV-USG:launched_at` and `terminated_at`: microseconds, no zone
/// (`2013-09-23T13:53:12.774549`), because Nova prints the naive datetime there.
pub fn iso8601_naive_micros(ms: Millis) -> String {
    to_datetime(ms).format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// An ISO 8601 time as Nova's API accepts it (`changes-since`): with an offset or `Z`, or
/// without one (then UTC), to the second or finer.
pub fn parse_iso8601(s: &str) -> Option<Millis> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc().timestamp_millis())
}
