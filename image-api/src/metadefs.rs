//! Glance's metadata definitions (`/v2/metadefs`): namespaces of property, object and tag
//! definitions, associated with the resource types they apply to (Horizon's "Update
//! Metadata" dialogs read them for images, flavors, servers and aggregates), and their schema
//! documents (`/v2/schemas/metadefs/…`).
//!
//! As Glance's default policy: any caller reads the public namespaces and its own project's
//! private ones; only an admin writes. A protected namespace cannot be deleted, nor anything
//! in it. No definitions are loaded at the first start (Glance loads its own with
//! `glance-manage db_load_metadefs`); the resource types Horizon asks for are there.

use crate::ImageState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::policy::GLANCE;
use api_toolkit::{bad, body, ApiError, ApiResult, RequestContext};
use nova_core::time::iso8601_z;
use nova_db::metadefs::{self as store, Association, Item, Kind, Namespace};
use serde_json::{json, Map, Value};

const BASE: &str = "/v2/metadefs/namespaces";

fn time(ms: i64) -> Value {
    json!(iso8601_z(ms))
}

fn viewer(ctx: &RequestContext) -> nova_db::Viewer<'_> {
    crate::images::viewer(ctx)
}

fn namespace_not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Metadata definition namespace={name} was not found."
    ))
}

/// What an item is called in Glance's messages.
fn item_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Object => "object",
        Kind::Property => "property",
        Kind::Tag => "tag",
    }
}

fn item_not_found(kind: Kind, name: &str, ns: &str) -> ApiError {
    ApiError::NotFound(match kind {
        Kind::Property => {
            format!("The specified property={name} was not found in namespace={ns}.")
        }
        k => format!(
            "The metadata definition {} with name={name} was not found in namespace={ns}.",
            item_word(k)
        ),
    })
}

fn item_exists(kind: Kind, name: &str, ns: &str) -> ApiError {
    ApiError::Conflict(match kind {
        Kind::Tag => format!("A metadata tag with name={name} already exists in namespace={ns}."),
        k => format!(
            "A metadata definition {} with name={name} already exists in namespace={ns}.",
            item_word(k)
        ),
    })
}

/// A namespace the caller sees, or Glance's 404.
async fn find(state: &ImageState, ctx: &RequestContext, name: &str) -> ApiResult<Namespace> {
    store::namespace(&state.db, name, viewer(ctx))
        .await?
        .ok_or_else(|| namespace_not_found(name))
}

/// A namespace an admin may change, and whose contents may be deleted unless `deleting` and
/// it is protected.
async fn writable(
    state: &ImageState,
    ctx: &RequestContext,
    name: &str,
    rule: &str,
    deleting: Option<Kind>,
) -> ApiResult<Namespace> {
    GLANCE.require_admin(ctx, rule)?;
    let ns = find(state, ctx, name).await?;
    if let (Some(kind), true) = (deleting, ns.protected) {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition {} in namespace {name} is protected and cannot be deleted.",
            item_word(kind)
        )));
    }
    Ok(ns)
}

// Checks of request bodies, as Glance's schemas.

fn string_of(obj: &Map<String, Value>, key: &str, max: usize) -> ApiResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(v @ Value::String(_)) => Err(body::invalid(key, v, "is too long")),
        Some(v) => Err(body::invalid(key, v, "is not of type 'string'")),
    }
}

fn required_name(obj: &Map<String, Value>, key: &str, max: usize) -> ApiResult<String> {
    match string_of(obj, key, max)? {
        Some(n) if !n.is_empty() => Ok(n),
        _ => Err(bad(format!("'{key}' is a required property"))),
    }
}

fn object_body(raw: &[u8]) -> ApiResult<Map<String, Value>> {
    match body::json(raw)? {
        Value::Object(m) => Ok(m),
        _ => Err(bad("Body expected in request.")),
    }
}

// Resource types and their associations.

fn association_view(a: &Association) -> Value {
    let mut v = json!({"name": a.resource_type, "created_at": time(a.created_at),
                       "updated_at": time(a.updated_at)});
    if let Some(p) = &a.prefix {
        v["prefix"] = json!(p);
    }
    if let Some(t) = &a.properties_target {
        v["properties_target"] = json!(t);
    }
    v
}

fn association_of(obj: &Map<String, Value>) -> ApiResult<Association> {
    let now = store::now();
    Ok(Association {
        resource_type: required_name(obj, "name", 80)?,
        prefix: string_of(obj, "prefix", 80)?,
        properties_target: string_of(obj, "properties_target", 80)?,
        created_at: now,
        updated_at: now,
    })
}

pub(crate) async fn list_resource_types(
    _ctx: RequestContext,
    state: web::Data<ImageState>,
) -> ApiResult<HttpResponse> {
    let types: Vec<Value> = store::resource_types(&state.db)
        .await?
        .iter()
        .map(|t| {
            json!({"name": t.name, "created_at": time(t.created_at),
                   "updated_at": time(t.updated_at)})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "resource_types": types })))
}

pub(crate) async fn list_associations(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    ns: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let ns = find(&state, &ctx, &ns).await?;
    let list: Vec<Value> = store::associations(&state.db, &ns.id)
        .await?
        .iter()
        .map(association_view)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "resource_type_associations": list })))
}

pub(crate) async fn create_association(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    ns: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let ns = writable(
        &state,
        &ctx,
        &ns,
        "add_metadef_resource_type_association",
        None,
    )
    .await?;
    let a = association_of(&object_body(&raw)?)?;
    if !store::associate(&state.db, &ns.id, &a).await? {
        return Err(ApiError::Conflict(format!(
            "The metadata definition resource-type association of resource-type={} to \
             namespace={}, already exists.",
            a.resource_type, ns.namespace
        )));
    }
    Ok(HttpResponse::Created().json(association_view(&a)))
}

pub(crate) async fn delete_association(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (ns, rt) = path.into_inner();
    let ns = writable(
        &state,
        &ctx,
        &ns,
        "remove_metadef_resource_type_association",
        None,
    )
    .await?;
    if ns.protected {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition resource-type-association {rt} is protected and cannot be \
             deleted."
        )));
    }
    if !store::dissociate(&state.db, &ns.id, &rt).await? {
        return Err(ApiError::NotFound(format!(
            "The metadata definition resource-type association of resource-type={rt} to \
             namespace={}, was not found.",
            ns.namespace
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}

// Objects, properties and tags.

/// The JSON types a property definition may have (Glance's property schema).
const PROPERTY_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// A property's definition: a title and one of the JSON types (Glance's property schema).
fn check_property(obj: &Map<String, Value>) -> ApiResult<()> {
    required_name(obj, "title", 255)?;
    match obj.get("type").and_then(Value::as_str) {
        Some(t) if PROPERTY_TYPES.contains(&t) => Ok(()),
        _ => Err(bad(format!(
            "Invalid input for field 'type': must be one of {}",
            PROPERTY_TYPES.join(", ")
        ))),
    }
}

/// An item from a request body: its name, and its definition without the fields the service
/// sets.
fn item_of(kind: Kind, obj: &Map<String, Value>) -> ApiResult<Item> {
    let name = required_name(obj, "name", 80)?;
    let mut doc = obj.clone();
    for key in ["name", "created_at", "updated_at", "schema", "self"] {
        doc.remove(key);
    }
    match kind {
        Kind::Property => check_property(obj)?,
        Kind::Object => {
            string_of(obj, "description", 500)?;
            if obj.get("required").is_some_and(|r| !r.is_array()) {
                return Err(body::invalid(
                    "required",
                    &obj["required"],
                    "is not of type 'array'",
                ));
            }
            match obj.get("properties") {
                None | Some(Value::Null) => {}
                Some(Value::Object(props)) => {
                    // Each as a property of its own is checked (Glance's PropertyType).
                    for def in props.values() {
                        let def = def.as_object().ok_or_else(|| {
                            body::invalid("properties", def, "is not of type 'object'")
                        })?;
                        check_property(def)?;
                    }
                }
                Some(other) => {
                    return Err(body::invalid(
                        "properties",
                        other,
                        "is not of type 'object'",
                    ))
                }
            }
        }
        Kind::Tag => doc.clear(),
    }
    let now = store::now();
    Ok(Item {
        name,
        doc: Value::Object(doc).to_string(),
        created_at: now,
        updated_at: now,
    })
}

fn item_view(kind: Kind, ns: &str, item: &Item) -> Value {
    let mut v: Map<String, Value> = serde_json::from_str(&item.doc).unwrap_or_default();
    v.insert("name".into(), json!(item.name));
    if kind != Kind::Property {
        v.insert("created_at".into(), time(item.created_at));
        v.insert("updated_at".into(), time(item.updated_at));
    }
    if kind == Kind::Object {
        v.entry("required").or_insert_with(|| json!([]));
        v.entry("properties").or_insert_with(|| json!({}));
        v.insert("schema".into(), json!("/v2/schemas/metadefs/object"));
        v.insert(
            "self".into(),
            json!(format!("{BASE}/{ns}/objects/{}", item.name)),
        );
    }
    Value::Object(v)
}

/// A namespace's properties as Glance lists them: a map of name to definition.
fn properties_map(items: &[Item]) -> Value {
    Value::Object(
        items
            .iter()
            .map(|i| {
                let mut v = item_view(Kind::Property, "", i);
                if let Some(m) = v.as_object_mut() {
                    m.remove("name");
                }
                (i.name.clone(), v)
            })
            .collect(),
    )
}

fn collection(kind: Kind, ns: &str, items: &[Item]) -> Value {
    match kind {
        Kind::Property => json!({ "properties": properties_map(items) }),
        Kind::Object => json!({
            "objects": items.iter().map(|i| item_view(kind, ns, i)).collect::<Vec<_>>(),
            "schema": "/v2/schemas/metadefs/objects",
        }),
        Kind::Tag => json!({
            "tags": items.iter().map(|i| item_view(kind, ns, i)).collect::<Vec<_>>(),
        }),
    }
}

fn kind_of(segment: &str) -> ApiResult<Kind> {
    match segment {
        "objects" => Ok(Kind::Object),
        "properties" => Ok(Kind::Property),
        "tags" => Ok(Kind::Tag),
        _ => Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        )),
    }
}

pub(crate) async fn list_items(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (ns, segment) = path.into_inner();
    let kind = kind_of(&segment)?;
    let ns = find(&state, &ctx, &ns).await?;
    let items = store::items(&state.db, kind, &ns.id).await?;
    Ok(HttpResponse::Ok().json(collection(kind, &ns.namespace, &items)))
}

/// `POST …/objects`, `…/properties`: one item; `POST …/tags`: `{"tags": [{"name"}…]}`, which
/// replace the namespace's tags (Glance's default; with `X-Openstack-Append: true` they are
/// added to them).
pub(crate) async fn create_items(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (ns, segment) = path.into_inner();
    let kind = kind_of(&segment)?;
    let rule = format!("add_metadef_{}", item_word(kind));
    let ns = writable(&state, &ctx, &ns, &rule, None).await?;
    let obj = object_body(&raw)?;
    if kind != Kind::Tag {
        let item = item_of(kind, &obj)?;
        if !store::add_item(&state.db, kind, &ns.id, &item).await? {
            return Err(item_exists(kind, &item.name, &ns.namespace));
        }
        return Ok(HttpResponse::Created().json(item_view(kind, &ns.namespace, &item)));
    }
    let tags = match obj.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .map(|t| match t {
                Value::Object(t) => item_of(Kind::Tag, t),
                other => Err(body::invalid("tags", other, "is not of type 'object'")),
            })
            .collect::<ApiResult<Vec<Item>>>()?,
        _ => return Err(bad("'tags' is a required property")),
    };
    let append = req
        .headers()
        .get("X-Openstack-Append")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut all = if append {
        store::items(&state.db, Kind::Tag, &ns.id).await?
    } else {
        Vec::new()
    };
    for t in &tags {
        if all.iter().any(|a| a.name == t.name) {
            return Err(item_exists(Kind::Tag, &t.name, &ns.namespace));
        }
        all.push(t.clone());
    }
    if !store::set_items(&state.db, Kind::Tag, &ns.id, &all).await? {
        return Err(ApiError::Conflict("Duplicate tag names.".into()));
    }
    let shown: Vec<Value> = tags.iter().map(|t| json!({"name": t.name})).collect();
    Ok(HttpResponse::Created().json(json!({ "tags": shown })))
}

/// `DELETE …/objects`, `…/properties`, `…/tags`: all of them.
pub(crate) async fn delete_items(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (ns, segment) = path.into_inner();
    let kind = kind_of(&segment)?;
    let rule = format!("delete_metadef_{}s", item_word(kind));
    let ns = writable(&state, &ctx, &ns, &rule, Some(kind)).await?;
    store::set_items(&state.db, kind, &ns.id, &[]).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Deserialize, Default)]
struct ItemQuery {
    resource_type: Option<String>,
}

/// The name an item is stored under: a property asked for with a resource type's prefix
/// (`?resource_type=…`, Glance's) is looked up without it.
async fn stored_name(
    state: &ImageState,
    req: &HttpRequest,
    ns: &Namespace,
    kind: Kind,
    name: &str,
) -> ApiResult<String> {
    let q = web::Query::<ItemQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    if let (Kind::Property, Some(rt)) = (kind, q.resource_type) {
        let prefix = store::associations(&state.db, &ns.id)
            .await?
            .into_iter()
            .find(|a| a.resource_type == rt)
            .and_then(|a| a.prefix);
        if let Some(p) = prefix.as_deref() {
            // Asked for by the resource type's name for it: without the prefix, no such
            // property (Glance's 404).
            return name
                .strip_prefix(p)
                .map(str::to_owned)
                .ok_or_else(|| item_not_found(kind, name, &ns.namespace));
        }
    }
    Ok(name.to_owned())
}

pub(crate) async fn show_item(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (ns, segment, name) = path.into_inner();
    let kind = kind_of(&segment)?;
    let ns = find(&state, &ctx, &ns).await?;
    let stored = stored_name(&state, &req, &ns, kind, &name).await?;
    let mut item = store::item(&state.db, kind, &ns.id, &stored)
        .await?
        .ok_or_else(|| item_not_found(kind, &name, &ns.namespace))?;
    // Shown under the name it was asked for (with the prefix, when there is one).
    item.name = name;
    Ok(HttpResponse::Ok().json(item_view(kind, &ns.namespace, &item)))
}

/// `POST …/tags/{name}`: one tag (the one item made by name alone).
pub(crate) async fn create_tag_at(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    // (The middle segment is `tags`: the route matches no other.)
    let (ns, _tags, name) = path.into_inner();
    let ns = writable(&state, &ctx, &ns, "add_metadef_tag", None).await?;
    let mut obj = Map::new();
    obj.insert("name".into(), json!(name));
    let tag = item_of(Kind::Tag, &obj)?;
    if !store::add_item(&state.db, Kind::Tag, &ns.id, &tag).await? {
        return Err(item_exists(Kind::Tag, &tag.name, &ns.namespace));
    }
    Ok(HttpResponse::Created().json(item_view(Kind::Tag, &ns.namespace, &tag)))
}

pub(crate) async fn update_item(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (ns, segment, name) = path.into_inner();
    let kind = kind_of(&segment)?;
    let rule = format!("modify_metadef_{}", item_word(kind));
    let ns = writable(&state, &ctx, &ns, &rule, None).await?;
    let old = store::item(&state.db, kind, &ns.id, &name)
        .await?
        .ok_or_else(|| item_not_found(kind, &name, &ns.namespace))?;
    let mut item = item_of(kind, &object_body(&raw)?)?;
    item.created_at = old.created_at;
    match store::replace_item(&state.db, kind, &ns.id, &name, &item).await? {
        None => Err(item_not_found(kind, &name, &ns.namespace)),
        Some(false) => Err(item_exists(kind, &item.name, &ns.namespace)),
        Some(true) => Ok(HttpResponse::Ok().json(item_view(kind, &ns.namespace, &item))),
    }
}

pub(crate) async fn delete_item(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (ns, segment, name) = path.into_inner();
    let kind = kind_of(&segment)?;
    // Glance's policy names.
    let rule = match kind {
        Kind::Property => "remove_metadef_property",
        Kind::Object => "delete_metadef_object",
        Kind::Tag => "delete_metadef_tag",
    };
    let ns = writable(&state, &ctx, &ns, rule, Some(kind)).await?;
    if !store::delete_item(&state.db, kind, &ns.id, &name).await? {
        return Err(item_not_found(kind, &name, &ns.namespace));
    }
    Ok(HttpResponse::NoContent().finish())
}

// Namespaces.

const VISIBILITIES: &[&str] = &["public", "private"];

/// A namespace as Glance shows it; `full` adds its properties, objects and tags (show).
async fn namespace_view(state: &ImageState, ns: &Namespace, full: bool) -> ApiResult<Value> {
    let mut v = json!({
        "namespace": ns.namespace,
        "visibility": ns.visibility,
        "protected": ns.protected,
        "owner": ns.owner,
        "created_at": time(ns.created_at),
        "updated_at": time(ns.updated_at),
        "schema": "/v2/schemas/metadefs/namespace",
        "self": format!("{BASE}/{}", ns.namespace),
    });
    if let Some(d) = &ns.display_name {
        v["display_name"] = json!(d);
    }
    if let Some(d) = &ns.description {
        v["description"] = json!(d);
    }
    let associations = store::associations(&state.db, &ns.id).await?;
    if !associations.is_empty() {
        v["resource_type_associations"] =
            Value::Array(associations.iter().map(association_view).collect());
    }
    if full {
        let properties = store::items(&state.db, Kind::Property, &ns.id).await?;
        if !properties.is_empty() {
            v["properties"] = properties_map(&properties);
        }
        let objects = store::items(&state.db, Kind::Object, &ns.id).await?;
        if !objects.is_empty() {
            v["objects"] = Value::Array(
                objects
                    .iter()
                    .map(|o| item_view(Kind::Object, &ns.namespace, o))
                    .collect(),
            );
        }
        let tags = store::items(&state.db, Kind::Tag, &ns.id).await?;
        if !tags.is_empty() {
            v["tags"] = Value::Array(
                tags.iter()
                    .map(|t| item_view(Kind::Tag, &ns.namespace, t))
                    .collect(),
            );
        }
    }
    Ok(v)
}

fn visibility_of(obj: &Map<String, Value>) -> ApiResult<Option<String>> {
    match string_of(obj, "visibility", 32)? {
        Some(v) if !VISIBILITIES.contains(&v.as_str()) => Err(body::invalid(
            "visibility",
            &json!(v),
            "is not one of ['public', 'private']",
        )),
        v => Ok(v),
    }
}

fn protected_of(obj: &Map<String, Value>) -> ApiResult<Option<bool>> {
    match obj.get("protected") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(body::invalid("protected", v, "is not of type 'boolean'")),
    }
}

pub(crate) async fn create_namespace(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    GLANCE.require_admin(&ctx, "add_metadef_namespace")?;
    let obj = object_body(&raw)?;
    let now = store::now();
    let ns = Namespace {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: required_name(&obj, "namespace", 80)?,
        display_name: string_of(&obj, "display_name", 80)?,
        description: string_of(&obj, "description", 500)?,
        visibility: visibility_of(&obj)?.unwrap_or_else(|| "private".into()),
        protected: protected_of(&obj)?.unwrap_or(false),
        owner: string_of(&obj, "owner", 255)?.unwrap_or_else(|| ctx.project_id.clone()),
        created_at: now,
        updated_at: now,
    };
    // What it is created with: resource types, properties (a map), objects and tags.
    for (key, array) in [
        ("resource_type_associations", true),
        ("objects", true),
        ("tags", true),
        ("properties", false),
    ] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(_)) if array => {}
            Some(Value::Object(_)) if !array => {}
            Some(other) => {
                let kind = if array { "array" } else { "object" };
                return Err(body::invalid(
                    key,
                    other,
                    &format!("is not of type '{kind}'"),
                ));
            }
        }
    }
    let mut associations: Vec<Association> = Vec::new();
    if let Some(list) = obj.get("resource_type_associations") {
        for a in list.as_array().into_iter().flatten() {
            let a = a.as_object().ok_or_else(|| {
                body::invalid("resource_type_associations", a, "is not of type 'object'")
            })?;
            let a = association_of(a)?;
            if associations
                .iter()
                .any(|x| x.resource_type == a.resource_type)
            {
                return Err(bad(format!(
                    "Resource type {} is associated twice.",
                    a.resource_type
                )));
            }
            associations.push(a);
        }
    }
    let mut items = Vec::new();
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, def) in props {
            let mut def = def.as_object().cloned().unwrap_or_default();
            def.insert("name".into(), json!(name));
            items.push((Kind::Property, item_of(Kind::Property, &def)?));
        }
    }
    for (key, kind) in [("objects", Kind::Object), ("tags", Kind::Tag)] {
        for o in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
            let o = o
                .as_object()
                .ok_or_else(|| body::invalid(key, o, "is not of type 'object'"))?;
            items.push((kind, item_of(kind, o)?));
        }
    }
    for (i, (kind, item)) in items.iter().enumerate() {
        if items[..i]
            .iter()
            .any(|(k, x)| k == kind && x.name == item.name)
        {
            return Err(item_exists(*kind, &item.name, &ns.namespace));
        }
    }
    if !store::create_namespace(&state.db, &ns, &associations, &items).await? {
        return Err(ApiError::Conflict(format!(
            "Metadata definition namespace={} already exists.",
            ns.namespace
        )));
    }
    Ok(HttpResponse::Created().json(namespace_view(&state, &ns, true).await?))
}

#[derive(serde::Deserialize, Default)]
struct NamespaceQuery {
    limit: Option<String>,
    marker: Option<String>,
    sort_key: Option<String>,
    sort_dir: Option<String>,
    visibility: Option<String>,
    resource_types: Option<String>,
}

pub(crate) async fn list_namespaces(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
) -> ApiResult<HttpResponse> {
    let q = web::Query::<NamespaceQuery>::from_query(req.query_string())
        .map_err(|e| bad(e.to_string()))?
        .into_inner();
    let limit = match &q.limit {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => return Err(bad("limit param must be an integer")),
        },
    };
    let key = q.sort_key.as_deref().unwrap_or("created_at");
    if !["created_at", "updated_at", "namespace"].contains(&key) {
        return Err(bad(format!("Invalid sort key: {key}.")));
    }
    let descending = match q.sort_dir.as_deref().unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(bad(format!(
                "Invalid sort direction: {other}. It must be one of the following: asc, desc."
            )))
        }
    };
    if let Some(v) = &q.visibility {
        if !VISIBILITIES.contains(&v.as_str()) {
            return Err(bad(format!("Invalid visibility value: {v}")));
        }
    }
    let types: Vec<String> = q
        .resource_types
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut all =
        store::namespaces(&state.db, viewer(&ctx), q.visibility.as_deref(), &types).await?;
    all.sort_by(|a, b| {
        let order = match key {
            "namespace" => a.namespace.cmp(&b.namespace),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            _ => a.created_at.cmp(&b.created_at),
        }
        .then_with(|| a.namespace.cmp(&b.namespace));
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    let start = match &q.marker {
        None => 0,
        Some(m) => match all.iter().position(|n| &n.namespace == m) {
            Some(i) => i + 1,
            None => return Err(ApiError::NotFound(format!("Marker not found: {m}"))),
        },
    };
    let rest = &all[start.min(all.len())..];
    let page = &rest[..limit.unwrap_or(rest.len()).min(rest.len())];
    let mut shown = Vec::with_capacity(page.len());
    for ns in page {
        shown.push(namespace_view(&state, ns, false).await?);
    }
    let mut out = json!({
        "namespaces": shown,
        "first": BASE,
        "schema": "/v2/schemas/metadefs/namespaces",
    });
    // `first` and `next` keep the request's parameters (its filters and sort), as Glance's;
    // `next` with the page's last namespace as the marker.
    let params: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "marker")
            .collect();
    let link = |marker: Option<&str>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            query.append_pair(k, v);
        }
        if let Some(m) = marker {
            query.append_pair("marker", m);
        }
        let query = query.finish();
        if query.is_empty() {
            BASE.to_owned()
        } else {
            format!("{BASE}?{query}")
        }
    };
    out["first"] = json!(link(None));
    if let (Some(last), true) = (page.last(), page.len() < rest.len()) {
        out["next"] = json!(link(Some(&last.namespace)));
    }
    Ok(HttpResponse::Ok().json(out))
}

/// `GET …/namespaces/{ns}`; with `?resource_type=`, the names of its properties (and of its
/// objects' properties and their `required`) carry that resource type's prefix, as Glance
/// shows them to a client that will write them onto such a resource.
pub(crate) async fn show_namespace(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<ImageState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let ns = find(&state, &ctx, &name).await?;
    let q = web::Query::<ItemQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let mut v = namespace_view(&state, &ns, true).await?;
    let prefix = match q.resource_type {
        Some(rt) => store::associations(&state.db, &ns.id)
            .await?
            .into_iter()
            .find(|a| a.resource_type == rt)
            .and_then(|a| a.prefix),
        None => None,
    };
    if let Some(p) = prefix {
        prefix_names(&mut v, &p);
    }
    Ok(HttpResponse::Ok().json(v))
}

/// Puts `prefix` before every property name of a namespace's view (Glance's
/// `_prefix_property_name`).
fn prefix_names(v: &mut Value, prefix: &str) {
    let prefixed = |m: &Map<String, Value>| -> Map<String, Value> {
        m.iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .collect()
    };
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        v["properties"] = Value::Object(prefixed(props));
    }
    for o in v
        .get_mut("objects")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(props) = o.get("properties").and_then(Value::as_object) {
            o["properties"] = Value::Object(prefixed(props));
        }
        if let Some(required) = o.get("required").and_then(Value::as_array) {
            o["required"] = required
                .iter()
                .map(|r| match r.as_str() {
                    Some(r) => json!(format!("{prefix}{r}")),
                    None => r.clone(),
                })
                .collect();
        }
    }
}

pub(crate) async fn update_namespace(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    name: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut ns = writable(&state, &ctx, &name, "modify_metadef_namespace", None).await?;
    let obj = object_body(&raw)?;
    ns.namespace = required_name(&obj, "namespace", 80)?;
    if obj.contains_key("display_name") {
        ns.display_name = string_of(&obj, "display_name", 80)?;
    }
    if obj.contains_key("description") {
        ns.description = string_of(&obj, "description", 500)?;
    }
    if let Some(v) = visibility_of(&obj)? {
        ns.visibility = v;
    }
    if let Some(p) = protected_of(&obj)? {
        ns.protected = p;
    }
    if let Some(o) = string_of(&obj, "owner", 255)? {
        ns.owner = o;
    }
    ns.updated_at = store::now();
    if !store::update_namespace(&state.db, &ns).await? {
        return Err(ApiError::Conflict(format!(
            "Metadata definition namespace={} already exists.",
            ns.namespace
        )));
    }
    Ok(HttpResponse::Ok().json(namespace_view(&state, &ns, true).await?))
}

pub(crate) async fn delete_namespace(
    ctx: RequestContext,
    state: web::Data<ImageState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let ns = writable(&state, &ctx, &name, "delete_metadef_namespace", None).await?;
    if ns.protected {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition namespace {} is protected and cannot be deleted.",
            ns.namespace
        )));
    }
    store::delete_namespace(&state.db, &ns.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

// Schemas.

fn timestamps() -> Value {
    json!({
        "created_at": {"type": "string", "readOnly": true, "format": "date-time",
                       "description": "Date and time of creation"},
        "updated_at": {"type": "string", "readOnly": true, "format": "date-time",
                       "description": "Date and time of the last modification"},
    })
}

fn merged(a: Value, b: Value) -> Value {
    let mut a = a.as_object().cloned().unwrap_or_default();
    a.extend(b.as_object().cloned().unwrap_or_default());
    Value::Object(a)
}

fn association_schema() -> Value {
    json!({
        "name": "resource_type_association",
        "properties": merged(json!({
            "name": {"type": "string", "maxLength": 80,
                     "description": "Resource type names should be aligned with Heat resource types whenever possible"},
            "prefix": {"type": "string", "maxLength": 80,
                       "description": "Specifies the prefix to use for the given resource type."},
            "properties_target": {"type": "string", "maxLength": 80,
                                  "description": "Some resource types allow more than one key / value pair per instance."},
        }), timestamps()),
        "required": ["name"],
        "additionalProperties": false,
    })
}

/// A property's definition; `named` as it is shown alone, with its name (in a namespace's or
/// an object's map, the name is the key).
fn property_schema(named: bool) -> Value {
    let required = if named {
        json!(["name", "title", "type"])
    } else {
        json!(["title", "type"])
    };
    json!({
        "name": "property",
        "properties": {
            "name": {"type": "string", "maxLength": 80},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "type": {"type": "string", "enum": PROPERTY_TYPES},
            "readonly": {"type": "boolean"},
            "default": {},
            "enum": {"type": "array"},
            "items": {"type": "object"},
            "operators": {"type": "array", "items": {"type": "string"}},
            "minimum": {"type": "number"}, "maximum": {"type": "number"},
            "minLength": {"type": "integer"}, "maxLength": {"type": "integer"},
            "pattern": {"type": "string"},
            "minItems": {"type": "integer"}, "maxItems": {"type": "integer"},
            "uniqueItems": {"type": "boolean"},
            "additionalItems": {"type": "boolean"},
        },
        "required": required,
    })
}

fn object_schema() -> Value {
    json!({
        "name": "object",
        "properties": merged(json!({
            "name": {"type": "string", "maxLength": 80},
            "description": {"type": "string"},
            "required": {"type": "array", "items": {"type": "string"}},
            "properties": {"type": "object", "additionalProperties": property_schema(false)},
            "schema": {"type": "string", "readOnly": true},
            "self": {"type": "string", "readOnly": true},
        }), timestamps()),
        "required": ["name"],
    })
}

fn tag_schema() -> Value {
    json!({
        "name": "tag",
        "properties": merged(json!({"name": {"type": "string", "maxLength": 80}}), timestamps()),
        "required": ["name"],
        "additionalProperties": false,
    })
}

fn namespace_schema() -> Value {
    json!({
        "name": "namespace",
        "properties": merged(json!({
            "namespace": {"type": "string", "maxLength": 80,
                          "description": "The unique namespace text."},
            "display_name": {"type": "string", "maxLength": 80,
                             "description": "The user friendly name for the namespace."},
            "description": {"type": "string", "maxLength": 500,
                            "description": "Provides a user friendly description of the namespace."},
            "visibility": {"type": "string", "enum": VISIBILITIES,
                           "description": "Scope of namespace accessibility."},
            "protected": {"type": "boolean",
                          "description": "If true, namespace will not be deletable."},
            "owner": {"type": "string", "maxLength": 255, "description": "Owner of the namespace."},
            "schema": {"type": "string", "readOnly": true},
            "self": {"type": "string", "readOnly": true},
            "resource_type_associations": {"type": "array", "items": association_schema()},
            "properties": {"type": "object", "additionalProperties": property_schema(false)},
            "objects": {"type": "array", "items": object_schema()},
            "tags": {"type": "array", "items": tag_schema()},
        }), timestamps()),
        "required": ["namespace"],
        "additionalProperties": false,
    })
}

/// A list schema: `key` holds `items`, with Glance's paging links.
fn list_schema(name: &str, key: &str, items: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            key: {"type": "array", "items": items},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

/// `GET /v2/schemas/metadefs/{name}`: the schema documents of the definitions above.
pub(crate) async fn schema(
    _caller: RequestContext,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let doc = match name.as_str() {
        "namespace" => namespace_schema(),
        "namespaces" => list_schema("namespaces", "namespaces", namespace_schema()),
        "resource_type" => association_schema(),
        "resource_types" => list_schema(
            "resource_type_associations",
            "resource_type_associations",
            association_schema(),
        ),
        "object" => object_schema(),
        "objects" => list_schema("objects", "objects", object_schema()),
        "property" => property_schema(true),
        "properties" => json!({
            "name": "properties",
            "properties": {"properties": {"type": "object",
                                          "additionalProperties": property_schema(false)}},
        }),
        "tag" => tag_schema(),
        "tags" => list_schema("tags", "tags", tag_schema()),
        _ => {
            return Err(ApiError::NotFound(
                "The resource could not be found.".into(),
            ))
        }
    };
    Ok(HttpResponse::Ok().json(doc))
}
