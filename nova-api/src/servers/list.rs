//! `GET /servers` and `GET /servers/detail`: Nova's filters, sort keys and paging.

use super::host_status;
use crate::versions::ApiVersion;
use crate::{views, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ids::InstanceUuid;
use nova_db::instances::{self};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Nova's `max_limit`: the most servers one page returns.
pub(super) const MAX_LIMIT: i64 = 1000;

/// One page of a server listing, and the marker of the next page when there may be one.
pub(super) struct Page {
    servers: Vec<nova_core::model::Instance>,
    next: Option<String>,
    limit: i64,
}

/// `GET /servers` and `/servers/detail` with Nova's filters: `name` (a regular expression,
/// matched anywhere), `status`, `image`, `flavor`, `changes-since`, and for admins `host` and
/// `all_tenants`; `limit` (at most 1,000) and `marker` paging, newest first. Filters Nova
/// reserves for admins are ignored for others, as Nova does; unknown ones too.
pub(super) async fn list_instances(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &AppState,
) -> ApiResult<Page> {
    let mut q: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        q.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    let one = |k: &str| q.get(k).and_then(|v| v.last()).map(String::as_str);
    let limit = match one("limit") {
        None => MAX_LIMIT,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => n.min(MAX_LIMIT),
            _ => return Err(bad("limit param must be an integer")),
        },
    };
    // As Nova: `all_tenants` without a value means true, and it is for admins only (403).
    let all = match one("all_tenants") {
        None => false,
        Some(v) => !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        ),
    };
    if all && !ctx.is_admin() {
        return Err(ApiError::Forbidden(
            "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed."
                .into(),
        ));
    }
    let project = if all {
        None
    } else {
        Some(ctx.project_id.as_str())
    };
    let changes_since = match one("changes-since") {
        None => None,
        Some(t) => Some(nova_core::time::parse_iso8601(t).ok_or_else(|| {
            bad(format!(
                "Invalid input for query parameters changes-since. Value: {t}."
            ))
        })?),
    };
    let name = match one("name") {
        None => None,
        Some(n) => Some(regex::Regex::new(n).map_err(|_| {
            bad(format!(
                "Invalid input for query parameters name. Value: {n}."
            ))
        })?),
    };
    let statuses: Option<Vec<String>> = q
        .get("status")
        .map(|v| v.iter().map(|s| s.to_ascii_uppercase()).collect());
    let flavor = one("flavor").map(|f| f.rsplit('/').next().unwrap_or(f).to_owned());
    let image = one("image").map(|i| i.rsplit('/').next().unwrap_or(i).to_owned());
    let host = one("host").filter(|_| ctx.is_admin());
    let after = match one("marker") {
        None => None,
        Some(m) => {
            // As Nova (read_deleted='yes'): a marker deleted since the last page still marks
            // the place.
            let found = match m.parse::<InstanceUuid>().ok() {
                Some(u) => instances::get_any(&state.db, u).await?,
                None => None,
            };
            let found = found
                .filter(|i| ctx.is_admin() || i.project_id == ctx.project_id)
                .ok_or_else(|| bad(format!("marker [{m}] not found")))?;
            Some(found)
        }
    };
    let sort = sort_params(&q, ctx)?;
    // Tag filters (2.26), each a comma-separated list: all of `tags`, any of `tags-any`, not
    // all of `not-tags`, none of `not-tags-any` (Nova's semantics).
    let tag_list = |key: &str| -> Option<Vec<String>> {
        if !ApiVersion::of(req).at_least(26) {
            return None;
        }
        one(key).map(|v| v.split(',').map(str::to_owned).collect())
    };
    let (tags_all, tags_any) = (tag_list("tags"), tag_list("tags-any"));
    let (not_tags, not_tags_any) = (tag_list("not-tags"), tag_list("not-tags-any"));
    let keep = |i: &nova_core::model::Instance| {
        let has = |t: &String| i.tags.contains(t);
        tags_all.as_ref().is_none_or(|ts| ts.iter().all(has))
            && tags_any.as_ref().is_none_or(|ts| ts.iter().any(has))
            && not_tags.as_ref().is_none_or(|ts| !ts.iter().all(has))
            && not_tags_any.as_ref().is_none_or(|ts| !ts.iter().any(has))
            && name.as_ref().is_none_or(|r| r.is_match(&i.name))
            && statuses.as_ref().is_none_or(|s| {
                s.iter()
                    .any(|s| s == nova_core::model::api_status(i.vm_state, i.task_state))
            })
            && flavor.as_ref().is_none_or(|f| *f == i.flavor.flavorid)
    };
    // The database pages; filters it cannot apply are applied here, reading on page by page
    // until the page is full or the servers run out.
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let chunk = instances::list_page(
            &state.db,
            &instances::ListQuery {
                project,
                host,
                image_ref: image.as_deref(),
                changes_since,
                sort: sort.clone(),
                after: cursor,
                limit: limit.max(1),
            },
        )
        .await?;
        let exhausted = i64::try_from(chunk.len()).unwrap_or(i64::MAX) < limit.max(1);
        cursor = chunk.last().cloned();
        for i in chunk {
            if i64::try_from(out.len()).unwrap_or(i64::MAX) < limit && keep(&i) {
                out.push(i);
            }
        }
        if exhausted || i64::try_from(out.len()).unwrap_or(i64::MAX) >= limit {
            break;
        }
    }
    // As Nova: a full page gets a link to the next one (which may turn out empty).
    let next = (limit > 0 && i64::try_from(out.len()).unwrap_or(0) == limit)
        .then(|| out.last().map(|i| i.uuid.to_string()))
        .flatten();
    Ok(Page {
        servers: out,
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
pub(super) fn sort_params(
    q: &HashMap<String, Vec<String>>,
    ctx: &RequestContext,
) -> ApiResult<Vec<(instances::SortKey, instances::SortDir)>> {
    let keys = q.get("sort_key").cloned().unwrap_or_default();
    let dirs = q.get("sort_dir").cloned().unwrap_or_default();
    let mut parsed_dirs = Vec::with_capacity(dirs.len());
    for d in &dirs {
        parsed_dirs.push(match d.as_str() {
            "asc" => instances::SortDir::Asc,
            "desc" => instances::SortDir::Desc,
            other => {
                return Err(bad(format!(
                    "Invalid input for query parameters sort_dir. Value: {other}. '{other}' is not one of ['asc', 'desc']"
                )))
            }
        });
    }
    let default = parsed_dirs
        .first()
        .copied()
        .unwrap_or(instances::SortDir::Desc);
    let mut sort = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        if (key == "host" || key == "node") && !ctx.is_admin() {
            return Err(ApiError::Forbidden(format!(
                "Only administrators can sort servers by {key}"
            )));
        }
        let dir = parsed_dirs.get(n).copied().unwrap_or(default);
        match instances::SortKey::parse(key) {
            Some(k) => sort.push((k, dir)),
            None if SORT_KEYS_WITHOUT_EFFECT.contains(&key.as_str()) => {}
            None => {
                return Err(bad(format!(
                    "Invalid input for query parameters sort_key. Value: {key}."
                )))
            }
        }
    }
    if sort.is_empty() && !parsed_dirs.is_empty() {
        // Directions without keys apply to Nova's default key.
        sort.push((instances::SortKey::CreatedAt, default));
    }
    Ok(sort)
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
    let viewer = views::ServerViewer {
        url: &url,
        ctx: &ctx,
        version,
        host_status: &host_status,
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
