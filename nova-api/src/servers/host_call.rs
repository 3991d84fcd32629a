//! Questions the API asks a server's compute host over the bus and waits for (request/reply),
//! as Nova's RPC calls to nova-compute: console output, diagnostics.

use crate::AppState;
use api_toolkit::{ApiError, ApiResult, RequestContext};
use nova_core::model::Instance;
use nova_core::rpc::{CallReply, ComputeCommand, Envelope};
use std::time::Duration;

/// How long the API waits for a host's answer: Nova's `rpc_response_timeout` default. (15 s
/// was too short for an interface hot-plug on a busy host, whose libvirtd rebuilds every
/// running guest's filters when a NIC's filter is defined: a 503 where Nova waits.)
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the server's host; `method` names the operation in Nova's conflict messages. The
/// answers every call shares (not found, not supported, failed) become Nova's errors here;
/// the operation's own answer is returned.
pub(super) async fn ask(
    state: &AppState,
    ctx: &RequestContext,
    instance: &Instance,
    method: &str,
    command: ComputeCommand,
) -> ApiResult<CallReply> {
    let id = instance.uuid;
    // Nova's check_instance_host: no host yet, nothing to ask.
    let host = instance
        .host
        .as_deref()
        .ok_or_else(|| ApiError::Conflict(format!("Instance {id} is not ready")))?;
    let call = Envelope::new(Some(ctx.request_id.clone()), command);
    let queue = state.queues.compute(host);
    let answer = match state.bus.call(&queue, call.encode(), CALL_TIMEOUT).await {
        Ok(bytes) => bytes,
        Err(nova_core::bus::BusError::Timeout(_)) => {
            return Err(ApiError::Unavailable(format!(
                "The compute host {host} did not answer in time; try again later."
            )))
        }
        Err(e) => return Err(e.into()),
    };
    match serde_json::from_slice::<CallReply>(&answer) {
        Ok(CallReply::NotFound) => Err(ApiError::NotFound(format!(
            "Instance {id} could not be found on its host."
        ))),
        Ok(CallReply::NotSupported { message }) => Err(ApiError::NotImplemented(message)),
        Ok(CallReply::Failed { message }) => Err(ApiError::Internal(format!(
            "{method} of {id} on {host}: {message}"
        ))),
        Ok(reply) => Ok(reply),
        Err(e) => Err(ApiError::Internal(format!(
            "unreadable reply from {host}: {e}"
        ))),
    }
}
