//! `/os-aggregates` (admin): host aggregates — named groups of compute hosts with metadata,
//! whose `availability_zone` key makes their hosts an availability zone (placement honours
//! it; see [`crate::os_availability_zone`]). Checked as Nova's `AggregateAPI` checks: a host is
//! in one zone at most, a zone is not renamed under servers, a host with servers does not
//! change zone, an aggregate with hosts is not deleted.

use crate::os_availability_zone::INTERNAL_ZONE;
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::model::COMPUTE_BINARY;
use nova_core::time::iso8601_naive_micros;
use nova_db::aggregates::{self as store, Aggregate, AZ_KEY};
use nova_db::{instances, nodes};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn view(req: &HttpRequest, a: &Aggregate) -> Value {
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "availability_zone": a.availability_zone(),
        "hosts": a.hosts,
        "metadata": a.metadata,
        "created_at": iso8601_naive_micros(a.created_at),
        "updated_at": a.updated_at.map(iso8601_naive_micros),
        "deleted": false,
        "deleted_at": null,
    });
    if ApiVersion::of(req).at_least(41) {
        v["uuid"] = json!(a.uuid);
    }
    v
}

fn answer(req: &HttpRequest, a: &Aggregate) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "aggregate": view(req, a) }))
}

/// Nova's `validate_integer(id, 'id')`: any integer (a negative one is simply not found).
fn aggregate_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>().ok().ok_or_else(|| {
        bad(format!(
            "Invalid input for field/attribute id. Value: {id}. id must be an integer"
        ))
    })
}

async fn find(state: &AppState, id: i64) -> ApiResult<Aggregate> {
    store::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Aggregate {id} could not be found.")))
}

/// Nova's `name` format: 1 to 255 printable characters, no leading or trailing whitespace.
fn name_of(field: &str, v: &Value) -> ApiResult<String> {
    api_toolkit::body::nova_name(field, v)
}

/// Nova's `az_name`: a name without `:` (which separates a zone from a host at create).
fn zone_of(v: &Value) -> ApiResult<Option<String>> {
    if v.is_null() {
        return Ok(None);
    }
    let zone = name_of("availability_zone", v)?;
    if zone.contains(':') {
        return Err(invalid(
            "availability_zone",
            v,
            "is not a valid availability zone name (no ':')",
        ));
    }
    Ok(Some(zone))
}

/// The `{"aggregate": {...}}` object of a create or update.
fn aggregate_body<'a>(body: &'a Value, allowed: &[&str]) -> ApiResult<&'a Map<String, Value>> {
    let top = body
        .as_object()
        .ok_or_else(|| invalid("body", body, "is not of type 'object'"))?;
    body::only(top, &["aggregate"])?;
    let agg = top
        .get("aggregate")
        .ok_or_else(|| invalid("body", body, "'aggregate' is a required property"))?;
    let obj = agg
        .as_object()
        .ok_or_else(|| invalid("aggregate", agg, "is not of type 'object'"))?;
    body::only(obj, allowed)?;
    Ok(obj)
}

/// Nova's `is_safe_to_update_az`: a zone is named, the hosts are in no other zone, and (when
/// asked) no host with servers changes zone.
async fn check_zone_change(
    state: &AppState,
    aggregate: &Aggregate,
    zone: Option<&str>,
    hosts: &[String],
    check_servers: bool,
    fail: impl Fn(String) -> ApiError,
) -> ApiResult<()> {
    let Some(zone) = zone else {
        return Err(fail(format!(
            "Aggregate {} does not support empty named availability zone",
            aggregate.name
        )));
    };
    if zone == INTERNAL_ZONE {
        return Err(fail(format!(
            "The availability zone {zone} is the internal services' zone"
        )));
    }
    let others: Vec<String> = store::list(&state.db)
        .await?
        .into_iter()
        .filter(|a| a.id != aggregate.id && a.hosts.iter().any(|h| hosts.contains(h)))
        .filter_map(|a| {
            a.availability_zone()
                .filter(|z| *z != zone)
                .map(str::to_owned)
        })
        .collect();
    if !others.is_empty() {
        return Err(fail(format!(
            "One or more hosts already in availability zone(s) {others:?}"
        )));
    }
    if check_servers && aggregate.availability_zone() != Some(zone) {
        for host in hosts {
            if !instances::on_host(&state.db, host).await?.is_empty() {
                return Err(fail(
                    "One or more hosts contain instances in this zone".into(),
                ));
            }
        }
    }
    Ok(())
}

async fn index(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:index")?;
    let all: Vec<Value> = store::list(&state.db)
        .await?
        .iter()
        .map(|a| view(&req, a))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "aggregates": all })))
}

async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = body::json(&raw)?;
    let obj = aggregate_body(&body, &["name", "availability_zone"])?;
    let name = name_of(
        "name",
        obj.get("name").ok_or_else(|| {
            invalid(
                "aggregate",
                &body["aggregate"],
                "'name' is a required property",
            )
        })?,
    )?;
    let zone = match obj.get("availability_zone") {
        Some(v) => zone_of(v)?,
        None => None,
    };
    NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:create")?;
    if zone.as_deref() == Some(INTERNAL_ZONE) {
        return Err(bad(format!(
            "Cannot create aggregate {name}: {INTERNAL_ZONE} is the internal services' zone."
        )));
    }
    let metadata: BTreeMap<String, String> =
        zone.map(|z| (AZ_KEY.to_owned(), z)).into_iter().collect();
    let a = store::create(&state.db, &name, &metadata)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("Aggregate {name} already exists.")))?;
    // Nova's create answers without hosts and metadata.
    let mut v = view(&req, &a);
    if let Some(o) = v.as_object_mut() {
        o.remove("hosts");
        o.remove("metadata");
    }
    Ok(HttpResponse::Ok().json(json!({ "aggregate": v })))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:show")?;
    let a = find(&state, aggregate_id(&id)?).await?;
    Ok(answer(&req, &a))
}

async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = body::json(&raw)?;
    let obj = aggregate_body(&body, &["name", "availability_zone"])?;
    if obj.is_empty() {
        return Err(invalid(
            "aggregate",
            &body["aggregate"],
            "is not valid under any of the given schemas",
        ));
    }
    // Nova's update schema takes a name with leading or trailing spaces, then strips them.
    let name = obj
        .get("name")
        .map(|v| match v.as_str() {
            Some(s) if (1..=255).contains(&s.chars().count()) && !s.trim().is_empty() => {
                Ok(s.trim().to_owned())
            }
            _ => Err(invalid(
                "name",
                v,
                "is not a valid name (1 to 255 characters)",
            )),
        })
        .transpose()?;
    let zone = obj.get("availability_zone").map(zone_of).transpose()?;
    NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:update")?;
    let id = aggregate_id(&id)?;
    let a = find(&state, id).await?;
    let fail = |reason: String| bad(format!("Cannot update aggregate {id}. Reason: {reason}."));
    if let Some(zone) = &zone {
        check_zone_change(&state, &a, zone.as_deref(), &a.hosts, true, fail).await?;
    }
    if let Some(name) = &name {
        if !store::rename(&state.db, id, name).await? {
            return Err(ApiError::Conflict(format!(
                "Aggregate {name} already exists."
            )));
        }
    }
    if let Some(zone) = zone {
        let changes = BTreeMap::from([(AZ_KEY.to_owned(), zone)]);
        store::update_metadata(&state.db, id, &changes).await?;
    }
    Ok(answer(&req, &find(&state, id).await?))
}

async fn delete(
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:delete")?;
    let id = aggregate_id(&id)?;
    find(&state, id).await?;
    if !store::delete_empty(&state.db, id).await? {
        // Still there with hosts (or deleted meanwhile: then not found).
        find(&state, id).await?;
        return Err(bad(format!(
            "Cannot remove host from aggregate {id}. Reason: Host aggregate is not empty."
        )));
    }
    Ok(HttpResponse::Ok().finish())
}

/// Nova's `fqdn` host name.
fn host_of(action: &str, arg: &Value) -> ApiResult<String> {
    let obj = arg
        .as_object()
        .ok_or_else(|| invalid(action, arg, "is not of type 'object'"))?;
    body::only(obj, &["host"])?;
    let host = obj
        .get("host")
        .ok_or_else(|| invalid(action, arg, "'host' is a required property"))?;
    match host.as_str() {
        Some(h)
            if (1..=255).contains(&h.len())
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) =>
        {
            Ok(h.to_owned())
        }
        _ => Err(invalid("host", host, "does not match '^[a-zA-Z0-9-._]*$'")),
    }
}

/// The zone `host` would be in without `aggregate` (its other aggregates' zone, if any).
async fn zone_without(state: &AppState, host: &str, aggregate: i64) -> ApiResult<Option<String>> {
    Ok(store::list(&state.db)
        .await?
        .into_iter()
        .filter(|a| a.id != aggregate && a.hosts.iter().any(|h| h == host))
        .find_map(|a| a.availability_zone().map(str::to_owned)))
}

async fn add_host(state: &AppState, a: &Aggregate, host: &str) -> ApiResult<()> {
    let id = a.id;
    if nodes::service(&state.db, host, COMPUTE_BINARY)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "Compute host {host} could not be found."
        )));
    }
    let fail = |reason: String| {
        ApiError::Conflict(format!(
            "Cannot add host to aggregate {id}. Reason: {reason}."
        ))
    };
    if let Some(zone) = a.availability_zone() {
        check_zone_change(state, a, Some(zone), &[host.to_owned()], false, fail).await?;
        // Nova's ensure_no_instances_need_to_move_az_when_host_added.
        let servers = instances::on_host(&state.db, host).await?.len();
        let old = zone_without(state, host, id).await?;
        if servers > 0 && old.as_deref() != Some(zone) {
            return Err(fail(format!(
                "The host cannot be added to the aggregate as the availability zone of the host \
                 would change from '{}' to '{zone}' but the host already has {servers} \
                 instance(s). Changing the AZ of an existing instance is not supported by this \
                 action. Move the instances away from this host then try again. If you need to \
                 move the instances between AZs then you can use shelve_offload and unshelve to \
                 achieve this",
                old.as_deref().unwrap_or("None")
            )));
        }
    }
    if !store::add_host(&state.db, id, host).await? {
        return Err(ApiError::Conflict(format!(
            "Aggregate {id} already has host {host}."
        )));
    }
    Ok(())
}

async fn remove_host(state: &AppState, a: &Aggregate, host: &str) -> ApiResult<()> {
    let id = a.id;
    if !a.hosts.iter().any(|h| h == host) {
        return Err(ApiError::NotFound(format!(
            "Cannot remove host {host} in aggregate {id}"
        )));
    }
    if let Some(zone) = a.availability_zone() {
        // Nova's ensure_no_instances_need_to_move_az_when_host_removed.
        let servers = instances::on_host(&state.db, host).await?.len();
        let new = zone_without(state, host, id).await?;
        if servers > 0 && new.as_deref() != Some(zone) {
            return Err(ApiError::Conflict(format!(
                "Cannot remove host from aggregate {id}. Reason: The host cannot be removed from \
                 the aggregate as the availability zone of the host would change from '{zone}' \
                 to '{}' but the host already has {servers} instance(s). Changing the AZ of an \
                 existing instance is not supported by this action. Move the instances away \
                 from this host then try again. If you need to move the instances between AZs \
                 then you can use shelve_offload and unshelve to achieve this.",
                new.as_deref().unwrap_or("None")
            )));
        }
    }
    if !store::remove_host(&state.db, id, host).await? {
        return Err(ApiError::NotFound(format!(
            "Cannot remove host {host} in aggregate {id}"
        )));
    }
    Ok(())
}

/// Nova's `metadata_with_null`: keys of `[a-zA-Z0-9-_:. ]{1,255}`, values strings of at
/// most 255 characters or null (which removes the key).
fn metadata_of(arg: &Value) -> ApiResult<BTreeMap<String, Option<String>>> {
    let obj = arg
        .as_object()
        .ok_or_else(|| invalid("set_metadata", arg, "is not of type 'object'"))?;
    body::only(obj, &["metadata"])?;
    let meta = obj
        .get("metadata")
        .ok_or_else(|| invalid("set_metadata", arg, "'metadata' is a required property"))?;
    let items = meta
        .as_object()
        .ok_or_else(|| invalid("metadata", meta, "is not of type 'object'"))?;
    let mut out = BTreeMap::new();
    for (k, v) in items {
        let key_ok = (1..=255).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
        if !key_ok {
            return Err(invalid(
                "metadata",
                meta,
                &format!("'{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
            ));
        }
        let value = match v {
            Value::Null => None,
            Value::String(s) if s.chars().count() <= 255 => Some(s.clone()),
            _ => {
                return Err(invalid(
                    &format!("metadata/{k}"),
                    v,
                    "is not a string of at most 255 characters or null",
                ))
            }
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

async fn action(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body = body::json(&raw)?;
    let (name, arg) = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
        .ok_or_else(|| bad("The action body must be an object with exactly one action."))?;
    match name.as_str() {
        "add_host" => {
            let host = host_of(name, arg)?;
            NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:add_host")?;
            let a = find(&state, aggregate_id(&id)?).await?;
            add_host(&state, &a, &host).await?;
        }
        "remove_host" => {
            let host = host_of(name, arg)?;
            NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:remove_host")?;
            let a = find(&state, aggregate_id(&id)?).await?;
            remove_host(&state, &a, &host).await?;
        }
        "set_metadata" => {
            let changes = metadata_of(arg)?;
            NOVA.require_admin(&ctx, "os_compute_api:os-aggregates:set_metadata")?;
            let aid = aggregate_id(&id)?;
            let a = find(&state, aid).await?;
            if let Some(zone) = changes.get(AZ_KEY) {
                let fail = |reason: String| {
                    bad(format!(
                        "Cannot update metadata of aggregate {aid}. Reason: {reason}."
                    ))
                };
                check_zone_change(&state, &a, zone.as_deref(), &a.hosts, true, fail).await?;
            }
            store::update_metadata(&state.db, aid, &changes).await?;
        }
        other => return Err(bad(format!("There is no such action: {other}"))),
    }
    Ok(answer(&req, &find(&state, aggregate_id(&id)?).await?))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/os-aggregates")
            .route(web::get().to(index))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/os-aggregates/{id}")
            .route(web::get().to(show))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/os-aggregates/{id}/action").route(web::post().to(action)));
}
