//! Error bodies (spec §3.4 for the agent, §1.3/§2.2 for Ironic's API).

use serde::{Deserialize, Serialize};

/// Who is at fault, as IPA and Ironic report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultCode {
    Client,
    Server,
}

/// The body of every error reply of the agent API: `{"faultcode", "faultstring"}`.
///
/// Ironic searches `faultstring` for `agent_token` and "agent is busy", so its wording matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub faultcode: FaultCode,
    pub faultstring: String,
    /// Ironic always sends it (as null); IPA never does. `Some(Value::Null)` when sent as null.
    #[serde(
        default,
        deserialize_with = "crate::serde_util::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub debuginfo: Option<serde_json::Value>,
}

impl Fault {
    pub fn client(faultstring: impl Into<String>) -> Self {
        Fault {
            faultcode: FaultCode::Client,
            faultstring: faultstring.into(),
            debuginfo: None,
        }
    }

    pub fn server(faultstring: impl Into<String>) -> Self {
        Fault {
            faultcode: FaultCode::Server,
            faultstring: faultstring.into(),
            debuginfo: None,
        }
    }
}

/// Ironic API error bodies: `{"error_message": "<a JSON-encoded Fault>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IronicErrorBody {
    pub error_message: String,
}

impl IronicErrorBody {
    pub fn new(fault: &Fault) -> Self {
        // A Fault always serializes: it holds only strings, an enum and a JSON value.
        let error_message =
            serde_json::to_string(fault).unwrap_or_else(|_| fault.faultstring.clone());
        IronicErrorBody { error_message }
    }

    /// The inner fault; Ironic encodes it as a JSON string, older servers as plain text.
    pub fn fault(&self) -> Fault {
        serde_json::from_str(&self.error_message)
            .unwrap_or_else(|_| Fault::client(self.error_message.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ironic_and_ipa_fault_shapes_round_trip() -> Result<(), serde_json::Error> {
        for wire in [
            serde_json::json!({"faultcode": "Client", "faultstring": "x", "debuginfo": null}),
            serde_json::json!({"faultcode": "Server", "faultstring": "y"}),
        ] {
            let fault: Fault = serde_json::from_value(wire.clone())?;
            assert_eq!(serde_json::to_value(&fault)?, wire);
        }
        Ok(())
    }

    #[test]
    fn ironic_error_body_unwraps_the_inner_fault() {
        let body = IronicErrorBody {
            error_message: r#"{"faultcode": "Client", "faultstring": "Resource could not be found.", "debuginfo": null}"#
                .to_string(),
        };
        let fault = body.fault();
        assert_eq!(fault.faultcode, FaultCode::Client);
        assert_eq!(fault.faultstring, "Resource could not be found.");
        let plain = IronicErrorBody {
            error_message: "not json".to_string(),
        };
        assert_eq!(plain.fault().faultstring, "not json");
    }
}
