//! `/os-simple-tenant-usage`: what projects' servers used over a period (`start` to `end`,
//! `end` at most now), computed from their lifetimes — the hours each server ran within the
//! period (from `launched_at`, to `terminated_at` or the period's end), times its flavor's
//! vcpus, memory and disk. Every project for admins (`detailed=1`: with each server), one
//! project for its readers; paged by server from 2.40 (`limit`, `marker`), as Nova's.
//! Horizon's Overview reads it.

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::next_page;
use api_toolkit::listing::{NextLink, Query};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_core::model::Instance;
use nova_core::time::{now_ms, Millis};
use nova_db::instances::{self, SortKey};
use nova_db::listing::{self, Arg, Cond, Dir, Listing};
use serde_json::{json, Map, Value};

/// Nova's `max_limit`.
const MAX_LIMIT: i64 = 1000;

/// A time as Nova takes `start` and `end` (naive, UTC): absent means now.
fn parse_time(value: Option<&str>) -> ApiResult<Millis> {
    let Some(s) = value.filter(|s| !s.is_empty()) else {
        return Ok(now_ms());
    };
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(bad(
        "Invalid datetime string: Datetime is in invalid format",
    ))
}

/// Nova's naive ISO 8601 with microseconds, as its JSON shows a `datetime`.
fn naive(ms: Millis) -> String {
    nova_core::time::to_datetime(ms)
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// The period a request asks about; Nova's 400 when it ends before it starts.
fn period(q: &Query) -> ApiResult<(Millis, Millis)> {
    let start = parse_time(q.last("start"))?;
    let end = parse_time(q.last("end"))?;
    if start >= end {
        return Err(bad(
            "Invalid start time. The start time cannot occur after the end time.",
        ));
    }
    // Nothing is known of the future.
    Ok((start, end.min(now_ms())))
}

/// The hours `i` ran within the period.
fn hours(i: &Instance, start: Millis, stop: Millis) -> f64 {
    let Some(launched) = i.launched_at else {
        return 0.0;
    };
    let from = launched.max(start);
    let to = i.terminated_at.map_or(stop, |t| t.min(stop));
    #[allow(clippy::cast_precision_loss)]
    let ms = (to - from).max(0) as f64;
    ms / 3_600_000.0
}

/// The servers that ran within the period (deleted ones included), of one project or all, in
/// creation order, paged after `marker`.
async fn servers_of_period(
    state: &AppState,
    project: Option<&str>,
    (start, stop): (Millis, Millis),
    limit: i64,
    marker: Option<&str>,
) -> ApiResult<Vec<Instance>> {
    let mut conds = vec![
        Cond::sql("launched_at IS NOT NULL", Vec::new()),
        Cond::sql("launched_at < ?", vec![Arg::Int(stop)]),
        Cond::any(vec![
            Cond::sql("terminated_at IS NULL", Vec::new()),
            Cond::sql("terminated_at > ?", vec![Arg::Int(start)]),
        ]),
    ];
    if let Some(p) = project {
        conds.push(Cond::eq("project_id", Arg::Text(p.to_owned())));
    }
    let mut listing = Listing {
        table: &instances::TABLE,
        conds: conds.clone(),
        tags: Default::default(),
        order: vec![(SortKey::CreatedAt.column(), Dir::Asc)],
        after: None,
        limit: Some(limit),
    };
    if let Some(m) = marker {
        let not_found = || bad(format!("Marker {m} could not be found."));
        let uuid: InstanceUuid = m.parse().map_err(|_| not_found())?;
        let order = listing.total_order();
        listing.after = Some(
            listing::marker(
                &state.db,
                &instances::TABLE,
                Arg::Uuid(uuid.0),
                conds,
                &order,
            )
            .await?
            .ok_or_else(not_found)?,
        );
    }
    Ok(instances::page(&state.db, &listing).await?)
}

/// The usages of `servers`, per project in the order they first appear.
fn usages(servers: &[Instance], (start, stop): (Millis, Millis), detailed: bool) -> Vec<Value> {
    let mut out: Vec<(String, Map<String, Value>, Vec<Value>)> = Vec::new();
    let now = now_ms();
    for i in servers {
        let h = hours(i, start, stop);
        let f = &i.flavor;
        let local_gb = f.root_gb + f.ephemeral_gb;
        let ended = i.terminated_at;
        let launched = i.launched_at.unwrap_or(i.created_at);
        #[allow(clippy::cast_precision_loss)]
        let (vcpus, memory, disk) = (f.vcpus as f64, f.memory_mb as f64, local_gb as f64);
        let server = json!({
            "instance_id": i.uuid.to_string(),
            "name": i.name,
            "tenant_id": i.project_id,
            "hours": h,
            "flavor": f.name,
            "memory_mb": f.memory_mb,
            "local_gb": local_gb,
            "vcpus": f.vcpus,
            "started_at": naive(launched),
            "ended_at": ended.map(naive),
            "state": if ended.is_some() { "terminated" } else { i.vm_state.as_str() },
            "uptime": (ended.unwrap_or(now) - launched) / 1000,
        });
        let at = match out.iter().position(|(p, _, _)| *p == i.project_id) {
            Some(at) => at,
            None => {
                let mut summary = Map::new();
                summary.insert("tenant_id".into(), json!(i.project_id));
                for key in [
                    "total_local_gb_usage",
                    "total_vcpus_usage",
                    "total_memory_mb_usage",
                    "total_hours",
                ] {
                    summary.insert(key.into(), json!(0.0));
                }
                summary.insert("start".into(), json!(naive(start)));
                summary.insert("stop".into(), json!(naive(stop)));
                out.push((i.project_id.clone(), summary, Vec::new()));
                out.len() - 1
            }
        };
        let (_, summary, servers) = &mut out[at];
        let mut add = |key: &str, by: f64| {
            let total = summary[key].as_f64().unwrap_or(0.0) + by;
            summary.insert(key.into(), json!(total));
        };
        add("total_local_gb_usage", disk * h);
        add("total_vcpus_usage", vcpus * h);
        add("total_memory_mb_usage", memory * h);
        add("total_hours", h);
        servers.push(server);
    }
    out.into_iter()
        .map(|(_, mut summary, servers)| {
            if detailed {
                summary.insert("server_usages".into(), Value::Array(servers));
            }
            Value::Object(summary)
        })
        .collect()
}

/// `limit` and `marker` from 2.40; before, every server of the period.
fn paging(q: &Query, v: ApiVersion) -> ApiResult<(i64, Option<String>)> {
    if !v.at_least(40) {
        return Ok((MAX_LIMIT, None));
    }
    let limit = match q.last("limit") {
        None => MAX_LIMIT,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                bad(format!(
                    "Invalid input for query parameters limit. Value: {s}."
                ))
            })?
            .min(MAX_LIMIT),
    };
    Ok((limit, q.last("marker").map(str::to_owned)))
}

/// From 2.75 the query may hold only what Nova's schema names.
fn only_known(q: &Query, v: ApiVersion, known: &[&str]) -> ApiResult<()> {
    if !v.at_least(75) {
        return Ok(());
    }
    match q.pairs().find(|(k, _)| !known.contains(k)) {
        Some((k, _)) => Err(bad(format!(
            "Invalid input for query parameters {k}. Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

/// `tenant_usages_links` (2.40): a full page links to the next, from its last server.
fn links(req: &HttpRequest, path: &str, servers: &[Instance], limit: i64) -> Option<Value> {
    let page = NextLink::WhenFull.page(servers.iter().collect::<Vec<_>>(), limit);
    let last = page.rows.last().filter(|_| page.next)?;
    let id = last.uuid.to_string();
    let href = next_page(req, path, &["marker"], &[("marker", &id)]);
    Some(json!([{"rel": "next", "href": href}]))
}

async fn index(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-simple-tenant-usage:list")?;
    let (q, v) = (Query::of(&req), ApiVersion::of(&req));
    only_known(&q, v, &["start", "end", "detailed", "limit", "marker"])?;
    let window = period(&q)?;
    let detailed = q.last("detailed") == Some("1");
    let (limit, marker) = paging(&q, v)?;
    let servers = servers_of_period(&state, None, window, limit, marker.as_deref()).await?;
    let mut body = json!({ "tenant_usages": usages(&servers, window, detailed) });
    if v.at_least(40) {
        if let Some(l) = links(&req, "/v2.1/os-simple-tenant-usage", &servers, limit) {
            body["tenant_usages_links"] = l;
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    // Nova's `project_reader_or_admin`: a project's own readers, or admins.
    if !(ctx.is_admin() || ctx.project_id == *project) {
        return Err(NOVA.denied("os_compute_api:os-simple-tenant-usage:show"));
    }
    let (q, v) = (Query::of(&req), ApiVersion::of(&req));
    only_known(&q, v, &["start", "end", "limit", "marker"])?;
    let window = period(&q)?;
    let (limit, marker) = paging(&q, v)?;
    let servers =
        servers_of_period(&state, Some(&project), window, limit, marker.as_deref()).await?;
    let usage = usages(&servers, window, true)
        .into_iter()
        .next()
        .unwrap_or_else(|| json!({}));
    let mut body = json!({ "tenant_usage": usage });
    if v.at_least(40) {
        let path = format!("/v2.1/os-simple-tenant-usage/{project}");
        if let Some(l) = links(&req, &path, &servers, limit) {
            body["tenant_usage_links"] = l;
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-simple-tenant-usage").route(web::get().to(index)))
        .service(web::resource("/os-simple-tenant-usage/{project}").route(web::get().to(show)));
}
