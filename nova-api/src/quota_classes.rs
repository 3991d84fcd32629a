//! `/os-quota-class-sets/{class}` (admin): the `default` quota class, whose limits are every
//! project's defaults (Nova's only class that means anything; others read as the defaults
//! and change nothing else).

use crate::quotas::{defaults_of, resources, DEFAULT_CLASS};
use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiResult, RequestContext};
use nova_db::quotas;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Whether a quota class view shows `resource` at `v`: the network resources until 2.49,
/// the injected-file ones until 2.56, the server group ones from 2.50 (Nova's quota class
/// views).
fn shown(resource: &str, v: ApiVersion) -> bool {
    match resource {
        "floating_ips" | "fixed_ips" | "security_groups" | "security_group_rules" => {
            !v.at_least(50)
        }
        "injected_files" | "injected_file_content_bytes" | "injected_file_path_bytes" => {
            !v.at_least(57)
        }
        "server_groups" | "server_group_members" => v.at_least(50),
        _ => true,
    }
}

fn view(class: &str, limits: &BTreeMap<&str, i64>, v: ApiVersion) -> Value {
    let mut set: Map<String, Value> = limits
        .iter()
        .filter(|(r, _)| shown(r, v))
        .map(|(r, l)| ((*r).to_owned(), json!(l)))
        .collect();
    set.insert("id".into(), json!(class));
    json!({ "quota_class_set": set })
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    class: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-quota-class-sets:show")?;
    let limits = defaults_of(&state.db).await?;
    Ok(HttpResponse::Ok().json(view(&class, &limits, ApiVersion::of(&req))))
}

async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    class: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-quota-class-sets:update")?;
    let v = ApiVersion::of(&req);
    let body = body::json(&raw)?;
    let set = body
        .get("quota_class_set")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad("Invalid input for field/attribute quota_class_set. 'quota_class_set' is a required property")
        })?;
    let mut wanted = BTreeMap::new();
    for (key, value) in set {
        let known = resources().iter().any(|(r, _, _)| r == key) && shown(key, v);
        if !known {
            return Err(body::unexpected(key));
        }
        let limit = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .filter(|l| *l >= -1)
            .ok_or_else(|| invalid(key, value, "is not an integer of -1 or more"))?;
        wanted.insert(key.clone(), limit);
    }
    // Only the default class sets every project's defaults (as Nova uses only it).
    if class.as_str() == "default" {
        quotas::set(&state.db, DEFAULT_CLASS, &wanted).await?;
    }
    let mut limits = defaults_of(&state.db).await?;
    if class.as_str() != "default" {
        for (r, l) in &wanted {
            if let Some(slot) = limits.get_mut(r.as_str()) {
                *slot = *l;
            }
        }
    }
    let mut out = view(&class, &limits, v);
    // Nova's update answers without the id.
    if let Some(set) = out["quota_class_set"].as_object_mut() {
        set.remove("id");
    }
    Ok(HttpResponse::Ok().json(out))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/os-quota-class-sets/{class}")
            .route(web::get().to(show))
            .route(web::put().to(update)),
    );
}
