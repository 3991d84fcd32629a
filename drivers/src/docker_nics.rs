//! A container's NICs on ports: the engine network a port's subnets need (created with their
//! CIDRs and gateways when the host lacks it), and the endpoint settings that give the
//! container the port's addresses and MAC.
//!
//! The engine takes an endpoint's MAC address from API 1.44 on. Older engines (Debian's 20.10
//! speaks 1.41) take only the container's `MacAddress`, which applies to the network it is
//! created on, and which the typed client no longer has: for them the create is sent with it
//! as one raw request over the engine's socket. On such an engine a container's further NICs
//! (networks after its first, interfaces attached later) have the engine's MAC, not their
//! port's: a known limit (README), which newer engines do not have.

use crate::DriverError;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig,
    NetworkCreateRequest,
};
use bollard::Docker;
use nova_core::rpc::Nic;
use std::collections::HashMap;
use std::path::PathBuf;

/// The label of the engine networks this service created for subnets.
pub const LABEL_SUBNETS: &str = "org.openstack.nova.subnets";

/// The endpoint settings that give a container the NIC's addresses and MAC.
pub fn endpoint(nic: &Nic) -> EndpointSettings {
    let address = |version: u8| {
        nic.ips
            .iter()
            .find(|ip| ip.version == version)
            .map(|ip| ip.address.clone())
    };
    EndpointSettings {
        // A port without addresses (a network without subnets) takes the engine network's.
        ipam_config: (!nic.ips.is_empty()).then(|| EndpointIpamConfig {
            ipv4_address: address(4),
            ipv6_address: address(6),
            ..Default::default()
        }),
        mac_address: Some(nic.mac.clone()),
        ..Default::default()
    }
}

/// Makes sure the engine network `backend` has the NIC's subnets: creates it with them (a
/// bridge, gateways as the subnets have them) when the host lacks it; refuses one that exists
/// without them, whose containers could not take the port's addresses.
pub async fn ensure_network(docker: &Docker, backend: &str, nic: &Nic) -> Result<(), DriverError> {
    if nic.ips.is_empty() {
        return Ok(());
    }
    match docker.inspect_network(backend, None).await {
        Ok(found) => {
            let has: Vec<String> = found
                .ipam
                .and_then(|i| i.config)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.subnet)
                .collect();
            for ip in &nic.ips {
                if !has.contains(&ip.cidr) {
                    return Err(DriverError::Invalid(format!(
                        "the engine network {backend} exists on this host without the subnet \
                         {} (it has {has:?}): a container on it cannot take the address {}",
                        ip.cidr, ip.address
                    )));
                }
            }
            Ok(())
        }
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => create_network(docker, backend, nic).await,
        Err(e) => Err(DriverError::Backend(format!(
            "inspecting network {backend}: {e}"
        ))),
    }
}

async fn create_network(docker: &Docker, backend: &str, nic: &Nic) -> Result<(), DriverError> {
    // Without a gateway the engine takes the subnet's first address for its bridge, which
    // the subnet's pools hand out to ports.
    if let Some(ip) = nic.ips.iter().find(|ip| ip.gateway.is_none()) {
        return Err(DriverError::Invalid(format!(
            "the subnet {} has no gateway: an engine network for it needs one (the engine takes \
             an address of it for its bridge)",
            ip.cidr
        )));
    }
    let mut cidrs: Vec<&str> = nic.ips.iter().map(|ip| ip.cidr.as_str()).collect();
    cidrs.dedup();
    let config = nic
        .ips
        .iter()
        .map(|ip| IpamConfig {
            subnet: Some(ip.cidr.clone()),
            gateway: ip.gateway.clone(),
            ..Default::default()
        })
        .collect();
    let request = NetworkCreateRequest {
        name: backend.to_owned(),
        driver: Some("bridge".into()),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(config),
            ..Default::default()
        }),
        enable_ipv6: Some(nic.ips.iter().any(|ip| ip.version == 6)),
        labels: Some(HashMap::from([(LABEL_SUBNETS.to_owned(), cidrs.join(","))])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            tracing::info!(network = backend, "engine network created for its subnets");
            Ok(())
        }
        // Created meanwhile by a concurrent spawn: check it as found.
        Err(DockerError::DockerResponseServerError {
            status_code: 409, ..
        }) => Box::pin(ensure_network(docker, backend, nic)).await,
        Err(e) => Err(DriverError::Backend(format!(
            "creating network {backend} for its subnets: {e}"
        ))),
    }
}

/// Whether the engine sets an endpoint's MAC address (API 1.44 on).
pub fn endpoint_macs(docker: &Docker) -> bool {
    let v = docker.client_version();
    (v.major_version, v.minor_version) >= (1, 44)
}

/// The engine's socket, as the typed client finds it.
pub fn socket_path(configured: Option<&str>) -> PathBuf {
    if let Some(path) = configured {
        return PathBuf::from(path.trim_start_matches("unix://"));
    }
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(&host["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// Creates a container with the container-level `MacAddress` (engines before API 1.44), as
/// one request over the engine's socket; errors as the typed client reports them.
pub async fn create_with_mac(
    docker: &Docker,
    socket: &std::path::Path,
    name: &str,
    body: &ContainerCreateBody,
    mac: &str,
) -> Result<(), DockerError> {
    use http_body_util::BodyExt;
    let v = docker.client_version();
    let mut json = serde_json::to_value(body).map_err(DockerError::from)?;
    json["MacAddress"] = serde_json::Value::String(mac.to_owned());
    let payload = serde_json::to_vec(&json).map_err(DockerError::from)?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .finish();
    let uri = format!(
        "/v{}.{}/containers/create?{query}",
        v.major_version, v.minor_version
    );
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(DockerError::from)?;
    let driving = tokio::spawn(connection);
    let request = hyper::Request::post(uri)
        .header("Host", "docker")
        .header("Content-Type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(payload)))
        .map_err(DockerError::from)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(DockerError::from)?;
    let status = response.status();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(DockerError::from)?
        .to_bytes();
    driving.abort();
    if status.is_success() {
        return Ok(());
    }
    // The engine's error body: {"message": "..."}.
    let message = serde_json::from_slice::<serde_json::Value>(&collected)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&collected).into_owned());
    Err(DockerError::DockerResponseServerError {
        status_code: status.as_u16(),
        message,
    })
}
