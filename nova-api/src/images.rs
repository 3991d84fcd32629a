//! `/images` (until 2.35, as Nova) and `/images/{id}/metadata` (until 2.38): the compute API's
//! deprecated proxy of the image service — the images the caller may see, in Nova's image
//! view, deletable, with their extra properties as `metadata`. Reads and writes go to the
//! image service's own records and store.

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::links::{next_page, PublicUrl};
use api_toolkit::listing::{NextLink, Query};
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::iso8601_z;
use nova_db::images::{self as store, Image, Offers};
use nova_db::listing::{self, Arg, Cond, Dir, Listing};
use serde_json::{json, Map, Value};

/// Nova's `max_limit`.
const MAX_LIMIT: i64 = 1000;

/// Nova's `MAX_PROXY_API_SUPPORT_VERSION` (2.35) for images; 2.38 for their metadata.
fn gone_after(req: &HttpRequest, last_minor: u16) -> ApiResult<()> {
    if ApiVersion::of(req).at_least(last_minor + 1) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    Ok(())
}

fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    nova_db::Viewer {
        project: &ctx.project_id,
        admin: ctx.is_admin(),
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Image not found.".into())
}

/// The image if the caller may see it.
async fn find(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    store::get_visible(&state.db, id, viewer(ctx))
        .await?
        .ok_or_else(not_found)
}

/// The image's extra properties.
fn properties(i: &Image) -> Map<String, Value> {
    match serde_json::from_str::<Value>(&i.properties) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Nova's status and progress of a Glance status.
fn status(glance: &str) -> (&'static str, i64) {
    match glance {
        "active" => ("ACTIVE", 100),
        "queued" => ("SAVING", 25),
        "saving" => ("SAVING", 50),
        "deleted" | "pending_delete" => ("DELETED", 0),
        "killed" => ("ERROR", 0),
        _ => ("UNKNOWN", 0),
    }
}

fn links(url: &PublicUrl, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/v2.1/images/{id}", url.0)},
        {"rel": "bookmark", "href": format!("{}/images/{id}", url.0)},
        {"rel": "alternate", "type": "application/vnd.openstack.image",
         "href": format!("{}/image/images/{id}", url.0)},
    ])
}

fn summary(url: &PublicUrl, i: &Image) -> Value {
    json!({"id": i.id, "name": i.name, "links": links(url, &i.id)})
}

fn detail(url: &PublicUrl, i: &Image) -> Value {
    let (status, progress) = status(&i.status);
    let props = properties(i);
    let mut v = json!({
        "id": i.id,
        "name": i.name,
        "status": status,
        "progress": progress,
        "minRam": i.min_ram,
        "minDisk": i.min_disk,
        "metadata": properties(i),
        "created": iso8601_z(i.created_at),
        "updated": iso8601_z(i.updated_at),
        "OS-EXT-IMG-SIZE:size": i.size,
        "links": links(url, &i.id),
    });
    // As Nova's image view: a snapshot names its server, and the disk configuration shows
    // when the image says.
    if let Some(server) = props.get("instance_uuid").and_then(Value::as_str) {
        v["server"] = json!({
            "id": server,
            "links": [
                {"rel": "self", "href": format!("{}/v2.1/servers/{server}", url.0)},
                {"rel": "bookmark", "href": format!("{}/servers/{server}", url.0)},
            ],
        });
    }
    if let Some(auto) = props.get("auto_disk_config").and_then(Value::as_str) {
        let on = matches!(
            auto.to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        );
        v["OS-DCF:diskConfig"] = json!(if on { "AUTO" } else { "MANUAL" });
    }
    v
}

async fn listing(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
    path: &str,
    view: fn(&PublicUrl, &Image) -> Value,
) -> ApiResult<HttpResponse> {
    gone_after(req, 35)?;
    let q = Query::of(req);
    let visible = vec![
        store::live(),
        store::visible_to(viewer(ctx), Offers::Answered("accepted")),
    ];
    let mut conds = visible.clone();
    // What Glance's default list holds: no other project's community images, no hidden ones.
    conds.push(Cond::any(vec![
        Cond::sql("visibility <> 'community'", Vec::new()),
        Cond::eq("owner", Arg::Text(ctx.project_id.clone())),
    ]));
    conds.push(Cond::eq("os_hidden", Arg::Bool(false)));
    if let Some(name) = q.last("name") {
        conds.push(Cond::eq("name", Arg::Text(name.to_owned())));
    }
    // Nova passes the status to Glance lowercased.
    if let Some(s) = q.last("status") {
        conds.push(Cond::eq("status", Arg::Text(s.to_ascii_lowercase())));
    }
    // Nova's property filters: `server` (a snapshot's instance_uuid, the last segment of a
    // URL too), `type` (image_type) and any `property-<key>`.
    for (param, value) in q.pairs() {
        let key = match param {
            "server" => "instance_uuid",
            "type" => "image_type",
            p => match p.strip_prefix("property-") {
                Some(k) if !k.is_empty() => k,
                _ => continue,
            },
        };
        let value = if param == "server" {
            value.rsplit('/').next().unwrap_or(value)
        } else {
            value
        };
        conds.push(Cond::object_field_eq("properties", key, value));
    }
    for (param, column) in [("minRam", "min_ram"), ("minDisk", "min_disk")] {
        if let Some(v) = q.last(param) {
            let n = v
                .parse::<i64>()
                .map_err(|_| bad(format!("Invalid input for query parameters {param}.")))?;
            conds.push(Cond::at_least(column, Arg::Int(n)));
        }
    }
    if let Some(t) = q.last("changes-since") {
        let since = nova_core::time::parse_iso8601(t)
            .ok_or_else(|| bad(format!("Invalid changes-since value {t}")))?;
        conds.push(Cond::at_least("updated_at", Arg::Int(since)));
    }
    let limit = match q.last("limit") {
        None => MAX_LIMIT,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad("limit param must be an integer"))?
            .min(MAX_LIMIT),
    };
    let rule = NextLink::WhenFull;
    let created = nova_db::listing::CREATED_AT;
    let mut listing = Listing {
        table: &store::TABLE,
        conds,
        tags: Default::default(),
        order: vec![(created, Dir::Desc)],
        after: None,
        limit: Some(rule.ask(limit)),
    };
    if let Some(marker) = q.last("marker") {
        let order = listing.total_order();
        listing.after = Some(
            listing::marker(
                &state.db,
                &store::TABLE,
                Arg::Text(marker.to_owned()),
                visible,
                &order,
            )
            .await?
            .ok_or_else(|| bad(format!("marker [{marker}] not found")))?,
        );
    }
    let page = rule.page(store::page(&state.db, &listing).await?, limit);
    let url = PublicUrl::of(req);
    let mut body = json!({ "images": page.rows.iter().map(|i| view(&url, i)).collect::<Vec<_>>() });
    if let Some(last) = page.rows.last().filter(|_| page.next) {
        let href = next_page(req, path, &["marker"], &[("marker", &last.id)]);
        body["images_links"] = json!([{"rel": "next", "href": href}]);
    }
    Ok(HttpResponse::Ok().json(body))
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(&req, &ctx, &state, "/v2.1/images", summary).await
}

async fn list_detail(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    listing(&req, &ctx, &state, "/v2.1/images/detail", detail).await
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    gone_after(&req, 35)?;
    let image = find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "image": detail(&PublicUrl::of(&req), &image) })))
}

/// An image the caller may change: its project's (members and admins), or any for admins.
async fn find_own(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    let image = find(state, ctx, id).await?;
    if !(ctx.is_admin() || (image.owner == ctx.project_id && ctx.can_write())) {
        return Err(ApiError::Forbidden(format!(
            "You are not permitted to modify image {id}."
        )));
    }
    Ok(image)
}

async fn delete(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    gone_after(&req, 35)?;
    let image = find_own(&state, &ctx, &id).await?;
    if image.protected {
        // Glance's 403 for a protected image, as Nova words it.
        return Err(ApiError::Forbidden(
            "You are not allowed to delete the image.".into(),
        ));
    }
    image_api::delete_image(&state.db, state.image_data.as_ref(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Metadata items: strings, keys of 1 to 255 characters.
fn items(v: &Value, field: &str) -> ApiResult<Map<String, Value>> {
    let obj = v
        .get(field)
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(field, v, &format!("'{field}' is a required property")))?;
    for (k, val) in obj {
        if !(1..=255).contains(&k.chars().count()) {
            return Err(invalid(field, v, "a key is not 1 to 255 characters"));
        }
        if !val.is_string() {
            return Err(invalid(
                &format!("{field}/{k}"),
                val,
                "is not of type 'string'",
            ));
        }
    }
    Ok(obj.clone())
}

/// Writes the properties, within the `metadata_items` quota as Nova's
/// `check_img_metadata_properties_quota`.
async fn write_properties(
    state: &AppState,
    ctx: &RequestContext,
    mut image: Image,
    props: Map<String, Value>,
) -> ApiResult<()> {
    let limit = crate::quotas::limits_of(&state.db, &ctx.project_id).await?["metadata_items"];
    if limit >= 0 && props.len() as i64 > limit {
        return Err(ApiError::Forbidden("Image metadata limit exceeded".into()));
    }
    image.properties = Value::Object(props).to_string();
    store::update(&state.db, &image).await?;
    Ok(())
}

async fn metadata(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    gone_after(&req, 38)?;
    let image = find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "metadata": properties(&image) })))
}

/// `POST` merges, `PUT` replaces.
async fn set_metadata(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    gone_after(&req, 38)?;
    let given = items(&body::json(&raw)?, "metadata")?;
    let image = find_own(&state, &ctx, &id).await?;
    let mut props = if req.method() == actix_web::http::Method::PUT {
        Map::new()
    } else {
        properties(&image)
    };
    props.extend(given);
    write_properties(&state, &ctx, image, props.clone()).await?;
    Ok(HttpResponse::Ok().json(json!({ "metadata": props })))
}

async fn metadata_item(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    gone_after(&req, 38)?;
    let (id, key) = path.into_inner();
    let image = find(&state, &ctx, &id).await?;
    let value = properties(&image)
        .remove(&key)
        .ok_or_else(|| ApiError::NotFound("The resource could not be found.".into()))?;
    Ok(HttpResponse::Ok().json(json!({ "meta": { key: value } })))
}

async fn set_metadata_item(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    gone_after(&req, 38)?;
    let (id, key) = path.into_inner();
    let meta = items(&body::json(&raw)?, "meta")?;
    if meta.len() != 1 || !meta.contains_key(&key) {
        return Err(bad("Request body and URI mismatch"));
    }
    let image = find_own(&state, &ctx, &id).await?;
    let mut props = properties(&image);
    props.extend(meta.clone());
    write_properties(&state, &ctx, image, props).await?;
    Ok(HttpResponse::Ok().json(json!({ "meta": meta })))
}

async fn delete_metadata_item(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    gone_after(&req, 38)?;
    let (id, key) = path.into_inner();
    let image = find_own(&state, &ctx, &id).await?;
    let mut props = properties(&image);
    if props.remove(&key).is_none() {
        return Err(ApiError::NotFound("Invalid metadata key".into()));
    }
    write_properties(&state, &ctx, image, props).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/images").route(web::get().to(list)))
        .service(web::resource("/images/detail").route(web::get().to(list_detail)))
        .service(
            web::resource("/images/{id}")
                .route(web::get().to(show))
                .route(web::delete().to(delete)),
        )
        .service(
            web::resource("/images/{id}/metadata")
                .route(web::get().to(metadata))
                .route(web::post().to(set_metadata))
                .route(web::put().to(set_metadata)),
        )
        .service(
            web::resource("/images/{id}/metadata/{key}")
                .route(web::get().to(metadata_item))
                .route(web::put().to(set_metadata_item))
                .route(web::delete().to(delete_metadata_item)),
        );
}
