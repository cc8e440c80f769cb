//! `GET /v1/lookup` (spec §1).

use serde::{Deserialize, Serialize};

use crate::version::Link;
use crate::JsonObject;

/// The literal Ironic sends instead of a token it already handed out (spec §1.3).
pub const MASKED_TOKEN: &str = "******";

/// The shortest token the agent adopts; shorter values are logged and ignored (spec §1.5).
pub const MIN_TOKEN_LEN: usize = 32;

/// A 200 answer to lookup (spec §1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupResponse {
    pub node: LookupNode,
    pub config: LookupConfig,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// The node as the ramdisk sees it (secrets masked by Ironic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupNode {
    pub uuid: String,
    #[serde(default)]
    pub properties: JsonObject,
    #[serde(default)]
    pub instance_info: JsonObject,
    #[serde(default)]
    pub driver_internal_info: JsonObject,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Settings Ironic hands to the agent at lookup (spec §1.4, consumed as in §1.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout: Option<u64>,
    /// A fresh token, [`MASKED_TOKEN`], or null.
    #[serde(default)]
    pub agent_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_md5_checksum_enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_deep_image_inspection: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted_image_formats: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_skip_bmc_detect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_bios_bootloader_install: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_min_version: Option<String>,
    /// Present (possibly null) in Ironic 39 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher_suites: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_statsd: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_containers: Option<JsonObject>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// What the agent should do with `config.agent_token` (spec §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenDecision {
    /// A real token: use it from now on.
    Adopt(String),
    /// Ironic already handed it out: keep the one we have (from `ipa-agent-token`), or, with
    /// none, refuse to serve.
    Masked,
    /// Absent or too short to be a token: logged and ignored.
    Invalid,
}

impl LookupConfig {
    /// Classifies the token field as IPA does.
    pub fn token_decision(&self) -> TokenDecision {
        match self.agent_token.as_deref() {
            Some(MASKED_TOKEN) => TokenDecision::Masked,
            Some(token) if token.len() >= MIN_TOKEN_LEN => TokenDecision::Adopt(token.to_string()),
            _ => TokenDecision::Invalid,
        }
    }
}
