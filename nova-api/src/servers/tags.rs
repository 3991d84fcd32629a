//! `/servers/{id}/tags` (2.26): a server's tags as a resource of its own (Nova's
//! server_tags.py). At most 50 tags of 1–60 characters, without `/` or `,`; writes need a
//! member and a server in a state Nova allows.

use super::{not_found, visible};
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::bad;
use api_toolkit::body;
use api_toolkit::body::invalid;
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::NOVA;
use api_toolkit::RequestContext;
use api_toolkit::{ApiError, ApiResult};
use nova_core::ids::InstanceUuid;
use nova_core::model::{Instance, VmState};
use nova_db::instances;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Value};

/// Nova's `MAX_INSTANCE_TAGS`.
pub const MAX_TAGS: usize = 50;

/// The vm states Nova accepts tag changes in.
const EDITABLE_IN: &[VmState] = &[
    VmState::Active,
    VmState::Paused,
    VmState::Suspended,
    VmState::Stopped,
    VmState::Shelved,
    VmState::ShelvedOffloaded,
];

/// What a path segment cannot hold as is (RFC 3986's reserved and unsafe characters).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Nova's `tag` parameter type: a string of 1–60 characters without `/` or `,`.
pub fn parse_tag(field: &str, v: &Value) -> ApiResult<String> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(field, v, &format!("{v} is not of type 'string'")))?;
    let len = s.chars().count();
    if len == 0 {
        return Err(invalid(field, v, &format!("{v} is too short")));
    }
    if len > 60 {
        return Err(invalid(field, v, &format!("{v} is too long")));
    }
    if s.contains(['/', ',']) {
        return Err(invalid(field, v, &format!("{v} does not match '^[^,/]*$'")));
    }
    Ok(s.to_owned())
}

/// A list of tags, duplicates dropped (Nova stores a set), at most [`MAX_TAGS`].
pub fn parse_tags(v: &Value) -> ApiResult<Vec<String>> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid("tags", v, &format!("{v} is not of type 'array'")))?;
    if list.len() > MAX_TAGS {
        return Err(invalid("tags", v, "is too long"));
    }
    let mut tags: Vec<String> = Vec::with_capacity(list.len());
    for t in list {
        let tag = parse_tag("tags", t)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

fn require_version(req: &HttpRequest) -> ApiResult<()> {
    if ApiVersion::of(req).at_least(26) {
        Ok(())
    } else {
        // Nova: the route does not exist before 2.26.
        Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ))
    }
}

/// Applies `change` to the server's tags if its state allows; the new tags are returned.
async fn edit<T>(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    action: &str,
    change: impl FnOnce(&mut Vec<String>) -> ApiResult<T>,
) -> ApiResult<(Vec<String>, T)> {
    let uuid: InstanceUuid = id.parse().map_err(|_| not_found(id))?;
    let project = super::actions::scope(ctx);
    let mut out = None;
    let edited = instances::modify(
        &state.db,
        uuid,
        project,
        instances::Record::No,
        |i: &mut Instance| {
            if !EDITABLE_IN.contains(&i.vm_state) {
                return Err(ApiError::Conflict(format!(
                    "Cannot '{action}' instance {} while it is in vm_state {}",
                    i.uuid, i.vm_state
                )));
            }
            out = Some(change(&mut i.tags)?);
            Ok(())
        },
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    let out = out.ok_or_else(|| ApiError::Internal("tag edit did not run".into()))?;
    Ok((edited.tags, out))
}

fn tag_not_found(id: &str, tag: &str) -> ApiError {
    ApiError::NotFound(format!("Instance {id} has no tag '{tag}'"))
}

async fn index(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_version(&req)?;
    let instance = visible(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "tags": instance.tags })))
}

/// `PUT /tags` with `{"tags": [...]}`: replaces every tag (200).
async fn replace(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_version(&req)?;
    NOVA.require_write(&ctx, "os_compute_api:os-server-tags:update_all")?;
    let body = body::json(&raw)?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    body::only(obj, &["tags"])?;
    let given = parse_tags(
        obj.get("tags")
            .ok_or_else(|| invalid("tags", &body, "'tags' is a required property"))?,
    )?;
    let (tags, ()) = edit(&state, &ctx, &id, "update tags", |t| {
        *t = given;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "tags": tags })))
}

async fn delete_all(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_version(&req)?;
    NOVA.require_write(&ctx, "os_compute_api:os-server-tags:delete_all")?;
    edit(&state, &ctx, &id, "delete tags", |t| {
        t.clear();
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /tags/{tag}`: 204 when the server has it, else 404.
async fn check(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_version(&req)?;
    let (id, tag) = path.into_inner();
    let instance = visible(&state, &ctx, &id).await?;
    if instance.tags.contains(&tag) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(tag_not_found(&id, &tag))
    }
}

/// `PUT /tags/{tag}`: 201 when added, 204 when the server had it; a `Location` either way.
async fn add(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_version(&req)?;
    NOVA.require_write(&ctx, "os_compute_api:os-server-tags:update")?;
    let (id, tag) = path.into_inner();
    let tag = parse_tag("tag", &Value::String(tag))?;
    // As Nova, both answers carry the tag's location; the tag is a path segment there (any
    // character but `/` and `,` is a valid tag).
    let location = format!(
        "{}/v2.1/servers/{id}/tags/{}",
        PublicUrl::of(&req).0,
        utf8_percent_encode(&tag, PATH_SEGMENT)
    );
    let (_, added) = edit(&state, &ctx, &id, "update tag", |t| {
        if t.contains(&tag) {
            return Ok(false);
        }
        if t.len() >= MAX_TAGS {
            return Err(bad(format!(
                "The number of tags exceeded the per-server limit {MAX_TAGS}"
            )));
        }
        t.push(tag.clone());
        Ok(true)
    })
    .await?;
    let mut answer = if added {
        HttpResponse::Created()
    } else {
        HttpResponse::NoContent()
    };
    Ok(answer.insert_header(("Location", location)).finish())
}

async fn remove(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    require_version(&req)?;
    NOVA.require_write(&ctx, "os_compute_api:os-server-tags:delete")?;
    let (id, tag) = path.into_inner();
    edit(&state, &ctx, &id, "delete tag", |t| {
        let before = t.len();
        t.retain(|x| *x != tag);
        if t.len() == before {
            Err(tag_not_found(&id, &tag))
        } else {
            Ok(())
        }
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/servers/{id}/tags")
            .route(web::get().to(index))
            .route(web::put().to(replace))
            .route(web::delete().to(delete_all)),
    )
    .service(
        web::resource("/servers/{id}/tags/{tag}")
            .route(web::get().to(check))
            .route(web::put().to(add))
            .route(web::delete().to(remove)),
    );
}
