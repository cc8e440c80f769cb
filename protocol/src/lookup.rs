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
/// `Debug` shows whether a token is set, never the token.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Present (possibly null) in Ironic 39 answers: `Some(Value::Null)` when sent as null.
    #[serde(
        default,
        deserialize_with = "crate::serde_util::present",
        skip_serializing_if = "Option::is_none"
    )]
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
/// `Debug` never shows the adopted token.
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for TokenDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenDecision::Adopt(_) => f.write_str("Adopt(<redacted>)"),
            TokenDecision::Masked => f.write_str("Masked"),
            TokenDecision::Invalid => f.write_str("Invalid"),
        }
    }
}

impl std::fmt::Debug for LookupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let LookupConfig {
            heartbeat_timeout,
            agent_token,
            agent_token_required,
            agent_md5_checksum_enable,
            disable_deep_image_inspection,
            permitted_image_formats,
            agent_skip_bmc_detect,
            enable_bios_bootloader_install,
            tls_min_version,
            tls_cipher_suites,
            metrics,
            metrics_statsd,
            agent_containers,
            extra,
        } = self;
        let token = match agent_token.as_deref() {
            None => "None",
            Some(MASKED_TOKEN) => MASKED_TOKEN,
            Some(_) => "<redacted>",
        };
        f.debug_struct("LookupConfig")
            .field("heartbeat_timeout", heartbeat_timeout)
            .field("agent_token", &format_args!("{token}"))
            .field("agent_token_required", agent_token_required)
            .field("agent_md5_checksum_enable", agent_md5_checksum_enable)
            .field(
                "disable_deep_image_inspection",
                disable_deep_image_inspection,
            )
            .field("permitted_image_formats", permitted_image_formats)
            .field("agent_skip_bmc_detect", agent_skip_bmc_detect)
            .field(
                "enable_bios_bootloader_install",
                enable_bios_bootloader_install,
            )
            .field("tls_min_version", tls_min_version)
            .field("tls_cipher_suites", tls_cipher_suites)
            .field("metrics", metrics)
            .field("metrics_statsd", metrics_statsd)
            .field("agent_containers", agent_containers)
            .field("extra", extra)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(token: Option<&str>) -> LookupConfig {
        LookupConfig {
            agent_token: token.map(str::to_string),
            ..LookupConfig::default()
        }
    }

    const TOKEN: &str = "dQX69XJCkWL64XiIetPpsiV2E2EsF_Uu1zGNL1QXF8M";

    #[test]
    fn token_decision_follows_ipa() {
        assert_eq!(
            config_with(Some(TOKEN)).token_decision(),
            TokenDecision::Adopt(TOKEN.to_string())
        );
        assert_eq!(
            config_with(Some(MASKED_TOKEN)).token_decision(),
            TokenDecision::Masked
        );
        assert_eq!(config_with(None).token_decision(), TokenDecision::Invalid);
        assert_eq!(
            config_with(Some("")).token_decision(),
            TokenDecision::Invalid
        );
        let short = "x".repeat(MIN_TOKEN_LEN - 1);
        assert_eq!(
            config_with(Some(&short)).token_decision(),
            TokenDecision::Invalid
        );
        let shortest = "x".repeat(MIN_TOKEN_LEN);
        assert_eq!(
            config_with(Some(&shortest)).token_decision(),
            TokenDecision::Adopt(shortest)
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let config = config_with(Some(TOKEN));
        for debug in [
            format!("{config:?}"),
            format!("{:?}", config.token_decision()),
        ] {
            assert!(!debug.contains(TOKEN), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
        let masked = format!("{:?}", config_with(Some(MASKED_TOKEN)));
        assert!(masked.contains(MASKED_TOKEN), "{masked}");
    }

    #[test]
    fn null_cipher_suites_survive_a_round_trip() -> Result<(), serde_json::Error> {
        let wire = serde_json::json!({"agent_token": null, "tls_cipher_suites": null});
        let config: LookupConfig = serde_json::from_value(wire.clone())?;
        assert_eq!(config.tls_cipher_suites, Some(serde_json::Value::Null));
        assert_eq!(serde_json::to_value(&config)?, wire);
        Ok(())
    }
}
