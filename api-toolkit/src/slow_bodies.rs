//! Request bodies read against the clock, so that a client that trickles its body (one byte
//! every few seconds) cannot hold a connection and a worker's attention for ever.
//!
//! - A body the API reads whole (every JSON body, at most [`crate::body::MAX_BODY`]) must
//!   arrive within `timeout`.
//! - A streamed upload (image data, any size) may take as long as it needs, but once `timeout`
//!   has passed it must keep up at least `min_rate` bytes per second on average, and never
//!   stall for `timeout`.
//!
//! A body cut off this way ends the request with an error (the framework's 400) and the
//! connection is closed, its body unread.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// The limits (app data, from `api.body_timeout_s` and `api.upload_min_rate`).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub timeout: Duration,
    pub min_rate: u64,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            min_rate: 1024,
        }
    }
}

/// Whether the request streams its body (an image upload), rather than having it read whole.
fn streamed(req: &ServiceRequest) -> bool {
    req.method() == actix_web::http::Method::PUT
        && req.path().starts_with("/image/")
        && req.path().ends_with("/file")
}

fn timed_out(why: &str) -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        why.to_owned(),
    ))
}

struct Reading {
    payload: Payload,
    started: Instant,
    received: u64,
    done: bool,
}

/// The middleware: wraps the request's payload in the clock's checks.
pub async fn limit_body_reads(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limits = req
        .app_data::<actix_web::web::Data<BodyLimits>>()
        .map(|d| *d.get_ref())
        .unwrap_or_default();
    let whole = !streamed(&req);
    let reading = Reading {
        payload: req.take_payload(),
        started: Instant::now(),
        received: 0,
        done: false,
    };
    let stream = futures::stream::unfold(reading, move |mut r| async move {
        if r.done {
            return None;
        }
        let now = Instant::now();
        let until = if whole {
            r.started + limits.timeout
        } else {
            now + limits.timeout
        };
        match tokio::time::timeout_at(until, r.payload.next()).await {
            Ok(Some(Ok(chunk))) => {
                r.received += chunk.len() as u64;
                let elapsed = r.started.elapsed();
                let slow = !whole
                    && elapsed > limits.timeout
                    && r.received < limits.min_rate.saturating_mul(elapsed.as_secs());
                if slow {
                    r.done = true;
                    return Some((Err(timed_out("the request body arrives too slowly")), r));
                }
                Some((Ok(chunk), r))
            }
            Ok(Some(Err(e))) => {
                r.done = true;
                Some((Err(e), r))
            }
            Ok(None) => None,
            Err(_) => {
                r.done = true;
                Some((Err(timed_out("the request body did not arrive in time")), r))
            }
        }
    });
    req.set_payload(Payload::Stream {
        payload: Box::pin(stream),
    });
    next.call(req).await
}
