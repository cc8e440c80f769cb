//! Version documents: Ironic's API root (spec §1.1) and the agent's own root and status
//! (spec §3.2).

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// One hyperlink as Ironic and IPA write them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    pub rel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

/// A version entry of `GET /` on Ironic: `version` is the maximum microversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiVersion {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Ironic's `GET /` document. The agent reads `default_version.version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRoot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<ApiVersion>,
    pub default_version: ApiVersion,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// A microversion `X.Y`, ordered numerically (1.9 < 1.62).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroVersion {
    pub major: u32,
    pub minor: u32,
}

impl MicroVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        MicroVersion { major, minor }
    }

    /// Parses `"1.62"`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(MicroVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl std::fmt::Display for MicroVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Microversions that change what the agent sends (spec §1.1, §2.1).
pub mod microversions {
    use super::MicroVersion;
    /// Used when discovery fails.
    pub const MIN_IRONIC: MicroVersion = MicroVersion::new(1, 31);
    /// `agent_version` in heartbeats.
    pub const AGENT_VERSION: MicroVersion = MicroVersion::new(1, 36);
    /// `agent_token` in heartbeats and lookup.
    pub const AGENT_TOKEN: MicroVersion = MicroVersion::new(1, 62);
    /// `agent_verify_ca` in heartbeats; the highest version IPA knows.
    pub const AGENT_VERIFY_CA: MicroVersion = MicroVersion::new(1, 68);
    /// `continue_inspection` answers with node, config and token from here on.
    pub const INSPECTION_WITH_TOKEN: MicroVersion = MicroVersion::new(1, 84);
}

/// The agent's `GET /` document (spec §3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRoot {
    pub name: String,
    pub description: String,
    pub versions: Vec<AgentVersion>,
    pub default_version: AgentVersion,
}

/// A version entry of the agent's root document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentVersion {
    pub id: String,
    pub links: Vec<Link>,
}

/// The agent's `GET /v1/` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentV1 {
    pub id: String,
    pub links: Vec<Link>,
    pub media_types: Vec<MediaType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<Link>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<Link>>,
}

/// A media type entry of `GET /v1/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaType {
    pub base: String,
    #[serde(rename = "type")]
    pub type_: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Seconds since the epoch, as a float.
    pub started_at: f64,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::microversions::*;
    use super::*;

    #[test]
    fn parses_major_dot_minor_only() {
        assert_eq!(MicroVersion::parse("1.62"), Some(MicroVersion::new(1, 62)));
        assert_eq!(
            MicroVersion::parse(" 1.115\n"),
            Some(MicroVersion::new(1, 115))
        );
        for bad in [
            "", "1", "1.", ".1", "1.62.3", "v1.62", "1.x", "-1.2", "1.-2",
        ] {
            assert_eq!(MicroVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn orders_numerically_not_textually() {
        assert!(MicroVersion::new(1, 9) < MicroVersion::new(1, 62));
        assert!(MicroVersion::new(1, 115) > AGENT_VERIFY_CA);
        assert!(MicroVersion::new(2, 0) > MicroVersion::new(1, 999));
        assert!(MIN_IRONIC < AGENT_VERSION);
        assert!(AGENT_VERSION < AGENT_TOKEN);
        assert!(AGENT_TOKEN < AGENT_VERIFY_CA);
        assert!(AGENT_VERIFY_CA < INSPECTION_WITH_TOKEN);
        // What the agent sends for lookup against a 1.115 server: min(server max, 1.62).
        assert_eq!(MicroVersion::new(1, 115).min(AGENT_TOKEN), AGENT_TOKEN);
    }

    #[test]
    fn displays_as_parsed() {
        assert_eq!(MicroVersion::new(1, 68).to_string(), "1.68");
        assert_eq!(
            MicroVersion::parse(&INSPECTION_WITH_TOKEN.to_string()),
            Some(INSPECTION_WITH_TOKEN)
        );
    }
}
