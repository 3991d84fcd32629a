//! The catalog's administration, as Keystone's: regions (`/v3/regions`), services
//! (`/v3/services`) and endpoints (`/v3/endpoints`). What is enabled here is what tokens list
//! (`crate::catalog`). Reads of services and endpoints are Keystone's `ADMIN_OR_SYSTEM_READER`;
//! regions any authenticated caller reads; every write is the admin's.

use super::*;
use nova_db::catalog::{self as cat, Endpoint, EndpointFilter, Region, RegionDelete, Service};

/// Keystone's ValidationError for a reference that names nothing.
fn missing_reference(attribute: &str, target: &str) -> ApiError {
    bad(format!(
        "Expecting to find {attribute} in {target}. The server could not comply with the request \
         since it is either malformed or otherwise incorrect. The client is assumed to be in error."
    ))
}

// Regions.

const REGION_FIELDS: &[&str] = &["id", "description", "parent_region_id"];

fn region_view(r: &Region, base: &str) -> Value {
    let mut v = parse_extra(&r.extra);
    v.insert("id".into(), json!(r.id));
    v.insert("description".into(), json!(r.description));
    v.insert("parent_region_id".into(), json!(r.parent_region_id));
    v.insert(
        "links".into(),
        json!({"self": format!("{base}/regions/{}", r.id)}),
    );
    Value::Object(v)
}

fn region_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find region: {id}."))
}

/// Whether making `parent` the parent of `id` would close a loop (Keystone's 400).
async fn would_loop(db: &Db, id: &str, parent: &str) -> ApiResult<bool> {
    let mut at = Some(parent.to_owned());
    let mut steps = 0;
    while let Some(r) = at {
        if r == id || steps > 1000 {
            return Ok(true);
        }
        at = cat::region(db, &r).await?.and_then(|r| r.parent_region_id);
        steps += 1;
    }
    Ok(false)
}

async fn create_region_with(
    req: &HttpRequest,
    st: &IdentityState,
    raw: &[u8],
    path_id: Option<&str>,
) -> ApiResult<HttpResponse> {
    require_admin(req, st, "identity:create_region")?;
    let body = json_body(raw)?;
    let obj = body_object(&body, "region")?;
    let r = Value::Object(obj.clone());
    let given = short_string(&r, "id", false)?;
    let id = match (path_id, given) {
        (Some(p), Some(g)) if p != g => {
            return Err(bad(format!(
                "Conflicting region IDs specified: \"{p}\" != \"{g}\""
            )))
        }
        (Some(p), _) => p.to_owned(),
        (None, Some(g)) if !g.is_empty() => g,
        // Keystone makes one when none (or an empty one) is given.
        (None, _) => store::new_id(),
    };
    let parent_region_id = short_string(&r, "parent_region_id", true)?;
    if let Some(p) = &parent_region_id {
        if cat::region(&st.db, p).await?.is_none() {
            return Err(region_not_found(p));
        }
    }
    let region = Region {
        id: id.clone(),
        description: short_string(&r, "description", true)?.unwrap_or_default(),
        parent_region_id,
        extra: Value::Object(extra_of(obj, REGION_FIELDS)).to_string(),
    };
    if !cat::create_region(&st.db, &region).await? {
        return Err(ApiError::Conflict(format!(
            "Conflict occurred attempting to store region - Duplicate ID, {id}."
        )));
    }
    Ok(HttpResponse::Created()
        .json(json!({"region": region_view(&region, &v3_url(req, &st.settings))})))
}

pub(super) async fn create_region(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    create_region_with(&req, &st, &raw, None).await
}

/// `PUT /v3/regions/{id}`: a region with the id the client chose.
pub(super) async fn put_region(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    create_region_with(&req, &st, &raw, Some(id.as_str())).await
}

#[derive(serde::Deserialize, Default)]
struct RegionQuery {
    parent_region_id: Option<String>,
}

pub(super) async fn list_regions(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    caller(&req, &st)?;
    let q = web::Query::<RegionQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let base = v3_url(&req, &st.settings);
    let items = cat::regions(&st.db, q.parent_region_id.as_deref())
        .await?
        .iter()
        .map(|r| region_view(r, &base))
        .collect();
    Ok(collection("regions", items, format!("{base}/regions")))
}

pub(super) async fn show_region(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller(&req, &st)?;
    let r = cat::region(&st.db, &id)
        .await?
        .ok_or_else(|| region_not_found(&id))?;
    Ok(HttpResponse::Ok().json(json!({"region": region_view(&r, &v3_url(&req, &st.settings))})))
}

pub(super) async fn update_region(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_region")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "region")?;
    let r = Value::Object(obj.clone());
    let mut region = cat::region(&st.db, &id)
        .await?
        .ok_or_else(|| region_not_found(&id))?;
    if let Some(given) = short_string(&r, "id", false)? {
        if given != region.id {
            return Err(bad("Cannot change region ID"));
        }
    }
    if obj.contains_key("description") {
        region.description = short_string(&r, "description", true)?.unwrap_or_default();
    }
    if obj.contains_key("parent_region_id") {
        let parent = short_string(&r, "parent_region_id", true)?;
        if let Some(p) = &parent {
            if cat::region(&st.db, p).await?.is_none() {
                return Err(region_not_found(p));
            }
            if would_loop(&st.db, &region.id, p).await? {
                return Err(bad(format!(
                    "The specified parent region {p} would create a circular region hierarchy."
                )));
            }
        }
        region.parent_region_id = parent;
    }
    let mut extra = parse_extra(&region.extra);
    extra.extend(extra_of(obj, REGION_FIELDS));
    region.extra = Value::Object(extra).to_string();
    if !cat::update_region(&st.db, &region).await? {
        return Err(region_not_found(&id));
    }
    Ok(HttpResponse::Ok()
        .json(json!({"region": region_view(&region, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_region(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_region")?;
    match cat::delete_region(&st.db, &id).await? {
        RegionDelete::Deleted => Ok(HttpResponse::NoContent().finish()),
        RegionDelete::NotFound => Err(region_not_found(&id)),
        RegionDelete::InUse => Err(ApiError::Forbidden(format!(
            "Unable to delete region {id} because it or its child regions have associated \
             endpoints."
        ))),
    }
}

// Services.

const SERVICE_FIELDS: &[&str] = &["id", "type", "enabled"];

fn service_view(s: &Service, base: &str) -> Value {
    let mut v = parse_extra(&s.extra);
    v.entry("name").or_insert_with(|| json!(""));
    v.insert("id".into(), json!(s.id));
    v.insert("type".into(), json!(s.kind));
    v.insert("enabled".into(), json!(s.enabled));
    v.insert(
        "links".into(),
        json!({"self": format!("{base}/services/{}", s.id)}),
    );
    Value::Object(v)
}

fn service_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find service: {id}."))
}

/// A service's `type`: a string of 1 to 255 characters.
fn service_type(obj: &Value) -> ApiResult<Option<String>> {
    match short_string(obj, "type", false)? {
        Some(t) if t.is_empty() => Err(bad("Invalid input for field 'type': '' is too short.")),
        t => Ok(t),
    }
}

/// A service's `name`, if given: 1 to 255 characters (Keystone's schema).
fn service_name_checked(obj: &Value) -> ApiResult<()> {
    match short_string(obj, "name", false)? {
        Some(n) if n.is_empty() => Err(bad("Invalid input for field 'name': '' is too short.")),
        _ => Ok(()),
    }
}

pub(super) async fn create_service(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_service")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "service")?;
    let s = Value::Object(obj.clone());
    let kind = service_type(&s)?.ok_or_else(|| bad("'type' is a required property."))?;
    service_name_checked(&s)?;
    let service = Service {
        id: store::new_id(),
        kind,
        enabled: bool_field(&s, "enabled")?.unwrap_or(true),
        extra: Value::Object(extra_of(obj, SERVICE_FIELDS)).to_string(),
    };
    cat::create_service(&st.db, &service).await?;
    Ok(HttpResponse::Created()
        .json(json!({"service": service_view(&service, &v3_url(&req, &st.settings))})))
}

#[derive(serde::Deserialize, Default)]
struct ServiceQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
}

pub(super) async fn list_services(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:list_services")?;
    let q = web::Query::<ServiceQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let base = v3_url(&req, &st.settings);
    let items = cat::services(&st.db, q.kind.as_deref())
        .await?
        .iter()
        .filter(|s| {
            q.name
                .as_deref()
                .is_none_or(|n| crate::catalog::service_name(s) == n)
        })
        .map(|s| service_view(s, &base))
        .collect();
    Ok(collection("services", items, format!("{base}/services")))
}

pub(super) async fn show_service(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:get_service")?;
    let s = cat::service(&st.db, &id)
        .await?
        .ok_or_else(|| service_not_found(&id))?;
    Ok(HttpResponse::Ok().json(json!({"service": service_view(&s, &v3_url(&req, &st.settings))})))
}

pub(super) async fn update_service(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_service")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "service")?;
    let s = Value::Object(obj.clone());
    let mut service = cat::service(&st.db, &id)
        .await?
        .ok_or_else(|| service_not_found(&id))?;
    if let Some(given) = short_string(&s, "id", false)? {
        if given != service.id {
            return Err(bad("Cannot change service ID"));
        }
    }
    if let Some(kind) = service_type(&s)? {
        service.kind = kind;
    }
    service_name_checked(&s)?;
    if let Some(enabled) = bool_field(&s, "enabled")? {
        service.enabled = enabled;
    }
    let mut extra = parse_extra(&service.extra);
    extra.extend(extra_of(obj, SERVICE_FIELDS));
    service.extra = Value::Object(extra).to_string();
    if !cat::update_service(&st.db, &service).await? {
        return Err(service_not_found(&id));
    }
    Ok(HttpResponse::Ok()
        .json(json!({"service": service_view(&service, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_service(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_service")?;
    if !cat::delete_service(&st.db, &id).await? {
        return Err(service_not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}

// Endpoints.

const ENDPOINT_FIELDS: &[&str] = &[
    "id",
    "service_id",
    "interface",
    "region_id",
    "region",
    "url",
    "enabled",
];

pub(super) fn endpoint_view(e: &Endpoint, base: &str) -> Value {
    let mut v = parse_extra(&e.extra);
    v.insert("id".into(), json!(e.id));
    v.insert("service_id".into(), json!(e.service_id));
    v.insert("interface".into(), json!(e.interface));
    // `region` is the legacy name of `region_id`, which Keystone still shows.
    v.insert("region_id".into(), json!(e.region_id));
    v.insert("region".into(), json!(e.region_id));
    v.insert("url".into(), json!(e.url));
    v.insert("enabled".into(), json!(e.enabled));
    v.insert(
        "links".into(),
        json!({"self": format!("{base}/endpoints/{}", e.id)}),
    );
    Value::Object(v)
}

fn endpoint_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find endpoint: {id}."))
}

fn checked_interface(obj: &Value) -> ApiResult<Option<String>> {
    match short_string(obj, "interface", false)? {
        Some(i) if !matches!(i.as_str(), "public" | "internal" | "admin") => Err(bad(format!(
            "Invalid input for field 'interface': '{i}' does not match '^(admin|internal|public)$'."
        ))),
        i => Ok(i),
    }
}

/// Keystone's URL pattern, `^[a-zA-Z0-9+.-]+:.+`: a scheme, a colon, and something after it.
fn has_scheme(u: &str) -> bool {
    match u.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !rest.is_empty()
        }
        None => false,
    }
}

fn checked_url(obj: &Value) -> ApiResult<Option<String>> {
    match &obj["url"] {
        Value::Null if obj.get("url").is_none() => Ok(None),
        Value::String(u) if u.len() <= 225 && has_scheme(u) => {
            if !crate::catalog::substitutions_known(u) {
                return Err(bad(format!(
                    "Invalid input for field 'url': {u} names a substitution that is not one of \
                     $(public_url)s, $(project_id)s, $(tenant_id)s, $(user_id)s."
                )));
            }
            Ok(Some(u.clone()))
        }
        other => Err(bad(format!(
            "Invalid input for field 'url': {other} is not a valid URL."
        ))),
    }
}

/// The endpoint's region: `region_id`, or the legacy `region`. A region named this way that does
/// not exist is created, as Keystone does for clients of the v2 era; a `region_id` must exist.
async fn endpoint_region(st: &IdentityState, obj: &Value) -> ApiResult<Option<Option<String>>> {
    let by_id = obj.get("region_id").is_some();
    let legacy = obj.get("region").is_some();
    if !by_id && !legacy {
        return Ok(None);
    }
    let id = short_string(obj, "region_id", true)?;
    let name = short_string(obj, "region", true)?;
    match (id, name) {
        (Some(id), _) => {
            if cat::region(&st.db, &id).await?.is_none() {
                return Err(missing_reference("endpoint region_id", "region table"));
            }
            Ok(Some(Some(id)))
        }
        (None, Some(name)) => {
            cat::create_region(
                &st.db,
                &Region {
                    id: name.clone(),
                    description: String::new(),
                    parent_region_id: None,
                    extra: "{}".into(),
                },
            )
            .await?;
            Ok(Some(Some(name)))
        }
        (None, None) => Ok(Some(None)),
    }
}

pub(super) async fn create_endpoint(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_endpoint")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "endpoint")?;
    let e = Value::Object(obj.clone());
    let service_id = short_string(&e, "service_id", false)?
        .ok_or_else(|| bad("'service_id' is a required property."))?;
    let interface =
        checked_interface(&e)?.ok_or_else(|| bad("'interface' is a required property."))?;
    let url = checked_url(&e)?.ok_or_else(|| bad("'url' is a required property."))?;
    let enabled = bool_field(&e, "enabled")?.unwrap_or(true);
    if cat::service(&st.db, &service_id).await?.is_none() {
        return Err(missing_reference("endpoint service_id", "service table"));
    }
    let region_id = endpoint_region(&st, &e).await?.flatten();
    let endpoint = Endpoint {
        id: store::new_id(),
        service_id,
        interface,
        region_id,
        url,
        enabled,
        extra: Value::Object(extra_of(obj, ENDPOINT_FIELDS)).to_string(),
    };
    cat::create_endpoint(&st.db, &endpoint).await?;
    Ok(HttpResponse::Created()
        .json(json!({"endpoint": endpoint_view(&endpoint, &v3_url(&req, &st.settings))})))
}

#[derive(serde::Deserialize, Default)]
struct EndpointQuery {
    service_id: Option<String>,
    interface: Option<String>,
    region_id: Option<String>,
}

pub(super) async fn list_endpoints(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:list_endpoints")?;
    let q = web::Query::<EndpointQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    if let Some(i) = &q.interface {
        if !matches!(i.as_str(), "public" | "internal" | "admin") {
            return Err(bad(format!(
                "Invalid interface value: {i}. It must be one of admin, internal, public."
            )));
        }
    }
    let base = v3_url(&req, &st.settings);
    let filter = EndpointFilter {
        service_id: q.service_id.as_deref(),
        interface: q.interface.as_deref(),
        region_id: q.region_id.as_deref(),
    };
    let items = cat::endpoints(&st.db, &filter)
        .await?
        .iter()
        .map(|e| endpoint_view(e, &base))
        .collect();
    Ok(collection("endpoints", items, format!("{base}/endpoints")))
}

pub(super) async fn show_endpoint(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:get_endpoint")?;
    let e = cat::endpoint(&st.db, &id)
        .await?
        .ok_or_else(|| endpoint_not_found(&id))?;
    Ok(
        HttpResponse::Ok()
            .json(json!({"endpoint": endpoint_view(&e, &v3_url(&req, &st.settings))})),
    )
}

pub(super) async fn update_endpoint(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_endpoint")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "endpoint")?;
    let e = Value::Object(obj.clone());
    let mut endpoint = cat::endpoint(&st.db, &id)
        .await?
        .ok_or_else(|| endpoint_not_found(&id))?;
    if let Some(given) = short_string(&e, "id", false)? {
        if given != endpoint.id {
            return Err(bad("Cannot change endpoint ID"));
        }
    }
    // Everything checked before anything is written (a legacy region is created on the way).
    let service_id = short_string(&e, "service_id", false)?;
    let interface = checked_interface(&e)?;
    let url = checked_url(&e)?;
    let enabled = bool_field(&e, "enabled")?;
    if let Some(s) = &service_id {
        if cat::service(&st.db, s).await?.is_none() {
            return Err(missing_reference("endpoint service_id", "service table"));
        }
    }
    if let Some(region) = endpoint_region(&st, &e).await? {
        endpoint.region_id = region;
    }
    endpoint.service_id = service_id.unwrap_or(endpoint.service_id);
    endpoint.interface = interface.unwrap_or(endpoint.interface);
    endpoint.url = url.unwrap_or(endpoint.url);
    endpoint.enabled = enabled.unwrap_or(endpoint.enabled);
    let mut extra = parse_extra(&endpoint.extra);
    extra.extend(extra_of(obj, ENDPOINT_FIELDS));
    endpoint.extra = Value::Object(extra).to_string();
    if !cat::update_endpoint(&st.db, &endpoint).await? {
        return Err(endpoint_not_found(&id));
    }
    Ok(HttpResponse::Ok()
        .json(json!({"endpoint": endpoint_view(&endpoint, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_endpoint(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_endpoint")?;
    if !cat::delete_endpoint(&st.db, &id).await? {
        return Err(endpoint_not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}
