//! Neutron's bulk create: `POST /v2.0/networks` (`subnets`, `ports`) with the plural key and a
//! list makes each as its own create would, with the same checks and answers, and all or
//! none: when one is refused, those made before it are deleted again and the refusal is the
//! answer (Neutron's native bulk is one transaction; here the undo is the deletes).

use crate::NetworkState;
use actix_web::{web, HttpResponse};
use api_toolkit::{bad, body, ApiError, ApiResult, RequestContext};
use serde_json::{json, Value};
use std::future::Future;

/// One kind of resource that can be made in bulk: its keys and its create and delete.
pub(crate) struct Kind<C, D> {
    pub singular: &'static str,
    pub plural: &'static str,
    pub create: C,
    pub delete: D,
}

/// A create of one resource or, with the plural key, of many.
pub(crate) async fn create<C, CF, D, DF>(
    kind: Kind<C, D>,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse>
where
    C: Fn(RequestContext, web::Data<NetworkState>, web::Bytes) -> CF,
    CF: Future<Output = ApiResult<HttpResponse>>,
    D: Fn(RequestContext, web::Data<NetworkState>, web::Path<String>) -> DF,
    DF: Future<Output = ApiResult<HttpResponse>>,
{
    let parsed = body::json(&raw)?;
    let Some(items) = parsed.get(kind.plural) else {
        return (kind.create)(ctx, state, raw).await;
    };
    let items = items
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| bad("Resource body required"))?;
    let mut made: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        let one = json!({ kind.singular: item });
        let done = async {
            let response =
                (kind.create)(ctx.clone(), state.clone(), one.to_string().into()).await?;
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .map_err(|_| ApiError::Internal("a bulk create's answer unread".into()))?;
            let view: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Internal(format!("a bulk create's answer: {e}")))?;
            Ok::<_, ApiError>(view[kind.singular].clone())
        }
        .await;
        match done {
            Ok(view) => made.push(view),
            Err(e) => {
                // All or none: what this request made goes again, newest first. What cannot
                // go (another request took it meanwhile) makes the answer a 500 naming it:
                // the caller must not believe nothing was made.
                let mut left = Vec::new();
                for view in made.iter().rev() {
                    let id = view["id"].as_str().unwrap_or_default().to_owned();
                    let undone = (kind.delete)(ctx.clone(), state.clone(), id.clone().into()).await;
                    if let Err(undo) = undone {
                        tracing::warn!(%id, error = %undo, "a bulk create's {} not deleted again", kind.singular);
                        left.push(id);
                    }
                }
                if !left.is_empty() {
                    return Err(ApiError::Internal(format!(
                        "A bulk create of {} failed ({e}), and these it made could not be \
                         deleted again: {}",
                        kind.plural,
                        left.join(", ")
                    )));
                }
                return Err(e);
            }
        }
    }
    Ok(HttpResponse::Created().json(json!({ kind.plural: made })))
}
