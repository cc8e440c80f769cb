//! The agent's settings: one typed struct, documented once.
//!
//! Every value comes from, in increasing priority: built-in defaults, the kernel command line
//! (IPA's `ipa-*` names, `BOOTIF`, `boot_method`, `ir_pub_id`), oslo-style config files
//! (`/etc/ironic-python-agent.d/*.conf`, `[DEFAULT]` names), Ironic's virtual-media
//! `parameters.txt`, and rivet's embedded config area. Lookup may override a few at run time
//! (spec §1.5); those live in [`crate::context::AgentContext`], not here.

pub mod docs;
pub mod files;
mod keys;
pub mod load;
pub mod registry;
pub mod sources;
#[cfg(test)]
mod tests;
pub mod value;

pub use docs::configuration_markdown;
pub use load::{load, Inputs, Loaded, SettingWarning, Source, SourceText};

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use rivet_protocol::version::MicroVersion;
use url::Url;

/// A secret value (token, password): never printed by `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `ipa-advertise-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

/// Curve of the auto-TLS key (`ipa-tls-certificate-curve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

/// Minimum TLS version (`ipa-tls-min-version`, or `tls_min_version` from lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `rivet-nvme-sanitize`: when the NVMe erase uses Sanitize instead of Format NVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NvmeSanitize {
    /// Format NVM with a secure erase setting, as IPA does.
    Off,
    /// Sanitize crypto erase where the controller supports it, else Format NVM.
    Crypto,
    /// Sanitize crypto erase, else block erase, else Format NVM.
    Block,
    /// Sanitize crypto erase, else block erase, else overwrite, else Format NVM.
    Overwrite,
}

/// Everything the agent can be told. Field docs name the kernel parameter (`ipa-*`) and the
/// config-file key; the registry (`settings/keys.rs`) is the authoritative list, and
/// `docs/configuration.md` is generated from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ipa-api-url` / `api_url`: Ironic (or rivet-server) URLs, tried in order with fail-over.
    pub api_urls: Vec<Url>,
    /// `ipa-inspection-callback-url` / `inspection_callback_url`.
    pub inspection_callback_urls: Vec<Url>,
    /// `ipa-inspection-collectors` / `inspection_collectors` (default `default,logs`).
    pub inspection_collectors: Vec<String>,
    /// `ipa-inspection-dhcp-wait-timeout` (60 s).
    pub inspection_dhcp_wait_timeout: Duration,
    /// `ipa-inspection-dhcp-all-interfaces` (false).
    pub inspection_dhcp_all_interfaces: bool,
    /// `ipa-collect-lldp` (false).
    pub collect_lldp: bool,
    /// `ipa-lldp-timeout`: bound of an LLDP session (rivet: 35 s; IPA: 30 s).
    pub lldp_timeout: Duration,
    /// rivet: listen for LLDP on every link from start-up (true).
    pub lldp_listen: bool,
    /// rivet: send our own LLDPDU on links with carrier (true).
    pub lldp_transmit: bool,
    /// rivet: expected cabling as JSON (`verify_wiring`'s `expected`), checked at inspection.
    pub expected_wiring: Option<String>,
    /// rivet: microversion of `continue_inspection`; `None` sends no header (as IPA).
    pub inspection_api_version: Option<MicroVersion>,
    /// `ipa-insecure` / `insecure`: skip TLS verification of outgoing calls.
    pub insecure: bool,
    /// `cafile`: CA bundle for outgoing calls (Ironic injects it via `ironic-tls.conf`).
    pub cafile: Option<PathBuf>,
    /// `certfile` / `keyfile`: client certificate for outgoing calls.
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// `ipa-debug` / `debug`.
    pub debug: bool,
    /// `ipa-global-request-id`: sent as `X-OpenStack-Request-ID`.
    pub global_request_id: Option<String>,
    /// `ipa-agent-token` / `agent_token`: pre-generated token (virtual media).
    pub agent_token: Option<Secret>,
    /// `ipa-listen-host` / `listen_host` (`::`, falling back to `0.0.0.0` without IPv6).
    pub listen_host: Option<IpAddr>,
    /// `ipa-listen-port` / `listen_port` (9999).
    pub listen_port: u16,
    /// `ipa-advertise-host` / `advertise_host`: overrides address discovery.
    pub advertise_host: Option<String>,
    /// `ipa-advertise-port` / `advertise_port` (9999).
    pub advertise_port: u16,
    /// `ipa-advertise-protocol` / `advertise_protocol` (http; TLS switches it to https).
    pub advertise_protocol: Protocol,
    /// `ipa-network-interface` / `network_interface`: take the advertise address from here.
    pub network_interface: Option<String>,
    /// `ipa-ip-lookup-attempts` (6).
    pub ip_lookup_attempts: u32,
    /// `ipa-ip-lookup-timeout` / `ip_lookup_sleep` (10 s between attempts).
    pub ip_lookup_sleep: Duration,
    /// `ipa-lookup-timeout` (600 s).
    pub lookup_timeout: Duration,
    /// `ipa-lookup-interval` (1 s): the minimum of the randomized exponential backoff.
    pub lookup_interval: Duration,
    /// `ipa-hardware-initialization-delay` (0).
    pub hardware_initialization_delay: Duration,
    /// `ipa-disk-wait-attempts` (10) and `ipa-disk-wait-delay` (3 s).
    pub disk_wait_attempts: u32,
    pub disk_wait_delay: Duration,
    /// `ipa-ntp-server`.
    pub ntp_server: Option<String>,
    /// `ipa-image-download-connection-timeout` (60 s).
    pub image_download_connection_timeout: Duration,
    /// `ipa-image-download-connection-retries` (9).
    pub image_download_connection_retries: u32,
    /// `ipa-image-download-connection-retry-interval` (10 s).
    pub image_download_connection_retry_interval: Duration,
    /// `ipa-image-download-max-duration` (0 = unlimited).
    pub image_download_max_duration: Option<Duration>,
    /// `ipa-ironic-api-version`: skip version discovery.
    pub ironic_api_version: Option<MicroVersion>,
    /// `ipa-enable-vlan-interfaces`.
    pub enable_vlan_interfaces: Vec<String>,
    /// `ipa-ignore-bootloader-failure`.
    pub ignore_bootloader_failure: bool,
    /// `ipa-inject-files-priority` (0).
    pub inject_files_priority: i64,
    /// `ipa-guard-special-filesystems` (true).
    pub guard_special_filesystems: bool,
    /// `ipa-enable-discard-erase` (false).
    pub enable_discard_erase: bool,
    /// `rivet-nvme-sanitize` (off): NVMe Sanitize instead of Format NVM for `erase_devices`.
    pub nvme_sanitize: NvmeSanitize,
    /// `ipa-http-request-timeout` (30 s): every call to the Ironic API.
    pub http_request_timeout: Duration,
    /// `ipa-tls-min-version` (1.2) for the agent's server and outgoing calls.
    pub tls_min_version: TlsVersion,
    /// `ipa-tls-cipher-suites`.
    pub tls_cipher_suites: Option<String>,
    /// `ipa-tls-certificate-curve` (p384).
    pub tls_certificate_curve: Curve,
    /// `enable_auto_tls` (true): self-signed certificate when Ironic is >= 1.68.
    pub enable_auto_tls: bool,
    /// `auto_tls_allowed_clock_skew` (3600 s): certificate valid from now minus this.
    pub auto_tls_allowed_clock_skew: Duration,
    /// `listen_tls` + `tls_cert_file` + `tls_key_file`: a static server certificate.
    pub listen_tls: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// `md5_enabled` (false; lookup's `agent_md5_checksum_enable` overrides).
    pub md5_enabled: bool,
    /// `disable_deep_image_inspection` (false).
    pub disable_deep_image_inspection: bool,
    /// `permitted_image_formats` (raw, gpt, qcow2).
    pub permitted_image_formats: Vec<String>,
    /// `enable_bios_bootloader_install` (false).
    pub enable_bios_bootloader_install: bool,
    /// `ipa-use-mdns` (false). rivet does not implement mDNS discovery: true is an error.
    pub use_mdns: bool,
    /// `BOOTIF`: the PXE NIC, reported verbatim as `boot.pxe_interface`.
    pub bootif: Option<String>,
    /// `boot_method` (`vmedia` enables virtual-media config handling).
    pub boot_method: Option<String>,
    /// `ir_pub_id`: publisher id of Ironic's `config-2` ISO.
    pub ir_pub_id: Option<String>,
    /// rivet: where the agent keeps its TLS files (`/run/ironic-python-agent`).
    pub run_dir: PathBuf,
    /// rivet: what `power_off`/`run_image` do when the agent is not PID 1. `false` (default):
    /// the agent stops itself instead of powering off the machine it runs on.
    pub allow_host_power_actions: bool,
    /// rivet: devices disk steps may write when the agent is not PID 1 (empty: none). See
    /// [`crate::disks::writable_candidates`].
    pub host_disks: Vec<PathBuf>,
    /// rivet: refuse root device hints that match more than one disk (default true).
    pub strict_root_hints: bool,
    /// rivet: iso9660 label of the boot medium besides `RIVET`.
    pub boot_label: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api_urls: Vec::new(),
            inspection_callback_urls: Vec::new(),
            inspection_collectors: vec!["default".into(), "logs".into()],
            inspection_dhcp_wait_timeout: Duration::from_secs(60),
            inspection_dhcp_all_interfaces: false,
            collect_lldp: false,
            lldp_timeout: Duration::from_secs(35),
            lldp_listen: true,
            lldp_transmit: true,
            expected_wiring: None,
            inspection_api_version: None,
            insecure: false,
            cafile: None,
            certfile: None,
            keyfile: None,
            debug: false,
            global_request_id: None,
            agent_token: None,
            listen_host: None,
            listen_port: 9999,
            advertise_host: None,
            advertise_port: 9999,
            advertise_protocol: Protocol::Http,
            network_interface: None,
            ip_lookup_attempts: 6,
            ip_lookup_sleep: Duration::from_secs(10),
            lookup_timeout: Duration::from_secs(600),
            lookup_interval: Duration::from_secs(1),
            hardware_initialization_delay: Duration::ZERO,
            disk_wait_attempts: 10,
            disk_wait_delay: Duration::from_secs(3),
            ntp_server: None,
            image_download_connection_timeout: Duration::from_secs(60),
            image_download_connection_retries: 9,
            image_download_connection_retry_interval: Duration::from_secs(10),
            image_download_max_duration: None,
            ironic_api_version: None,
            enable_vlan_interfaces: Vec::new(),
            ignore_bootloader_failure: false,
            inject_files_priority: 0,
            guard_special_filesystems: true,
            enable_discard_erase: false,
            nvme_sanitize: NvmeSanitize::Off,
            http_request_timeout: Duration::from_secs(30),
            tls_min_version: TlsVersion::Tls12,
            tls_cipher_suites: None,
            tls_certificate_curve: Curve::P384,
            enable_auto_tls: true,
            auto_tls_allowed_clock_skew: Duration::from_secs(3600),
            listen_tls: false,
            tls_cert_file: None,
            tls_key_file: None,
            md5_enabled: false,
            disable_deep_image_inspection: false,
            permitted_image_formats: vec!["raw".into(), "gpt".into(), "qcow2".into()],
            enable_bios_bootloader_install: false,
            use_mdns: false,
            bootif: None,
            boot_method: None,
            ir_pub_id: None,
            run_dir: PathBuf::from("/run/ironic-python-agent"),
            allow_host_power_actions: false,
            host_disks: Vec::new(),
            strict_root_hints: true,
            boot_label: None,
        }
    }
}
