//! Interface discovery on the fixture sysfs tree (tests/fixtures/sysfs-net, see INDEX) and on
//! the live kernel.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use rivet_agent::net::interfaces::{
    interface_kind, list_interfaces, lookup_addresses, FakeNetInfo, InterfaceKind, NetInfo,
    SysfsNetInfo,
};

pub fn fixture_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs-net")
}

fn fixture_net() -> FakeNetInfo {
    let mut net = FakeNetInfo::new(fixture_root());
    net.permanent_macs = [
        ("eth0", vec![0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01]),
        ("eth1", vec![0; 6]),
        ("ens6", vec![0xfa, 0x16, 0x3e, 0x00, 0x00, 0x02]),
    ]
    .into_iter()
    .map(|(name, mac)| (name.to_string(), mac))
    .collect();
    net.addresses = vec![
        ("lo".into(), "127.0.0.1".parse().expect("an IP")),
        ("eth0".into(), "192.0.2.10".parse().expect("an IP")),
        ("eth0".into(), "fd00::10".parse().expect("an IP")),
        (
            "eth0".into(),
            "fe80::5054:ff:feaa:bb01".parse().expect("an IP"),
        ),
        ("eth1.100".into(), "198.51.100.7".parse().expect("an IP")),
    ];
    net
}

#[test]
fn the_fixture_tree_lists_as_ipa_would() {
    let interfaces = list_interfaces(&fixture_net()).expect("the fixture lists");
    let summary: Vec<(&str, InterfaceKind, &str)> = interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.kind, i.mac_address.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("bond0", InterfaceKind::Bond, "52:54:00:12:34:58"),
            ("eth0", InterfaceKind::Device, "52:54:00:aa:bb:01"),
            ("eth1", InterfaceKind::Device, "52:54:00:12:34:57"),
            ("eth1.100", InterfaceKind::Vlan, "52:54:00:12:34:57"),
        ]
    );
    let eth0 = &interfaces[1];
    assert_eq!(eth0.ipv4_addresses, vec![Ipv4Addr::new(192, 0, 2, 10)]);
    assert_eq!(
        eth0.ipv6_addresses,
        vec![
            "fd00::10".parse::<std::net::Ipv6Addr>().expect("an IP"),
            "fe80::5054:ff:feaa:bb01".parse().expect("an IP"),
        ]
    );
    assert_eq!(
        interfaces[3].ipv4_addresses,
        vec![Ipv4Addr::new(198, 51, 100, 7)]
    );
    assert!(interfaces[0].ipv4_addresses.is_empty());
    assert_eq!(
        lookup_addresses(&interfaces),
        vec![
            "52:54:00:12:34:58",
            "52:54:00:aa:bb:01",
            "52:54:00:12:34:57",
            "52:54:00:12:34:57"
        ]
    );
}

#[test]
fn a_fa_mac_is_only_dropped_where_it_is_chosen() {
    // ens5's current address starts with fa:, but a permanent MAC takes precedence.
    let mut net = fixture_net();
    net.permanent_macs
        .insert("ens5".into(), vec![0x52, 0x54, 0x00, 0x00, 0x00, 0x05]);
    let names: Vec<String> = list_interfaces(&net)
        .expect("the fixture lists")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert!(names.contains(&"ens5".to_string()), "{names:?}");
    assert!(!names.contains(&"ens6".to_string()), "{names:?}");
}

#[test]
fn a_tree_without_class_net_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let err = list_interfaces(&FakeNetInfo::new(dir.path())).expect_err("no sys/class/net");
    let text = err.to_string();
    assert!(text.contains("sys/class/net"), "{text}");
}

#[test]
fn the_live_kernel_lists_no_loopback_and_only_qualifying_interfaces() {
    let net = SysfsNetInfo::default();
    let interfaces = list_interfaces(&net).expect("listing the live system");
    for interface in &interfaces {
        assert_ne!(interface.name, "lo");
        assert!(interface_kind(&net, &interface.name).is_some());
        assert!(!interface.mac_address.starts_with("fa:"));
        assert_eq!(interface.mac_address, interface.mac_address.to_lowercase());
    }
    assert_eq!(
        net.permanent_mac("lo"),
        None,
        "loopback has no permanent MAC"
    );
    assert_eq!(net.permanent_mac("no-such-interface0"), None);
    assert_eq!(net.permanent_mac("a-name-longer-than-ifnamsiz"), None);
    let addresses = net.ip_addresses().expect("getifaddrs");
    assert!(
        addresses.contains(&("lo".to_string(), IpAddr::V4(Ipv4Addr::LOCALHOST))),
        "{addresses:?}"
    );
    assert_eq!(
        net.route_source(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect("a route to the loopback"),
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    );
}
