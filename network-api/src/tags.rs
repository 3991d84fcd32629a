//! Network tags (Neutron's standard-attr-tag): list, check, replace, add, remove.

use crate::networks::{find, find_own, not_found};
use crate::NetworkState;
use actix_web::{web, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::now_ms;
use nova_db::networks::{self as store, Network};
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

pub(crate) async fn write_tags(
    state: &NetworkState,
    mut network: Network,
    tags: &[String],
) -> ApiResult<()> {
    network.tags = serde_json::to_string(tags).map_err(|e| ApiError::Internal(e.to_string()))?;
    network.updated_at = now_ms();
    if !store::update(&state.db, &network).await? {
        return Err(not_found(&network.id));
    }
    Ok(())
}

/// `GET /v2.0/networks/{id}/tags`.
pub(crate) async fn list_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let network = find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"tags": network.tag_list()})))
}

/// `GET /v2.0/networks/{id}/tags/{tag}`: 204 when the network has it.
pub(crate) async fn show_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    let network = find(&state, &ctx, &id).await?;
    if network.tag_list().contains(&tag) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(tag_not_found(&tag, &id))
    }
}

pub(crate) fn tag_not_found(tag: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("Tag {tag} could not be found for network {id}."))
        .named("TagNotFound")
}

/// `PUT /v2.0/networks/{id}/tags`: replaces them all.
pub(crate) async fn replace_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let network = find_own(&state, &ctx, &id, "update_networks_tags").await?;
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
    write_tags(&state, network, &list).await?;
    Ok(HttpResponse::Ok().json(json!({ "tags": list })))
}

/// `PUT /v2.0/networks/{id}/tags/{tag}`: adds one (201).
pub(crate) async fn add_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    check_tag(&tag)?;
    let network = find_own(&state, &ctx, &id, "update_networks_tags").await?;
    let mut tags = network.tag_list();
    if !tags.contains(&tag) {
        tags.push(tag);
        write_tags(&state, network, &tags).await?;
    }
    Ok(HttpResponse::Created().finish())
}

/// `DELETE /v2.0/networks/{id}/tags`: removes them all.
pub(crate) async fn remove_tags(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let network = find_own(&state, &ctx, &id, "delete_networks_tags").await?;
    write_tags(&state, network, &[]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v2.0/networks/{id}/tags/{tag}`.
pub(crate) async fn remove_tag(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, tag) = path.into_inner();
    let network = find_own(&state, &ctx, &id, "delete_networks_tags").await?;
    let mut tags = network.tag_list();
    let before = tags.len();
    tags.retain(|t| *t != tag);
    if tags.len() == before {
        return Err(tag_not_found(&tag, &id));
    }
    write_tags(&state, network, &tags).await?;
    Ok(HttpResponse::NoContent().finish())
}
