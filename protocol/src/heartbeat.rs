//! `POST /v1/heartbeat/{node}` (spec §2).

use serde::{Deserialize, Serialize};

/// The heartbeat body. Fields are present or absent by negotiated microversion: `agent_version`
/// from 1.36, `agent_token` from 1.62 (may be null), `agent_verify_ca` from 1.68 with auto-TLS.
/// Sending a field the microversion does not allow gets 400, so absent means "not sent".
/// `Debug` shows whether a token is set, never the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// `<proto>://<advertise ip>:<port>`, IPv6 in brackets, no trailing slash.
    pub callback_url: String,
    /// `None`: not sent; `Some(None)`: sent as null.
    #[serde(
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
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

impl std::fmt::Debug for HeartbeatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let HeartbeatRequest {
            callback_url,
            agent_token,
            agent_version,
            agent_verify_ca,
            agent_status,
            agent_status_message,
        } = self;
        let token = match agent_token {
            None => "None",
            Some(None) => "null",
            Some(Some(_)) => "<redacted>",
        };
        f.debug_struct("HeartbeatRequest")
            .field("callback_url", callback_url)
            .field("agent_token", &format_args!("{token}"))
            .field("agent_version", agent_version)
            .field(
                "agent_verify_ca",
                &agent_verify_ca.as_ref().map(|_| "<PEM>"),
            )
            .field("agent_status", agent_status)
            .field("agent_status_message", agent_status_message)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_token_is_kept_apart_from_absent() -> Result<(), serde_json::Error> {
        let null: HeartbeatRequest =
            serde_json::from_str(r#"{"callback_url": "https://h:9999", "agent_token": null}"#)?;
        assert_eq!(null.agent_token, Some(None));
        assert_eq!(
            serde_json::to_value(&null)?,
            serde_json::json!({"callback_url": "https://h:9999", "agent_token": null})
        );
        let absent: HeartbeatRequest =
            serde_json::from_str(r#"{"callback_url": "https://h:9999"}"#)?;
        assert_eq!(absent.agent_token, None);
        assert_eq!(
            serde_json::to_value(&absent)?,
            serde_json::json!({"callback_url": "https://h:9999"})
        );
        Ok(())
    }

    #[test]
    fn debug_hides_the_token() {
        let request = HeartbeatRequest {
            callback_url: "https://10.0.0.5:9999".to_string(),
            agent_token: Some(Some("s3cret-token-value-that-is-long-enough".to_string())),
            agent_version: Some("13.0.0".to_string()),
            agent_verify_ca: None,
            agent_status: None,
            agent_status_message: None,
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("10.0.0.5"), "{debug}");
    }
}
