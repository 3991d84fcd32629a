//! `GET /servers` and `GET /servers/detail`: Nova's filters, sort keys and paging.

use super::host_status;
use crate::versions::ApiVersion;
use crate::{views, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::listing::{NextLink, Query};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_db::instances::{self, SortKey};
use nova_db::listing::{self, Arg, Column, Cond, Dir, Listing, TagFilter};
use nova_db::DbError;
use serde_json::{json, Value};

/// Nova's `max_limit`: the most servers one page returns.
pub(super) const MAX_LIMIT: i64 = 1000;

/// One page of a server listing, and the marker of the next page when there may be one.
pub(super) struct Page {
    servers: Vec<nova_core::model::Instance>,
    next: Option<String>,
    limit: i64,
}

/// `GET /servers` and `/servers/detail` with Nova's filters: `name` (a regular expression,
/// matched anywhere), `status`, `image`, `flavor`, `changes-since`, the tag filters (2.26),
/// and for admins `host` and `all_tenants`; `limit` (at most 1,000) and `marker` paging,
/// newest first. Filters Nova reserves for admins are ignored for others, as Nova does;
/// unknown ones too. All of it is one statement ([`nova_db::listing`]).
pub(super) async fn list_instances(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
) -> ApiResult<Page> {
    let q = Query::of(req);
    let limit = match q.last("limit") {
        None => MAX_LIMIT,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => n.min(MAX_LIMIT),
            _ => return Err(bad("limit param must be an integer")),
        },
    };
    // As Nova: `all_tenants` without a value means true, and it is for admins only (403).
    let all = match q.last("all_tenants") {
        None => false,
        Some(v) => !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        ),
    };
    if all && !ctx.is_admin() {
        return Err(NOVA.denied("os_compute_api:servers:index:get_all_tenants"));
    }
    // Only the filters given become conditions: `($1 IS NULL OR …)` would keep PostgreSQL's
    // generic plans from using the (project, deleted, created_at) index.
    let mut conds = vec![Cond::sql("NOT deleted", Vec::new())];
    // As Nova's listing (`deleted=False` without `soft_deleted`): SOFT_DELETED servers are
    // left out, unless the list asks what changed since a time.
    if q.last("changes-since").is_none() && q.last("changes-before").is_none() {
        conds.push(Cond::sql("vm_state <> 'soft-delete'", Vec::new()));
    }
    let mut marker_conds = Vec::new();
    if !all {
        let mine = Cond::eq("project_id", Arg::Text(ctx.project_id.clone()));
        conds.push(mine.clone());
        if !ctx.is_admin() {
            marker_conds.push(mine);
        }
    } else if !ctx.is_admin() {
        marker_conds.push(Cond::eq("project_id", Arg::Text(ctx.project_id.clone())));
    } else if let Some(project) = q.last("tenant_id").or_else(|| q.last("project_id")) {
        // As Nova: with `all_tenants`, an admin may name the project (`tenant_id`, which
        // Nova maps to `project_id`); without it, the filter is ignored.
        conds.push(Cond::eq("project_id", Arg::Text(project.to_owned())));
    }
    if let Some(host) = q.last("host").filter(|_| ctx.is_admin()) {
        conds.push(Cond::eq("host", Arg::Text(host.to_owned())));
    }
    if let Some(image) = q.last("image") {
        let id = image.rsplit('/').next().unwrap_or(image);
        conds.push(Cond::eq("image_ref", Arg::Text(id.to_owned())));
    }
    if let Some(flavor) = q.last("flavor") {
        let id = flavor.rsplit('/').next().unwrap_or(flavor);
        conds.push(Cond::eq("flavor_id", Arg::Text(id.to_owned())));
    }
    if let Some(t) = q.last("changes-since") {
        let since = nova_core::time::parse_iso8601(t).ok_or_else(|| {
            bad(format!(
                "Invalid input for query parameters changes-since. Value: {t}."
            ))
        })?;
        conds.push(Cond::at_least("updated_at", Arg::Int(since)));
    }
    let bad_param = |param: &str, v: &str| {
        bad(format!(
            "Invalid input for query parameters {param}. Value: {v}."
        ))
    };
    if let Some(name) = q.last("name") {
        regex::Regex::new(name).map_err(|_| bad_param("name", name))?;
        conds.push(Cond::matches("name", name));
    }
    // Nova's `ip` and `ip6`: a regular expression matched from the start of each fixed
    // address of that version (a prefix such as `10.0.0.1` also finds `10.0.0.12`); given
    // both, a server matching either (Nova's `_ip_filter`). `ip6` is an admin's before 2.5.
    let ip6_allowed = ctx.is_admin() || ApiVersion::of(req).at_least(5);
    let mut ip_conds = Vec::new();
    for (param, version) in [("ip", 4), ("ip6", 6)] {
        let Some(pattern) = q.last(param).filter(|_| param == "ip" || ip6_allowed) else {
            continue;
        };
        regex::Regex::new(&listing::anchored(pattern)).map_err(|_| bad_param(param, pattern))?;
        ip_conds.push(Cond::element_matches(
            "addresses",
            "version",
            version,
            "addr",
            pattern,
        ));
    }
    if !ip_conds.is_empty() {
        conds.push(Cond::any(ip_conds));
    }
    let statuses: Vec<String> = q
        .all("status")
        .iter()
        .map(|s| s.to_ascii_uppercase())
        .collect();
    if !statuses.is_empty() {
        conds.push(instances::status_is(&statuses));
    }
    let tags = if ApiVersion::of(req).at_least(26) {
        q.tag_filter()
    } else {
        TagFilter::default()
    };
    let order = sort_params(&q, ctx)?;
    let mut listing = Listing {
        table: &instances::TABLE,
        conds,
        tags,
        order,
        after: None,
        limit: Some(NextLink::WhenFull.ask(limit)),
    };
    if let Some(m) = q.last("marker") {
        // As Nova (read_deleted='yes'): a marker deleted since the last page still marks the
        // place.
        let not_found = || bad(format!("marker [{m}] not found"));
        let uuid: InstanceUuid = m.parse().map_err(|_| not_found())?;
        let order = listing.total_order();
        listing.after = Some(
            listing::marker(
                &state.db,
                &instances::TABLE,
                Arg::Uuid(uuid.0),
                marker_conds,
                &order,
            )
            .await?
            .ok_or_else(not_found)?,
        );
    }
    let servers = match instances::page(&state.db, &listing).await {
        // The database refused a pattern the check above took (their dialects differ): name
        // the filters that carry one.
        Err(DbError::BadPattern(_)) => {
            let given: Vec<&str> = ["name", "ip", "ip6"]
                .into_iter()
                .filter(|p| q.last(p).is_some())
                .collect();
            return Err(bad(format!(
                "Invalid input for query parameters {}: not a regular expression this \
                 database takes.",
                given.join(", ")
            )));
        }
        other => other?,
    };
    let page = NextLink::WhenFull.page(servers, limit);
    // As Nova: a full page gets a link to the next one (which may turn out empty).
    let next = page
        .next
        .then(|| page.rows.last().map(|i| i.uuid.to_string()))
        .flatten();
    Ok(Page {
        servers: page.rows,
        next,
        limit,
    })
}

/// Sort keys Nova accepts that this service holds no value for (every server has the same
/// one), so sorting by them changes nothing; and keys Nova ignores silently.
pub(super) const SORT_KEYS_WITHOUT_EFFECT: &[&str] = &[
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "config_drive",
    "instance_type_id",
    "kernel_id",
    "launch_index",
    "progress",
    "ramdisk_id",
    "root_device_name",
    // Nova's SERVER_LIST_IGNORE_SORT_KEY.
    "architecture",
    "cell_name",
    "cleaned",
    "default_ephemeral_device",
    "default_swap_device",
    "deleted",
    "deleted_at",
    "disable_terminate",
    "ephemeral_gb",
    "ephemeral_key_uuid",
    "id",
    "key_data",
    "launched_on",
    "locked",
    "memory_mb",
    "os_type",
    "reservation_id",
    "root_gb",
    "shutdown_terminate",
    "user_data",
    "vcpus",
    "vm_mode",
];

/// `sort_key`/`sort_dir` pairs as Nova reads them (nova.api.openstack.common.get_sort_params):
/// the n-th direction goes with the n-th key; a key without one gets the first direction given
/// (descending when none). Sorting by `host` or `node` is for admins (403).
pub(super) fn sort_params(q: &Query, ctx: &RequestContext) -> ApiResult<Vec<(Column, Dir)>> {
    let keys = q.all("sort_key");
    // Each key once (a repeated one orders nothing more, and keyset paging costs the square of
    // the keys' count), and so at most as many keys as there are; at most one direction each.
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    for key in &keys {
        if !seen.insert(*key) {
            return Err(bad(format!(
                "Invalid input for query parameters sort_key. Value: {key}. It is given more than once."
            )));
        }
    }
    if q.all("sort_dir").len() > keys.len().max(1) {
        return Err(bad(
            "Invalid input for query parameters sort_dir: more directions than sort keys.",
        ));
    }
    let mut dirs = Vec::new();
    for d in q.all("sort_dir") {
        dirs.push(match d {
            "asc" => Dir::Asc,
            "desc" => Dir::Desc,
            other => {
                return Err(bad(format!(
                    "Invalid input for query parameters sort_dir. Value: {other}. '{other}' is not one of ['asc', 'desc']"
                )))
            }
        });
    }
    let default = dirs.first().copied().unwrap_or(Dir::Desc);
    let mut sort: Vec<(SortKey, Dir)> = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        if (*key == "host" || *key == "node") && !ctx.is_admin() {
            return Err(ApiError::Forbidden(format!(
                "Only administrators can sort servers by {key}"
            )));
        }
        let dir = dirs.get(n).copied().unwrap_or(default);
        match SortKey::parse(key) {
            Some(k) => sort.push((k, dir)),
            None if SORT_KEYS_WITHOUT_EFFECT.contains(key) => {}
            None => {
                return Err(bad(format!(
                    "Invalid input for query parameters sort_key. Value: {key}."
                )))
            }
        }
    }
    // As Nova's `process_sort_params`: the keys asked for, then `created_at` and the id (here
    // the uuid, which the list engine adds) unless already there, in the first direction
    // asked for (default descending) — a total order, which keyset paging needs.
    let default = sort.first().map_or(default, |(_, d)| *d);
    if !sort.iter().any(|(k, _)| *k == SortKey::CreatedAt) {
        sort.push((SortKey::CreatedAt, default));
    }
    Ok(sort.into_iter().map(|(k, d)| (k.column(), d)).collect())
}

/// `servers_links` for a full page: the same query with `marker` set to the page's last.
pub(super) fn next_link(req: &HttpRequest, page: &Page, path: &str) -> Option<Value> {
    let marker = page.next.as_ref()?;
    let base = PublicUrl::of(req).0;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k != "marker" && k != "limit" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("limit", &page.limit.to_string());
    query.append_pair("marker", marker);
    Some(json!([{"rel": "next", "href": format!("{base}/v2.1/{path}?{}", query.finish())}]))
}

pub(super) async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let url = PublicUrl::of(&req);
    let page = list_instances(&req, &ctx, &state).await?;
    let items: Vec<_> = page
        .servers
        .iter()
        .map(|i| views::server_summary(&url, i))
        .collect();
    let body = ServerList {
        servers: items,
        servers_links: next_link(&req, &page, "servers"),
    };
    Ok(HttpResponse::Ok().json(&body))
}

/// A listing's body, serialised as it is (no JSON tree in between).
#[derive(serde::Serialize)]
pub(super) struct ServerList<T> {
    servers: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    servers_links: Option<Value>,
}

pub(super) async fn detail(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let url = PublicUrl::of(&req);
    let version = ApiVersion::of(&req);
    let page = list_instances(&req, &ctx, &state).await?;
    let host_status = host_status(&state, &ctx, version).await?;
    let host_zones = nova_db::aggregates::host_zones(&state.db).await?;
    let security_groups = nova_db::ports::server_security_groups(
        &state.db,
        &page
            .servers
            .iter()
            .map(|i| i.uuid.to_string())
            .collect::<Vec<_>>(),
    )
    .await?;
    let viewer = views::ServerViewer {
        url: &url,
        ctx: &ctx,
        version,
        host_status: &host_status,
        host_zones: &host_zones,
        security_groups: &security_groups,
        server_groups: &[],
        kind: views::ViewKind::List,
    };
    let items: Vec<_> = page
        .servers
        .iter()
        .map(|i| views::server_detail(&viewer, i))
        .collect();
    let body = ServerList {
        servers: items,
        servers_links: next_link(&req, &page, "servers/detail"),
    };
    Ok(HttpResponse::Ok().json(&body))
}
