//! `POST /v1/heartbeat/{node}` (spec §2).

use serde::{Deserialize, Serialize};

/// The heartbeat body. Fields are present or absent by negotiated microversion: `agent_version`
/// from 1.36, `agent_token` from 1.62 (may be null), `agent_verify_ca` from 1.68 with auto-TLS.
/// Sending a field the microversion does not allow gets 400, so absent means "not sent".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// `<proto>://<advertise ip>:<port>`, IPv6 in brackets, no trailing slash.
    pub callback_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_verify_ca: Option<String>,
    /// Only for the anaconda ramdisk (>= 1.72); IPA and rivet never send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status_message: Option<String>,
}
