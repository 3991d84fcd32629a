//! `/os-instance_usage_audit_log` (admin): how the periodic instance usage audit went on each
//! compute host for the last completed audit period (a month, as Nova's default). This
//! service runs no such audit (Nova's `instance_usage_audit` off, its default), so every
//! compute host is one that has not run it.

use crate::AppState;
use actix_web::{web, HttpResponse};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiResult, RequestContext};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Utc};
use nova_core::model::COMPUTE_BINARY;
use nova_db::nodes;
use serde_json::{json, Value};

/// The last month that ended before `before`: (its first day, the next month's first day).
fn last_completed_month(before: NaiveDateTime) -> (NaiveDateTime, NaiveDateTime) {
    let first = |y: i32, m: u32| {
        NaiveDate::from_ymd_opt(y, m, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default()
    };
    let end = first(before.year(), before.month());
    let (y, m) = if before.month() == 1 {
        (before.year() - 1, 12)
    } else {
        (before.year(), before.month() - 1)
    };
    (first(y, m), end)
}

async fn audit(state: &AppState, before: NaiveDateTime) -> ApiResult<Value> {
    let (begin, end) = last_completed_month(before);
    let mut hosts: Vec<String> = nodes::services(&state.db)
        .await?
        .into_iter()
        .filter(|s| s.binary == COMPUTE_BINARY)
        .map(|s| s.host)
        .collect();
    hosts.sort();
    hosts.dedup();
    let n = hosts.len();
    let fmt = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    Ok(json!({
        "period_beginning": fmt(begin),
        "period_ending": fmt(end),
        "num_hosts": n,
        "num_hosts_done": 0,
        "num_hosts_running": 0,
        "num_hosts_not_run": n,
        "hosts_not_run": hosts,
        "total_instances": 0,
        "total_errors": 0,
        "overall_status": if n == 0 {
            "ALL hosts done. 0 errors.".to_owned()
        } else {
            format!("0 of {n} hosts done. 0 errors.")
        },
        "log": {},
    }))
}

async fn index(ctx: RequestContext, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-instance-usage-audit-log:list")?;
    let log = audit(&state, Utc::now().naive_utc()).await?;
    Ok(HttpResponse::Ok().json(json!({ "instance_usage_audit_logs": log })))
}

async fn show(
    ctx: RequestContext,
    state: web::Data<AppState>,
    before: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-instance-usage-audit-log:show")?;
    let format = if before.contains('.') {
        "%Y-%m-%d %H:%M:%S%.f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let at = NaiveDateTime::parse_from_str(&before, format)
        .map_err(|_| bad(format!("Invalid timestamp for date {before}")))?;
    let log = audit(&state, at).await?;
    Ok(HttpResponse::Ok().json(json!({ "instance_usage_audit_log": log })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/os-instance_usage_audit_log").route(web::get().to(index)))
        .service(web::resource("/os-instance_usage_audit_log/{before}").route(web::get().to(show)));
}
