use std::time::SystemTime;

use serde_json::json;

use super::*;
use crate::lldp::neighbor::Neighbor;
use crate::net::interfaces::InterfaceKind;

fn nic(name: &str, mac: &str) -> NetInterface {
    NetInterface {
        name: name.to_string(),
        kind: InterfaceKind::Device,
        mac_address: mac.to_string(),
        ipv4_addresses: Vec::new(),
        ipv6_addresses: Vec::new(),
    }
}

fn heard(system: &str, chassis: &str, port: &str, description: &str) -> Observation {
    Observation {
        source: "00:1c:73:00:00:01".to_string(),
        tlvs: Vec::new(),
        neighbor: Neighbor {
            chassis_id: Some(chassis.to_string()),
            system_name: Some(system.to_string()),
            port_id: Some(port.to_string()),
            port_description: Some(description.to_string()),
            ..Neighbor::default()
        },
        received: SystemTime::now(),
        session: 1,
    }
}

fn machine() -> (Vec<NetInterface>, BTreeMap<String, Observation>) {
    let nics = vec![
        nic("eno1", "52:54:00:00:00:01"),
        nic("eno2", "52:54:00:00:00:02"),
        nic("eno3", "52:54:00:00:00:03"),
    ];
    let mut seen = BTreeMap::new();
    seen.insert(
        "eno1".to_string(),
        heard(
            "leaf-1.rack7.example.net",
            "00:1c:73:aa:bb:cc",
            "Ethernet12",
            "server42",
        ),
    );
    seen.insert(
        "eno2".to_string(),
        heard("leaf-2", "00:1c:73:dd:ee:ff", "523", "xe-0/0/1"),
    );
    (nics, seen)
}

#[test]
fn matching_cabling_by_name_mac_chassis_and_port_description() {
    let (nics, seen) = machine();
    let expected = parse_expected(&json!([
        {"interface": "eno1", "switch_system_name": "leaf-1", "port_id": "ethernet12"},
        {"mac": "52-54-00-00-00-02", "switch_chassis_id": "001c.73dd.eeff", "port_id": "xe-0/0/1"},
    ]))
    .unwrap();
    let check = compare(&expected, &nics, &seen);
    assert!(check.ok, "{}", check.difference());
    assert_eq!(check.links[1].interface.as_deref(), Some("eno2"));
    assert_eq!(check.difference(), "all 2 links are cabled as expected");
}

#[test]
fn differences_are_precise_and_readable() {
    let (nics, seen) = machine();
    let expected = parse_expected(&json!([
        {"interface": "eno1", "switch_system_name": "leaf-1", "port_id": "Ethernet13"},
        {"interface": "eno2", "switch_system_name": "leaf-9", "port_id": "xe-0/0/1"},
        {"interface": "eno3", "switch_system_name": "leaf-1", "port_id": "Ethernet14"},
        {"mac": "52:54:00:99:99:99", "switch_system_name": "leaf-1", "port_id": "Ethernet15"},
    ]))
    .unwrap();
    let check = compare(&expected, &nics, &seen);
    assert!(!check.ok);
    let statuses: Vec<&LinkStatus> = check.links.iter().map(|l| &l.status).collect();
    assert_eq!(
        statuses,
        vec![
            &LinkStatus::Mismatch,
            &LinkStatus::Mismatch,
            &LinkStatus::NoNeighbor,
            &LinkStatus::NoSuchNic
        ]
    );
    assert_eq!(
        check.difference(),
        "the cabling differs from what is expected on 4 of 4 links:\n  \
         eno1 (52:54:00:00:00:01): cabled to switch leaf-1.rack7.example.net port Ethernet12: \
         port is \"Ethernet12\" (description \"server42\"), expected \"Ethernet13\"\n  \
         eno2 (52:54:00:00:00:02): cabled to switch leaf-2 port 523: switch is \"leaf-2\", \
         expected \"leaf-9\"\n  \
         eno3 (52:54:00:00:00:03): expected switch leaf-1 port Ethernet14, but no LLDP frame \
         was heard (no cable, no link, or the switch does not send LLDP)\n  \
         52:54:00:99:99:99: no such NIC on this machine (NICs: eno1, eno2, eno3); expected on \
         switch leaf-1 port Ethernet15"
    );
    let report = serde_json::to_value(&check).unwrap();
    assert_eq!(report["links"][0]["status"], "mismatch");
    assert_eq!(report["links"][0]["found"]["port_id"], "Ethernet12");
    assert_eq!(report["links"][2]["found"], serde_json::Value::Null);
}

#[test]
fn bad_expectations_are_refused() {
    for (value, message) in [
        (json!({"interface": "eno1"}), "must be a list"),
        (json!([]), "no link"),
        (
            json!([{"switch_system_name": "a", "port_id": "1"}]),
            "names no NIC",
        ),
        (
            json!([{"interface": "eno1", "port_id": "1"}]),
            "names no switch",
        ),
        (
            json!([{"interface": "eno1", "switch_system_name": "a", "port_id": " "}]),
            "empty port_id",
        ),
        (
            json!([{"interface": "eno1", "switch": "a", "port_id": "1"}]),
            "unknown field",
        ),
    ] {
        let error = parse_expected(&value).unwrap_err();
        assert!(error.contains(message), "{value}: {error}");
    }
}
