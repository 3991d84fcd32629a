//! Quotas: `/os-quota-sets` (show, defaults, detail; update and reset for admins), `/limits`,
//! and the checks at server and key pair create.
//!
//! The resources and their defaults are Nova's (`[quota]` in nova.conf). By microversion, as
//! Nova: the network quotas (floating and fixed IPs, security groups and rules) are gone from
//! 2.36, the injected-file quotas from 2.57; `/limits` drops `maxImageMeta` from 2.39.
//! Instances, cores, RAM, key pairs, server groups and their members are counted and enforced
//! here (the groups' at their create and at a server create into a group); the others are
//! shown with their limits and nothing in use.
//!
//! Like Nova's, the check at create reads usage and then writes: two creates racing at the
//! last free slot may both pass (Nova narrows this with a recheck after the write).

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::policy::NOVA;
use api_toolkit::RequestContext;
use api_toolkit::{bad, ApiError, ApiResult};
use nova_db::quotas;
use nova_db::Db;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Nova's defaults, and the microversion range each resource is shown in (until: last minor).
const RESOURCES: &[(&str, i64, Option<u16>)] = &[
    ("instances", 10, None),
    ("cores", 20, None),
    ("ram", 51200, None),
    ("key_pairs", 100, None),
    ("metadata_items", 128, None),
    ("server_groups", 10, None),
    ("server_group_members", 10, None),
    ("floating_ips", 10, Some(35)),
    ("fixed_ips", -1, Some(35)),
    ("security_groups", 10, Some(35)),
    ("security_group_rules", 20, Some(35)),
    ("injected_files", 5, Some(56)),
    ("injected_file_content_bytes", 10240, Some(56)),
    ("injected_file_path_bytes", 255, Some(56)),
];

fn shown(until: Option<u16>, v: ApiVersion) -> bool {
    until.is_none_or(|last| v <= ApiVersion(2, last))
}

/// Where the `default` quota class's limits are kept: in the quota table, under a key no
/// project id can be (ids are hex).
pub(crate) const DEFAULT_CLASS: &str = "class:default";

/// Every resource the quotas know, with Nova's default and the last microversion a project's
/// quota set shows it in.
pub(crate) fn resources() -> &'static [(&'static str, i64, Option<u16>)] {
    RESOURCES
}

/// The default limit of every resource: the `default` quota class's where an admin set one
/// (`os-quota-class-sets`), else Nova's.
pub async fn defaults_of(db: &Db) -> ApiResult<BTreeMap<&'static str, i64>> {
    let class = quotas::limits(db, DEFAULT_CLASS).await?;
    Ok(RESOURCES
        .iter()
        .map(|(r, default, _)| (*r, class.get(*r).copied().unwrap_or(*default)))
        .collect())
}

/// The project's limit of every resource (its own, else the default).
pub async fn limits_of(db: &Db, project: &str) -> ApiResult<BTreeMap<&'static str, i64>> {
    let (set, defaults) = futures::try_join!(
        async { Ok::<_, ApiError>(quotas::limits(db, project).await?) },
        defaults_of(db)
    )?;
    Ok(defaults
        .into_iter()
        .map(|(r, default)| (r, set.get(r).copied().unwrap_or(default)))
        .collect())
}

/// What the project uses of the resources that are counted.
async fn usage_of(db: &Db, project: &str) -> ApiResult<BTreeMap<&'static str, i64>> {
    let ((instances, cores, ram), groups) = futures::try_join!(
        quotas::server_usage(db, project),
        nova_db::server_groups::count(db, project)
    )?;
    Ok(BTreeMap::from([
        ("instances", instances),
        ("cores", cores),
        ("ram", ram),
        ("server_groups", groups),
    ]))
}

/// A project's limits and what it uses, read together for a server create.
pub struct ProjectQuota {
    limits: BTreeMap<&'static str, i64>,
    used: BTreeMap<&'static str, i64>,
}

impl ProjectQuota {
    pub async fn of(db: &Db, project: &str) -> ApiResult<Self> {
        let (limits, used) = futures::try_join!(limits_of(db, project), usage_of(db, project))?;
        Ok(Self { limits, used })
    }

    /// The same limits with the servers' usage as read again (inside the create's
    /// transaction).
    pub fn with_server_usage(&self, u: nova_db::instances::ServerUsage) -> Self {
        let mut used = self.used.clone();
        used.extend([
            ("instances", u.instances),
            ("cores", u.cores),
            ("ram", u.ram),
        ]);
        Self {
            limits: self.limits.clone(),
            used,
        }
    }

    /// Refuses a server create that would go over the quota, with Nova's message (403).
    pub fn check_server_create(&self, count: i64, vcpus: i64, memory_mb: i64) -> ApiResult<()> {
        let wants = [
            ("instances", count),
            ("cores", vcpus * count),
            ("ram", memory_mb * count),
        ];
        for (resource, requested) in wants {
            let limit = self.limits[resource];
            let in_use = self.used.get(resource).copied().unwrap_or(0);
            if limit >= 0 && in_use + requested > limit {
                return Err(ApiError::Forbidden(format!(
                    "Quota exceeded for {resource}: Requested {requested}, but already used {in_use} of {limit} {resource}"
                )));
            }
        }
        Ok(())
    }

    /// Refuses a resize whose added vCPUs or memory would go over the quota (Nova's
    /// `_check_quota_for_upsize`: only the increase counts), with Nova's message (403).
    pub fn check_upsize(&self, more_vcpus: i64, more_memory_mb: i64) -> ApiResult<()> {
        for (resource, requested) in [("cores", more_vcpus), ("ram", more_memory_mb)] {
            let limit = self.limits[resource];
            let in_use = self.used.get(resource).copied().unwrap_or(0);
            if requested > 0 && limit >= 0 && in_use + requested > limit {
                return Err(ApiError::Forbidden(format!(
                    "Quota exceeded for {resource}: Requested {requested}, but already used {in_use} of {limit} {resource}"
                )));
            }
        }
        Ok(())
    }

    /// Refuses `count` more members of a group that has `members` beyond the
    /// `server_group_members` quota, with Nova's message (403).
    pub fn check_group_members(&self, members: i64, count: i64) -> ApiResult<()> {
        let limit = self.limits["server_group_members"];
        if limit >= 0 && members + count > limit {
            return Err(ApiError::Forbidden(
                "Quota exceeded, too many servers in group".into(),
            ));
        }
        Ok(())
    }

    /// Refuses more injected files than the `injected_files` quota (Nova's
    /// `OnsetFileLimitExceeded`, 403).
    pub fn check_injected_files(&self, files: usize) -> ApiResult<()> {
        let limit = self.limits["injected_files"];
        if limit >= 0 && i64::try_from(files).unwrap_or(i64::MAX) > limit {
            return Err(ApiError::Forbidden(
                "Personality file limit exceeded".into(),
            ));
        }
        Ok(())
    }

    /// Refuses more metadata items on a server than the `metadata_items` quota, with Nova's
    /// `MetadataLimitExceeded` (403).
    pub fn check_metadata_items(&self, items: usize) -> ApiResult<()> {
        check_metadata_items(self.limits["metadata_items"], items)
    }
}

/// Nova's `MetadataLimitExceeded` (403) when `items` is over `limit` (-1: unlimited).
pub fn check_metadata_items(limit: i64, items: usize) -> ApiResult<()> {
    if limit >= 0 && i64::try_from(items).unwrap_or(i64::MAX) > limit {
        return Err(ApiError::Forbidden(format!(
            "Maximum number of metadata items exceeds {limit}"
        )));
    }
    Ok(())
}

/// Refuses a key pair beyond the user's `key_pairs` quota (Nova's limit is per user, set on
/// the project).
/// The project's key pair limit, and whether `user` is already at it (checked before any key
/// is generated; the create checks again, atomically, see `keypairs::create_within_quota`).
pub async fn check_keypair_create(db: &Db, project: &str, user: &str) -> ApiResult<i64> {
    let limit = limits_of(db, project).await?["key_pairs"];
    if limit >= 0 && quotas::keypair_count(db, user).await? >= limit {
        return Err(keypair_quota_exceeded());
    }
    Ok(limit)
}

/// Nova's refusal of a key pair over the quota.
pub fn keypair_quota_exceeded() -> ApiError {
    ApiError::Forbidden("Quota exceeded, too many key pairs.".into())
}

/// Members read their own project's quotas; admins any project's.
fn may_read(ctx: &RequestContext, project: &str) -> ApiResult<()> {
    if ctx.is_admin() || ctx.project_id == project {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.".into(),
        ))
    }
}

fn quota_set(limits: &BTreeMap<&str, i64>, v: ApiVersion) -> Map<String, Value> {
    RESOURCES
        .iter()
        .filter(|(_, _, until)| shown(*until, v))
        .map(|(r, _, _)| ((*r).to_owned(), json!(limits[r])))
        .collect()
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read(&ctx, &project)?;
    let v = ApiVersion::of(&req);
    let mut set = quota_set(&limits_of(&state.db, &project).await?, v);
    set.insert("id".into(), json!(project.as_str()));
    Ok(HttpResponse::Ok().json(json!({ "quota_set": set })))
}

async fn defaults(
    req: HttpRequest,
    _ctx: RequestContext,
    state: web::Data<AppState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    let limits = defaults_of(&state.db).await?;
    let mut set = quota_set(&limits, v);
    set.insert("id".into(), json!(project.as_str()));
    Ok(HttpResponse::Ok().json(json!({ "quota_set": set })))
}

async fn detail(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    may_read(&ctx, &project)?;
    let v = ApiVersion::of(&req);
    let limits = limits_of(&state.db, &project).await?;
    let used = usage_of(&state.db, &project).await?;
    let mut set: Map<String, Value> = RESOURCES
        .iter()
        .filter(|(_, _, until)| shown(*until, v))
        .map(|(r, _, _)| {
            let detail = json!({
                "limit": limits[r],
                "in_use": used.get(r).copied().unwrap_or(0),
                "reserved": 0,
            });
            ((*r).to_owned(), detail)
        })
        .collect();
    set.insert("id".into(), json!(project.as_str()));
    Ok(HttpResponse::Ok().json(json!({ "quota_set": set })))
}

async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    project: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-quota-sets:update")?;
    state.check_project(&project).await?;
    let v = ApiVersion::of(&req);
    let body = api_toolkit::body::json(&raw)?;
    let set = body
        .get("quota_set")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad("Invalid input for field/attribute quota_set. 'quota_set' is a required property")
        })?;
    let force = match set.get("force") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            return Err(bad(format!(
                "Invalid input for field/attribute force. Value: {other}. is not a boolean"
            )))
        }
    };
    let mut wanted = BTreeMap::new();
    for (key, value) in set {
        if key == "force" {
            continue;
        }
        let known = RESOURCES
            .iter()
            .any(|(r, _, until)| r == key && shown(*until, v));
        if !known {
            return Err(bad(format!(
                "Invalid input for field/attribute quota_set. Additional properties are not allowed ('{key}' was unexpected)"
            )));
        }
        let n = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n| *n >= -1 && *n <= i64::from(i32::MAX))
            .ok_or_else(|| {
                bad(format!(
                    "Invalid input for field/attribute {key}. Value: {value}. must be an integer between -1 and {}",
                    i32::MAX
                ))
            })?;
        wanted.insert(key.clone(), n);
    }
    if !force {
        let used = usage_of(&state.db, &project).await?;
        for (key, limit) in &wanted {
            let in_use = used.get(key.as_str()).copied().unwrap_or(0);
            if *limit >= 0 && *limit < in_use {
                return Err(bad(format!(
                    "Quota limit {limit} for {key} must be greater than or equal to already used and reserved {in_use}."
                )));
            }
        }
    }
    quotas::set(&state.db, &project, &wanted).await?;
    let set = quota_set(&limits_of(&state.db, &project).await?, v);
    Ok(HttpResponse::Ok().json(json!({ "quota_set": set })))
}

async fn reset(
    ctx: RequestContext,
    state: web::Data<AppState>,
    project: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_admin(&ctx, "os_compute_api:os-quota-sets:delete")?;
    let resources: Vec<&str> = RESOURCES.iter().map(|(r, _, _)| *r).collect();
    quotas::reset(&state.db, &project, &resources).await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(serde::Deserialize)]
struct LimitsQuery {
    tenant_id: Option<String>,
}

/// `GET /limits`: the project's absolute limits and usage (no rate limits, as Nova since
/// Newton).
async fn limits(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    let q = web::Query::<LimitsQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("Invalid query: {e}")))?;
    // As Nova: another project's limits for admins; for others the parameter is ignored.
    let project = match &q.tenant_id {
        Some(t) if ctx.is_admin() => t.clone(),
        _ => ctx.project_id.clone(),
    };
    let l = limits_of(&state.db, &project).await?;
    let used = usage_of(&state.db, &project).await?;
    let mut absolute = json!({
        "maxTotalInstances": l["instances"],
        "maxTotalCores": l["cores"],
        "maxTotalRAMSize": l["ram"],
        "maxTotalKeypairs": l["key_pairs"],
        "maxServerMeta": l["metadata_items"],
        "maxServerGroups": l["server_groups"],
        "maxServerGroupMembers": l["server_group_members"],
        "totalInstancesUsed": used["instances"],
        "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"],
        "totalServerGroupsUsed": used["server_groups"],
    });
    if !v.at_least(36) {
        absolute["maxSecurityGroups"] = json!(l["security_groups"]);
        absolute["maxSecurityGroupRules"] = json!(l["security_group_rules"]);
        absolute["maxTotalFloatingIps"] = json!(l["floating_ips"]);
        absolute["totalFloatingIpsUsed"] = json!(0);
        absolute["totalSecurityGroupsUsed"] = json!(0);
    }
    if !v.at_least(39) {
        absolute["maxImageMeta"] = json!(l["metadata_items"]);
    }
    if !v.at_least(57) {
        absolute["maxPersonality"] = json!(l["injected_files"]);
        absolute["maxPersonalitySize"] = json!(l["injected_file_content_bytes"]);
    }
    Ok(HttpResponse::Ok().json(json!({"limits": {"rate": [], "absolute": absolute}})))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/limits").route(web::get().to(limits)))
        .service(
            web::resource("/os-quota-sets/{project}")
                .route(web::get().to(show))
                .route(web::put().to(update))
                .route(web::delete().to(reset)),
        )
        .service(web::resource("/os-quota-sets/{project}/defaults").route(web::get().to(defaults)))
        .service(web::resource("/os-quota-sets/{project}/detail").route(web::get().to(detail)));
}
