//! Uploads that died with their process. An image is `saving` while its data streams in; if
//! the API process is killed mid-upload (or between storing the data and recording it), no
//! handler is left to put it back, and it would stay `saving` for ever with a partial file
//! beside it. A live upload says it is alive every [`UploadClock::touch_every`] (its row's
//! `updated_at`); one silent for [`UploadClock::stale_after`] is dead — a live one cannot be
//! that silent, the request-body timeout cuts a client that stalls — and is recovered: its
//! data and partial data go, and the image is `queued` again, to be uploaded anew (what a
//! failed upload leaves, as Glance does).
//!
//! Every API process serving images recovers at start and then periodically, so replicas
//! recover each other's dead uploads too.

use crate::store::ImageStore;
use nova_db::{images, Db};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct UploadClock {
    pub touch_every: Duration,
    pub stale_after: Duration,
}

impl UploadClock {
    /// The clock for a request-body timeout of `body_timeout`: half of it between touches,
    /// and silence of twice it plus a touch interval means dead.
    pub fn for_body_timeout(body_timeout: Duration) -> Self {
        let touch_every = (body_timeout / 2).max(Duration::from_secs(1));
        Self {
            touch_every,
            stale_after: body_timeout * 2 + touch_every,
        }
    }
}

/// Recovers the dead uploads; returns how many images went back to `queued`.
pub async fn recover(
    db: &Db,
    store: &dyn ImageStore,
    stale_after: Duration,
) -> Result<usize, nova_db::DbError> {
    let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
    let before = nova_core::time::now_ms().saturating_sub(stale_ms);
    let mut recovered = 0;
    for id in images::stale_uploads(db, before).await? {
        // The data first: once the image is `queued`, a new upload may begin and store data
        // that must not be removed.
        if let Err(e) = store.delete(&id).await {
            tracing::warn!(image = %id, error = %e, "dead upload's data not removed; next pass");
            continue;
        }
        if images::requeue_stale_upload(db, &id, before).await? {
            tracing::warn!(image = %id, "an upload died with its process; the image is queued again");
            recovered += 1;
        }
    }
    Ok(recovered)
}

/// Recovers at once, then every half `stale_after`, for as long as the runtime runs.
pub fn spawn_recovery(db: Db, store: Arc<dyn ImageStore>, clock: UploadClock) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime: dead uploads are not recovered");
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(clock.stale_after / 2);
        loop {
            tick.tick().await;
            if let Err(e) = recover(&db, store.as_ref(), clock.stale_after).await {
                tracing::warn!(error = %e, "dead uploads not recovered; next pass");
            }
        }
    });
}
