//! In-band inspection (spec §7): run the collectors named by `ipa-inspection-collectors`,
//! build IPA's payload and post it to Ironic's `continue_inspection` (or another callback),
//! which answers with the node's UUID for the lookup that follows.
//!
//! Collectors: `default` (inventory, `root_disk`, `boot_interface`, `configuration`),
//! `logs`, `lldp` (`lldp_raw`, plus the parsed `lldp_neighbors`), `pci-devices`,
//! `numa-topology` and `dmi-decode`. When `rivet-lldp` is on, `lldp` always runs. When
//! `rivet-expected-wiring` is set, `rivet_wiring` carries the wiring check.

pub mod post;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivet_protocol::inspection::{InspectionConfiguration, InspectionRequest, ManagerInfo};
use rivet_protocol::inventory::Inventory;
use rivet_protocol::JsonObject;
use serde_json::{json, Value};
use url::Url;

use crate::inventory::{self, dmi, numa, pci, HostSources, InventoryOptions};
use crate::lldp::{listen, LinkState, ListenOptions, LldpBoard};
use crate::logbuf::LogBuffer;
use crate::net::interfaces::list_interfaces;
use crate::settings::Settings;
use crate::syslogs::{self, LogSources};
use crate::wiring;

pub use post::{post_inspection, PostPolicy};

/// The collectors this build runs.
pub const SUPPORTED_COLLECTORS: &[&str] = &[
    "default",
    "logs",
    "lldp",
    "pci-devices",
    "numa-topology",
    "dmi-decode",
];
/// IPA's list when `ipa-inspection-collectors` is unset.
const DEFAULT_COLLECTORS: &[&str] = &["default", "logs"];
/// How often the `default` collector looks for DHCP addresses.
const DHCP_POLL: Duration = Duration::from_secs(2);

/// IPA's `inspector.is_enabled`: a callback URL is set, or collectors are set (other than
/// the default list) together with an API URL.
pub fn is_enabled(settings: &Settings) -> bool {
    !settings.inspection_callback_urls.is_empty()
        || (!settings.api_urls.is_empty() && settings.inspection_collectors != DEFAULT_COLLECTORS)
}

/// Where to post: the callback URLs, else each API URL + `/v1/continue_inspection`.
pub fn callback_urls(settings: &Settings) -> Vec<Url> {
    if !settings.inspection_callback_urls.is_empty() {
        return settings.inspection_callback_urls.clone();
    }
    settings
        .api_urls
        .iter()
        .filter_map(|url| {
            Url::parse(&format!(
                "{}/v1/continue_inspection",
                url.as_str().trim_end_matches('/')
            ))
            .ok()
        })
        .collect()
}

/// The collectors to run, in order: the configured ones (IPA's default list when empty),
/// plus `lldp` when `rivet-lldp` is on.
pub fn collector_names(settings: &Settings) -> Vec<String> {
    let mut names: Vec<String> = if settings.inspection_collectors.is_empty() {
        DEFAULT_COLLECTORS.iter().map(|s| s.to_string()).collect()
    } else {
        settings.inspection_collectors.clone()
    };
    if settings.lldp_listen && !names.iter().any(|n| n == "lldp") {
        names.push("lldp".to_string());
    }
    names
}

/// What the collectors read from.
#[derive(Clone)]
pub struct InspectionEnv {
    pub settings: Settings,
    pub host: HostSources,
    pub lldp: Arc<LldpBoard>,
    pub links: Arc<dyn LinkState>,
    pub listen: ListenOptions,
    pub log_sources: LogSources,
    pub agent_log: LogBuffer,
    /// `configuration.managers`.
    pub managers: Vec<ManagerInfo>,
}

/// The payload and how long collection took.
#[derive(Debug, Clone)]
pub struct Collected {
    pub request: InspectionRequest,
    pub took: Duration,
}

/// Runs the collectors and builds the payload (blocking). Failures never stop collection:
/// they are joined into `error`, as IPA does.
pub fn collect(env: &InspectionEnv) -> Collected {
    let started = Instant::now();
    let names = collector_names(&env.settings);
    let mut failures = Vec::new();
    for name in &names {
        if !SUPPORTED_COLLECTORS.contains(&name.as_str()) {
            failures.push(format!(
                "collector {name} is not supported by rivet-agent (supported: {})",
                SUPPORTED_COLLECTORS.join(", ")
            ));
        }
    }
    let wanted = |name: &str| names.iter().any(|n| n == name);

    if wanted("default") {
        wait_for_dhcp(env);
    }
    let interface_lldp = env.settings.collect_lldp.then(|| {
        let names = interface_names(env);
        wait_for_lldp(env, &names);
        env.lldp.raw(&names)
    });
    let collected = inventory::collect(
        &env.host,
        &InventoryOptions {
            skip_bmc: false,
            bootif: env.settings.bootif.clone(),
            interface_lldp,
        },
    );
    for (part, took) in &collected.timings {
        tracing::debug!(part, ?took, "inventory part collected");
    }
    failures.extend(collected.errors.iter().map(|e| format!("inventory: {e}")));
    let inventory = collected.inventory;
    let mut extra = JsonObject::new();
    let mut request = InspectionRequest {
        root_disk: inventory::disks::guess_root_disk(&inventory.disks),
        boot_interface: inventory.boot.pxe_interface.clone(),
        configuration: InspectionConfiguration {
            collectors: names.clone(),
            managers: env.managers.clone(),
            extra: JsonObject::new(),
        },
        inventory,
        error: None,
        logs: None,
        lldp_raw: None,
        pci_devices: None,
        numa_topology: None,
        dmi: None,
        extra: JsonObject::new(),
    };
    if request.root_disk.is_none() && wanted("default") {
        tracing::warn!("no suitable root device: no disk of at least 4 GiB");
    }
    if wanted("lldp") {
        let links: Vec<String> = request
            .inventory
            .interfaces
            .iter()
            .map(|i| i.name.clone())
            .collect();
        wait_for_lldp(env, &links);
        request.lldp_raw = Some(env.lldp.raw(&links));
        let neighbors: BTreeMap<String, Value> = env
            .lldp
            .observations()
            .into_iter()
            .filter(|(link, _)| links.contains(link))
            .filter_map(|(link, o)| Some((link, serde_json::to_value(o.neighbor).ok()?)))
            .collect();
        extra.insert("lldp_neighbors".into(), json!(neighbors));
    }
    if let Some(text) = &env.settings.expected_wiring {
        match wiring_report(env, text) {
            Ok(report) => {
                extra.insert("rivet_wiring".into(), report);
            }
            Err(e) => failures.push(format!("wiring check: {e}")),
        }
    }
    if wanted("pci-devices") {
        match pci::collect(&env.host.fs) {
            Ok(devices) => request.pci_devices = Some(devices),
            Err(e) => failures.push(format!("collector pci-devices failed: {e}")),
        }
    }
    if wanted("numa-topology") {
        match numa::collect(&env.host.fs) {
            Ok(topology) => request.numa_topology = topology,
            Err(e) => tracing::warn!("failed to get some NUMA information: {e}"),
        }
    }
    if wanted("dmi-decode") {
        match &collected.smbios {
            Some(smbios) => request.dmi = Some(dmi::collect(smbios)),
            None => failures.push(
                "collector dmi-decode failed: no SMBIOS tables in /sys/firmware/dmi/tables"
                    .to_string(),
            ),
        }
    }
    if wanted("logs") {
        let inventory = serde_json::to_value(&request.inventory).ok();
        // Inspection runs before any step: there are no step attachments yet.
        match syslogs::collect(
            &env.log_sources,
            &env.agent_log.text(),
            inventory.as_ref(),
            &[],
        ) {
            Ok(archive) => request.logs = Some(archive),
            Err(e) => tracing::warn!("failed to collect the system logs: {e}"),
        }
    }
    request.extra = extra;
    request.error = inventory::error_text(&failures);
    Collected {
        request,
        took: started.elapsed(),
    }
}

fn interface_names(env: &InspectionEnv) -> Vec<String> {
    list_interfaces(env.host.net.as_ref())
        .map(|list| list.into_iter().map(|i| i.name).collect())
        .unwrap_or_default()
}

/// Waits for the session already listening (started at boot), or listens now when none
/// has run.
fn wait_for_lldp(env: &InspectionEnv, links: &[String]) {
    if env.lldp.listening() {
        env.lldp
            .wait_idle(env.listen.timeout + Duration::from_secs(5));
    } else if env.lldp.last_session().is_none() {
        listen(links, &env.listen, &env.lldp, env.links.as_ref());
    }
}

fn wiring_report(env: &InspectionEnv, text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("rivet-expected-wiring is not JSON: {e}"))?;
    let expected = wiring::parse_expected(&value)?;
    let interfaces =
        list_interfaces(env.host.net.as_ref()).map_err(|e| format!("listing NICs: {e}"))?;
    let names: Vec<String> = interfaces.iter().map(|i| i.name.clone()).collect();
    wait_for_lldp(env, &names);
    let check = wiring::compare(&expected, &interfaces, &env.lldp.observations());
    if !check.ok {
        tracing::warn!("wiring check: {}", check.difference());
    }
    serde_json::to_value(&check).map_err(|e| format!("encoding the wiring check: {e}"))
}

/// IPA's `wait_for_dhcp`: until the PXE NIC (`BOOTIF`), or every NIC with
/// `ipa-inspection-dhcp-all-interfaces`, has an IPv4 address, at most
/// `ipa-inspection-dhcp-wait-timeout`. Without `BOOTIF` (and not all) it does not wait.
fn wait_for_dhcp(env: &InspectionEnv) {
    let settings = &env.settings;
    if settings.inspection_dhcp_wait_timeout.is_zero() {
        return;
    }
    let pxe_mac = settings.bootif.as_deref().map(normalize_bootif);
    if pxe_mac.is_none() && !settings.inspection_dhcp_all_interfaces {
        tracing::warn!("no PXE boot interface known (BOOTIF): not waiting for its address");
        return;
    }
    let deadline = Instant::now() + settings.inspection_dhcp_wait_timeout;
    loop {
        let missing: Vec<String> = match list_interfaces(env.host.net.as_ref()) {
            Ok(list) => list
                .into_iter()
                .filter(|i| {
                    settings.inspection_dhcp_all_interfaces
                        || Some(i.mac_address.as_str()) == pxe_mac.as_deref()
                })
                .filter(|i| i.ipv4_addresses.is_empty())
                .map(|i| i.name)
                .collect(),
            Err(e) => {
                tracing::warn!("listing interfaces while waiting for DHCP: {e}");
                Vec::new()
            }
        };
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                ?missing,
                "not all interfaces got an IPv4 address within {:?}",
                settings.inspection_dhcp_wait_timeout
            );
            return;
        }
        std::thread::sleep(DHCP_POLL);
    }
}

/// `01-aa-bb-...` (pxelinux) or `AA:BB:...` (iPXE) as `aa:bb:...`.
pub fn normalize_bootif(text: &str) -> String {
    let mac = match text.split_once('-') {
        Some((_, rest)) if text.contains('-') => rest.replace('-', ":"),
        _ => text.to_string(),
    };
    mac.to_ascii_lowercase()
}

/// The inventory JSON kept for `log.collect_system_logs`.
pub fn inventory_json(inventory: &Inventory) -> Option<Value> {
    serde_json::to_value(inventory).ok()
}

#[cfg(test)]
mod tests;
