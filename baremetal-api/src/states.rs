//! A node's states: provision verbs (`manage`, `provide`), power requests, maintenance, and
//! the interfaces' validation. A verb or a power request starts an operation on the node's row
//! and sends it to the node's bare-metal agent; the answer is Ironic's 202, and the node shows
//! the operation's progress and end.

use crate::nodes::{self, find, locked, DRIVER, PASSWORD_KEY};
use crate::versions::IronicVersion;
use crate::BaremetalState;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::IRONIC;
use api_toolkit::{bad, body, ApiError, ApiResult, RequestContext};
use nova_core::baremetal::{self, BmcInfoError, Verb, STABLE};
use nova_core::rpc::{BmcInfo, ComputeCommand, Envelope, NodeCommand, NodeOperationKind};
use nova_core::time::{iso8601_z, now_ms};
use nova_db::baremetal::{self as store, End, Node, Start, Started};
use serde_json::{json, Value};

/// `GET /v1/nodes/{node}/states`.
pub(crate) async fn show(
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:get_states")?;
    let node = find(&state, &ident).await?;
    Ok(HttpResponse::Ok().json(json!({
        "console_enabled": false,
        "last_error": node.last_error,
        "power_state": node.power_state,
        "provision_state": node.provision_state,
        "provision_updated_at": node.provision_updated_at.map(iso8601_z),
        "raid_config": {},
        "target_power_state": node.target_power_state,
        "target_provision_state": node.target_provision_state,
        "target_raid_config": {},
    })))
}

/// The node's BMC as an operation needs it, or the 400 Ironic's redfish driver gives when
/// driver_info lacks what it requires.
fn bmc_info(node: &Node) -> ApiResult<BmcInfo> {
    match baremetal::bmc_info(&node.driver_info, node.bmc_password.as_deref()) {
        Ok(info) => Ok(info),
        // Ironic finds this while verifying (and leaves the node in enroll with it as
        // last_error); here the request itself is refused, and the node does not change.
        Err(BmcInfoError::Missing(missing)) => Err(bad(format!(
            "Failed to validate power driver interface for node {0}. Error: Missing the \
             following Redfish properties in node {0} driver_info: {1:?}",
            node.uuid, missing
        ))),
        Err(BmcInfoError::NoPassword) => Err(bad(format!(
            "Missing the following Redfish properties in node {} driver_info: \
             ['{PASSWORD_KEY}']",
            node.uuid
        ))),
    }
}

/// Starts `kind` on the node (one statement; the node must be in one of `from` with nothing
/// running) and sends it to the node's agent. A send that fails ends the operation at once as
/// failed, so the node is not left waiting for its deadline.
#[allow(clippy::too_many_arguments)]
async fn start(
    req: &HttpRequest,
    state: &BaremetalState,
    node: &Node,
    verb: &str,
    kind: NodeOperationKind,
    from: &[&str],
    during: Option<&str>,
    target: Option<&str>,
    target_power: Option<&str>,
    timeout_s: u64,
) -> ApiResult<()> {
    let bmc = bmc_info(node)?;
    // The node's agent, or (when it is gone) the live one that runs fewest machines: a node
    // is not tied to an agent that died.
    let live = nodes::driver_hosts(state, DRIVER).await?;
    let host = match &node.conductor {
        Some(host) if live.iter().any(|(h, _)| h == host) => host.clone(),
        _ => {
            let Some((host, _)) = live.into_iter().next() else {
                return Err(bad(format!(
                    "No valid host was found. Reason: No conductor service registered which \
                     supports driver {DRIVER} for conductor group \"\"."
                )));
            };
            if !store::reassign(&state.db, &node.uuid, &host, now_ms()).await? {
                return Err(locked(node));
            }
            store::sync_compute_node(&state.db, &node.uuid).await?;
            tracing::info!(node = %node.uuid, %host, "node moved to a live bare-metal agent");
            host
        }
    };
    let operation = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    // The agent bounds the work by `timeout_s`; the row's deadline leaves it time to report.
    let deadline =
        now + i64::try_from(timeout_s.saturating_add(30).saturating_mul(1000)).unwrap_or(i64::MAX);
    let started = store::start_operation(
        &state.db,
        &node.uuid,
        &Start {
            operation: &operation,
            kind: kind.name(),
            from,
            provision_state: during,
            target_provision_state: target,
            target_power_state: target_power,
            deadline,
            now,
        },
    )
    .await?;
    match started {
        Started::Yes => {}
        Started::Locked => return Err(locked(node)),
        Started::Missing => return Err(nodes::not_found(&node.uuid)),
        Started::WrongState => {
            return Err(bad(format!(
                "The requested action \"{verb}\" can not be performed on node \"{}\" while it \
                 is in state \"{}\".",
                node.uuid, node.provision_state
            )))
        }
    }
    let command = ComputeCommand::NodeOperation(Box::new(NodeCommand {
        node: node.uuid.clone(),
        operation: operation.clone(),
        kind,
        bmc,
        timeout_s,
        deadline_ms: Some(deadline - 5_000),
    }));
    let request_id = req
        .extensions()
        .get::<api_toolkit::RequestId>()
        .map(|r| r.0.clone());
    let sent = state
        .bus
        .publish(
            &state.queues.compute(&host),
            Envelope::new(request_id, command).encode(),
        )
        .await;
    if let Err(e) = sent {
        tracing::error!(node = %node.uuid, error = %e, "node operation not sent");
        let end = End {
            provision_state: during
                .and_then(|d| baremetal::failure_state(kind, d))
                .map(str::to_owned),
            last_error: Some(format!(
                "The bare-metal agent {host} could not be reached: {e}"
            )),
            ..End::default()
        };
        store::end_operation(&state.db, &node.uuid, &operation, &end, now_ms()).await?;
        return Err(ApiError::from(e));
    }
    Ok(())
}

fn accepted(req: &HttpRequest, node: &Node) -> HttpResponse {
    let base = PublicUrl::of(req).0;
    HttpResponse::Accepted()
        .insert_header((
            "Location",
            format!("{base}/baremetal/v1/nodes/{}/states", node.uuid),
        ))
        .finish()
}

/// `PUT /v1/nodes/{node}/states/provision` `{"target": verb}`.
pub(crate) async fn provision(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:set_provision_state")?;
    let body = body::json(&raw)?;
    let verb = body
        .get("target")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid input: \"target\" is required"))?
        .to_owned();
    if let Some(extra) = body.as_object().and_then(|o| {
        o.keys().find(|k| {
            !matches!(
                k.as_str(),
                "target"
                    | "clean_steps"
                    | "deploy_steps"
                    | "configdrive"
                    | "rescue_password"
                    | "disable_ramdisk"
            )
        })
    }) {
        return Err(bad(format!("Unknown argument: \"{extra}\"")));
    }
    let node = find(&state, &ident).await?;
    if baremetal::VERBS_NOT_SERVED.contains(&verb.as_str()) {
        // Deploys come from the compute API's servers, not from this verb; the others do not
        // exist here.
        return Err(bad(format!(
            "The provision state target \"{verb}\" is not supported by this service."
        )));
    }
    if node.operation.is_some() {
        return Err(locked(&node));
    }
    match baremetal::provision(&verb, &node.provision_state) {
        None => Err(bad(format!(
            "The requested action \"{verb}\" can not be performed on node \"{}\" while it is \
             in state \"{}\".",
            node.uuid, node.provision_state
        ))),
        Some(Verb::Immediate { to }) => {
            // Nothing to ask of the machine: one conditional statement.
            if !store::set_provision_state(
                &state.db,
                &node.uuid,
                &node.provision_state,
                to,
                now_ms(),
            )
            .await?
            {
                return Err(locked(&node));
            }
            Ok(accepted(&req, &node))
        }
        Some(Verb::Operation {
            kind,
            during,
            target,
            ..
        }) => {
            let timeout = match kind {
                NodeOperationKind::Verify => state.settings.verify_timeout_s,
                _ => state.settings.clean_timeout_s,
            };
            start(
                &req,
                &state,
                &node,
                &verb,
                kind,
                &[node.provision_state.as_str()],
                Some(during),
                Some(target),
                None,
                timeout,
            )
            .await?;
            Ok(accepted(&req, &node))
        }
    }
}

/// `PUT /v1/nodes/{node}/states/power` `{"target": "power on", "timeout": s}`.
pub(crate) async fn power(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:set_power_state")?;
    let version = IronicVersion::of(&req);
    let body = body::json(&raw)?;
    let target = body
        .get("target")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid input: \"target\" is required"))?
        .to_owned();
    let node = find(&state, &ident).await?;
    let kind = baremetal::power_target(&target)
        .filter(|k| {
            version.at_least(27)
                || matches!(
                    k,
                    NodeOperationKind::PowerOn
                        | NodeOperationKind::PowerOff
                        | NodeOperationKind::Reboot
                )
        })
        .ok_or_else(|| {
            bad(format!(
                "The requested action \"{target}\" can not be performed on node \"{ident}\" \
                 while it is in state \"{}\".",
                node.power_state.as_deref().unwrap_or("None")
            ))
        })?;
    let timeout = match body.get("timeout") {
        None | Some(Value::Null) => state.settings.power_timeout_s,
        Some(v) if version.at_least(27) => v
            .as_u64()
            .filter(|t| *t > 0)
            .ok_or_else(|| bad("timeout has to be positive integer"))?,
        Some(_) => return Err(bad("Unknown argument: \"timeout\"")),
    };
    if node.operation.is_some() {
        return Err(locked(&node));
    }
    let target_power = match kind {
        NodeOperationKind::PowerOff | NodeOperationKind::SoftPowerOff => "power off",
        _ => "power on",
    };
    start(
        &req,
        &state,
        &node,
        &target,
        kind,
        STABLE,
        None,
        None,
        Some(target_power),
        timeout,
    )
    .await?;
    Ok(accepted(&req, &node))
}

/// `PUT /v1/nodes/{node}/maintenance` `{"reason": …}`: the node takes no new instance.
pub(crate) async fn maintenance_on(
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:set_maintenance")?;
    let reason = if raw.is_empty() {
        None
    } else {
        match body::json(&raw)?.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(bad(format!("Invalid maintenance reason: {other}"))),
        }
    };
    let node = find(&state, &ident).await?;
    store::set_maintenance(&state.db, &node.uuid, true, reason.as_deref(), now_ms()).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `DELETE /v1/nodes/{node}/maintenance`.
pub(crate) async fn maintenance_off(
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:clear_maintenance")?;
    let node = find(&state, &ident).await?;
    store::set_maintenance(&state.db, &node.uuid, false, None, now_ms()).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `GET /v1/nodes/{node}/validate`: which interfaces can work with what the node has. Power and
/// management need the BMC's address, system and credentials; deploy and boot come with a
/// server; the others do nothing here, which Ironic reports as unsupported.
pub(crate) async fn validate(
    ctx: RequestContext,
    state: web::Data<BaremetalState>,
    ident: web::Path<String>,
) -> ApiResult<HttpResponse> {
    IRONIC.require_admin(&ctx, "baremetal:node:validate")?;
    let node = find(&state, &ident).await?;
    let bmc = match bmc_info(&node) {
        Ok(_) => json!({"result": true}),
        Err(e) => json!({"result": false, "reason": e.to_string()}),
    };
    let deploy = if node.instance_uuid.is_some() {
        json!({"result": true})
    } else {
        json!({"result": false, "reason": "A deploy needs an instance: servers are created through the compute API."})
    };
    let unsupported = |name: &str| json!({"result": null, "reason": format!("not supported by this service ({name})")});
    Ok(HttpResponse::Ok().json(json!({
        "power": bmc,
        "management": bmc,
        "boot": deploy,
        "deploy": deploy,
        "console": unsupported("no-console"),
        "inspect": unsupported("no-inspect"),
        "network": {"result": true},
        "raid": unsupported("no-raid"),
        "rescue": unsupported("no-rescue"),
        "bios": unsupported("no-bios"),
        "storage": {"result": true},
    })))
}
