//! `/os-security-groups` and `/os-security-group-rules` (until 2.35, as Nova): the networking
//! service's security groups as Nova's deprecated proxy shows and changes them
//! (`nova/api/openstack/compute/security_groups.py` over `nova/network/security_group_api.py`,
//! Neutron's side): ingress rules only, in Nova's rule format, made with Nova's checks and
//! given Neutron's answers as Nova maps them (a conflict at create is Nova's 403, a group in
//! use at delete its 400). The groups are the same rows the networking API serves, so the
//! hosts' packet filters follow every change.

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body::{self, invalid};
use api_toolkit::policy::NOVA;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::time::now_ms;
use nova_db::listing::{Arg, Cond, Listing};
use nova_db::security_groups::{self as store, Group, Rule, RuleCreated};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Gone from 2.36, as in Nova (the generic 404, before anything else is looked at).
fn removed_at_2_36(req: &HttpRequest) -> ApiResult<()> {
    if ApiVersion::of(req).at_least(36) {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    Ok(())
}

/// Nova's check of a path id (`validate_id`): a uuid, or 400.
fn check_id(id: &str) -> ApiResult<()> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(bad("Security group id should be uuid"));
    }
    Ok(())
}

/// Neutron's 404, which Nova passes on.
fn group_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Security group {id} does not exist"))
}

/// A group the caller may see: its project's, or any for an admin (Neutron's rule).
async fn find_group(state: &AppState, ctx: &RequestContext, id: &str) -> ApiResult<Group> {
    match store::get_group(&state.db, id).await? {
        Some(g) if ctx.is_admin() || g.project_id == ctx.project_id => Ok(g),
        _ => Err(group_not_found(id)),
    }
}

/// Nova's rule format (`_format_security_group_rule`) of an ingress rule: a protocol without
/// ports as the whole range (TCP/UDP) or -1, the remote as a group (`remote`) or a CIDR.
pub(crate) fn rule_view(r: &Rule, remote: Option<&Group>) -> Value {
    let (from, to) = match (&r.protocol, r.port_range_min, r.port_range_max) {
        (Some(p), None, None) => {
            // Nova's `_convert_to_nova_security_group_rule_format`: by name only.
            let p = p.to_ascii_lowercase();
            if matches!(p.as_str(), "tcp" | "udp") {
                (json!(1), json!(65535))
            } else {
                (json!(-1), json!(-1))
            }
        }
        (_, min, max) => (json!(min), json!(max)),
    };
    let (group, ip_range) = match remote {
        Some(g) => (
            json!({"name": g.name, "tenant_id": g.project_id}),
            json!({}),
        ),
        None => (
            json!({}),
            json!({"cidr": r.remote_ip_prefix.as_deref().unwrap_or("0.0.0.0/0")}),
        ),
    };
    json!({
        "id": r.id,
        "parent_group_id": r.security_group_id,
        "ip_protocol": r.protocol,
        "from_port": from,
        "to_port": to,
        "group": group,
        "ip_range": ip_range,
    })
}

/// Nova's group format: its ingress rules only (Neutron's egress rules are not Nova's); a
/// rule whose remote group the caller cannot read (another project's, for a member) is left
/// out, never shown as open to all — as Nova reads the remote group as the caller.
pub(crate) async fn group_views(
    db: &nova_db::Db,
    ctx: &RequestContext,
    groups: &[Group],
) -> ApiResult<Vec<Value>> {
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    let rules = store::rules_of(db, &ids).await?;
    let mut remotes: BTreeMap<String, Option<Group>> = BTreeMap::new();
    for r in rules
        .values()
        .flatten()
        .filter(|r| r.direction == "ingress")
    {
        if let Some(remote) = &r.remote_group_id {
            if !remotes.contains_key(remote) {
                let found = match groups.iter().find(|g| &g.id == remote) {
                    Some(g) => Some(g.clone()),
                    None => store::get_group(db, remote).await?,
                }
                .filter(|g| ctx.is_admin() || g.project_id == ctx.project_id);
                remotes.insert(remote.clone(), found);
            }
        }
    }
    Ok(groups
        .iter()
        .map(|g| {
            let rule_views: Vec<Value> = rules
                .get(&g.id)
                .into_iter()
                .flatten()
                .filter(|r| r.direction == "ingress")
                .filter_map(|r| match &r.remote_group_id {
                    None => Some(rule_view(r, None)),
                    Some(id) => remotes
                        .get(id)
                        .cloned()
                        .flatten()
                        .map(|g| rule_view(r, Some(&g))),
                })
                .collect();
            json!({
                "id": g.id,
                "name": g.name,
                "description": g.description,
                "tenant_id": g.project_id,
                "rules": rule_views,
            })
        })
        .collect())
}

async fn group_view(state: &AppState, ctx: &RequestContext, g: &Group) -> ApiResult<Value> {
    let mut views = group_views(&state.db, ctx, std::slice::from_ref(g)).await?;
    Ok(views.pop().unwrap_or(Value::Null))
}

/// The object under `key` of a request body (Nova's schema: required, an object).
fn object_of(raw: &[u8], key: &str) -> ApiResult<Map<String, Value>> {
    let body = body::json(raw)?;
    match body.get(key) {
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(v) => Err(invalid(key, v, &format!("{v} is not of type 'object'"))),
        None => Err(bad(format!("'{key}' is a required property"))),
    }
}

/// Nova's schema for a group's `name` and `description`: required strings of at most 255
/// characters (spaces kept).
fn group_fields(obj: &Map<String, Value>) -> ApiResult<(String, String)> {
    let field = |key: &str| -> ApiResult<String> {
        match obj.get(key) {
            Some(Value::String(s)) if s.chars().count() <= 255 => Ok(s.clone()),
            Some(v @ Value::String(_)) => Err(invalid(key, v, &format!("{v} is too long"))),
            Some(v) => Err(invalid(key, v, &format!("{v} is not of type 'string'"))),
            None => Err(bad(format!("'{key}' is a required property"))),
        }
    };
    Ok((field("name")?, field("description")?))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
    all_tenants: Option<String>,
}

/// `GET /os-security-groups`: the caller's project's groups (every project's for an admin who
/// asks `all_tenants`), by project and name; `limit` and `offset` slice the list first, as
/// Nova slices Neutron's.
async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|_| bad("Invalid input for query parameters."))?;
    let count = |name: &str, v: &Option<String>| -> ApiResult<Option<usize>> {
        v.as_deref()
            .map(|s| {
                s.parse::<usize>().map_err(|_| {
                    bad(format!(
                        "Invalid input for query parameters {name}. Value: {s}. \
                         '{s}' does not match '^[0-9]*$'"
                    ))
                })
            })
            .transpose()
    };
    // Nova's `limited`: a limit of 0 is no limit.
    let (limit, offset) = (count("limit", &q.limit)?, count("offset", &q.offset)?);
    let limit = limit.filter(|l| *l > 0);
    // Neutron makes the project's `default` group when its groups are first listed.
    store::default_for(&state.db, &ctx.project_id).await?;
    let conds = if ctx.is_admin() && q.all_tenants.is_some() {
        Vec::new()
    } else {
        vec![Cond::eq("project_id", Arg::Text(ctx.project_id.clone()))]
    };
    let listing = Listing {
        table: &store::GROUPS,
        conds,
        tags: Default::default(),
        order: vec![(nova_db::listing::CREATED_AT, nova_db::listing::Dir::Asc)],
        after: None,
        limit: None,
    };
    let mut groups: Vec<Group> = store::page_groups(&state.db, &listing)
        .await?
        .into_iter()
        .skip(offset.unwrap_or(0))
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    groups.sort_by(|a, b| (&a.project_id, &a.name).cmp(&(&b.project_id, &b.name)));
    let views = group_views(&state.db, &ctx, &groups).await?;
    Ok(HttpResponse::Ok().json(json!({ "security_groups": views })))
}

async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: RequestContext,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    check_id(&id)?;
    let group = find_group(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"security_group": group_view(&state, &ctx, &group).await?})))
}

/// As Neutron's create with Nova's mapping of its answers: a group named `default` (in any
/// case) and a project at its quota are Neutron's conflicts, Nova's 403.
async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    let obj = object_of(&raw, "security_group")?;
    let (name, description) = group_fields(&obj)?;
    NOVA.require_write(&ctx, "os_compute_api:os-security-groups:create")?;
    if name.eq_ignore_ascii_case("default") {
        return Err(ApiError::Forbidden(
            "Default security group already exists.".into(),
        ));
    }
    // Neutron makes a project's `default` group on its first use of groups.
    store::default_for(&state.db, &ctx.project_id).await?;
    let now = now_ms();
    let group = Group {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: ctx.project_id.clone(),
        name,
        description,
        stateful: true,
        is_default: false,
        tags: "[]".into(),
        revision_number: 0,
        created_at: now,
        updated_at: now,
    };
    // Neutron's: everything out, nothing in.
    let rules = [
        Rule::of_new_group(&group, "egress", "IPv4", false),
        Rule::of_new_group(&group, "egress", "IPv6", false),
    ];
    let limit = limit_of(&state, &ctx.project_id, "security_group").await?;
    if !store::create_group(&state.db, &group, &rules, limit).await? {
        return Err(ApiError::Forbidden(
            "Quota exceeded for resources: ['security_group'].".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({"security_group": group_view(&state, &ctx, &group).await?})))
}

/// A project's limit of groups or rules (negative: none): its quota, or Neutron's default.
async fn limit_of(state: &AppState, project: &str, resource: &str) -> ApiResult<i64> {
    let default = match resource {
        "security_group" => store::DEFAULT_GROUP_QUOTA,
        _ => store::DEFAULT_RULE_QUOTA,
    };
    Ok(nova_db::quotas::limits(&state.db, project)
        .await?
        .get(resource)
        .copied()
        .unwrap_or(default))
}

async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    let obj = object_of(&raw, "security_group")?;
    let (name, description) = group_fields(&obj)?;
    NOVA.require_write(&ctx, "os_compute_api:os-security-groups:update")?;
    check_id(&id)?;
    let mut group = find_group(&state, &ctx, &id).await?;
    // Neutron refuses to rename a project's `default` group, and a group to `default` (Nova
    // always sends the name, and answers the refusal with a 500; a 400 tells what it is).
    if (group.is_default && name != group.name)
        || (!group.is_default && name.eq_ignore_ascii_case("default"))
    {
        return Err(bad(
            "Updating default security group not allowed.".to_owned()
        ));
    }
    group.name = name;
    group.description = description;
    group.updated_at = now_ms();
    if !store::update_group(&state.db, &group).await? {
        return Err(group_not_found(&id));
    }
    Ok(HttpResponse::Ok().json(json!({"security_group": group_view(&state, &ctx, &group).await?})))
}

/// Neutron's refusals (a group in use, a member's delete of `default`) are Nova's 400.
async fn delete(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    NOVA.require_write(&ctx, "os_compute_api:os-security-groups:delete")?;
    check_id(&id)?;
    let group = find_group(&state, &ctx, &id).await?;
    if group.is_default && !ctx.is_admin() {
        return Err(bad(
            "Insufficient rights for removing default security group.",
        ));
    }
    match store::delete_group(&state.db, &id).await? {
        store::Deleted::Yes => Ok(HttpResponse::Accepted().finish()),
        store::Deleted::Gone => Err(group_not_found(&id)),
        store::Deleted::InUse => Err(bad(format!("Security Group {id} in use."))),
    }
}

/// A port number as Nova takes it (`int()`): a number (a fraction cut off) or a string of
/// digits; `None` when absent or null.
fn port_of(v: Option<&Value>, icmp: bool) -> ApiResult<Option<i64>> {
    let not_integer = || {
        bad(if icmp {
            "Invalid input received: Type and Code must be integers for ICMP protocol type"
        } else {
            "Invalid input received: To and From ports must be integers"
        })
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                // Python's `int()` of a float cuts its fraction off (a port of 22.5 is 22);
                // within ±2^53 the cut value is exact.
                #[allow(clippy::cast_possible_truncation)]
                n.as_f64()
                    .filter(|f| f.abs() < 9_007_199_254_740_992.0)
                    .map(|f| f.trunc() as i64)
            })
            .map(Some)
            .ok_or_else(not_integer),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| not_integer()),
        Some(_) => Err(not_integer()),
    }
}

/// Nova's `parse_cidr`: none is any IPv4 address; else an address with a prefix length.
fn cidr_of(v: Option<&Value>) -> ApiResult<String> {
    let text = match v {
        None | Some(Value::Null) => return Ok("0.0.0.0/0".into()),
        Some(Value::String(s)) if s.is_empty() => return Ok("0.0.0.0/0".into()),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let decoded = percent_decode(&text);
    let valid = decoded.split_once('/').is_some_and(|(addr, len)| {
        let max = match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => 32,
            Ok(std::net::IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        len.parse::<u8>().is_ok_and(|l| l <= max)
    });
    if !valid {
        return Err(bad(format!("{decoded} is not a valid IP network.")));
    }
    Ok(decoded)
}

/// `urllib.parse.unquote`, as Nova reads a CIDR.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Nova's `_rule_args_to_dict` and `new_group_ingress_rule` checks of a protocol and its
/// ports: TCP and UDP ports 1–65535, from ≤ to; ICMP type and code -1–255; no other protocol.
fn check_protocol_ports(protocol: &str, from: i64, to: i64) -> ApiResult<()> {
    let lower = protocol.to_ascii_lowercase();
    match lower.as_str() {
        "tcp" | "udp" => {
            if from > to {
                return Err(bad(format!(
                    "Invalid port range {from}:{to}. Former value cannot be greater than the \
                     later"
                )));
            }
            if from < 1 || to > 65535 {
                return Err(bad(format!(
                    "Invalid port range {from}:{to}. Valid {} ports should be between 1-65535",
                    lower.to_ascii_uppercase()
                )));
            }
        }
        "icmp" => {
            if !(-1..=255).contains(&from) || !(-1..=255).contains(&to) {
                return Err(bad(format!(
                    "Invalid port range {from}:{to}. For ICMP, the type:code must be valid"
                )));
            }
            // Neutron's refusal (which Nova passes on) of a code without a type.
            if from == -1 && to != -1 {
                return Err(bad(format!(
                    "ICMP code (port-range-max) {to} is provided but ICMP type \
                     (port-range-min) is missing."
                )));
            }
        }
        _ => return Err(bad(format!("Invalid IP protocol {protocol}."))),
    }
    Ok(())
}

/// A uuid-valued schema field (`parent_group_id`, `group_id`).
fn uuid_field(obj: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::String(s)) => match uuid::Uuid::parse_str(s) {
            Ok(_) => Ok(Some(s.clone())),
            Err(_) => Err(invalid(key, v, &format!("{v} is not a 'uuid'"))),
        },
        Some(v) => Err(invalid(key, v, &format!("{v} is not of type 'string'"))),
    }
}

/// `POST /os-security-group-rules`: an ingress rule of the parent group, built as Nova builds
/// it (from a remote group, or a CIDR with a protocol and ports), checked against the group's
/// rules as Nova does (400 for one it finds the same), then stored as Neutron stores it
/// (Neutron's own duplicate and quota refusals are Nova's 403).
async fn create_rule(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    let obj = object_of(&raw, "security_group_rule")?;
    let parent_id = match uuid_field(&obj, "parent_group_id")? {
        Some(id) => id,
        None if obj.contains_key("parent_group_id") => {
            let v = &obj["parent_group_id"];
            return Err(invalid(
                "parent_group_id",
                v,
                &format!("{v} is not of type 'string'"),
            ));
        }
        None => return Err(bad("'parent_group_id' is a required property")),
    };
    let group_id = uuid_field(&obj, "group_id")?;
    NOVA.require_write(&ctx, "os_compute_api:os-security-groups:rule:create")?;
    let parent = find_group(&state, &ctx, &parent_id).await?;
    let remote = match &group_id {
        Some(id) => Some(find_group(&state, &ctx, id).await?),
        None => None,
    };
    let protocol = match obj.get("ip_protocol") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let icmp = protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("icmp"));
    let mut from = port_of(obj.get("from_port"), icmp)?;
    let mut to = port_of(obj.get("to_port"), icmp)?;
    let now = now_ms();
    let mut rule = Rule {
        id: uuid::Uuid::new_v4().to_string(),
        security_group_id: parent.id.clone(),
        project_id: parent.project_id.clone(),
        direction: "ingress".into(),
        ethertype: "IPv4".into(),
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote_ip_prefix: None,
        remote_group_id: None,
        description: String::new(),
        revision_number: 0,
        created_at: now,
        updated_at: now,
    };
    match &remote {
        // From a group (a CIDR given beside it is ignored, as Nova ignores it): a protocol
        // without ports takes its whole range; without a protocol or with one port, any
        // traffic from the group.
        Some(g) => {
            rule.remote_group_id = Some(g.id.clone());
            if let Some(p) = &protocol {
                if from.is_none() && to.is_none() {
                    match p.to_ascii_lowercase().as_str() {
                        "icmp" => (from, to) = (Some(-1), Some(-1)),
                        "tcp" | "udp" => (from, to) = (Some(1), Some(65535)),
                        _ => {}
                    }
                }
            }
            if let (Some(p), Some(f), Some(t)) = (&protocol, from, to) {
                check_protocol_ports(p, f, t)?;
                rule.protocol = Some(p.to_ascii_lowercase());
                rule.port_range_min = (f != -1).then_some(f);
                rule.port_range_max = (t != -1).then_some(t);
            }
        }
        None => {
            let cidr = cidr_of(obj.get("cidr"))?;
            let (Some(p), Some(f), Some(t)) = (&protocol, from, to) else {
                return Err(bad("Not enough parameters to build a valid rule."));
            };
            check_protocol_ports(p, f, t)?;
            // Nova's check of a prefix of length 0 on anything but the any-address.
            if let Some((addr, "0")) = cidr.split_once('/') {
                if addr != "0.0.0.0" && addr != "::" {
                    return Err(bad(format!("Bad prefix for network in cidr {cidr}")));
                }
            }
            if cidr.contains(':') {
                rule.ethertype = "IPv6".into();
            }
            rule.protocol = Some(p.to_ascii_lowercase());
            rule.port_range_min = (f != -1).then_some(f);
            rule.port_range_max = (t != -1).then_some(t);
            rule.remote_ip_prefix = Some(cidr);
        }
    }
    // Nova's own duplicate check (`rule_exists`): the group's ingress rules from a CIDR, as
    // Nova formats them, with the same protocol, ports and CIDR.
    if rule.remote_group_id.is_none() {
        let existing = store::rules_of(&state.db, &[parent.id.as_str()]).await?;
        let new = rule_view(&rule, None);
        let same = existing
            .get(&parent.id)
            .into_iter()
            .flatten()
            .filter(|r| r.direction == "ingress" && r.remote_group_id.is_none())
            .map(|r| rule_view(r, None))
            .any(|old| {
                ["ip_protocol", "from_port", "to_port", "ip_range"]
                    .iter()
                    .all(|k| old[*k] == new[*k])
            });
        if same {
            return Err(bad(format!(
                "This rule already exists in group {}",
                parent.id
            )));
        }
    }
    let limit = limit_of(&state, &rule.project_id, "security_group_rule").await?;
    match store::create_rule(&state.db, &rule, limit, store::same_rule).await? {
        RuleCreated::Yes => {}
        RuleCreated::GroupGone => return Err(group_not_found(&parent.id)),
        RuleCreated::OverQuota => {
            return Err(ApiError::Forbidden(
                "Quota exceeded for resources: ['security_group_rule'].".into(),
            ))
        }
        RuleCreated::Duplicate(id) => {
            return Err(ApiError::Forbidden(format!(
                "Security group rule already exists. Rule id is {id}."
            )))
        }
    }
    Ok(HttpResponse::Ok().json(json!({"security_group_rule": rule_view(&rule, remote.as_ref())})))
}

async fn delete_rule(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    removed_at_2_36(&req)?;
    NOVA.require_write(&ctx, "os_compute_api:os-security-groups:rule:delete")?;
    check_id(&id)?;
    let not_found = || ApiError::NotFound(format!("Security group rule {id} does not exist"));
    let rule = store::get_rule(&state.db, &id)
        .await?
        .filter(|r| ctx.is_admin() || r.project_id == ctx.project_id)
        .ok_or_else(not_found)?;
    find_group(&state, &ctx, &rule.security_group_id).await?;
    if !store::delete_rule(&state.db, &id).await? {
        return Err(not_found());
    }
    Ok(HttpResponse::Accepted().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/os-security-groups")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/os-security-groups/{id}")
            .route(web::get().to(show))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/os-security-group-rules").route(web::post().to(create_rule)))
    .service(web::resource("/os-security-group-rules/{id}").route(web::delete().to(delete_rule)));
}
