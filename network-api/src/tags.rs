//! Tags of networks, subnets and ports (Neutron's standard-attr-tag): list, check, replace,
//! add, remove, under `/v2.0/{collection}/{id}/tags`.

use crate::NetworkState;
use actix_web::{web, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::now_ms;
use nova_db::networks::{set_tags, Tagged};
use serde_json::{json, Value};

/// Neutron's limit on a tag's length.
pub(crate) const MAX_TAG_LEN: usize = 255;

pub(crate) fn check_tag(tag: &str) -> ApiResult<()> {
    if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN || tag.contains(',') {
        return Err(bad(format!(
            "Invalid input for operation: '{tag}' is not a valid tag (1 to {MAX_TAG_LEN} \
             characters, no comma)."
        )));
    }
    Ok(())
}

fn tagged(collection: &str) -> ApiResult<Tagged> {
    match collection {
        "networks" => Ok(Tagged::Network),
        "subnets" => Ok(Tagged::Subnet),
        "ports" => Ok(Tagged::Port),
        _ => Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        )),
    }
}

fn singular(what: Tagged) -> &'static str {
    match what {
        Tagged::Network => "network",
        Tagged::Subnet => "subnet",
        Tagged::Port => "port",
    }
}

/// The resource's tags, if the caller may see it (and change it, for `write`): Neutron's
/// 404 for one they may not see, 403 for one they may see but not change.
async fn tags_of(
    state: &NetworkState,
    ctx: &RequestContext,
    what: Tagged,
    id: &str,
    write: bool,
) -> ApiResult<Vec<String>> {
    let rule = format!("update_{}s_tags", singular(what));
    Ok(match what {
        Tagged::Network => if write {
            crate::networks::find_own(state, ctx, id, &rule).await?
        } else {
            crate::networks::find(state, ctx, id).await?
        }
        .tag_list(),
        Tagged::Subnet => crate::subnets::find_for_tags(state, ctx, id, write)
            .await?
            .tag_list(),
        Tagged::Port => if write {
            crate::ports::find_own(state, ctx, id, &rule).await?
        } else {
            crate::ports::find(state, ctx, id).await?
        }
        .tag_list(),
    })
}

async fn write_tags(
    state: &NetworkState,
    what: Tagged,
    id: &str,
    tags: &[String],
) -> ApiResult<()> {
    let text = serde_json::to_string(tags).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !set_tags(&state.db, what, id, &text, now_ms()).await? {
        return Err(ApiError::NotFound(format!(
            "{} {id} could not be found.",
            match what {
                Tagged::Network => "Network",
                Tagged::Subnet => "Subnet",
                Tagged::Port => "Port",
            }
        )));
    }
    Ok(())
}

fn tag_not_found(what: Tagged, tag: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Tag {tag} could not be found for {} {id}.",
        singular(what)
    ))
    .named("TagNotFound")
}

/// `GET /v2.0/{collection}/{id}/tags`.
pub(crate) async fn list_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (collection, id) = path.into_inner();
    let tags = tags_of(&state, &ctx, tagged(&collection)?, &id, false).await?;
    Ok(HttpResponse::Ok().json(json!({ "tags": tags })))
}

/// `GET /v2.0/{collection}/{id}/tags/{tag}`: 204 when the resource has it.
pub(crate) async fn show_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (collection, id, tag) = path.into_inner();
    let what = tagged(&collection)?;
    if tags_of(&state, &ctx, what, &id, false)
        .await?
        .contains(&tag)
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(tag_not_found(what, &tag, &id))
    }
}

/// `PUT /v2.0/{collection}/{id}/tags`: replaces them all.
pub(crate) async fn replace_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (collection, id) = path.into_inner();
    let what = tagged(&collection)?;
    tags_of(&state, &ctx, what, &id, true).await?;
    let body = body::json(&raw)?;
    let tags = body
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid input for operation: a list of tags is required."))?;
    let mut list: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.as_str().ok_or_else(|| {
            bad(format!(
                "Invalid input for operation: '{tag}' is not a string."
            ))
        })?;
        check_tag(tag)?;
        if !list.iter().any(|t| t == tag) {
            list.push(tag.to_owned());
        }
    }
    write_tags(&state, what, &id, &list).await?;
    Ok(HttpResponse::Ok().json(json!({ "tags": list })))
}

/// `PUT /v2.0/{collection}/{id}/tags/{tag}`: adds one (201).
pub(crate) async fn add_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (collection, id, tag) = path.into_inner();
    let what = tagged(&collection)?;
    check_tag(&tag)?;
    let mut tags = tags_of(&state, &ctx, what, &id, true).await?;
    if !tags.contains(&tag) {
        tags.push(tag);
        write_tags(&state, what, &id, &tags).await?;
    }
    Ok(HttpResponse::Created().finish())
}

/// `DELETE /v2.0/{collection}/{id}/tags`: removes them all.
pub(crate) async fn remove_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (collection, id) = path.into_inner();
    let what = tagged(&collection)?;
    tags_of(&state, &ctx, what, &id, true).await?;
    write_tags(&state, what, &id, &[]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v2.0/{collection}/{id}/tags/{tag}`.
pub(crate) async fn remove_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (collection, id, tag) = path.into_inner();
    let what = tagged(&collection)?;
    let mut tags = tags_of(&state, &ctx, what, &id, true).await?;
    let before = tags.len();
    tags.retain(|t| *t != tag);
    if tags.len() == before {
        return Err(tag_not_found(what, &tag, &id));
    }
    write_tags(&state, what, &id, &tags).await?;
    Ok(HttpResponse::NoContent().finish())
}
