//! The wiring check: is each NIC cabled to the switch port the operator expects (as an
//! inventory system such as NetBox records it), according to what LLDP heard?
//!
//! Used by the `verify_wiring` step and by inspection (`rivet_wiring` in the report).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lldp::Observation;
use crate::net::interfaces::NetInterface;

/// One expected link: a NIC (by MAC or name), its switch (by chassis id or system name)
/// and the switch port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedLink {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_chassis_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_system_name: Option<String>,
    pub port_id: String,
}

impl ExpectedLink {
    /// How the operator named the NIC.
    fn nic(&self) -> String {
        match (&self.interface, &self.mac) {
            (Some(name), _) => name.clone(),
            (None, Some(mac)) => mac.clone(),
            (None, None) => "?".to_string(),
        }
    }

    fn switch(&self) -> String {
        match (&self.switch_system_name, &self.switch_chassis_id) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => format!("chassis {id}"),
            (None, None) => "?".to_string(),
        }
    }
}

/// Parses and validates the `expected` list (JSON).
pub fn parse_expected(value: &Value) -> Result<Vec<ExpectedLink>, String> {
    let links: Vec<ExpectedLink> = serde_json::from_value(value.clone()).map_err(|e| {
        format!(
            "expected must be a list of {{mac|interface, switch_chassis_id|switch_system_name, \
             port_id}}: {e}"
        )
    })?;
    if links.is_empty() {
        return Err("expected lists no link".to_string());
    }
    for (index, link) in links.iter().enumerate() {
        if link.mac.is_none() && link.interface.is_none() {
            return Err(format!(
                "expected[{index}] names no NIC: give mac or interface"
            ));
        }
        if link.switch_chassis_id.is_none() && link.switch_system_name.is_none() {
            return Err(format!(
                "expected[{index}] names no switch: give switch_chassis_id or switch_system_name"
            ));
        }
        if link.port_id.trim().is_empty() {
            return Err(format!("expected[{index}] has an empty port_id"));
        }
    }
    Ok(links)
}

/// The outcome for one expected link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Ok,
    /// The neighbour is another switch or another port.
    Mismatch,
    /// The NIC heard no LLDP frame.
    NoNeighbor,
    /// No NIC with that MAC or name.
    NoSuchNic,
}

/// What the switch said, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    pub chassis_id: Option<String>,
    pub system_name: Option<String>,
    pub port_id: Option<String>,
    pub port_description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkCheck {
    pub expected: ExpectedLink,
    /// The NIC the expectation resolved to.
    pub interface: Option<String>,
    pub mac_address: Option<String>,
    pub status: LinkStatus,
    pub found: Option<Found>,
    /// One readable sentence.
    pub message: String,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WiringCheck {
    pub ok: bool,
    pub links: Vec<LinkCheck>,
}

impl WiringCheck {
    /// A readable difference: one line per link that is not as expected.
    pub fn difference(&self) -> String {
        let bad: Vec<&LinkCheck> = self
            .links
            .iter()
            .filter(|l| l.status != LinkStatus::Ok)
            .collect();
        if bad.is_empty() {
            return format!("all {} links are cabled as expected", self.links.len());
        }
        let mut text = format!(
            "the cabling differs from what is expected on {} of {} links:",
            bad.len(),
            self.links.len()
        );
        for link in bad {
            text.push_str("\n  ");
            text.push_str(&link.message);
        }
        text
    }
}

/// Compares the expectation with the NICs and what each heard.
pub fn compare(
    expected: &[ExpectedLink],
    interfaces: &[NetInterface],
    heard: &BTreeMap<String, Observation>,
) -> WiringCheck {
    let links: Vec<LinkCheck> = expected
        .iter()
        .map(|link| check_link(link, interfaces, heard))
        .collect();
    WiringCheck {
        ok: links.iter().all(|l| l.status == LinkStatus::Ok),
        links,
    }
}

fn check_link(
    expected: &ExpectedLink,
    interfaces: &[NetInterface],
    heard: &BTreeMap<String, Observation>,
) -> LinkCheck {
    let want = format!("switch {} port {}", expected.switch(), expected.port_id);
    let nic = interfaces.iter().find(|i| {
        expected.interface.as_deref() == Some(i.name.as_str())
            || expected
                .mac
                .as_deref()
                .is_some_and(|mac| normalize_mac(mac) == normalize_mac(&i.mac_address))
    });
    let Some(nic) = nic else {
        let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
        return LinkCheck {
            expected: expected.clone(),
            interface: None,
            mac_address: None,
            status: LinkStatus::NoSuchNic,
            found: None,
            message: format!(
                "{}: no such NIC on this machine (NICs: {}); expected on {want}",
                expected.nic(),
                names.join(", ")
            ),
        };
    };
    let label = format!("{} ({})", nic.name, nic.mac_address);
    let Some(observation) = heard.get(&nic.name) else {
        return LinkCheck {
            expected: expected.clone(),
            interface: Some(nic.name.clone()),
            mac_address: Some(nic.mac_address.clone()),
            status: LinkStatus::NoNeighbor,
            found: None,
            message: format!(
                "{label}: expected {want}, but no LLDP frame was heard (no cable, no link, or \
                 the switch does not send LLDP)"
            ),
        };
    };
    let n = &observation.neighbor;
    let found = Found {
        chassis_id: n.chassis_id.clone(),
        system_name: n.system_name.clone(),
        port_id: n.port_id.clone(),
        port_description: n.port_description.clone(),
    };
    let mut problems = Vec::new();
    if let Some(want_id) = &expected.switch_chassis_id {
        let got = n.chassis_id.as_deref().unwrap_or("");
        if normalize_id(want_id) != normalize_id(got) {
            problems.push(format!(
                "switch chassis id is {got:?}, expected {want_id:?}"
            ));
        }
    }
    if let Some(want_name) = &expected.switch_system_name {
        let got = n.system_name.as_deref().unwrap_or("");
        if !same_system_name(want_name, got) {
            problems.push(format!("switch is {got:?}, expected {want_name:?}"));
        }
    }
    let port_matches = [&n.port_id, &n.port_description].iter().any(|v| {
        v.as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(&expected.port_id))
    });
    if !port_matches {
        problems.push(format!(
            "port is {:?}{}, expected {:?}",
            n.port_id.as_deref().unwrap_or(""),
            n.port_description
                .as_deref()
                .map(|d| format!(" (description {d:?})"))
                .unwrap_or_default(),
            expected.port_id
        ));
    }
    let seen = format!(
        "switch {} port {}",
        n.system_name
            .clone()
            .or_else(|| n.chassis_id.clone())
            .unwrap_or_else(|| "?".into()),
        n.port_id.as_deref().unwrap_or("?")
    );
    let (status, message) = if problems.is_empty() {
        (LinkStatus::Ok, format!("{label}: on {seen}, as expected"))
    } else {
        (
            LinkStatus::Mismatch,
            format!("{label}: cabled to {seen}: {}", problems.join("; ")),
        )
    };
    LinkCheck {
        expected: expected.clone(),
        interface: Some(nic.name.clone()),
        mac_address: Some(nic.mac_address.clone()),
        status,
        found: Some(found),
        message,
    }
}

/// A MAC as 12 lower-case hex digits, whatever the separators (`:`, `-`, `.`).
fn normalize_mac(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Chassis ids that look like MACs compare as MACs; others case-insensitively.
fn normalize_id(text: &str) -> String {
    let mac = normalize_mac(text);
    let separators = text
        .chars()
        .filter(|c| matches!(c, ':' | '-' | '.'))
        .count();
    if mac.len() == 12 && mac.len() + separators == text.len() {
        mac
    } else {
        text.trim().to_ascii_lowercase()
    }
}

/// Equal ignoring case, or the switch advertises the expected short name's FQDN.
fn same_system_name(expected: &str, got: &str) -> bool {
    let (expected, got) = (expected.to_ascii_lowercase(), got.to_ascii_lowercase());
    expected == got
        || got
            .strip_prefix(&expected)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests;
