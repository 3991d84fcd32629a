//! Security groups and rules (Neutron's API): list, show, create, update and delete, with
//! Neutron's `default` group made on first use, its rule validation and normalisation, its
//! duplicate check and quotas.
//!
//! Groups are held here, but no port holds one yet: port security is off on every network
//! until the drivers enforce rules, so a port or a server asking for a group gets Neutron's
//! answer for a port without port security.

use crate::listing::{self, select, text_column, texts, Collection, CREATED_AT};
use crate::networks::{denied, string_of};
use crate::quotas::{limit_of, SECURITY_GROUP, SECURITY_GROUP_RULE};
use crate::NetworkState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::body;
use api_toolkit::{bad, ApiError, ApiResult, RequestContext};
use nova_core::ipam;
use nova_core::time::{iso8601_z, now_ms};
use nova_db::listing::{Arg, Cond};
use nova_db::security_groups::{self as store, Group, Rule, RuleCreated};
use serde_json::{json, Map, Value};

pub(crate) fn group_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Security group {id} does not exist")).named("SecurityGroupNotFound")
}

fn rule_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Security group rule {id} does not exist"))
        .named("SecurityGroupRuleNotFound")
}

/// Groups are their project's (admins see all).
fn visible_cond(ctx: &RequestContext) -> Cond {
    if ctx.is_admin() {
        Cond::all(Vec::new())
    } else {
        Cond::eq("project_id", Arg::Text(ctx.project_id.clone()))
    }
}

fn visible(ctx: &RequestContext, project: &str) -> bool {
    ctx.is_admin() || project == ctx.project_id
}

async fn find_group(state: &NetworkState, ctx: &RequestContext, id: &str) -> ApiResult<Group> {
    match store::get_group(&state.db, id).await? {
        Some(g) if visible(ctx, &g.project_id) => Ok(g),
        _ => Err(group_not_found(id)),
    }
}

// ---------------------------------------------------------------------------------------------
// Rules: Neutron's validation and normalisation (securitygroups_db.py).

/// The protocol names Neutron takes, with their numbers.
use nova_core::firewall::protocol_number;

/// Protocols with ports (Neutron's SG_PORT_PROTO_NAMES), by number.
const PORT_PROTOCOLS: &[u8] = &[6, 17, 33, 132];
/// Protocols only IPv6 has, by number.
const IPV6_ONLY: &[u8] = &[41, 43, 44, 58, 59, 60];

fn invalid_protocol(p: &str) -> ApiError {
    bad(format!(
        "Security group rule protocol {p} not supported. Only protocol values [None, 'any', \
         'ah', 'dccp', 'egp', 'esp', 'gre', 'hopopt', 'icmp', 'igmp', 'ip', 'ipip', \
         'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'icmpv6', 'ipv6-nonxt', 'ipv6-opts', \
         'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] and \
         integer representations [0 to 255] are supported."
    ))
    .named("SecurityGroupRuleInvalidProtocol")
}

fn port_value(attr: &str, v: &Value) -> ApiResult<Option<i64>> {
    let invalid =
        || bad(format!("Invalid value for port {v}")).named("SecurityGroupInvalidPortValue");
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or_else(invalid),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => s.parse::<i64>().map(Some).map_err(|_| invalid()),
        _ => {
            let _ = attr;
            Err(invalid())
        }
    }
}

/// A rule as asked, checked and normalised as Neutron does; `group` is the rule's group.
fn rule_of(body: &Map<String, Value>, group: &Group, now: i64) -> ApiResult<(Rule, bool)> {
    let mut rule = Rule {
        id: uuid::Uuid::new_v4().to_string(),
        security_group_id: group.id.clone(),
        project_id: group.project_id.clone(),
        direction: String::new(),
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
    let mut ports_given = false;
    for (key, value) in body {
        match key.as_str() {
            "security_group_id" | "project_id" | "tenant_id" => {}
            "direction" => {
                let d = value.as_str().unwrap_or_default();
                if !matches!(d, "ingress" | "egress") {
                    return Err(bad(format!(
                        "Invalid input for direction. Reason: '{}' is not in ['ingress', \
                         'egress'].",
                        value.as_str().unwrap_or(&value.to_string())
                    )));
                }
                rule.direction = d.to_owned();
            }
            "ethertype" => {
                let e = value.as_str().unwrap_or_default();
                rule.ethertype = match e.to_ascii_lowercase().as_str() {
                    "ipv4" => "IPv4".into(),
                    "ipv6" => "IPv6".into(),
                    _ => {
                        return Err(bad(format!(
                            "Security group rule for ethertype '{e}' not supported. Allowed \
                             values are ['IPv4', 'IPv6']."
                        ))
                        .named("SecurityGroupRuleInvalidEtherType"))
                    }
                };
            }
            "protocol" => {
                rule.protocol = match value {
                    Value::Null => None,
                    Value::Number(n) => Some(n.to_string()),
                    Value::String(s) if s.is_empty() || s.eq_ignore_ascii_case("any") => None,
                    Value::String(s) => Some(s.to_ascii_lowercase()),
                    other => return Err(invalid_protocol(&other.to_string())),
                };
                if let Some(p) = &rule.protocol {
                    if protocol_number(p).is_none() {
                        return Err(invalid_protocol(p));
                    }
                }
            }
            "port_range_min" => {
                rule.port_range_min = port_value(key, value)?;
                ports_given |= rule.port_range_min.is_some();
            }
            "port_range_max" => {
                rule.port_range_max = port_value(key, value)?;
                ports_given |= rule.port_range_max.is_some();
            }
            "remote_ip_prefix" => {
                rule.remote_ip_prefix = match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
            "remote_group_id" => {
                rule.remote_group_id = match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
            "remote_address_group_id" if value.is_null() => {}
            "description" => rule.description = string_of(key, value, 255)?,
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    if rule.direction.is_empty() {
        return Err(bad(
            "Failed to parse request. Required attribute 'direction' not specified",
        ));
    }
    let v6 = rule.ethertype == "IPv6";
    // IPv6's ICMP under its own name.
    if v6 {
        if let Some(p) = rule.protocol.as_deref() {
            rule.protocol = match p {
                "icmp" | "icmpv6" => Some("ipv6-icmp".into()),
                "1" => Some("58".into()),
                other => Some(other.to_owned()),
            };
        }
    }
    let number = rule.protocol.as_deref().and_then(protocol_number);
    if let Some(n) = number {
        if !v6 && IPV6_ONLY.contains(&n) {
            return Err(bad(format!(
                "Invalid ethertype IPv4 for protocol {}.",
                rule.protocol.as_deref().unwrap_or_default()
            ))
            .named("SecurityGroupEthertypeConflictWithProtocol"));
        }
    }
    check_ports(&mut rule, number, ports_given)?;
    if rule.remote_ip_prefix.is_some() && rule.remote_group_id.is_some() {
        return Err(bad(
            "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be \
             provided.",
        )
        .named("SecurityGroupMultipleRemoteEntites"));
    }
    if let Some(prefix) = rule.remote_ip_prefix.clone() {
        rule.remote_ip_prefix = Some(normalise_prefix(&prefix, &rule.ethertype)?);
    }
    Ok((rule, ports_given))
}

/// Neutron's port checks: ports need a protocol; TCP, UDP, DCCP and SCTP take a range of
/// 1–65535 (the whole range is stored as none); ICMP takes a type and a code of 0–255; other
/// protocols take none.
fn check_ports(rule: &mut Rule, number: Option<u8>, ports_given: bool) -> ApiResult<()> {
    let (min, max) = (rule.port_range_min, rule.port_range_max);
    if !ports_given {
        return Ok(());
    }
    let Some(n) = number else {
        return Err(bad("Must also specify protocol if port range is given.")
            .named("SecurityGroupProtocolRequiredWithPorts"));
    };
    if PORT_PROTOCOLS.contains(&n) {
        for p in [min, max].into_iter().flatten() {
            if !(1..=65535).contains(&p) {
                return Err(bad(format!("Invalid value for port {p}"))
                    .named("SecurityGroupInvalidPortValue"));
            }
        }
        match (min, max) {
            (Some(a), Some(b)) if a <= b => {
                if (a, b) == (1, 65535) {
                    rule.port_range_min = None;
                    rule.port_range_max = None;
                }
                Ok(())
            }
            _ => Err(
                bad("For TCP/UDP protocols, port_range_min must be <= port_range_max")
                    .named("SecurityGroupInvalidPortRange"),
            ),
        }
    } else if n == 1 || n == 58 {
        for (field, attr, v) in [
            ("type", "port-range-min", min),
            ("code", "port-range-max", max),
        ] {
            if let Some(v) = v {
                if !(0..=255).contains(&v) {
                    return Err(bad(format!(
                        "Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."
                    ))
                    .named("SecurityGroupInvalidIcmpValue"));
                }
            }
        }
        if min.is_none() {
            if let Some(code) = max {
                return Err(bad(format!(
                    "ICMP code (port-range-max) {code} is provided but ICMP type \
                     (port-range-min) is missing."
                ))
                .named("SecurityGroupMissingIcmpType"));
            }
        }
        Ok(())
    } else {
        Err(bad(format!(
            "Ports cannot be specified for protocol {n}. Ports are only supported for DCCP, \
             SCTP, TCP, UDP."
        ))
        .named("SecurityGroupInvalidProtocolForPort"))
    }
}

/// A remote prefix with its mask (a bare address is a host), of the rule's family.
fn normalise_prefix(prefix: &str, ethertype: &str) -> ApiResult<String> {
    let with_mask = if prefix.contains('/') {
        prefix.to_owned()
    } else {
        match prefix.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => format!("{prefix}/32"),
            Ok(std::net::IpAddr::V6(_)) => format!("{prefix}/128"),
            Err(_) => String::new(),
        }
    };
    let net: ipam::IpNet = with_mask.parse().map_err(|_| {
        bad(format!("Invalid CIDR {prefix} given as IP prefix.")).named("InvalidCIDR")
    })?;
    let family = if net.addr().is_ipv4() { "IPv4" } else { "IPv6" };
    if family != ethertype {
        return Err(bad(format!(
            "Conflicting value ethertype {ethertype} for CIDR {prefix}"
        ))
        .named("SecurityGroupRuleParameterConflict"));
    }
    Ok(with_mask)
}

/// The network of a prefix (Neutron's `normalized_cidr`).
fn normalized_cidr(prefix: Option<&str>) -> Value {
    prefix
        .and_then(ipam::parse_cidr)
        .map_or(Value::Null, |n| json!(n.to_string()))
}

fn rule_view(r: &Rule, default_group: bool) -> Map<String, Value> {
    let mut v = json!({
        "id": r.id,
        "security_group_id": r.security_group_id,
        "direction": r.direction,
        "ethertype": r.ethertype,
        "protocol": r.protocol,
        "port_range_min": r.port_range_min,
        "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix,
        "remote_group_id": r.remote_group_id,
        "remote_address_group_id": null,
        "normalized_cidr": normalized_cidr(r.remote_ip_prefix.as_deref()),
        "description": r.description,
        "belongs_to_default_sg": default_group,
        "project_id": r.project_id,
        "tenant_id": r.project_id,
        "revision_number": r.revision_number,
        "created_at": iso8601_z(r.created_at),
        "updated_at": iso8601_z(r.updated_at),
    });
    std::mem::take(v.as_object_mut().expect("a JSON object"))
}

fn group_view(g: &Group, rules: &[Rule]) -> Map<String, Value> {
    let mut v = json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "project_id": g.project_id,
        "tenant_id": g.project_id,
        "stateful": g.stateful,
        "shared": false,
        "security_group_rules": rules.iter().map(|r| Value::Object(rule_view(r, g.is_default))).collect::<Vec<_>>(),
        "tags": g.tag_list(),
        "revision_number": g.revision_number,
        "created_at": iso8601_z(g.created_at),
        "updated_at": iso8601_z(g.updated_at),
    });
    std::mem::take(v.as_object_mut().expect("a JSON object"))
}

/// The project's `default` group, made now with Neutron's rules (all egress; ingress from the
/// group itself) if it has none. Neutron makes it on a project's first use of groups, and only
/// for the caller's own project (or by an admin).
pub(crate) async fn ensure_default(state: &NetworkState, project: &str) -> ApiResult<Group> {
    Ok(store::default_for(&state.db, project).await?)
}

// ---------------------------------------------------------------------------------------------
// Groups.

const GROUP_COLLECTION: Collection = Collection {
    name: "security_groups",
    table: &store::GROUPS,
    filters: &[
        "id",
        "name",
        "description",
        "project_id",
        "tenant_id",
        "stateful",
        "shared",
        "revision_number",
    ],
    booleans: &["stateful", "shared"],
    sort_keys: &[
        ("id", store::GROUPS.id),
        ("name", text_column("name")),
        ("created_at", CREATED_AT),
    ],
};

fn group_cond(key: &str, wanted: &[String]) -> Cond {
    match key {
        "id" | "name" | "description" | "project_id" => texts(key, wanted),
        "tenant_id" => texts("project_id", wanted),
        "stateful" => listing::booleans(key, wanted),
        "revision_number" => listing::integers(key, wanted),
        // No group is shared here (no RBAC).
        "shared" => listing::always_false(wanted),
        _ => Cond::never(),
    }
}

/// `GET /v2.0/security-groups` (the caller's `default` made first, as Neutron does).
pub(crate) async fn list_groups(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
) -> ApiResult<HttpResponse> {
    let asked = listing::parse(&req, &GROUP_COLLECTION)?;
    ensure_default(&state, &ctx.project_id).await?;
    let conds = asked
        .filters
        .iter()
        .map(|(k, w)| group_cond(k, w))
        .collect();
    let (groups, next) = listing::fetch(
        &state.db,
        &req,
        &GROUP_COLLECTION,
        &asked,
        visible_cond(&ctx),
        conds,
        |g: &Group| g.id.as_str(),
        group_not_found,
    )
    .await?;
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    let mut rules = store::rules_of(&state.db, &ids).await?;
    let views = groups
        .iter()
        .map(|g| {
            let own = rules.remove(&g.id).unwrap_or_default();
            select(group_view(g, &own), &asked.fields)
        })
        .collect();
    Ok(HttpResponse::Ok().json(listing::body(&GROUP_COLLECTION, views, next)))
}

pub(crate) async fn show_group(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let group = find_group(&state, &ctx, &id).await?;
    let rules = store::rules_of(&state.db, &[group.id.as_str()])
        .await?
        .remove(&group.id)
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(
        json!({"security_group": select(group_view(&group, &rules), &listing::fields_of(&req))}),
    ))
}

fn object_body(raw: &[u8], key: &str) -> ApiResult<Map<String, Value>> {
    let body = body::json(raw)?;
    match body.get(key) {
        Some(Value::Object(o)) => Ok(o.clone()),
        _ => Err(bad("Resource body required")),
    }
}

fn default_exists() -> ApiError {
    ApiError::Conflict("Default security group already exists.".into())
        .named("SecurityGroupDefaultAlreadyExists")
}

pub(crate) async fn create_group(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    if !(ctx.is_admin() || ctx.can_write()) {
        return Err(denied("create_security_group"));
    }
    let body = object_body(&raw, "security_group")?;
    let now = now_ms();
    let mut group = Group {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: ctx.project_id.clone(),
        name: String::new(),
        description: String::new(),
        stateful: true,
        is_default: false,
        tags: "[]".into(),
        revision_number: 0,
        created_at: now,
        updated_at: now,
    };
    for (key, value) in &body {
        match key.as_str() {
            "name" => group.name = string_of(key, value, 255)?,
            "description" => group.description = string_of(key, value, 255)?,
            "stateful" => group.stateful = crate::networks::bool_of(key, value)?,
            "project_id" | "tenant_id" => {
                let project = string_of(key, value, 255)?;
                if project != ctx.project_id && !ctx.is_admin() {
                    return Err(denied("create_security_group:tenant_id"));
                }
                group.project_id = project;
            }
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    if group.name.eq_ignore_ascii_case("default") {
        return Err(default_exists());
    }
    ensure_default(&state, &group.project_id).await?;
    // A new group lets everything out (Neutron's two egress rules), nothing in.
    let rules = [
        Rule::of_new_group(&group, "egress", "IPv4", false),
        Rule::of_new_group(&group, "egress", "IPv6", false),
    ];
    let limit = limit_of(&state, &group.project_id, SECURITY_GROUP).await?;
    if !store::create_group(&state.db, &group, &rules, limit).await? {
        return Err(
            ApiError::Conflict("Quota exceeded for resources: ['security_group'].".into())
                .named("OverQuota"),
        );
    }
    Ok(HttpResponse::Created().json(json!({"security_group": group_view(&group, &rules)})))
}

/// A group the caller may change: its project's member, or an admin.
async fn find_own_group(
    state: &NetworkState,
    ctx: &RequestContext,
    id: &str,
    rule: &str,
) -> ApiResult<Group> {
    let group = find_group(state, ctx, id).await?;
    if !(ctx.is_admin() || ctx.can_write()) {
        return Err(denied(rule));
    }
    Ok(group)
}

pub(crate) async fn update_group(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut group = find_own_group(&state, &ctx, &id, "update_security_group").await?;
    let body = object_body(&raw, "security_group")?;
    for (key, value) in &body {
        match key.as_str() {
            "name" => {
                let name = string_of(key, value, 255)?;
                if group.is_default && name != group.name {
                    return Err(ApiError::Conflict(
                        "Updating default security group not allowed.".into(),
                    )
                    .named("SecurityGroupCannotUpdateDefault"));
                }
                if !group.is_default && name.eq_ignore_ascii_case("default") {
                    return Err(default_exists());
                }
                group.name = name;
            }
            "description" => group.description = string_of(key, value, 255)?,
            "stateful" => group.stateful = crate::networks::bool_of(key, value)?,
            "id" | "project_id" | "tenant_id" | "security_group_rules" => {
                return Err(bad(format!("Cannot update read-only attribute {key}")))
            }
            other => return Err(bad(format!("Unrecognized attribute(s) '{other}'"))),
        }
    }
    group.updated_at = now_ms();
    if !store::update_group(&state.db, &group).await? {
        return Err(group_not_found(&id));
    }
    group.revision_number += 1;
    let rules = store::rules_of(&state.db, &[group.id.as_str()])
        .await?
        .remove(&group.id)
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({"security_group": group_view(&group, &rules)})))
}

pub(crate) async fn delete_group(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let group = find_own_group(&state, &ctx, &id, "delete_security_group").await?;
    if group.is_default && !ctx.is_admin() {
        return Err(ApiError::Conflict(
            "Insufficient rights for removing default security group.".into(),
        )
        .named("SecurityGroupCannotRemoveDefault"));
    }
    match store::delete_group(&state.db, &id).await? {
        store::Deleted::Yes => {}
        store::Deleted::Gone => return Err(group_not_found(&id)),
        store::Deleted::InUse => {
            return Err(ApiError::Conflict(format!("Security Group {id} in use."))
                .named("SecurityGroupInUse"))
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------------------------------------
// Rules.

const RULE_COLLECTION: Collection = Collection {
    name: "security_group_rules",
    table: &store::RULES,
    filters: &[
        "id",
        "security_group_id",
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "remote_ip_prefix",
        "remote_group_id",
        "description",
        "project_id",
        "tenant_id",
        "revision_number",
    ],
    booleans: &[],
    sort_keys: &[
        ("id", store::RULES.id),
        ("direction", text_column("direction")),
        ("created_at", CREATED_AT),
    ],
};

fn rule_cond(key: &str, wanted: &[String]) -> Cond {
    match key {
        "id" | "security_group_id" | "direction" | "ethertype" | "protocol"
        | "remote_ip_prefix" | "remote_group_id" | "description" | "project_id" => {
            texts(key, wanted)
        }
        "tenant_id" => texts("project_id", wanted),
        "port_range_min" | "port_range_max" | "revision_number" => listing::integers(key, wanted),
        _ => Cond::never(),
    }
}

/// Whether the rules' groups are their projects' defaults.
async fn defaults_among(state: &NetworkState, rules: &[Rule]) -> ApiResult<Vec<String>> {
    let mut defaults = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in rules {
        if seen.insert(r.security_group_id.clone()) {
            if let Some(g) = store::get_group(&state.db, &r.security_group_id).await? {
                if g.is_default {
                    defaults.push(g.id);
                }
            }
        }
    }
    Ok(defaults)
}

pub(crate) async fn list_rules(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
) -> ApiResult<HttpResponse> {
    let asked = listing::parse(&req, &RULE_COLLECTION)?;
    ensure_default(&state, &ctx.project_id).await?;
    let conds = asked.filters.iter().map(|(k, w)| rule_cond(k, w)).collect();
    let (rules, next) = listing::fetch(
        &state.db,
        &req,
        &RULE_COLLECTION,
        &asked,
        visible_cond(&ctx),
        conds,
        |r: &Rule| r.id.as_str(),
        rule_not_found,
    )
    .await?;
    let defaults = defaults_among(&state, &rules).await?;
    let views = rules
        .iter()
        .map(|r| {
            let default = defaults.contains(&r.security_group_id);
            select(rule_view(r, default), &asked.fields)
        })
        .collect();
    Ok(HttpResponse::Ok().json(listing::body(&RULE_COLLECTION, views, next)))
}

async fn find_rule(state: &NetworkState, ctx: &RequestContext, id: &str) -> ApiResult<Rule> {
    match store::get_rule(&state.db, id).await? {
        Some(r) if visible(ctx, &r.project_id) => Ok(r),
        _ => Err(rule_not_found(id)),
    }
}

pub(crate) async fn show_rule(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let rule = find_rule(&state, &ctx, &id).await?;
    let default = !defaults_among(&state, std::slice::from_ref(&rule))
        .await?
        .is_empty();
    Ok(HttpResponse::Ok().json(json!({
        "security_group_rule": select(rule_view(&rule, default), &listing::fields_of(&req)),
    })))
}

pub(crate) async fn create_rule(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    if !(ctx.is_admin() || ctx.can_write()) {
        return Err(denied("create_security_group_rule"));
    }
    let body = object_body(&raw, "security_group_rule")?;
    let group_id = match body.get("security_group_id") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(bad(
                "Failed to parse request. Required attribute 'security_group_id' not specified",
            ))
        }
    };
    let group = find_group(&state, &ctx, &group_id).await?;
    let (rule, _) = rule_of(&body, &group, now_ms())?;
    if let Some(remote) = &rule.remote_group_id {
        find_group(&state, &ctx, remote).await?;
    }
    let limit = limit_of(&state, &rule.project_id, SECURITY_GROUP_RULE).await?;
    match store::create_rule(&state.db, &rule, limit, store::same_rule).await? {
        RuleCreated::Yes => {}
        RuleCreated::GroupGone => return Err(group_not_found(&group_id)),
        RuleCreated::OverQuota => {
            return Err(ApiError::Conflict(
                "Quota exceeded for resources: ['security_group_rule'].".into(),
            )
            .named("OverQuota"))
        }
        RuleCreated::Duplicate(id) => {
            return Err(ApiError::Conflict(format!(
                "Security group rule already exists. Rule id is {id}."
            ))
            .named("SecurityGroupRuleExists"))
        }
    }
    Ok(HttpResponse::Created()
        .json(json!({"security_group_rule": rule_view(&rule, group.is_default)})))
}

pub(crate) async fn delete_rule(
    ctx: RequestContext,
    state: web::Data<NetworkState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    find_rule(&state, &ctx, &id).await?;
    if !(ctx.is_admin() || ctx.can_write()) {
        return Err(denied("delete_security_group_rule"));
    }
    if !store::delete_rule(&state.db, &id).await? {
        return Err(rule_not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}
