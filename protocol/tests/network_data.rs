//! `network_data.json` samples published by Ironic, nova, glean and cloud-init (see
//! tests/fixtures/network_data/INDEX): every one parses, re-serializes to the same JSON value,
//! and reads as the format defines.

use std::path::PathBuf;

use rivet_protocol::network_data::{LinkKind, NetworkData, NetworkKind};

const SAMPLES: &[&str] = &[
    "ironic-dhcp-less-doc.json",
    "nova-spec-liberty.json",
    "glean-liberty.json",
    "glean-rax-iad.json",
    "glean-ovh.json",
    "glean-vexxhost.json",
    "cloud-init-bond.json",
    "cloud-init-tap-null.json",
];

fn fixture_text(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/network_data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn sample(name: &str) -> NetworkData {
    NetworkData::from_json(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn network_data_samples_round_trip_to_the_same_json() {
    for name in SAMPLES {
        let original: serde_json::Value = serde_json::from_str(&fixture_text(name)).unwrap();
        let parsed: NetworkData = serde_json::from_value(original.clone()).unwrap();
        let again = serde_json::to_value(&parsed).unwrap();
        assert_eq!(again, original, "{name} changed in a round trip");
    }
}

#[test]
fn network_data_every_fixture_is_listed_in_the_index() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/network_data");
    let index = std::fs::read_to_string(dir.join("INDEX")).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            assert!(SAMPLES.contains(&name.as_str()), "{name} is not tested");
            assert!(index.contains(&name), "{name} is not in INDEX");
        }
    }
}

#[test]
fn network_data_reads_bonds_and_vlans() {
    let data = sample("cloud-init-bond.json");
    let bond = data.link("bond0").unwrap();
    assert_eq!(bond.kind(), LinkKind::Bond);
    assert_eq!(bond.bond_links(), ["eth0", "eth1"]);
    assert_eq!(bond.bond_mode_text().as_deref(), Some("4"));
    assert_eq!(
        bond.bond_options(),
        [
            ("miimon".to_string(), "100".to_string()),
            ("xmit_hash_policy".to_string(), "layer3+4".to_string()),
        ]
    );
    assert_eq!(bond.mac(), Some("fa:16:3e:b3:72:36"));
    let vlan = data.link("vlan2").unwrap();
    assert_eq!(vlan.kind(), LinkKind::Vlan);
    assert_eq!(vlan.vlan_link.as_deref(), Some("bond0"));
    assert_eq!(vlan.vlan_id, Some(602));
    assert_eq!(vlan.vlan_mac(), Some("fa:16:3e:b3:72:30"));
    assert_eq!(data.link("eth0").unwrap().kind(), LinkKind::Physical);
    assert_eq!(data.link("eth0").unwrap().mtu(), Some(1500));
    let dns: Vec<&str> = data.services().iter().map(|s| s.address.as_str()).collect();
    assert_eq!(dns, ["1.1.1.191", "1.1.1.4"]);
}

#[test]
fn network_data_reads_null_types_and_mtus_as_physical_links() {
    let data = sample("cloud-init-tap-null.json");
    let tap = data.link("tap77a0dc5b-72").unwrap();
    assert_eq!(tap.type_name(), Some("tap"));
    assert_eq!(tap.kind(), LinkKind::Physical);
    assert_eq!(tap.mtu, Some(None));
    assert_eq!(tap.mtu(), None);
    let untyped = data.link("tap7d6b7bec-93").unwrap();
    assert_eq!(untyped.link_type, Some(None));
    assert_eq!(untyped.kind(), LinkKind::Physical);
    let v6 = &data.networks()[1];
    assert_eq!(v6.kind(), NetworkKind::Ipv6);
    assert_eq!(v6.netmask_text().as_deref(), Some("ffff:ffff:ffff:ffff::"));
    assert_eq!(v6.routes()[0].gateway, "fdb8:52d0:9d14::1");
}

#[test]
fn network_data_reads_network_types_and_per_network_dns() {
    let kinds: Vec<NetworkKind> = sample("glean-vexxhost.json")
        .networks()
        .iter()
        .map(|n| n.kind())
        .collect();
    assert_eq!(kinds, [NetworkKind::Ipv4Dhcp, NetworkKind::Ipv6Slaac]);

    let rax = sample("glean-rax-iad.json");
    assert_eq!(
        rax.networks()[1].dns_servers(),
        ["1111:2222:3333:4444::1234", "1.2.3.4"]
    );
    let spec = sample("nova-spec-liberty.json");
    assert_eq!(
        spec.networks()[2].dns_servers(),
        ["69.20.0.164", "69.20.0.196"]
    );
    assert_eq!(
        spec.networks()[1].ip_address(),
        Some("2001:cdba::3257:9652/24")
    );
    assert_eq!(spec.networks()[1].netmask, None);

    let liberty = sample("glean-liberty.json");
    assert_eq!(liberty.links().len(), 17);
    assert_eq!(
        liberty.links()[0].mac(),
        Some("BC:76:4E:01:62:86"),
        "MACs are kept as written"
    );
    assert!(liberty
        .networks()
        .iter()
        .any(|n| n.link == "bond0" && n.kind() == NetworkKind::Ipv4Dhcp));
}

#[test]
fn network_data_rejects_what_is_not_network_data() {
    assert!(NetworkData::from_json("[]").is_err());
    assert!(NetworkData::from_json(r#"{"links": [{"type": "phy"}]}"#).is_err());
    assert!(NetworkData::from_json(r#"{"networks": [{"id": "n", "type": "ipv4"}]}"#).is_err());
    let empty = NetworkData::from_json("{}").unwrap();
    assert!(empty.links().is_empty() && empty.networks().is_empty());
}
