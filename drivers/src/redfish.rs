//! Bare-metal machines through their BMC's Redfish API, as Ironic's `redfish` hardware type
//! drives them (through sushy): the machine is the `ComputerSystem` at the node's
//! `redfish_system_id`, its power is set with `#ComputerSystem.Reset`, its next boot with the
//! system's `Boot` override, and an ISO reaches it as virtual media (a CD or DVD drive of the
//! BMC that fetches the image from a URL).
//!
//! [`RedfishClient`] is the HTTP side: one BMC, Basic authentication, bounded retries of what
//! may be transient (no connection, no answer in time, a 5xx), never of a refusal (4xx).
//! [`RedfishDriver`] implements [`NodeManagement`] on it, and offers what a deploy will need
//! (media, boot once) as methods of its own.
//!
//! The password travels only in the `Authorization` header: no message, log line or `Debug`
//! output carries it, and an address that holds credentials (`https://user:pw@bmc`) is refused
//! rather than shown.

use crate::nodes::{
    BmcAccess, BootDevice, NodeFacts, NodeManagement, NodePower, PowerAction, TlsVerify,
};
use crate::DriverError;
use async_trait::async_trait;
use nova_core::secret::Secret;
use reqwest_tls::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest_tls::{redirect, Certificate, Client, Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// `[agent.redfish]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RedfishSettings {
    /// How long one HTTP request may take, answer included. A BMC answers in well under a
    /// second or not at all; 10 s leaves room for a slow one without hanging a call on a dead
    /// one.
    pub request_timeout_ms: u64,
    /// How long opening the connection (TLS included) may take: shorter than a request, so
    /// that an unreachable BMC is told quickly.
    pub connect_timeout_ms: u64,
    /// How many times a request that may have failed transiently (no connection, no answer in
    /// time, HTTP 500/502/503/504) is tried again. A refusal (401, 403, 404, any 4xx, 409
    /// included) never is: it would only be refused again (and a BMC may lock the account).
    /// An action (a POST: a reset, a media insert) is tried again only when no connection was
    /// made: one that may have reached the BMC is not sent twice.
    pub retries: u32,
    /// How long inserting virtual media may take: many BMCs (sushy-emulator among them) fetch
    /// the whole image before they answer.
    pub insert_media_timeout_ms: u64,
    /// The wait before the first retry; each further retry waits twice as long.
    pub retry_backoff_ms: u64,
    /// The longest wait between two tries (also the most a `Retry-After` is honoured).
    pub retry_backoff_max_ms: u64,
    /// How often the power state is read while waiting for a machine to reach the power asked.
    pub power_poll_interval_ms: u64,
    /// How long [`NodeManagement::clean`] waits for the machine to power off (Ironic's
    /// `power_state_change_timeout` is 60 s).
    pub clean_power_off_timeout_ms: u64,
    /// Whether requests to BMCs go through the proxy that `HTTPS_PROXY`/`HTTP_PROXY` name.
    /// Off by default: BMCs sit on a management network the agent reaches directly, and a
    /// proxy set for downloads would only see (and hold) their credentials.
    pub proxy_from_environment: bool,
}

impl Default for RedfishSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            retries: 3,
            insert_media_timeout_ms: 600_000,
            retry_backoff_ms: 500,
            retry_backoff_max_ms: 8_000,
            power_poll_interval_ms: 1_000,
            clean_power_off_timeout_ms: 60_000,
            proxy_from_environment: false,
        }
    }
}

/// The largest answer read from a BMC: a Redfish resource is a few KiB; anything much larger
/// is not one.
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Redirects followed within the BMC (a system named by an alias answers with one).
const MAX_REDIRECTS: usize = 5;
/// The most of a BMC's error text kept in a message.
const MAX_ERROR_TEXT: usize = 300;
const USER_AGENT: &str = "nova-rs-redfish";

/// A machine's power as Redfish spells it (`ComputerSystem.PowerState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedfishPower {
    On,
    Off,
    PoweringOn,
    PoweringOff,
    Paused,
    /// A value Redfish does not define.
    Other(String),
}

impl RedfishPower {
    fn parse(text: &str) -> Self {
        match text {
            "On" => Self::On,
            "Off" => Self::Off,
            "PoweringOn" => Self::PoweringOn,
            "PoweringOff" => Self::PoweringOff,
            "Paused" => Self::Paused,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The power as Ironic reports it: a transition counts as the state it leads to, and a
    /// paused machine is on. `None` for a value Redfish does not define.
    pub fn node_power(&self) -> Option<NodePower> {
        match self {
            Self::On | Self::PoweringOn | Self::Paused => Some(NodePower::On),
            Self::Off | Self::PoweringOff => Some(NodePower::Off),
            Self::Other(_) => None,
        }
    }

    fn is_transition(&self) -> bool {
        matches!(self, Self::PoweringOn | Self::PoweringOff)
    }
}

/// A `ResetType` of `#ComputerSystem.Reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetType {
    On,
    ForceOn,
    ForceOff,
    GracefulShutdown,
    ForceRestart,
    GracefulRestart,
    PowerCycle,
    PushPowerButton,
}

impl ResetType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::ForceOn => "ForceOn",
            Self::ForceOff => "ForceOff",
            Self::GracefulShutdown => "GracefulShutdown",
            Self::ForceRestart => "ForceRestart",
            Self::GracefulRestart => "GracefulRestart",
            Self::PowerCycle => "PowerCycle",
            Self::PushPowerButton => "PushPowerButton",
        }
    }
}

/// The system's `Boot` override as the BMC reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootOverride {
    /// `BootSourceOverrideEnabled`: `Disabled`, `Once` or `Continuous`.
    pub enabled: Option<String>,
    /// `BootSourceOverrideTarget`: `None`, `Pxe`, `Cd`, `Hdd`, and others Redfish defines.
    pub target: Option<String>,
    /// `BootSourceOverrideTarget@Redfish.AllowableValues`, when the BMC lists them.
    pub allowed_targets: Option<Vec<String>>,
}

impl BootOverride {
    /// Whether an override is set: enabled, and to some device.
    pub fn in_effect(&self) -> bool {
        self.enabled.as_deref() != Some("Disabled")
            && !matches!(self.target.as_deref(), None | Some("None"))
    }

    /// The override as a [`BootDevice`] and whether it is for the next boot only; `None`
    /// when none is set. `Err` names a target that is not a [`BootDevice`] (`BiosSetup`,
    /// `Usb`, ...).
    fn device(&self) -> Result<Option<(BootDevice, bool)>, String> {
        if !self.in_effect() {
            return Ok(None);
        }
        let device = match self.target.as_deref() {
            Some("Pxe") => BootDevice::Pxe,
            Some("Cd") => BootDevice::Cd,
            Some("Hdd") => BootDevice::Hdd,
            other => return Err(other.unwrap_or_default().to_owned()),
        };
        Ok(Some((device, self.enabled.as_deref() == Some("Once"))))
    }

    fn allows(&self, target: &str) -> bool {
        self.allowed_targets
            .as_ref()
            .is_none_or(|list| list.iter().any(|t| t == target))
    }
}

/// Redfish's name of a boot device.
fn boot_target(device: BootDevice) -> &'static str {
    match device {
        BootDevice::Cd => "Cd",
        BootDevice::Pxe => "Pxe",
        BootDevice::Hdd => "Hdd",
    }
}

/// The system as one `GET` of it tells.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemState {
    /// `None` when the BMC does not say.
    pub power: Option<RedfishPower>,
    /// `ProcessorSummary.LogicalProcessorCount` where the BMC gives it (threads, what a flavor
    /// counts as vCPUs), else `ProcessorSummary.Count`.
    pub cpus: Option<u32>,
    /// `MemorySummary.TotalSystemMemoryGiB` in MiB.
    pub memory_mb: Option<u64>,
    pub boot: BootOverride,
    /// Where `#ComputerSystem.Reset` is posted.
    pub reset_target: String,
    /// The reset types the BMC allows (`ResetType@Redfish.AllowableValues`, or its
    /// `@Redfish.ActionInfo`); `None` when it does not list them, and then any may be tried.
    pub reset_types: Option<Vec<String>>,
    processors: Option<String>,
    managers: Vec<String>,
    virtual_media: Option<String>,
}

impl SystemState {
    /// The power as Ironic reports it; `None` when the BMC reports none it defines.
    pub fn node_power(&self) -> Option<NodePower> {
        self.power.as_ref().and_then(RedfishPower::node_power)
    }
}

/// A CD or DVD drive of virtual media.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualMedia {
    /// The drive's resource (`@odata.id`).
    pub path: String,
    /// Its `Id` (`Cd` on sushy-emulator, `CD1` or `RemovableDisk` elsewhere).
    pub id: String,
    pub inserted: bool,
    /// The URL of the inserted image; `None` when the drive is empty.
    pub image: Option<String>,
    insert_target: Option<String>,
    eject_target: Option<String>,
}

/// Why a request failed, before it becomes a [`DriverError`] that names the BMC.
#[derive(Debug)]
enum Failure {
    /// The BMC answered with an error status.
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        message: Option<String>,
    },
    /// No answer: no connection, the connection dropped, or no answer in time.
    Unreachable { attempts: u32, detail: String },
    /// The TLS handshake failed; `certificate`: the BMC's certificate did not verify.
    Tls { certificate: bool, detail: String },
    /// The answer is not what Redfish defines.
    Malformed { path: String, detail: String },
}

/// One BMC and one of its systems: the HTTP client and what each request needs.
#[derive(Debug)]
pub struct RedfishClient {
    http: Client,
    /// `scheme://host:port/`, never with credentials: requests are made from it and links the
    /// BMC gives must stay within it.
    origin: Url,
    /// The origin as messages show it (`https://bmc:8443`).
    shown: String,
    /// The system's path, `/redfish/v1/Systems/<id>`.
    system_path: String,
    /// The system as the node names it (for a message saying it is not there).
    system_id: String,
    username: String,
    password: Secret,
    settings: RedfishSettings,
}

impl RedfishClient {
    /// A client for `bmc`; nothing is sent yet. `Invalid` for an address or CA bundle that
    /// cannot work. A CA bundle is read here (a small local file: a blocking read).
    pub fn new(bmc: &BmcAccess, settings: &RedfishSettings) -> Result<Self, DriverError> {
        let origin = bmc_origin(&bmc.address)?;
        let shown = origin.origin().ascii_serialization();
        let system_path = system_path(&bmc.system_id)?;
        let http = http_client(&origin, &shown, &bmc.verify, settings)?;
        Ok(Self {
            http,
            origin,
            shown,
            system_path,
            system_id: bmc.system_id.trim().to_owned(),
            username: bmc.username.clone(),
            password: bmc.password.clone(),
            settings: settings.clone(),
        })
    }

    /// The BMC's address as messages show it.
    pub fn address(&self) -> &str {
        &self.shown
    }

    /// Reads the system. A BMC that has no such system says `Invalid` ("No system ...").
    pub async fn system(&self) -> Result<SystemState, DriverError> {
        let resource: SystemResource = match self.get(&self.system_path).await {
            Ok(resource) => resource,
            Err(Failure::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => {
                return Err(DriverError::Invalid(format!(
                    "No system {} at the BMC {}",
                    self.system_id, self.shown
                )))
            }
            Err(failure) => return Err(self.error(failure)),
        };
        let summary = resource.processor_summary.unwrap_or_default();
        let boot = resource.boot.unwrap_or_default();
        let reset = resource
            .actions
            .and_then(|actions| actions.reset)
            .unwrap_or_default();
        let mut reset_types = reset.allowed;
        if reset_types.is_none() {
            if let Some(info) = &reset.action_info {
                reset_types = self.reset_types_from_action_info(info).await?;
            }
        }
        Ok(SystemState {
            power: resource.power_state.as_deref().map(RedfishPower::parse),
            cpus: summary.logical_processor_count.or(summary.count),
            memory_mb: resource
                .memory_summary
                .and_then(|m| m.total_system_memory_gib)
                .and_then(gib_to_mib),
            boot: BootOverride {
                enabled: boot.enabled,
                target: boot.target,
                allowed_targets: boot.allowed,
            },
            reset_target: reset
                .target
                .unwrap_or_else(|| format!("{}/Actions/ComputerSystem.Reset", self.system_path)),
            reset_types,
            processors: resource.processors.map(|l| l.id),
            managers: resource
                .links
                .and_then(|l| l.managed_by)
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.id)
                .collect(),
            virtual_media: resource.virtual_media.map(|l| l.id),
        })
    }

    /// The reset types an `@Redfish.ActionInfo` resource allows; `None` if it does not say.
    async fn reset_types_from_action_info(
        &self,
        path: &str,
    ) -> Result<Option<Vec<String>>, DriverError> {
        match self.get::<ActionInfo>(path).await {
            Ok(info) => Ok(info
                .parameters
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.name.as_deref() == Some("ResetType"))
                .and_then(|p| p.allowable_values)),
            // A BMC that links an ActionInfo it does not serve lists nothing.
            Err(Failure::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => Ok(None),
            Err(failure) => Err(self.error(failure)),
        }
    }

    /// The processors' architecture, as Nova and Ironic spell it (`x86_64`, `aarch64`), from
    /// the first processor's `InstructionSet` (else its `ProcessorArchitecture`). `None` when
    /// the BMC does not tell (many do not list processors): it is a fact to learn, not a
    /// condition of working.
    pub async fn cpu_arch(&self, system: &SystemState) -> Option<String> {
        let collection = system.processors.as_deref()?;
        let first = match self.get::<Collection>(collection).await {
            Ok(c) => c.members.unwrap_or_default().into_iter().next()?,
            Err(failure) => {
                tracing::debug!(bmc = %self.shown, error = ?failure, "no processors listed");
                return None;
            }
        };
        match self.get::<Processor>(&first.id).await {
            Ok(p) => arch_name(
                p.instruction_set.as_deref(),
                p.processor_architecture.as_deref(),
            ),
            Err(failure) => {
                tracing::debug!(bmc = %self.shown, error = ?failure, "processor unreadable");
                None
            }
        }
    }

    /// Posts `#ComputerSystem.Reset` with `reset`, whether or not the BMC lists it.
    pub async fn reset(&self, system: &SystemState, reset: ResetType) -> Result<(), DriverError> {
        tracing::info!(bmc = %self.shown, system = %self.system_id, reset = reset.as_str(),
            "redfish reset");
        self.send(
            Method::POST,
            &system.reset_target,
            Some(&json!({ "ResetType": reset.as_str() })),
        )
        .await
        .map(drop)
        .map_err(|f| self.error(f))
    }

    /// Sets the system to boot from `device` at its next boot only.
    pub async fn set_boot_once(
        &self,
        system: &SystemState,
        device: BootDevice,
    ) -> Result<(), DriverError> {
        let target = boot_target(device);
        if !system.boot.allows(target) {
            return Err(DriverError::Invalid(format!(
                "The BMC at {} does not offer booting the system from {target} (it offers {})",
                self.shown,
                system
                    .boot
                    .allowed_targets
                    .as_deref()
                    .unwrap_or_default()
                    .join(", ")
            )));
        }
        tracing::info!(bmc = %self.shown, system = %self.system_id, target, "redfish boot once");
        let body = json!({ "Boot": {
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": "Once",
        }});
        self.send(Method::PATCH, &self.system_path, Some(&body))
            .await
            .map(drop)
            .map_err(|f| self.error(f))
    }

    /// Removes the boot override, so that the machine boots as its own boot order says.
    /// Redfish's way is `BootSourceOverrideEnabled: Disabled`; a BMC that refuses it without
    /// a target (sushy-emulator answers 400) is given `None` as the target, or, when it does
    /// not list `None`, `Hdd`: booting from the disk is what a machine without an override does.
    pub async fn clear_boot_override(&self, system: &SystemState) -> Result<(), DriverError> {
        if !system.boot.in_effect() {
            return Ok(());
        }
        tracing::info!(bmc = %self.shown, system = %self.system_id, "redfish boot override off");
        let disabled = json!({ "Boot": { "BootSourceOverrideEnabled": "Disabled" } });
        match self
            .send(Method::PATCH, &self.system_path, Some(&disabled))
            .await
        {
            Ok(_) => Ok(()),
            Err(
                refused @ Failure::Status {
                    status: StatusCode::BAD_REQUEST,
                    ..
                },
            ) => {
                let target = if system.boot.allows("None") {
                    "None"
                } else if system.boot.allows("Hdd") {
                    "Hdd"
                } else {
                    return Err(self.error(refused));
                };
                let body = json!({ "Boot": {
                    "BootSourceOverrideEnabled": "Disabled",
                    "BootSourceOverrideTarget": target,
                }});
                self.send(Method::PATCH, &self.system_path, Some(&body))
                    .await
                    .map(drop)
                    .map_err(|f| self.error(f))
            }
            Err(failure) => Err(self.error(failure)),
        }
    }

    /// The CD and DVD drives the BMC offers the system: from the `VirtualMedia` of the
    /// managers that manage it (`Links.ManagedBy`), then the system's own (Redfish 2021.1
    /// moved them there). Empty when it offers none: a BMC without virtual media, or whose
    /// managers or collections are missing (404), is not an error.
    pub async fn cd_drives(&self, system: &SystemState) -> Result<Vec<VirtualMedia>, DriverError> {
        let mut collections: Vec<String> = Vec::new();
        for manager in &system.managers {
            match self.get::<Manager>(manager).await {
                Ok(m) => collections.extend(m.virtual_media.map(|l| l.id)),
                Err(Failure::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                }) => {}
                Err(failure) => return Err(self.error(failure)),
            }
        }
        collections.extend(system.virtual_media.clone());
        let mut members: Vec<String> = Vec::new();
        for collection in dedup_keep_order(collections) {
            match self.get::<Collection>(&collection).await {
                Ok(c) => members.extend(c.members.unwrap_or_default().into_iter().map(|l| l.id)),
                Err(Failure::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                }) => {}
                Err(failure) => return Err(self.error(failure)),
            }
        }
        let mut drives = Vec::new();
        for member in dedup_keep_order(members) {
            let media: VirtualMediaResource = self.get(&member).await.map_err(|f| self.error(f))?;
            let is_cd = media
                .media_types
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|t| t.eq_ignore_ascii_case("CD") || t.eq_ignore_ascii_case("DVD"));
            if !is_cd {
                continue;
            }
            let image = media.image.filter(|i| !i.is_empty());
            let actions = media.actions.unwrap_or_default();
            drives.push(VirtualMedia {
                id: media.id.unwrap_or_else(|| member.clone()),
                inserted: media.inserted.unwrap_or(image.is_some()),
                image,
                insert_target: actions.insert.and_then(|a| a.target),
                eject_target: actions.eject.and_then(|a| a.target),
                path: member,
            });
        }
        Ok(drives)
    }

    /// Inserts the image at `url` into `drive` (ejecting what it holds first: many BMCs refuse
    /// to insert into a full drive), write-protected. The BMC fetches the image itself.
    pub async fn insert_media(&self, drive: &VirtualMedia, url: &str) -> Result<(), DriverError> {
        if drive.inserted || drive.image.is_some() {
            self.eject_media(drive).await?;
        }
        tracing::info!(bmc = %self.shown, system = %self.system_id, drive = %drive.id,
            "redfish insert media");
        let full = json!({ "Image": url, "Inserted": true, "WriteProtected": true });
        let Some(target) = &drive.insert_target else {
            // Before VirtualMedia 1.2 there were no actions: the drive is patched.
            return self
                .send(Method::PATCH, &drive.path, Some(&full))
                .await
                .map(drop)
                .map_err(|f| self.error(f));
        };
        let long = Some(Duration::from_millis(self.settings.insert_media_timeout_ms));
        match self
            .send_within(Method::POST, target, Some(&full), long)
            .await
        {
            Ok(_) => Ok(()),
            // Some BMCs know neither `Inserted` nor `WriteProtected` and refuse a request that
            // carries them: the image alone is what every BMC takes.
            Err(Failure::Status {
                status: StatusCode::BAD_REQUEST,
                ..
            }) => self
                .send_within(Method::POST, target, Some(&json!({ "Image": url })), long)
                .await
                .map(drop)
                .map_err(|f| self.error(f)),
            Err(failure) => Err(self.error(failure)),
        }
    }

    /// Ejects what `drive` holds.
    pub async fn eject_media(&self, drive: &VirtualMedia) -> Result<(), DriverError> {
        tracing::info!(bmc = %self.shown, system = %self.system_id, drive = %drive.id,
            "redfish eject media");
        let result = match &drive.eject_target {
            Some(target) => self.send(Method::POST, target, Some(&json!({}))).await,
            None => {
                let body = json!({ "Image": null, "Inserted": false });
                self.send(Method::PATCH, &drive.path, Some(&body)).await
            }
        };
        result.map(drop).map_err(|f| self.error(f))
    }

    /// Reads the system until its power is not in a transition (`PoweringOn`,
    /// `PoweringOff`). The caller bounds the wait.
    async fn settled_system(&self) -> Result<SystemState, DriverError> {
        loop {
            let system = self.system().await?;
            if !system
                .power
                .as_ref()
                .is_some_and(RedfishPower::is_transition)
            {
                return Ok(system);
            }
            tokio::time::sleep(self.poll_interval()).await;
        }
    }

    /// Reads the power until it is `want` (exactly `On` or `Off`, not a transition). The
    /// caller bounds the wait.
    async fn wait_power(&self, want: NodePower) -> Result<(), DriverError> {
        let want = match want {
            NodePower::On => RedfishPower::On,
            NodePower::Off => RedfishPower::Off,
        };
        loop {
            tokio::time::sleep(self.poll_interval()).await;
            if self.system().await?.power.as_ref() == Some(&want) {
                return Ok(());
            }
        }
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.settings.power_poll_interval_ms.max(1))
    }

    /// A [`Failure`] as the error a caller sees, naming the BMC (never the password).
    fn error(&self, failure: Failure) -> DriverError {
        let bmc = &self.shown;
        match failure {
            Failure::Status {
                status: status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                ..
            } => DriverError::Invalid(format!(
                "The BMC at {bmc} refused the credentials (HTTP {})",
                status.as_u16()
            )),
            Failure::Status {
                method,
                path,
                status,
                message,
            } => {
                let said = message.map(|m| format!(": {m}")).unwrap_or_default();
                DriverError::Backend(format!(
                    "The BMC at {bmc} answered {method} {path} with HTTP {}{said}",
                    status.as_u16()
                ))
            }
            Failure::Unreachable { attempts, detail } => {
                let tries = if attempts == 1 { "try" } else { "tries" };
                DriverError::Backend(format!(
                    "The BMC at {bmc} did not answer ({attempts} {tries}): {detail}"
                ))
            }
            Failure::Tls {
                certificate: true,
                detail,
            } => DriverError::Invalid(format!(
                "The TLS certificate of the BMC at {bmc} does not verify ({detail}): give the \
                 node the CA bundle that signed it, or turn its verification off"
            )),
            Failure::Tls {
                certificate: false,
                detail,
            } => DriverError::Backend(format!(
                "The TLS handshake with the BMC at {bmc} failed: {detail}"
            )),
            Failure::Malformed { path, detail } => DriverError::Backend(format!(
                "The BMC at {bmc} answered {path} with what is not Redfish: {detail}"
            )),
        }
    }

    /// `GET path` as `T`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let body = self.send(Method::GET, path, None).await?;
        serde_json::from_slice(&body).map_err(|e| Failure::Malformed {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Sends one request to `path` (a path the BMC gave, within its origin), trying again
    /// what may be transient, and returns the answer's body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, Failure> {
        self.send_within(method, path, body, None).await
    }

    /// [`Self::send`], each try bounded by `timeout` instead of the request timeout.
    async fn send_within(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, Failure> {
        let url = self.resolve(path)?;
        let body = body.map(|b| b.to_string());
        // An action may have been carried out when its answer did not come: only a request
        // that never connected is sent again.
        let repeatable = method != Method::POST;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let last = attempt > self.settings.retries;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .basic_auth(&self.username, Some(self.password.expose()))
                .header(ACCEPT, "application/json")
                .header("OData-Version", "4.0");
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let mut retry_after = None;
            let transient = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match read_body(response).await {
                        Ok(bytes) if status.is_success() => return Ok(bytes),
                        Ok(_) if !last && repeatable && retryable(status) => {
                            format!("HTTP {}", status.as_u16())
                        }
                        Ok(bytes) => {
                            return Err(Failure::Status {
                                method,
                                path: path.to_owned(),
                                status,
                                message: error_text(&bytes),
                            })
                        }
                        Err(BodyError::TooLarge) => {
                            return Err(Failure::Malformed {
                                path: path.to_owned(),
                                detail: format!("an answer over {MAX_RESPONSE_BYTES} bytes"),
                            })
                        }
                        Err(BodyError::Read(e)) => describe(&e),
                    }
                }
                Err(e) => {
                    if let Some((certificate, detail)) = tls_failure(&e) {
                        return Err(Failure::Tls {
                            certificate,
                            detail,
                        });
                    }
                    if !(e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
                        || (!repeatable && !e.is_connect())
                    {
                        return Err(Failure::Unreachable {
                            attempts: attempt,
                            detail: describe(&e),
                        });
                    }
                    if e.is_timeout() {
                        format!("no answer within {} ms", self.settings.request_timeout_ms)
                    } else {
                        describe(&e)
                    }
                }
            };
            if last {
                return Err(Failure::Unreachable {
                    attempts: attempt,
                    detail: transient,
                });
            }
            let wait = self.backoff(attempt, retry_after);
            tracing::warn!(bmc = %self.shown, %method, path, attempt, error = %transient,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "redfish request failed; trying again");
            tokio::time::sleep(wait).await;
        }
    }

    /// The wait after try `attempt` (from 1): the backoff doubled each time, at most the
    /// maximum; a `Retry-After` the BMC sent lengthens it up to that maximum.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let max = Duration::from_millis(self.settings.retry_backoff_max_ms);
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        let doubled =
            Duration::from_millis(self.settings.retry_backoff_ms.saturating_mul(factor)).min(max);
        match retry_after {
            Some(asked) => doubled.max(asked.min(max)),
            None => doubled,
        }
    }

    /// `path` (as the BMC links its resources: `/redfish/v1/...`) within the BMC's origin; a
    /// link elsewhere is refused, so that the credentials go to the BMC alone.
    fn resolve(&self, path: &str) -> Result<Url, Failure> {
        let url = self.origin.join(path).map_err(|e| Failure::Malformed {
            path: path.to_owned(),
            detail: format!("not a path: {e}"),
        })?;
        if url.origin() != self.origin.origin() {
            return Err(Failure::Malformed {
                path: path.to_owned(),
                detail: "a link outside the BMC".into(),
            });
        }
        Ok(url)
    }
}

/// Statuses worth trying again: the BMC failed or was busy, and may not next time.
fn retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

enum BodyError {
    Read(reqwest_tls::Error),
    TooLarge,
}

async fn read_body(mut response: reqwest_tls::Response) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What a BMC's error answer says: Redfish's `error.@Message.ExtendedInfo[0].Message` or
/// `error.message`, else the text itself; cut to [`MAX_ERROR_TEXT`].
fn error_text(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let error = value.get("error")?;
            error
                .get("@Message.ExtendedInfo")
                .and_then(|info| info.get(0))
                .and_then(|first| first.get("Message"))
                .and_then(Value::as_str)
                .or_else(|| error.get("message").and_then(Value::as_str))?
                .to_owned()
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    })
}

/// An error and its causes, as one line (`tcp connect error: Connection refused`). The
/// request's URL, which reqwest's own message carries, is left out: the message names the
/// BMC already.
fn describe(error: &reqwest_tls::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = std::error::Error::source(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        let text = error.to_string();
        parts.push(match error.url() {
            Some(url) => text.replace(&format!(" ({url})"), ""),
            None => text,
        });
    }
    parts.join(": ")
}

/// Whether a request failed in its TLS handshake (rustls's error somewhere among its causes),
/// and then whether it was the certificate, and what rustls said. Such a failure is not tried
/// again: the same certificate would fail the same way.
fn tls_failure(error: &reqwest_tls::Error) -> Option<(bool, String)> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            let certificate = matches!(
                tls,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::InvalidCertRevocationList(_)
                    | rustls::Error::NoCertificatesPresented
            );
            return Some((certificate, tls.to_string()));
        }
        next = cause(e);
    }
    None
}

/// What caused `error`. An `io::Error` that wraps another (rustls's, in two layers of them
/// here) gives that one: its own `source` skips it.
fn cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match error.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => error.source(),
    }
}

/// `BmcAccess::address` as the origin requests go to: `http://` or `https://`, a bare host
/// meaning `https://`; no credentials, path, query or fragment.
fn bmc_origin(address: &str) -> Result<Url, DriverError> {
    let address = address.trim();
    if address.is_empty() {
        return Err(DriverError::Invalid("The BMC address is empty".into()));
    }
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else {
        format!("https://{address}")
    };
    // An address with an `@` may hold a password: it is not repeated in a message.
    let shown = if address.contains('@') {
        "(not shown: it holds an '@')"
    } else {
        address
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| DriverError::Invalid(format!("The BMC address {shown} is not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DriverError::Invalid(
            "The BMC address must not hold a user name or password: give them as the BMC's \
             credentials"
                .into(),
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DriverError::Invalid(format!(
            "The BMC address {shown} must be http:// or https://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(DriverError::Invalid(format!(
            "The BMC address {shown} names no host"
        )));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(DriverError::Invalid(format!(
            "The BMC address {shown} must be scheme://host[:port] alone: the system's path is \
             its system id"
        )));
    }
    Ok(url)
}

/// `BmcAccess::system_id` as a path: `/redfish/v1/Systems/<id>` as given, or a bare id
/// placed under `/redfish/v1/Systems/`.
fn system_path(system_id: &str) -> Result<String, DriverError> {
    let id = system_id.trim();
    if id.is_empty() || id == "/" {
        return Err(DriverError::Invalid("The BMC's system id is empty".into()));
    }
    if id.contains("://") || id.contains('?') || id.contains('#') {
        return Err(DriverError::Invalid(format!(
            "The system id {id} must be a path such as /redfish/v1/Systems/1"
        )));
    }
    if id.starts_with('/') {
        Ok(id.trim_end_matches('/').to_owned())
    } else {
        Ok(format!("/redfish/v1/Systems/{id}"))
    }
}

/// The HTTP client for one BMC: its timeouts, redirects kept within it, and its TLS
/// verification (rustls on ring).
fn http_client(
    origin: &Url,
    shown: &str,
    verify: &TlsVerify,
    settings: &RedfishSettings,
) -> Result<Client, DriverError> {
    // rustls on ring, the provider the rest of the service uses; installing it again (or
    // after another part of the process did) changes nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms.max(1)))
        .timeout(Duration::from_millis(settings.request_timeout_ms.max(1)))
        // Within the BMC only: a redirect elsewhere is answered as it is (an error), and the
        // credentials never follow it.
        .redirect(redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }));
    if !settings.proxy_from_environment {
        builder = builder.no_proxy();
    }
    builder = match verify {
        // The system's roots (rustls-platform-verifier: on Linux, the trust store that
        // `SSL_CERT_FILE`/`SSL_CERT_DIR` or /etc/ssl/certs hold), loaded when the client is
        // built. Over plain HTTP there is nothing to verify: no roots are loaded.
        TlsVerify::System if origin.scheme() == "http" => builder.tls_certs_only(Vec::new()),
        TlsVerify::System => builder,
        TlsVerify::Off => builder.tls_danger_accept_invalid_certs(true),
        TlsVerify::CaBundle(path) => builder.tls_certs_only(read_ca_bundle(path, shown)?),
    };
    builder.build().map_err(|e| match verify {
        TlsVerify::CaBundle(path) => DriverError::Invalid(format!(
            "The CA bundle {} for the BMC at {shown} holds a certificate that does not parse: {}",
            path.display(),
            describe(&e)
        )),
        _ => DriverError::Backend(format!(
            "The HTTPS client for the BMC at {shown} cannot be set up: {}",
            describe(&e)
        )),
    })
}

/// The certificates of a PEM bundle: the only roots a BMC's certificate is verified against.
fn read_ca_bundle(path: &Path, shown: &str) -> Result<Vec<Certificate>, DriverError> {
    let pem = std::fs::read(path).map_err(|e| {
        DriverError::Invalid(format!(
            "The CA bundle {} for the BMC at {shown} cannot be read: {e}",
            path.display()
        ))
    })?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
        DriverError::Invalid(format!(
            "The CA bundle {} for the BMC at {shown} is not PEM: {}",
            path.display(),
            describe(&e)
        ))
    })?;
    if certs.is_empty() {
        return Err(DriverError::Invalid(format!(
            "The CA bundle {} for the BMC at {shown} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// GiB (Redfish's unit, a decimal number) in MiB, rounded; `None` for what no machine has.
fn gib_to_mib(gib: f64) -> Option<u64> {
    let mib = (gib * 1024.0).round();
    // Below 2^53 MiB the float holds an exact integer, so the cast is exact.
    if !mib.is_finite() || mib <= 0.0 || mib >= 9_007_199_254_740_992.0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(mib as u64)
}

/// A processor's architecture as Nova spells it: from its `InstructionSet` where it gives one
/// (`x86-64`, `ARM-A64`), else its `ProcessorArchitecture` (`x86` taken as `x86_64`, as
/// Ironic does).
fn arch_name(instruction_set: Option<&str>, architecture: Option<&str>) -> Option<String> {
    let from_set = match instruction_set {
        Some("x86-64") => Some("x86_64"),
        Some("x86") => Some("i686"),
        Some("IA-64") => Some("ia64"),
        Some("ARM-A64") => Some("aarch64"),
        Some("ARM-A32") => Some("armv7l"),
        Some("PowerISA") => Some("ppc64le"),
        Some("MIPS64") => Some("mips64"),
        Some("MIPS32") => Some("mips"),
        _ => None,
    };
    let name = from_set.or(match architecture {
        Some("x86") => Some("x86_64"),
        Some("IA-64") => Some("ia64"),
        Some("ARM") => Some("aarch64"),
        Some("Power") => Some("ppc64le"),
        _ => None,
    })?;
    Some(name.to_owned())
}

/// `items` without repeats, in their first order.
fn dedup_keep_order(items: Vec<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// What a power action takes, from the machine's power and the reset types its BMC allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PowerPlan {
    /// The machine has the power asked for.
    Nothing,
    /// One reset, then the power it leads to.
    Reset(ResetType, NodePower),
    /// A reset that powers off, then one that powers on: a restart where the BMC offers none.
    OffThenOn(ResetType, ResetType),
}

/// The plan for `action` on a machine whose power is `current` (`None`: unknown), as Ironic
/// does it: `On` and off with `ForceOff`; a soft off with `GracefulShutdown`; a reboot with
/// `ForceRestart` (a soft one with `GracefulRestart`), or off and on where the BMC offers no
/// restart; a reboot of a machine that is off just powers it on. `Err` names the resets
/// that were looked for, none of them allowed.
fn power_plan(
    action: PowerAction,
    current: Option<NodePower>,
    allowed: Option<&[String]>,
) -> Result<PowerPlan, String> {
    let allows = |t: ResetType| allowed.is_none_or(|list| list.iter().any(|a| a == t.as_str()));
    let first = |candidates: &[ResetType]| candidates.iter().copied().find(|t| allows(*t));
    let names =
        |candidates: &[ResetType]| candidates.iter().map(|t| t.as_str()).collect::<Vec<_>>();
    // Pushing the button toggles: only when the power is known to be the other one.
    let on_resets: &[ResetType] = if current == Some(NodePower::Off) {
        &[
            ResetType::On,
            ResetType::ForceOn,
            ResetType::PushPowerButton,
        ]
    } else {
        &[ResetType::On, ResetType::ForceOn]
    };
    let off_resets: &[ResetType] = if current == Some(NodePower::On) {
        &[
            ResetType::ForceOff,
            ResetType::GracefulShutdown,
            ResetType::PushPowerButton,
        ]
    } else {
        &[ResetType::ForceOff, ResetType::GracefulShutdown]
    };
    let power_on = || {
        first(on_resets)
            .map(|t| PowerPlan::Reset(t, NodePower::On))
            .ok_or_else(|| names(on_resets).join(", "))
    };
    match action {
        PowerAction::On if current == Some(NodePower::On) => Ok(PowerPlan::Nothing),
        PowerAction::On => power_on(),
        PowerAction::Off | PowerAction::SoftOff if current == Some(NodePower::Off) => {
            Ok(PowerPlan::Nothing)
        }
        PowerAction::Off => first(off_resets)
            .map(|t| PowerPlan::Reset(t, NodePower::Off))
            .ok_or_else(|| names(off_resets).join(", ")),
        PowerAction::SoftOff => first(&[ResetType::GracefulShutdown])
            .map(|t| PowerPlan::Reset(t, NodePower::Off))
            .ok_or_else(|| ResetType::GracefulShutdown.as_str().to_owned()),
        PowerAction::Reboot | PowerAction::SoftReboot if current == Some(NodePower::Off) => {
            power_on()
        }
        PowerAction::Reboot | PowerAction::SoftReboot => {
            let (restarts, offs): (&[ResetType], &[ResetType]) = if action == PowerAction::Reboot {
                (
                    &[ResetType::ForceRestart, ResetType::PowerCycle],
                    &[ResetType::ForceOff, ResetType::GracefulShutdown],
                )
            } else {
                (
                    &[ResetType::GracefulRestart],
                    &[ResetType::GracefulShutdown],
                )
            };
            if let Some(restart) = first(restarts) {
                return Ok(PowerPlan::Reset(restart, NodePower::On));
            }
            match (first(offs), first(&[ResetType::On, ResetType::ForceOn])) {
                (Some(off), Some(on)) => Ok(PowerPlan::OffThenOn(off, on)),
                _ => Err([names(restarts), names(offs)].concat().join(", ")),
            }
        }
    }
}

/// A pool's machines through their BMCs' Redfish API.
pub struct RedfishDriver {
    settings: RedfishSettings,
}

impl RedfishDriver {
    pub fn new(settings: RedfishSettings) -> Self {
        Self { settings }
    }

    /// A client for `bmc` with this driver's settings.
    pub fn client(&self, bmc: &BmcAccess) -> Result<RedfishClient, DriverError> {
        RedfishClient::new(bmc, &self.settings)
    }

    /// Inserts the image at `url` into the machine's first virtual CD/DVD drive (the BMC
    /// fetches it). `Invalid` when the BMC offers the machine no such drive.
    pub async fn insert_media(&self, bmc: &BmcAccess, url: &str) -> Result<(), DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        let drives = client.cd_drives(&system).await?;
        let Some(drive) = drives.first() else {
            return Err(DriverError::Invalid(format!(
                "The BMC at {} offers the system no virtual CD or DVD drive",
                client.address()
            )));
        };
        client.insert_media(drive, url).await
    }

    /// Ejects the media of every virtual CD/DVD drive that holds one; nothing to do (no
    /// media, or no virtual media at all) is not an error.
    pub async fn eject_media(&self, bmc: &BmcAccess) -> Result<(), DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        eject_all(&client, &system).await
    }

    /// Sets the machine to boot from `device` at its next boot only.
    pub async fn set_boot_once(
        &self,
        bmc: &BmcAccess,
        device: BootDevice,
    ) -> Result<(), DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        client.set_boot_once(&system, device).await
    }

    /// Removes the machine's boot override (see [`RedfishClient::clear_boot_override`]).
    pub async fn clear_boot_override(&self, bmc: &BmcAccess) -> Result<(), DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        client.clear_boot_override(&system).await
    }

    /// The machine's boot override and whether it is for the next boot only; `None` when
    /// none is set. A BMC that applies every override until changed (sushy-emulator) reports
    /// `once: false` even after [`Self::set_boot_once`]. `Backend` for an override to a
    /// device that is not a [`BootDevice`].
    pub async fn boot_override(
        &self,
        bmc: &BmcAccess,
    ) -> Result<Option<(BootDevice, bool)>, DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        system.boot.device().map_err(|target| {
            DriverError::Backend(format!(
                "The BMC at {} reports a boot override to {target}, which is none of Pxe, Cd, Hdd",
                client.address()
            ))
        })
    }

    /// The machine's virtual CD/DVD drives and what they hold.
    pub async fn media_state(&self, bmc: &BmcAccess) -> Result<Vec<VirtualMedia>, DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        client.cd_drives(&system).await
    }

    /// [`NodeManagement::set_power`] with a client at hand.
    async fn power(
        &self,
        client: &RedfishClient,
        action: PowerAction,
        timeout: Duration,
    ) -> Result<NodePower, DriverError> {
        let target = match action {
            PowerAction::On | PowerAction::Reboot | PowerAction::SoftReboot => NodePower::On,
            PowerAction::Off | PowerAction::SoftOff => NodePower::Off,
        };
        let work = async {
            let system = client.settled_system().await?;
            let plan = power_plan(action, system.node_power(), system.reset_types.as_deref())
                .map_err(|wanted| {
                    DriverError::Invalid(format!(
                        "The BMC at {} allows none of the resets that {action:?} takes ({wanted})",
                        client.address()
                    ))
                })?;
            match plan {
                PowerPlan::Nothing => {}
                PowerPlan::Reset(reset, leads_to) => {
                    client.reset(&system, reset).await?;
                    client.wait_power(leads_to).await?;
                }
                PowerPlan::OffThenOn(off, on) => {
                    client.reset(&system, off).await?;
                    client.wait_power(NodePower::Off).await?;
                    client.reset(&system, on).await?;
                    client.wait_power(NodePower::On).await?;
                }
            }
            Ok(target)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(DriverError::Backend(format!(
                "The machine at the BMC {} did not reach {} within {} s",
                client.address(),
                target.ironic(),
                seconds(timeout)
            ))),
        }
    }
}

/// Ejects every CD/DVD drive of `system` that holds media.
async fn eject_all(client: &RedfishClient, system: &SystemState) -> Result<(), DriverError> {
    for drive in client.cd_drives(system).await? {
        if drive.inserted || drive.image.is_some() {
            client.eject_media(&drive).await?;
        }
    }
    Ok(())
}

/// A duration in seconds as a message shows it (`60`, `0.5`).
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.1}", d.as_secs_f64())
    }
}

#[async_trait]
impl NodeManagement for RedfishDriver {
    async fn verify(&self, bmc: &BmcAccess) -> Result<NodeFacts, DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        let power = system.node_power().ok_or_else(|| {
            DriverError::Backend(format!(
                "The BMC at {} reports no power state it defines for the system ({:?})",
                client.address(),
                system.power
            ))
        })?;
        let cpu_arch = client.cpu_arch(&system).await;
        Ok(NodeFacts {
            power,
            cpus: system.cpus,
            memory_mb: system.memory_mb,
            cpu_arch,
        })
    }

    async fn power_state(&self, bmc: &BmcAccess) -> Result<NodePower, DriverError> {
        let client = self.client(bmc)?;
        let system = client.system().await?;
        system.node_power().ok_or_else(|| {
            DriverError::Backend(format!(
                "The BMC at {} reports no power state it defines for the system ({:?})",
                client.address(),
                system.power
            ))
        })
    }

    async fn set_power(
        &self,
        bmc: &BmcAccess,
        action: PowerAction,
        timeout: Duration,
    ) -> Result<NodePower, DriverError> {
        let client = self.client(bmc)?;
        self.power(&client, action, timeout).await
    }

    async fn clean(
        &self,
        bmc: &BmcAccess,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), DriverError> {
        let client = self.client(bmc)?;
        progress("eject_media");
        let system = client.system().await?;
        eject_all(&client, &system).await?;
        progress("clear_boot_override");
        // Read again: ejecting may have changed the boot settings (a BMC may drop an
        // override to the drive it emptied).
        let system = client.system().await?;
        client.clear_boot_override(&system).await?;
        progress("power_off");
        let timeout = Duration::from_millis(self.settings.clean_power_off_timeout_ms);
        self.power(&client, PowerAction::Off, timeout).await?;
        Ok(())
    }
}

// The resources as Redfish defines them: only what is read, every field optional (BMCs leave
// out much, and send `null` for more).

#[derive(Deserialize)]
struct Link {
    #[serde(rename = "@odata.id")]
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SystemResource {
    power_state: Option<String>,
    processor_summary: Option<ProcessorSummary>,
    memory_summary: Option<MemorySummary>,
    processors: Option<Link>,
    boot: Option<BootResource>,
    actions: Option<SystemActions>,
    links: Option<SystemLinks>,
    virtual_media: Option<Link>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessorSummary {
    count: Option<u32>,
    logical_processor_count: Option<u32>,
}

#[derive(Deserialize)]
struct MemorySummary {
    #[serde(rename = "TotalSystemMemoryGiB")]
    total_system_memory_gib: Option<f64>,
}

#[derive(Default, Deserialize)]
struct BootResource {
    #[serde(rename = "BootSourceOverrideEnabled")]
    enabled: Option<String>,
    #[serde(rename = "BootSourceOverrideTarget")]
    target: Option<String>,
    #[serde(rename = "BootSourceOverrideTarget@Redfish.AllowableValues")]
    allowed: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct SystemActions {
    #[serde(rename = "#ComputerSystem.Reset")]
    reset: Option<ResetAction>,
}

#[derive(Default, Deserialize)]
struct ResetAction {
    target: Option<String>,
    #[serde(rename = "ResetType@Redfish.AllowableValues")]
    allowed: Option<Vec<String>>,
    #[serde(rename = "@Redfish.ActionInfo")]
    action_info: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ActionInfo {
    parameters: Option<Vec<ActionParameter>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ActionParameter {
    name: Option<String>,
    allowable_values: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SystemLinks {
    managed_by: Option<Vec<Link>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Manager {
    virtual_media: Option<Link>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Collection {
    members: Option<Vec<Link>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Processor {
    processor_architecture: Option<String>,
    instruction_set: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VirtualMediaResource {
    id: Option<String>,
    media_types: Option<Vec<String>>,
    image: Option<String>,
    inserted: Option<bool>,
    actions: Option<VirtualMediaActions>,
}

#[derive(Default, Deserialize)]
struct VirtualMediaActions {
    #[serde(rename = "#VirtualMedia.InsertMedia")]
    insert: Option<ActionTarget>,
    #[serde(rename = "#VirtualMedia.EjectMedia")]
    eject: Option<ActionTarget>,
}

#[derive(Deserialize)]
struct ActionTarget {
    target: Option<String>,
}

#[cfg(test)]
mod tests {
    //! The unit tests need nothing; the others run a real sushy-emulator (Redfish BMC emulator
    //! from sushy-tools) with its fake backend on 127.0.0.1, found through `NOVA_TEST_SUSHY`
    //! (the `sushy-emulator` executable); unset, they are skipped, except under CI (`CI` set), where
    //! they fail. Its fake backend applies a
    //! power change 0 to 11 s after it is asked (at random), so the power tests take that long
    //! and run their machines side by side.

    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const USER: &str = "admin";
    const PASSWORD: &str = "Rf-test-pw-4821";
    /// bcrypt of [`PASSWORD`] (sushy's only hash), at cost 4: sushy checks it on every request.
    const PASSWORD_BCRYPT: &str = "$2b$04$e8ZLmUiC4BdTiaCTFm7fiOzWhK/C5qzE7/xgSFUyVR9xMQtkrF2jW";
    const SYS_A: &str = "8a0f3a52-6f54-4d5e-9d63-000000000001";
    const SYS_B: &str = "8a0f3a52-6f54-4d5e-9d63-000000000002";
    const SYS_C: &str = "8a0f3a52-6f54-4d5e-9d63-000000000003";
    const SYS_D: &str = "8a0f3a52-6f54-4d5e-9d63-000000000004";
    /// Above the fake backend's longest power change (11 s).
    const POWER_TIMEOUT: Duration = Duration::from_secs(30);

    /// Quick settings for tests: short backoffs, a quick poll.
    fn settings() -> RedfishSettings {
        RedfishSettings {
            request_timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            retries: 3,
            insert_media_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 400,
            power_poll_interval_ms: 250,
            clean_power_off_timeout_ms: POWER_TIMEOUT.as_millis().try_into().unwrap(),
            proxy_from_environment: false,
        }
    }

    fn sushy() -> Option<PathBuf> {
        match std::env::var_os("NOVA_TEST_SUSHY") {
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            // scripts/test.sh sets it: there (CI), a test that did not run is a failure.
            _ if std::env::var_os("CI").is_some() => {
                panic!("NOVA_TEST_SUSHY (the sushy-emulator executable) is not set")
            }
            _ => {
                eprintln!("skipped: NOVA_TEST_SUSHY (the sushy-emulator executable) is not set");
                None
            }
        }
    }

    /// A port on 127.0.0.1 that nothing listens on (bound, then let go).
    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    /// A sushy-emulator with the fake backend on 127.0.0.1, killed (and reaped) when dropped.
    struct Emulator {
        child: std::process::Child,
        dir: tempfile::TempDir,
        address: String,
    }

    impl Emulator {
        /// One fake system per `(uuid, power state)`, Basic authentication with
        /// [`USER`]/[`PASSWORD`], HTTPS when given a certificate and key. Its state (which
        /// the fake backend keeps in SQLite, by default in /tmp/sushy-emulator for every
        /// emulator at once) is in a directory of its own.
        async fn start(exe: &Path, systems: &[(&str, &str)], tls: Option<(&Path, &Path)>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
            let fake: Vec<String> = systems
                .iter()
                .enumerate()
                .map(|(i, (uuid, power))| {
                    format!(
                        "{{'uuid': '{uuid}', 'name': 'node-{i}', 'power_state': '{power}', \
                         'nics': []}}"
                    )
                })
                .collect();
            let config = dir.path().join("emulator.conf");
            std::fs::write(
                &config,
                format!(
                    "SUSHY_EMULATOR_AUTH_FILE = {:?}\nSUSHY_EMULATOR_STATE_DIR = {:?}\n\
                     SUSHY_EMULATOR_FAKE_SYSTEMS = [{}]\n",
                    htpasswd,
                    dir.path().join("state"),
                    fake.join(", ")
                ),
            )
            .unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            for _ in 0..3 {
                let port = free_port();
                let log = std::fs::File::create(dir.path().join("emulator.log")).unwrap();
                let mut command = std::process::Command::new(exe);
                command
                    .args([
                        "--fake",
                        "-i",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "--config",
                    ])
                    .arg(&config)
                    .env_remove("SUSHY_EMULATOR_CONFIG")
                    // The emulator fetches virtual media itself, from 127.0.0.1 here, into a
                    // temporary file: in this test's directory, not the machine's /tmp.
                    .env("NO_PROXY", "127.0.0.1,localhost")
                    .env("no_proxy", "127.0.0.1,localhost")
                    .env("TMPDIR", dir.path())
                    .stdin(std::process::Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log);
                if let Some((cert, key)) = tls {
                    command
                        .arg("--ssl-certificate")
                        .arg(cert)
                        .arg("--ssl-key")
                        .arg(key);
                }
                let mut child = command.spawn().expect("sushy-emulator starts");
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    if tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                    {
                        return Self {
                            child,
                            address: format!("{scheme}://127.0.0.1:{port}"),
                            dir,
                        };
                    }
                    // Gone (the port was taken meanwhile, say): another port.
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "sushy-emulator did not listen: {}",
                        std::fs::read_to_string(dir.path().join("emulator.log")).unwrap()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            panic!(
                "sushy-emulator did not start: {}",
                std::fs::read_to_string(dir.path().join("emulator.log")).unwrap()
            );
        }

        /// What the emulator wrote: its requests, their answers, its errors.
        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
        }

        fn bmc(&self, system: &str) -> BmcAccess {
            BmcAccess {
                address: self.address.clone(),
                system_id: format!("/redfish/v1/Systems/{system}"),
                username: USER.into(),
                password: Secret::new(PASSWORD),
                verify: TlsVerify::System,
            }
        }
    }

    impl Drop for Emulator {
        fn drop(&mut self) {
            // SIGKILL is immediate (it takes SIGTERM a second or two); waiting reaps it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// An HTTP server on 127.0.0.1 that answers every request with `body`: the images the
    /// emulator fetches as virtual media. Its base URL, and how many requests it has had.
    async fn image_server(body: &'static [u8]) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (base, hits)
    }

    fn invalid(result: Result<impl std::fmt::Debug, DriverError>) -> String {
        match result {
            Err(DriverError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn backend(result: Result<impl std::fmt::Debug, DriverError>) -> String {
        match result {
            Err(DriverError::Backend(message)) => message,
            other => panic!("expected Backend, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn verify_reads_the_machine_and_a_refusal_names_the_credentials() {
        let Some(exe) = sushy() else { return };
        let emulator = Emulator::start(&exe, &[(SYS_A, "Off")], None).await;
        // Long backoffs: a refusal that were tried again would take seconds.
        let driver = RedfishDriver::new(RedfishSettings {
            retry_backoff_ms: 3_000,
            retry_backoff_max_ms: 3_000,
            ..settings()
        });
        let bmc = emulator.bmc(SYS_A);
        let facts = driver.verify(&bmc).await.unwrap();
        // The fake backend tells neither processors nor memory.
        assert_eq!(
            facts,
            NodeFacts {
                power: NodePower::Off,
                cpus: None,
                memory_mb: None,
                cpu_arch: None
            }
        );
        assert_eq!(driver.power_state(&bmc).await.unwrap(), NodePower::Off);

        let wrong_password = "Wrong-pw-9931";
        let wrong = BmcAccess {
            password: Secret::new(wrong_password),
            ..bmc.clone()
        };
        let started = Instant::now();
        let result = driver.verify(&wrong).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a 401 is not tried again"
        );
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "The BMC at {} refused the credentials (HTTP 401)",
                emulator.address
            )
        );
        assert!(matches!(err, DriverError::Invalid(_)));
        assert_eq!(err.public_message(), err.to_string());
        let client = driver.client(&wrong).unwrap();
        for shown in [
            format!("{err:?}"),
            err.to_string(),
            format!("{wrong:?}"),
            format!("{client:?}"),
            format!("{:?}", driver.client(&bmc).unwrap()),
        ] {
            assert!(
                !shown.contains(wrong_password) && !shown.contains(PASSWORD),
                "{shown}"
            );
        }
        let stranger = BmcAccess {
            username: "nobody".into(),
            ..bmc.clone()
        };
        assert!(invalid(driver.verify(&stranger).await).contains("refused the credentials"));
        assert!(invalid(driver.power_state(&wrong).await).contains("refused the credentials"));

        let missing = BmcAccess {
            system_id: "/redfish/v1/Systems/no-such-machine".into(),
            ..bmc.clone()
        };
        assert_eq!(
            invalid(driver.verify(&missing).await),
            format!(
                "No system /redfish/v1/Systems/no-such-machine at the BMC {}",
                emulator.address
            )
        );
        // A bare id is a system under /redfish/v1/Systems; a name the BMC redirects to its
        // uuid is followed (within the BMC, credentials kept).
        let bare = BmcAccess {
            system_id: SYS_A.into(),
            ..bmc.clone()
        };
        assert_eq!(driver.power_state(&bare).await.unwrap(), NodePower::Off);
        let alias = BmcAccess {
            system_id: "node-0".into(),
            ..bmc.clone()
        };
        assert_eq!(driver.power_state(&alias).await.unwrap(), NodePower::Off);
        // A bare host:port means https, which this emulator does not speak.
        let bare_host = BmcAccess {
            address: emulator.address.trim_start_matches("http://").into(),
            ..bmc.clone()
        };
        let message = backend(driver.verify(&bare_host).await);
        assert!(
            message.starts_with(&format!(
                "The TLS handshake with the BMC at {} failed",
                emulator.address.replace("http://", "https://")
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn power_actions_reach_their_state() {
        let Some(exe) = sushy() else { return };
        let emulator = Emulator::start(
            &exe,
            &[(SYS_A, "Off"), (SYS_B, "On"), (SYS_C, "Off"), (SYS_D, "On")],
            None,
        )
        .await;
        let driver = RedfishDriver::new(settings());
        let started = Instant::now();
        let on_then_off = async {
            let bmc = emulator.bmc(SYS_A);
            assert_eq!(
                driver
                    .set_power(&bmc, PowerAction::On, POWER_TIMEOUT)
                    .await?,
                NodePower::On
            );
            assert_eq!(driver.power_state(&bmc).await?, NodePower::On);
            eprintln!("A on after {:?}", started.elapsed());
            // The power it has: no reset, no wait.
            let again = Instant::now();
            driver
                .set_power(&bmc, PowerAction::On, POWER_TIMEOUT)
                .await?;
            assert!(again.elapsed() < Duration::from_secs(1));
            driver
                .set_power(&bmc, PowerAction::Off, POWER_TIMEOUT)
                .await?;
            assert_eq!(driver.power_state(&bmc).await?, NodePower::Off);
            eprintln!("A off after {:?}", started.elapsed());
            Ok::<(), DriverError>(())
        };
        let reboot_then_soft_off = async {
            let bmc = emulator.bmc(SYS_B);
            assert_eq!(
                driver
                    .set_power(&bmc, PowerAction::Reboot, POWER_TIMEOUT)
                    .await?,
                NodePower::On
            );
            assert_eq!(driver.power_state(&bmc).await?, NodePower::On);
            eprintln!("B rebooted after {:?}", started.elapsed());
            driver
                .set_power(&bmc, PowerAction::SoftOff, POWER_TIMEOUT)
                .await?;
            assert_eq!(driver.power_state(&bmc).await?, NodePower::Off);
            eprintln!("B soft off after {:?}", started.elapsed());
            Ok::<(), DriverError>(())
        };
        let reboot_when_off_powers_on = async {
            let bmc = emulator.bmc(SYS_C);
            driver
                .set_power(&bmc, PowerAction::Reboot, POWER_TIMEOUT)
                .await?;
            assert_eq!(driver.power_state(&bmc).await?, NodePower::On);
            eprintln!("C on after {:?}", started.elapsed());
            driver
                .set_power(&bmc, PowerAction::SoftReboot, POWER_TIMEOUT)
                .await?;
            assert_eq!(driver.power_state(&bmc).await?, NodePower::On);
            eprintln!("C soft rebooted after {:?}", started.elapsed());
            Ok::<(), DriverError>(())
        };
        // Shorter than one poll: the power cannot be seen to change in time.
        let too_short = async {
            let bmc = emulator.bmc(SYS_D);
            let message = backend(
                driver
                    .set_power(&bmc, PowerAction::Off, Duration::from_millis(100))
                    .await,
            );
            assert_eq!(
                message,
                format!(
                    "The machine at the BMC {} did not reach power off within 0.1 s",
                    emulator.address
                )
            );
            Ok::<(), DriverError>(())
        };
        let (a, b, c, d) = tokio::join!(
            on_then_off,
            reboot_then_soft_off,
            reboot_when_off_powers_on,
            too_short
        );
        for result in [a, b, c, d] {
            if let Err(e) = result {
                panic!("{e:?}\nthe emulator's log:\n{}", emulator.log());
            }
        }
    }

    #[tokio::test]
    async fn boot_once_and_virtual_media() {
        let Some(exe) = sushy() else { return };
        let emulator = Emulator::start(&exe, &[(SYS_A, "On")], None).await;
        let driver = RedfishDriver::new(settings());
        let bmc = emulator.bmc(SYS_A);

        driver.set_boot_once(&bmc, BootDevice::Cd).await.unwrap();
        // sushy-emulator applies every override until changed: it reports `Continuous`.
        assert!(matches!(
            driver.boot_override(&bmc).await.unwrap(),
            Some((BootDevice::Cd, _))
        ));
        driver.clear_boot_override(&bmc).await.unwrap();
        // It refuses `Disabled` alone and lists no `None`: cleared is back to the disk.
        let cleared = driver.boot_override(&bmc).await.unwrap();
        assert!(
            matches!(cleared, None | Some((BootDevice::Hdd, _))),
            "{cleared:?}"
        );
        driver.set_boot_once(&bmc, BootDevice::Pxe).await.unwrap();
        assert!(matches!(
            driver.boot_override(&bmc).await.unwrap(),
            Some((BootDevice::Pxe, _))
        ));
        driver.clear_boot_override(&bmc).await.unwrap();

        // Its CD drive (the floppy is not one), empty.
        let drives = driver.media_state(&bmc).await.unwrap();
        assert_eq!(drives.len(), 1, "{drives:?}");
        assert_eq!(
            (
                drives[0].id.as_str(),
                drives[0].inserted,
                drives[0].image.as_deref()
            ),
            ("Cd", false, None)
        );
        // The emulator fetches the image when it is inserted.
        let (base, hits) = image_server(b"not quite an ISO").await;
        let first = format!("{base}/deploy.iso");
        driver.insert_media(&bmc, &first).await.unwrap();
        let drives = driver.media_state(&bmc).await.unwrap();
        assert_eq!(
            (drives[0].inserted, drives[0].image.as_deref()),
            (true, Some(first.as_str()))
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Another image replaces it.
        let second = format!("{base}/other.iso");
        driver.insert_media(&bmc, &second).await.unwrap();
        let drives = driver.media_state(&bmc).await.unwrap();
        assert_eq!(
            (drives[0].inserted, drives[0].image.as_deref()),
            (true, Some(second.as_str()))
        );
        driver.eject_media(&bmc).await.unwrap();
        let drives = driver.media_state(&bmc).await.unwrap();
        assert_eq!(
            (drives[0].inserted, drives[0].image.as_deref()),
            (false, None)
        );
        // Nothing to eject is not an error.
        driver.eject_media(&bmc).await.unwrap();

        // An image the BMC cannot fetch: it answers 500 (tried again, a bounded number of
        // times), and the drive stays empty.
        let message = backend(
            driver
                .insert_media(&bmc, &format!("http://127.0.0.1:{}/gone.iso", free_port()))
                .await,
        );
        assert!(message.contains("with HTTP 500"), "{message}");
        assert!(!driver.media_state(&bmc).await.unwrap()[0].inserted);
    }

    #[tokio::test]
    async fn clean_leaves_the_machine_off_without_media_or_override() {
        let Some(exe) = sushy() else { return };
        let emulator = Emulator::start(&exe, &[(SYS_A, "On")], None).await;
        let driver = RedfishDriver::new(settings());
        let bmc = emulator.bmc(SYS_A);
        let (base, _) = image_server(b"not quite an ISO").await;
        driver
            .insert_media(&bmc, &format!("{base}/deploy.iso"))
            .await
            .unwrap();
        driver.set_boot_once(&bmc, BootDevice::Cd).await.unwrap();

        let steps = Mutex::new(Vec::new());
        let started = Instant::now();
        driver
            .clean(&bmc, &|step: &str| {
                steps.lock().unwrap().push(step.to_owned())
            })
            .await
            .unwrap();
        eprintln!("cleaned in {:?}", started.elapsed());
        assert_eq!(
            *steps.lock().unwrap(),
            ["eject_media", "clear_boot_override", "power_off"]
        );
        assert_eq!(driver.power_state(&bmc).await.unwrap(), NodePower::Off);
        assert!(driver
            .media_state(&bmc)
            .await
            .unwrap()
            .iter()
            .all(|d| !d.inserted && d.image.is_none()));
        let left = driver.boot_override(&bmc).await.unwrap();
        assert!(
            matches!(left, None | Some((BootDevice::Hdd, _))),
            "{left:?}"
        );
        // Clean again: nothing left to do.
        let again = Instant::now();
        driver.clean(&bmc, &|_: &str| {}).await.unwrap();
        assert!(again.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_unreachable_bmc_fails_after_bounded_tries() {
        let driver = RedfishDriver::new(settings());
        let port = free_port();
        let bmc = BmcAccess {
            address: format!("http://127.0.0.1:{port}"),
            system_id: "/redfish/v1/Systems/1".into(),
            username: USER.into(),
            password: Secret::new(PASSWORD),
            verify: TlsVerify::System,
        };
        // Nothing listens: 4 tries, 100 + 200 + 400 ms apart.
        let started = Instant::now();
        let err = driver.verify(&bmc).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let message = backend(Err::<(), _>(err));
        assert!(
            message.starts_with(&format!(
                "The BMC at http://127.0.0.1:{port} did not answer (4 tries): "
            )),
            "{message}"
        );
        assert!(!message.contains(PASSWORD));

        // Something listens but never answers: each try ends at the request timeout.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hung = BmcAccess {
            address: format!("http://{}", silent.local_addr().unwrap()),
            ..bmc
        };
        let driver = RedfishDriver::new(RedfishSettings {
            request_timeout_ms: 300,
            retries: 1,
            ..settings()
        });
        let started = Instant::now();
        let message = backend(driver.power_state(&hung).await);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            message.ends_with("did not answer (2 tries): no answer within 300 ms"),
            "{message}"
        );
    }

    /// A CA and a certificate it signed for 127.0.0.1, and a CA that signed nothing, made
    /// with the `openssl` command; `None` without it.
    fn certificates(dir: &Path) -> Option<[PathBuf; 4]> {
        let openssl = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = |name: &str| {
            let (key, pem, subject) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={name}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args)
        };
        let mut request = vec!["req"];
        request.extend(ec);
        request.extend([
            "-keyout",
            "bmc.key",
            "-out",
            "bmc.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        let made = ca("test-ca")
            && ca("other-ca")
            && openssl(&request)
            && openssl(&[
                "x509",
                "-req",
                "-in",
                "bmc.csr",
                "-CA",
                "test-ca.pem",
                "-CAkey",
                "test-ca.key",
                "-set_serial",
                "2",
                "-out",
                "bmc.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ]);
        made.then(|| {
            ["test-ca.pem", "other-ca.pem", "bmc.pem", "bmc.key"].map(|name| dir.join(name))
        })
    }

    #[tokio::test]
    async fn tls_is_verified_unless_turned_off() {
        let Some(exe) = sushy() else { return };
        let dir = tempfile::tempdir().unwrap();
        let Some([ca, other_ca, cert, key]) = certificates(dir.path()) else {
            eprintln!("skipped: the openssl command could not make certificates");
            return;
        };
        let emulator = Emulator::start(&exe, &[(SYS_A, "Off")], Some((&cert, &key))).await;
        // Long backoffs: a verification failure that were tried again would take seconds.
        let driver = RedfishDriver::new(RedfishSettings {
            retry_backoff_ms: 3_000,
            retry_backoff_max_ms: 3_000,
            ..settings()
        });
        let with = |verify: TlsVerify| BmcAccess {
            verify,
            ..emulator.bmc(SYS_A)
        };

        // The system's roots do not hold the test CA.
        let started = Instant::now();
        let message = invalid(driver.verify(&with(TlsVerify::System)).await);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not tried again"
        );
        assert!(
            message.starts_with(&format!(
                "The TLS certificate of the BMC at {} does not verify (",
                emulator.address
            )),
            "{message}"
        );
        assert!(message.contains("UnknownIssuer"), "{message}");

        assert_eq!(
            driver.verify(&with(TlsVerify::Off)).await.unwrap().power,
            NodePower::Off
        );
        assert_eq!(
            driver
                .verify(&with(TlsVerify::CaBundle(ca.clone())))
                .await
                .unwrap()
                .power,
            NodePower::Off
        );
        // A bare host:port is https.
        let bare = BmcAccess {
            address: emulator.address.trim_start_matches("https://").into(),
            ..with(TlsVerify::CaBundle(ca.clone()))
        };
        assert_eq!(driver.power_state(&bare).await.unwrap(), NodePower::Off);

        // Only the bundle's CA is trusted.
        let message = invalid(driver.verify(&with(TlsVerify::CaBundle(other_ca))).await);
        assert!(message.contains("does not verify"), "{message}");

        let missing = dir.path().join("missing.pem");
        let message = invalid(
            driver
                .verify(&with(TlsVerify::CaBundle(missing.clone())))
                .await,
        );
        assert!(
            message.starts_with(&format!(
                "The CA bundle {} for the BMC at {} cannot be read",
                missing.display(),
                emulator.address
            )),
            "{message}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "this is no certificate\n").unwrap();
        let message = invalid(driver.verify(&with(TlsVerify::CaBundle(garbage))).await);
        assert!(message.contains("holds no PEM certificate"), "{message}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let message = invalid(driver.verify(&with(TlsVerify::CaBundle(broken))).await);
        assert!(message.contains("CA bundle"), "{message}");
    }

    #[test]
    fn addresses_and_system_ids() {
        let origin = |a: &str| bmc_origin(a).map(|u| u.origin().ascii_serialization());
        assert_eq!(origin("bmc.example").unwrap(), "https://bmc.example");
        assert_eq!(origin(" 10.0.0.5:8443 ").unwrap(), "https://10.0.0.5:8443");
        assert_eq!(
            origin("http://10.0.0.5:8000/").unwrap(),
            "http://10.0.0.5:8000"
        );
        assert_eq!(
            origin("https://[fd00::5]:443").unwrap(),
            "https://[fd00::5]"
        );
        let message = invalid(origin("https://root:calvin@bmc.example"));
        assert!(message.contains("must not hold a user name or password"));
        assert!(!message.contains("calvin"));
        assert!(!invalid(origin("root:calvin@bmc.example")).contains("calvin"));
        assert!(invalid(origin("ftp://bmc.example")).contains("http:// or https://"));
        assert!(invalid(origin("https://bmc.example/redfish/v1")).contains("alone"));
        assert!(invalid(origin("")).contains("empty"));

        assert_eq!(
            system_path("/redfish/v1/Systems/1/").unwrap(),
            "/redfish/v1/Systems/1"
        );
        assert_eq!(
            system_path("System.Embedded.1").unwrap(),
            "/redfish/v1/Systems/System.Embedded.1"
        );
        assert!(invalid(system_path(" ")).contains("empty"));
        assert!(invalid(system_path("https://other/redfish/v1/Systems/1")).contains("a path"));
    }

    #[test]
    fn links_stay_within_the_bmc_and_backoff_doubles_to_its_cap() {
        let bmc = BmcAccess {
            address: "http://127.0.0.1:9".into(),
            system_id: "1".into(),
            username: USER.into(),
            password: Secret::new(PASSWORD),
            verify: TlsVerify::System,
        };
        let client = RedfishClient::new(&bmc, &settings()).unwrap();
        assert_eq!(client.address(), "http://127.0.0.1:9");
        assert_eq!(
            client.resolve("/redfish/v1/Managers/1").unwrap().as_str(),
            "http://127.0.0.1:9/redfish/v1/Managers/1"
        );
        assert!(client.resolve("http://elsewhere/redfish/v1").is_err());
        assert!(client.resolve("//elsewhere/redfish/v1").is_err());
        let ms = |attempt, after: Option<u64>| {
            client
                .backoff(attempt, after.map(Duration::from_secs))
                .as_millis()
        };
        assert_eq!(
            [ms(1, None), ms(2, None), ms(3, None), ms(4, None)],
            [100, 200, 400, 400]
        );
        assert_eq!(ms(1, Some(60)), 400, "Retry-After is capped too");
        assert_eq!(ms(64, None), 400);
    }

    #[test]
    fn power_plans_follow_ironic() {
        use NodePower::{Off, On};
        use PowerAction as A;
        use PowerPlan::{Nothing, OffThenOn, Reset};
        use ResetType as R;
        let all: Vec<String> = [
            "On",
            "ForceOff",
            "GracefulShutdown",
            "GracefulRestart",
            "ForceRestart",
            "Nmi",
            "ForceOn",
        ]
        .map(String::from)
        .into();
        let plan = |action, current| power_plan(action, current, Some(&all)).unwrap();
        assert_eq!(plan(A::On, Some(On)), Nothing);
        assert_eq!(plan(A::On, Some(Off)), Reset(R::On, On));
        assert_eq!(plan(A::On, None), Reset(R::On, On));
        assert_eq!(plan(A::Off, Some(Off)), Nothing);
        assert_eq!(plan(A::Off, Some(On)), Reset(R::ForceOff, Off));
        assert_eq!(plan(A::SoftOff, Some(On)), Reset(R::GracefulShutdown, Off));
        assert_eq!(plan(A::SoftOff, Some(Off)), Nothing);
        assert_eq!(plan(A::Reboot, Some(On)), Reset(R::ForceRestart, On));
        assert_eq!(plan(A::Reboot, None), Reset(R::ForceRestart, On));
        assert_eq!(plan(A::Reboot, Some(Off)), Reset(R::On, On));
        assert_eq!(plan(A::SoftReboot, Some(On)), Reset(R::GracefulRestart, On));
        assert_eq!(plan(A::SoftReboot, Some(Off)), Reset(R::On, On));
        // No list: anything may be tried.
        assert_eq!(
            power_plan(A::Reboot, Some(On), None).unwrap(),
            Reset(R::ForceRestart, On)
        );
        // No restart offered: off, then on.
        let no_restart: Vec<String> = ["On", "ForceOff", "GracefulShutdown"]
            .map(String::from)
            .into();
        let limited = |action, current| power_plan(action, current, Some(&no_restart));
        assert_eq!(
            limited(A::Reboot, Some(On)).unwrap(),
            OffThenOn(R::ForceOff, R::On)
        );
        assert_eq!(
            limited(A::SoftReboot, Some(On)).unwrap(),
            OffThenOn(R::GracefulShutdown, R::On)
        );
        let button: Vec<String> = ["PushPowerButton"].map(String::from).into();
        let button = |action, current| power_plan(action, current, Some(&button));
        assert_eq!(
            button(A::On, Some(Off)).unwrap(),
            Reset(R::PushPowerButton, On)
        );
        assert_eq!(
            button(A::Off, Some(On)).unwrap(),
            Reset(R::PushPowerButton, Off)
        );
        // A toggle is no way to a power that is not known.
        assert_eq!(button(A::On, None).unwrap_err(), "On, ForceOn");
        assert_eq!(
            button(A::SoftOff, Some(On)).unwrap_err(),
            "GracefulShutdown"
        );
    }

    #[test]
    fn boot_overrides_read_as_devices() {
        let boot = |enabled: Option<&str>, target: Option<&str>| BootOverride {
            enabled: enabled.map(String::from),
            target: target.map(String::from),
            allowed_targets: None,
        };
        assert_eq!(boot(Some("Disabled"), Some("Cd")).device(), Ok(None));
        assert_eq!(boot(Some("Once"), Some("None")).device(), Ok(None));
        assert_eq!(boot(None, None).device(), Ok(None));
        assert_eq!(
            boot(Some("Once"), Some("Cd")).device(),
            Ok(Some((BootDevice::Cd, true)))
        );
        assert_eq!(
            boot(Some("Continuous"), Some("Pxe")).device(),
            Ok(Some((BootDevice::Pxe, false)))
        );
        assert_eq!(
            boot(Some("Once"), Some("BiosSetup")).device(),
            Err("BiosSetup".to_owned())
        );
    }

    #[test]
    fn bmc_answers_are_read_leniently() {
        let sushy = br#"{"error": {"code": "Base.1.0.GeneralError", "message": "Fake system x was not found",
            "@Message.ExtendedInfo": [{"MessageId": "Base.1.0.GeneralError"}]}}"#;
        assert_eq!(
            error_text(sushy).as_deref(),
            Some("Fake system x was not found")
        );
        let idrac = br#"{"error": {"message": "See ExtendedInfo",
            "@Message.ExtendedInfo": [{"Message": "The value Foo is not allowed."}]}}"#;
        assert_eq!(
            error_text(idrac).as_deref(),
            Some("The value Foo is not allowed.")
        );
        assert_eq!(
            error_text(b"Missing the BootSourceOverrideTarget element").as_deref(),
            Some("Missing the BootSourceOverrideTarget element")
        );
        assert_eq!(error_text(b""), None);
        let long = "x".repeat(1000);
        assert_eq!(
            error_text(long.as_bytes()).unwrap().len(),
            MAX_ERROR_TEXT + 3
        );

        assert_eq!(gib_to_mib(16.0), Some(16_384));
        assert_eq!(gib_to_mib(0.5), Some(512));
        assert_eq!(gib_to_mib(0.0), None);
        assert_eq!(gib_to_mib(f64::NAN), None);
        assert_eq!(
            arch_name(Some("x86-64"), Some("x86")).as_deref(),
            Some("x86_64")
        );
        assert_eq!(arch_name(None, Some("x86")).as_deref(), Some("x86_64"));
        assert_eq!(arch_name(Some("ARM-A64"), None).as_deref(), Some("aarch64"));
        assert_eq!(arch_name(Some("OEM"), Some("OEM")), None);

        let system: SystemResource = serde_json::from_value(json!({
            "PowerState": null,
            "ProcessorSummary": {"Count": 2, "LogicalProcessorCount": 64},
            "MemorySummary": {"TotalSystemMemoryGiB": 256},
            "Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe"},
            "Actions": {"#ComputerSystem.Reset": {"target": "/x",
                "@Redfish.ActionInfo": "/x/info"}},
            "Links": {"ManagedBy": null},
            "Oem": {"Vendor": {"Anything": [1, 2]}}
        }))
        .unwrap();
        assert_eq!(system.power_state, None);
        let summary = system.processor_summary.unwrap();
        assert_eq!(
            (summary.count, summary.logical_processor_count),
            (Some(2), Some(64))
        );

        let defaults: RedfishSettings = serde_json::from_str(r#"{"retries": 5}"#).unwrap();
        assert_eq!(defaults.retries, 5);
        assert_eq!(defaults.request_timeout_ms, 10_000);
        assert!(!defaults.proxy_from_environment);
    }
}
