//! `POST /v1/continue_inspection` (spec §7.3, §7.4): what the collectors send and what Ironic
//! answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::inventory::{BlockDevice, Inventory, LldpTlv};
use crate::lookup::{LookupConfig, LookupResponse};
use crate::JsonObject;

/// The inspection payload. The `default` collector fills `inventory`, `root_disk`,
/// `boot_interface` and `configuration`; other collectors add their own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionRequest {
    pub inventory: Inventory,
    /// The disk IPA would pick as root (smallest >= 4 GiB); left out when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk: Option<BlockDevice>,
    /// Deprecated copy of `inventory.boot.pxe_interface` (null when there is none).
    pub boot_interface: Option<String>,
    pub configuration: InspectionConfiguration,
    /// Collector failures joined into one message; null when all succeeded. Ironic's
    /// `ramdisk-error` hook fails inspection when it is set.
    pub error: Option<String>,
    /// `logs` collector: base64 of a tar.gz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
    /// `lldp` collector: `{ifname: [[type, "hex"], ...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lldp_raw: Option<BTreeMap<String, Vec<LldpTlv>>>,
    /// `pci-devices` collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_devices: Option<Vec<PciDevice>>,
    /// `numa-topology` collector, kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_topology: Option<serde_json::Value>,
    /// `dmi-decode` collector, kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmi: Option<serde_json::Value>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Which collectors ran and which hardware managers were active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionConfiguration {
    pub collectors: Vec<String>,
    pub managers: Vec<ManagerInfo>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// A hardware manager's name and version (`{"name": "generic_hardware_manager", "version": "1.2"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerInfo {
    pub name: String,
    pub version: String,
}

/// One entry of the `pci-devices` collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PciDevice {
    pub vendor_id: String,
    pub product_id: String,
    pub class: String,
    pub revision: String,
    /// PCI address (`"0000:00:03.0"`).
    pub bus: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node_id: Option<i64>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// The 202 answer. Its shape depends on the microversion of the request: without a version
/// header (as IPA sends it) Ironic treats the call as 1.1 and answers `{"uuid"}` without a
/// token; from 1.84 on it answers like lookup, with node, config and a fresh token.
#[derive(Debug, Clone, PartialEq)]
pub enum InspectionResponse {
    /// `{"uuid": "..."}`, below 1.84.
    Uuid(InspectionUuid),
    /// `{"node": ..., "config": ...}`, from 1.84 on.
    Lookup(Box<LookupResponse>),
}

/// The pre-1.84 answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionUuid {
    pub uuid: String,
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl InspectionResponse {
    /// The node's UUID, which the agent passes to lookup as `node_uuid`.
    pub fn node_uuid(&self) -> &str {
        match self {
            InspectionResponse::Uuid(answer) => &answer.uuid,
            InspectionResponse::Lookup(answer) => &answer.node.uuid,
        }
    }

    /// The lookup-style answer (node, config, token), from 1.84 on.
    pub fn lookup(&self) -> Option<&LookupResponse> {
        match self {
            InspectionResponse::Uuid(_) => None,
            InspectionResponse::Lookup(answer) => Some(answer.as_ref()),
        }
    }

    /// The agent configuration, from 1.84 on; use its `token_decision()` for the token.
    pub fn config(&self) -> Option<&LookupConfig> {
        self.lookup().map(|answer| &answer.config)
    }
}

impl Serialize for InspectionResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            InspectionResponse::Uuid(answer) => answer.serialize(serializer),
            InspectionResponse::Lookup(answer) => answer.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for InspectionResponse {
    /// A body with `node` is the 1.84 form and must parse as a lookup answer; anything else
    /// must carry `uuid`. Errors name the form that was expected.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let object = JsonObject::deserialize(deserializer)?;
        let is_lookup = object.contains_key("node");
        let value = serde_json::Value::Object(object);
        if is_lookup {
            serde_json::from_value(value)
                .map(|answer| InspectionResponse::Lookup(Box::new(answer)))
                .map_err(|e| D::Error::custom(format!("inspection answer with node: {e}")))
        } else {
            serde_json::from_value(value)
                .map(InspectionResponse::Uuid)
                .map_err(|e| D::Error::custom(format!("inspection answer without node: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::TokenDecision;

    const UUID: &str = "244c4313-c365-4072-b9fe-2889872eeb11";
    const TOKEN: &str = "kYKVUJnE4GcLcNJMN39V6suQkMyjR2ayuZloySQ1Bl4";

    #[test]
    fn answer_at_1_1_gives_only_the_uuid() -> Result<(), serde_json::Error> {
        let answer: InspectionResponse = serde_json::from_value(serde_json::json!({"uuid": UUID}))?;
        assert_eq!(answer.node_uuid(), UUID);
        assert!(answer.lookup().is_none());
        assert!(answer.config().is_none());
        Ok(())
    }

    #[test]
    fn answer_at_1_84_gives_node_config_and_token() -> Result<(), serde_json::Error> {
        let answer: InspectionResponse = serde_json::from_value(serde_json::json!({
            "node": {"uuid": UUID, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
            "config": {"agent_token": TOKEN, "heartbeat_timeout": 20},
        }))?;
        assert_eq!(answer.node_uuid(), UUID);
        let config = answer
            .config()
            .ok_or_else(|| serde::de::Error::custom("no config"))?;
        assert_eq!(config.heartbeat_timeout, Some(20));
        assert_eq!(
            config.token_decision(),
            TokenDecision::Adopt(TOKEN.to_string())
        );
        Ok(())
    }

    #[test]
    fn malformed_answers_are_errors_naming_the_form() {
        let Err(error) = serde_json::from_value::<InspectionResponse>(
            serde_json::json!({"node": {"uuid": UUID}}),
        ) else {
            panic!("a 1.84 answer without config parsed");
        };
        assert!(error.to_string().contains("with node"), "{error}");
        let Err(error) = serde_json::from_value::<InspectionResponse>(serde_json::json!({})) else {
            panic!("an answer without uuid parsed");
        };
        assert!(error.to_string().contains("uuid"), "{error}");
    }
}
