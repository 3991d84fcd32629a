//! Image records: create, list, show, JSON-patch update and delete, with Glance's visibility
//! rules and checks.

use crate::store::ImageStore;
use crate::ImageState;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::listing::{NextLink, Query};
use api_toolkit::policy::GLANCE;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::{iso8601_z, now_ms};
use nova_db::images::{self as store, Image, Offers};
use nova_db::listing::{self, Arg, Column, Cond, Dir, Kind, Listing, TagFilter};
use nova_db::Db;
use serde_json::{json, Map, Value};

pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub(crate) const VISIBILITIES: &[&str] = &["public", "private", "community", "shared"];
/// Set by the service, never by a client (Glance answers 403 for them).
pub(crate) const READ_ONLY: &[&str] = &[
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
];
pub(crate) const PATCH_MEDIA_TYPE: &str = "application/openstack-images-v2.1-json-patch";
/// The older JSON-patch draft Glance also takes.
pub(crate) const PATCH_MEDIA_TYPE_V20: &str = "application/openstack-images-v2.0-json-patch";

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("No image found with ID {id}"))
}

/// The image if the caller may see it (Glance's visibility rules, [`store::get_visible`]).
pub(crate) async fn visible_image(
    state: &ImageState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Option<Image>> {
    Ok(store::get_visible(&state.db, id, viewer(ctx)).await?)
}

pub(crate) fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    nova_db::Viewer {
        project: &ctx.project_id,
        admin: ctx.is_admin(),
    }
}

pub(crate) fn may_modify(ctx: &RequestContext, i: &Image) -> bool {
    ctx.is_admin() || (i.owner == ctx.project_id && ctx.can_write())
}

/// An image the caller may see, or 404.
pub(crate) async fn find(state: &ImageState, ctx: &RequestContext, id: &str) -> ApiResult<Image> {
    visible_image(state, ctx, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// An image the caller may change: 404 if invisible, 403 if visible but not theirs.
pub(crate) async fn find_own(
    state: &ImageState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Image> {
    let image = find(state, ctx, id).await?;
    if !may_modify(ctx, &image) {
        return Err(ApiError::Forbidden(format!(
            "You are not permitted to modify image {id}."
        )));
    }
    Ok(image)
}

pub fn view(i: &Image) -> Value {
    let mut v = json!({
        "id": i.id, "name": i.name, "status": i.status, "visibility": i.visibility,
        "protected": i.protected, "os_hidden": i.os_hidden, "checksum": i.checksum,
        "os_hash_algo": i.os_hash_algo, "os_hash_value": i.os_hash_value, "size": i.size,
        "virtual_size": null, "min_disk": i.min_disk, "min_ram": i.min_ram,
        "container_format": i.container_format, "disk_format": i.disk_format, "owner": i.owner,
        "tags": i.tags, "created_at": iso8601_z(i.created_at), "updated_at": iso8601_z(i.updated_at),
        "self": format!("/v2/images/{}", i.id), "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let (Some(obj), Ok(Value::Object(props))) = (
        v.as_object_mut(),
        serde_json::from_str::<Value>(&i.properties),
    ) {
        for (k, val) in props {
            obj.entry(k).or_insert(val);
        }
    }
    v
}

/// Applies one property to an image, with Glance's checks. `queued` allows changing the formats.
pub(crate) fn set_field(
    i: &mut Image,
    ctx: &RequestContext,
    key: &str,
    value: &Value,
    props: &mut Map<String, Value>,
) -> ApiResult<()> {
    if READ_ONLY.contains(&key) {
        return Err(ApiError::Forbidden(format!(
            "Attribute '{key}' is read-only."
        )));
    }
    let string = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("Invalid value for '{key}': {v} is not a string")))
    };
    let int = |v: &Value| {
        v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            bad(format!(
                "Invalid value for '{key}': {v} is not a non-negative integer"
            ))
        })
    };
    let boolean = |v: &Value| {
        v.as_bool()
            .ok_or_else(|| bad(format!("Invalid value for '{key}': {v} is not a boolean")))
    };
    match key {
        "id" => return Err(ApiError::Forbidden("Attribute 'id' is read-only.".into())),
        "name" => {
            i.name = if value.is_null() {
                None
            } else {
                let name = string(value)?;
                if name.chars().count() > 255 {
                    return Err(bad(format!(
                        "Provided object does not match schema 'image': '{name}' is too long \
                         (the name is at most 255 characters)"
                    )));
                }
                Some(name)
            }
        }
        "visibility" => {
            let v = string(value)?;
            if !VISIBILITIES.contains(&v.as_str()) {
                return Err(bad(format!("Invalid visibility value: {v}")));
            }
            if v == "public" && !ctx.is_admin() {
                return Err(ApiError::Forbidden(
                    "You are not authorized to publicize images.".into(),
                ));
            }
            i.visibility = v;
        }
        // As Glance: an admin gives an image to any project; others only to their own.
        "owner" => {
            let owner = string(value)?;
            if owner.is_empty() || owner.chars().count() > 255 {
                return Err(bad(format!("Invalid value for 'owner': {value}")));
            }
            if !ctx.is_admin() && owner != ctx.project_id {
                return Err(ApiError::Forbidden(format!(
                    "You are not permitted to create images owned by '{owner}'."
                )));
            }
            i.owner = owner;
        }
        "protected" => i.protected = boolean(value)?,
        "os_hidden" => i.os_hidden = boolean(value)?,
        "min_disk" => i.min_disk = int(value)?,
        "min_ram" => i.min_ram = int(value)?,
        "container_format" | "disk_format" => {
            if i.status != "queued" {
                return Err(ApiError::Forbidden(format!(
                    "Attribute {key} can be only replaced for a queued image."
                )));
            }
            let v = string(value)?;
            let allowed = if key == "container_format" {
                CONTAINER_FORMATS
            } else {
                DISK_FORMATS
            };
            if !allowed.contains(&v.as_str()) {
                return Err(bad(format!("Invalid {key} '{v}' for image.")));
            }
            if key == "container_format" {
                i.container_format = Some(v)
            } else {
                i.disk_format = Some(v)
            }
        }
        "tags" => {
            let tags = value.as_array().ok_or_else(|| bad("tags must be a list"))?;
            i.tags = tags.iter().map(&string).collect::<ApiResult<_>>()?;
        }
        other => {
            // Extra properties are strings (Glance's schema for additional properties).
            props.insert(other.to_owned(), json!(string(value)?));
        }
    }
    Ok(())
}

/// An image id as Glance's schema takes it, in its one spelling: a UUID, hyphenated, in lower
/// case, so that one UUID never names two images. Braces, `urn:uuid:`, the simple form and
/// upper case are refused (400) rather than rewritten: a rewritten id would not find the image
/// under the id the client chose.
fn canonical_id(v: &Value) -> ApiResult<String> {
    let refused = || {
        bad(format!("Provided object does not match schema 'image': {v} is not a valid UUID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (lower case)"))
    };
    let s = v.as_str().ok_or_else(refused)?;
    let id = uuid::Uuid::try_parse(s).map_err(|_| refused())?;
    if id.hyphenated().to_string() != s {
        return Err(refused());
    }
    Ok(s.to_owned())
}

/// Glance's per-image quotas on tags and properties (413 past them; a negative quota is no
/// limit). Checked only where a count grew (`before`: the counts until now), as Glance does, so
/// that an image already over a lowered quota can still lose tags and properties.
pub(crate) fn within_quotas(
    state: &ImageState,
    image: &Image,
    props: &Map<String, Value>,
    before: (usize, usize),
) -> ApiResult<()> {
    let over = |quota: i64, n: usize, was: usize| {
        quota >= 0 && n > was && i64::try_from(n).unwrap_or(i64::MAX) > quota
    };
    if over(state.tag_quota, image.tags.len(), before.0) {
        return Err(ApiError::PayloadTooLarge(format!(
            "Maximum number of tags exceeded: {} (attempted {})",
            state.tag_quota,
            image.tags.len()
        )));
    }
    if over(state.property_quota, props.len(), before.1) {
        return Err(ApiError::PayloadTooLarge(format!(
            "Maximum number of image properties exceeded: {} (attempted {})",
            state.property_quota,
            props.len()
        )));
    }
    Ok(())
}

pub(crate) async fn create(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    GLANCE.require_write(&ctx, "add_image")?;
    let body = body::json(&raw)?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    let now = now_ms();
    let id = match obj.get("id") {
        None => uuid::Uuid::new_v4().to_string(),
        Some(v) => canonical_id(v)?,
    };
    let mut image = Image {
        id,
        name: None,
        owner: ctx.project_id.clone(),
        status: "queued".into(),
        visibility: "shared".into(),
        protected: false,
        os_hidden: false,
        container_format: None,
        disk_format: None,
        size: None,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        min_disk: 0,
        min_ram: 0,
        properties: "{}".into(),
        created_at: now,
        updated_at: now,
        tags: vec![],
    };
    let mut props = Map::new();
    for (k, v) in obj {
        if k != "id" {
            set_field(&mut image, &ctx, k, v, &mut props)?;
        }
    }
    within_quotas(&state, &image, &props, (0, 0))?;
    image.properties = Value::Object(props).to_string();
    // A deleted image keeps its id (as in Glance): taken is taken, 409 either way.
    let taken =
        |id: &str| ApiError::Conflict(format!("Image with identifier {id} already exists!"));
    if store::get(&state.db, &image.id).await?.is_some() {
        return Err(taken(&image.id));
    }
    store::create(&state.db, &image).await.map_err(|e| {
        if e.is_unique_violation() {
            taken(&image.id)
        } else {
            e.into()
        }
    })?;
    let image = store::get(&state.db, &image.id)
        .await?
        .ok_or_else(|| not_found(&image.id))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v2/images/{}", image.id)))
        .json(view(&image)))
}

/// The keys Glance sorts images by, as columns; others sort by `created_at`.
fn sort_column(key: &str) -> Column {
    let text = |expr| Column {
        expr,
        kind: Kind::Text,
    };
    let int = |expr| Column {
        expr,
        kind: Kind::Int,
    };
    match key {
        "name" => text("COALESCE(name, '')"),
        "status" => text("status"),
        "size" => int("COALESCE(size, -1)"),
        "id" => store::TABLE.id,
        "updated_at" => int("updated_at"),
        _ => int("created_at"),
    }
}

/// `GET /v2/images`: what the caller may see (shared images offered to it once accepted, or
/// with the answer `member_status` asks for; community images only when asked for, or to
/// their owner), filtered by `name`, `id` (`in:` a list), `status`, `visibility`, `os_hidden`,
/// `owner`, the formats and repeated `tag`s; sorted by `sort=key:dir` or `sort_key` and
/// `sort_dir`; paged by `limit` (25 by default, at most 1,000) and `marker`. One statement
/// ([`nova_db::listing`]).
pub(crate) async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
) -> ApiResult<HttpResponse> {
    let q = Query::of(&req);
    let limit = match q.last("limit") {
        None => 25,
        Some(l) => l
            .parse::<u64>()
            .map_err(|_| bad("limit param must be an integer"))?
            .min(1000),
    };
    let limit = i64::try_from(limit).unwrap_or(1000);
    let wanted_answer = q.last("member_status").unwrap_or("accepted");
    if !matches!(wanted_answer, "accepted" | "pending" | "rejected" | "all") {
        return Err(bad(format!("Invalid status value: {wanted_answer}")));
    }
    let offers = if wanted_answer == "all" {
        Offers::Any
    } else {
        Offers::Answered(wanted_answer)
    };
    let visible = vec![store::live(), store::visible_to(viewer(&ctx), offers)];
    let mut conds = visible.clone();
    let text = |v: &str| Arg::Text(v.to_owned());
    let visibility = q.last("visibility");
    // Community images are listed only when asked for, or to their owner (as Glance).
    if visibility != Some("community") {
        conds.push(Cond::any(vec![
            Cond::sql("visibility <> 'community'", Vec::new()),
            Cond::eq("owner", text(&ctx.project_id)),
        ]));
    }
    if let Some(v) = visibility.filter(|v| *v != "all") {
        conds.push(Cond::eq("visibility", text(v)));
    }
    let hidden = matches!(q.last("os_hidden"), Some("true" | "True" | "1"));
    conds.push(Cond::eq("os_hidden", Arg::Bool(hidden)));
    for (key, column) in [
        ("name", "name"),
        ("status", "status"),
        ("owner", "owner"),
        ("container_format", "container_format"),
        ("disk_format", "disk_format"),
    ] {
        if let Some(v) = q.last(key) {
            conds.push(Cond::eq(column, text(v)));
        }
    }
    if let Some(ids) = q.last("id") {
        let ids = ids.strip_prefix("in:").unwrap_or(ids);
        conds.push(Cond::any_of("id", ids.split(',').map(text).collect()));
    }
    // Glance's filters on additional properties: any other parameter is one ("additional
    // properties are flattened"), its value matched exactly in the image's properties (kept
    // as compact JSON, so the pair is found as serde_json writes it).
    const KNOWN: &[&str] = &[
        "limit",
        "marker",
        "sort",
        "sort_key",
        "sort_dir",
        "member_status",
        "visibility",
        "os_hidden",
        "name",
        "status",
        "owner",
        "container_format",
        "disk_format",
        "id",
        "tag",
        "size_min",
        "size_max",
        "protected",
        "checksum",
        "os_hash_value",
        "created_at",
        "updated_at",
    ];
    for (k, v) in q.pairs().filter(|(k, _)| !KNOWN.contains(k)) {
        let pair = json!({ k: v }).to_string();
        let pair = &pair[1..pair.len() - 1];
        let escaped: String = pair
            .chars()
            .flat_map(|c| match c {
                '!' | '%' | '_' => vec!['!', c],
                c => vec![c],
            })
            .collect();
        conds.push(Cond::sql(
            "properties LIKE ? ESCAPE '!'",
            vec![text(&format!("%{escaped}%"))],
        ));
    }
    // Repeated `tag` parameters: every one must be on the image.
    let tags = TagFilter {
        all: q.all("tag").into_iter().map(str::to_owned).collect(),
        ..TagFilter::default()
    };
    let (key, dir) = match q.last("sort") {
        Some(s) => {
            let first = s.split(',').next().unwrap_or("created_at");
            let (k, d) = first.split_once(':').unwrap_or((first, "desc"));
            (k.to_owned(), d.to_owned())
        }
        None => (
            q.last("sort_key").unwrap_or("created_at").to_owned(),
            q.last("sort_dir").unwrap_or("desc").to_owned(),
        ),
    };
    let dir = match dir.as_str() {
        "asc" => Dir::Asc,
        "desc" => Dir::Desc,
        _ => return Err(bad(format!("Invalid sort direction: {dir}"))),
    };
    let rule = NextLink::WhenMore;
    let mut listing = Listing {
        table: &store::TABLE,
        conds,
        tags,
        order: vec![(sort_column(&key), dir)],
        after: None,
        limit: Some(rule.ask(limit)),
    };
    if let Some(marker) = q.last("marker") {
        let order = listing.total_order();
        let after = listing::marker(&state.db, &store::TABLE, text(marker), visible, &order)
            .await?
            .ok_or_else(|| {
                bad(format!(
                    "Invalid marker. Image {marker} could not be found."
                ))
            })?;
        listing.after = Some(after);
    }
    let page = rule.page(store::page(&state.db, &listing).await?, limit);
    let mut body = json!({
        "images": page.rows.iter().map(view).collect::<Vec<_>>(),
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if let Some(last) = page.rows.last().filter(|_| page.next) {
        // The same query from the page's last image on (Glance's `next`, relative).
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("marker", &last.id);
        query.append_pair("limit", &limit.to_string());
        for (k, v) in q.pairs().filter(|(k, _)| !matches!(*k, "marker" | "limit")) {
            query.append_pair(k, v);
        }
        body["next"] = json!(format!("/v2/images?{}", query.finish()));
    }
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn show(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(&find(&state, &ctx, &id).await?)))
}

/// `GET /v2/images/{id}/tasks` (Glance 2.12): the image's import tasks. Imports are switched
/// off here (`/v2/info/import` lists no method), so an image has none: the list is empty by
/// fact. Clients (Tempest's snapshot tests) wait on it.
pub(crate) async fn tasks(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "tasks": [] })))
}

pub(crate) async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let media = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Glance takes both: v2.1 is RFC 6902 (`{"op": …, "path": …}`), v2.0 the older draft
    // (`{"replace": "/name", "value": …}`), which Tempest's client still sends.
    let draft4 = media.starts_with(PATCH_MEDIA_TYPE_V20);
    if !draft4 && !media.starts_with(PATCH_MEDIA_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Image PATCH expects Content-Type one of: {PATCH_MEDIA_TYPE_V20}, {PATCH_MEDIA_TYPE}"
        )));
    }
    let mut image = find_own(&state, &ctx, &id).await?;
    let ops = body::json(&raw)?;
    let ops = ops
        .as_array()
        .ok_or_else(|| bad("The JSON-patch body must be a list of operations."))?;
    let mut props = match serde_json::from_str::<Value>(&image.properties) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let before = (image.tags.len(), props.len());
    for op in ops {
        let (kind, path) = if draft4 {
            let named: Vec<&str> = ["add", "remove", "replace"]
                .into_iter()
                .filter(|k| op.get(*k).is_some())
                .collect();
            let [kind] = named[..] else {
                return Err(bad(
                    "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                ));
            };
            (kind, &op[kind])
        } else {
            let kind = op["op"]
                .as_str()
                .ok_or_else(|| bad("Each operation needs an 'op'."))?;
            (kind, &op["path"])
        };
        let path = path
            .as_str()
            .and_then(|p| p.strip_prefix('/'))
            .ok_or_else(|| bad("Each operation needs a 'path' starting with '/'."))?;
        if path.contains('/') {
            return Err(bad(format!("Invalid path /{path}")));
        }
        match kind {
            "replace" | "add" => set_field(&mut image, &ctx, path, &op["value"], &mut props)?,
            "remove" => {
                if props.remove(path).is_none() {
                    return Err(ApiError::Conflict(format!(
                        "Property {path} does not exist."
                    )));
                }
            }
            other => return Err(bad(format!("Unsupported operation '{other}'."))),
        }
    }
    within_quotas(&state, &image, &props, before)?;
    image.properties = Value::Object(props).to_string();
    store::update(&state.db, &image).await?;
    let image = store::get(&state.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(view(&image)))
}

pub(crate) async fn delete(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let image = find_own(&state, &ctx, &id).await?;
    if image.protected {
        return Err(ApiError::Forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    delete_image(&state.db, state.store.as_ref(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v2/images/{id}/actions/{deactivate,reactivate}` (the owner's members and admins):
/// an active image's data withheld from all but admins, and given back. Either is a no-op in
/// the state it leads to; from any other state it is Glance's 403.
pub(crate) async fn image_action(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, action) = path.into_inner();
    let (from, to) = match action.as_str() {
        "deactivate" => ("active", "deactivated"),
        "reactivate" => ("deactivated", "active"),
        _ => {
            return Err(ApiError::NotFound(
                "The resource could not be found.".into(),
            ))
        }
    };
    GLANCE.require_write(&ctx, &action)?;
    let image = find_own(&state, &ctx, &id).await?;
    if image.status == to {
        return Ok(HttpResponse::NoContent().finish());
    }
    if image.status != from || !store::set_status(&state.db, &id, &[from], to).await? {
        return Err(ApiError::Forbidden(format!(
            "Not allowed to {action} image in status '{}'",
            image.status
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes an image's record, then its data (also the compute API's `/images` proxy).
pub async fn delete_image(db: &Db, data: &dyn ImageStore, id: &str) -> ApiResult<()> {
    store::delete(db, id).await?;
    if let Err(e) = data.delete(id).await {
        // The record is gone; the data is only garbage now.
        tracing::warn!(image = %id, error = %e, "image data not removed");
    }
    Ok(())
}
