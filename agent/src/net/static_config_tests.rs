use std::net::IpAddr;
use std::path::PathBuf;

use rivet_protocol::network_data::NetworkData;

use super::*;

fn sample(name: &str) -> NetworkData {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/fixtures/network_data")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    NetworkData::from_json(&text).unwrap()
}

fn nic(name: &str, mac: &str) -> MachineLink {
    MachineLink {
        name: name.into(),
        mac: parse_mac(mac).unwrap().to_vec(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.actions.iter().map(ToString::to_string).collect()
}

#[test]
fn static_config_bond_with_vlans_on_top() {
    let plan = plan(
        &sample("cloud-init-bond.json"),
        &[
            nic("eno1", "0c:c4:7a:34:6e:3c"),
            nic("eno2", "0c:c4:7a:34:6e:3d"),
            nic("eno3", "52:54:00:00:00:99"),
        ],
    );
    assert_eq!(plan.problems, Vec::<String>::new());
    assert_eq!(
        lines(&plan),
        [
            "set MTU 1500 on eno1",
            "set MTU 1500 on eno2",
            "create bond bond0 mode 802.3ad miimon=100 xmit_hash_policy=layer3+4",
            "enslave eno1 to bond0",
            "enslave eno2 to bond0",
            "create VLAN bond0.602 (id 602 on bond0)",
            "create VLAN bond0.612 (id 612 on bond0)",
            "set eno1 up",
            "set eno2 up",
            "set bond0 up",
            "set bond0.602 up",
            "set bond0.612 up",
            "add 2.2.2.13/29 to bond0.602",
            "add default route via 2.2.2.9 dev bond0.602 metric 10 (0.0.0.0)",
            "add 10.0.1.5/29 to bond0.612",
            "add route 192.168.1.0/32 via 10.0.1.1 dev bond0.612 metric 11",
        ]
    );
    let Action::CreateBond { mac, .. } = &plan.actions[2] else {
        panic!("{:?}", plan.actions[2]);
    };
    assert_eq!(*mac, parse_mac("fa:16:3e:b3:72:36"));
    let Action::CreateVlan { mac, .. } = &plan.actions[5] else {
        panic!("{:?}", plan.actions[5]);
    };
    assert_eq!(*mac, parse_mac("fa:16:3e:b3:72:30"));
    // eno3 is not described: bring-up's DHCP keeps it.
    assert_eq!(
        plan.exclude_from_dhcp(),
        ["eno1", "eno2", "bond0", "bond0.602", "bond0.612"]
    );
    assert_eq!(plan.modules(), ["bonding", "8021q"]);
    assert_eq!(plan.dns, [ip("1.1.1.191"), ip("1.1.1.4")]);
    let roles: Vec<(&str, &Role)> = plan
        .links
        .iter()
        .map(|l| (l.name.as_str(), &l.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("eno1", &Role::BondPort("bond0".into())),
            ("eno2", &Role::BondPort("bond0".into())),
            ("bond0", &Role::Bond),
            ("bond0.602", &Role::Vlan),
            ("bond0.612", &Role::Vlan),
        ]
    );
    assert_eq!(plan.links[3].gateways, [ip("2.2.2.9")]);
}

#[test]
fn static_config_ironic_example_is_one_static_nic() {
    let plan = plan(
        &sample("ironic-dhcp-less-doc.json"),
        &[
            nic("enp1s0", "52:54:00:D3:6A:71"),
            nic("enp2s0", "52:54:00:00:00:02"),
        ],
    );
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    assert_eq!(
        lines(&plan),
        ["set enp1s0 up", "add 192.168.122.42/24 to enp1s0"]
    );
    assert_eq!(plan.exclude_from_dhcp(), ["enp1s0"]);
    assert!(plan.modules().is_empty());
    assert!(plan.dns.is_empty());
}

#[test]
fn static_config_missing_nics_are_reported_and_the_rest_applies() {
    // Only two of glean's liberty NICs are present: the first static one and a bond port.
    let plan = plan(
        &sample("glean-liberty.json"),
        &[
            nic("eth0", "bc:76:4e:01:62:86"),
            nic("eth5", "bc:76:4e:05:7b:13"),
        ],
    );
    let text = plan.problems.join("\n");
    assert!(
        text.contains("link tape501e1cd-10: no NIC with MAC BC:76:4E:05:7B:06 on this machine"),
        "{text}"
    );
    assert!(
        text.contains(
            "bond bond0: port tap234ab34c-f6 is not a configured physical link; left out"
        ),
        "{text}"
    );
    assert!(
        text.contains("bond bond2: none of its ports is here; not created"),
        "{text}"
    );
    assert!(
        text.contains("VLAN vlan0: its vlan_link ethwithvlan is not configured; not created"),
        "{text}"
    );
    assert!(
        text.contains("network network8: its link bond2 is not configured"),
        "{text}"
    );
    assert_eq!(
        lines(&plan),
        [
            "set MTU 1500 on eth0",
            "set MTU 1500 on eth5",
            "create bond bond0 mode 802.3ad miimon=100 xmit_hash_policy=layer3+4",
            "enslave eth5 to bond0",
            "set eth0 up",
            "set eth5 up",
            "set bond0 up",
            "add 23.253.229.154/24 to eth0",
            "add default route via 23.253.229.1 dev eth0 metric 10 (0.0.0.0)",
        ]
    );
    // network6 is ipv4_dhcp on bond0: DHCP runs on the bond, not on its port.
    assert_eq!(plan.exclude_from_dhcp(), ["eth0", "eth5"]);
    assert!(plan.links.iter().any(|l| l.name == "bond0" && l.dhcp));
    assert_eq!(plan.dns, [ip("72.3.128.241"), ip("72.3.128.240")]);
}

#[test]
fn static_config_ipv6_static_slaac_and_link_local_gateways() {
    let plan = plan(
        &sample("glean-rax-iad.json"),
        &[
            nic("eth0", "bc:76:4e:20:d7:2f"),
            nic("eth1", "bc:76:4e:20:d7:33"),
        ],
    );
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    let got = lines(&plan);
    for expected in [
        "IPv6 on eth0: accept_ra=0 autoconf=0",
        "add 2001:4802:7807:103:be76:4eff:fe20:d72f/64 to eth0",
        "add default route via fe80::def dev eth0 metric 11 (::)",
        "add route fd30::/48 via fe80::f001 dev eth0 metric 11",
        "add route 10.176.0.0/12 via 10.210.32.1 dev eth1 metric 12",
    ] {
        assert!(
            got.contains(&expected.to_string()),
            "{expected:?} not in {got:#?}"
        );
    }
    let link_local = plan.actions.iter().any(|a| {
        matches!(a, Action::AddRoute { gateway, on_link: true, .. } if gateway.to_string().starts_with("fe80"))
    });
    assert!(!link_local, "a link-local gateway needs no onlink flag");
    assert_eq!(
        plan.dns,
        [
            ip("69.20.0.196"),
            ip("69.20.0.164"),
            ip("1111:2222:3333:4444::1234"),
            ip("1.2.3.4")
        ]
    );

    let vexx = plan_for("glean-vexxhost.json", &[nic("ens3", "fa:16:3e:d1:1f:b2")]);
    assert_eq!(
        lines(&vexx),
        [
            "set MTU 1500 on ens3",
            "set ens3 up",
            "IPv6 on ens3: accept_ra=2 autoconf=1"
        ]
    );
    assert!(
        vexx.exclude_from_dhcp().is_empty(),
        "ipv4_dhcp keeps ens3 for DHCP"
    );
}

fn plan_for(name: &str, machine: &[MachineLink]) -> Plan {
    plan(&sample(name), machine)
}

#[test]
fn static_config_nova_spec_example() {
    let plan = plan_for(
        "nova-spec-liberty.json",
        &[
            nic("eth0", "a0:36:9f:2c:e8:80"),
            nic("eth1", "a0:36:9f:2c:e8:81"),
        ],
    );
    let text = plan.problems.join("\n");
    assert!(
        text.contains("link interface2: no NIC with MAC a0:36:9f:2c:e8:70"),
        "{text}"
    );
    assert!(
        text.contains("bond_mode 802.1ad is read as 802.3ad"),
        "{text}"
    );
    // private-ipv4 is on interface0, which is a port of bond0 in the same document.
    assert!(
        text.contains("network private-ipv4: eth0 is a port of bond0; not configured"),
        "{text}"
    );
    let got = lines(&plan);
    for expected in [
        "create bond bond0 mode 802.3ad miimon=100 xmit_hash_policy=layer3+4",
        "create VLAN bond0.101 (id 101 on bond0)",
        "add 23.253.157.244/24 to bond0.101",
        "add default route via 23.253.157.1 dev bond0.101 metric 12 (0.0.0.0)",
    ] {
        assert!(
            got.contains(&expected.to_string()),
            "{expected:?} not in {got:#?}"
        );
    }
    assert_eq!(
        plan.dns,
        [
            ip("8.8.8.8"),
            ip("8.8.4.4"),
            ip("69.20.0.164"),
            ip("69.20.0.196")
        ]
    );
}

#[test]
fn static_config_names_bonds_and_vlans_the_kernel_accepts() {
    let json = r#"{
        "links": [
            {"id": "port-92750f6c-60a9-4897", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
            {"id": "port-b", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02"},
            {"id": "pg-0b1c2d3e-aaaa-bbbb", "type": "bond", "bond_mode": 1,
             "bond_links": ["port-92750f6c-60a9-4897", "port-b"],
             "bond_primary": "port-b", "bond_lacp_rate": "fast", "bond_weird": "x",
             "bond_miimon": "abc"},
            {"id": "v", "type": "vlan", "vlan_link": "pg-0b1c2d3e-aaaa-bbbb", "vlan_id": 4000,
             "vlan_mac_address": null, "mtu": 1400},
            {"id": "eth1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:03"},
            {"id": "bad", "type": "vlan", "vlan_link": "eth1", "vlan_id": 5000},
            {"id": "w", "type": "vlan", "vlan_link": "eth1", "vlan_id": 7}
        ],
        "networks": [
            {"id": "n", "type": "ipv4", "link": "v", "ip_address": "10.0.0.2/24",
             "routes": [{"network": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.1"},
                        {"network": "::", "netmask": "::", "gateway": "fe80::1"}]},
            {"id": "m", "type": "ipv4", "link": "eth1", "ip_address": "10.0.1.2"},
            {"id": "x", "type": "ipv5", "link": "eth1"}
        ],
        "services": [{"type": "dns", "address": "not-an-ip"}]
    }"#;
    let data = NetworkData::from_json(json).unwrap();
    let plan = plan(
        &data,
        &[
            nic("bond0", "52:54:00:00:00:01"),
            nic("b", "52:54:00:00:00:02"),
            nic("enx525400000003", "52:54:00:00:00:03"),
        ],
    );
    let got = lines(&plan);
    assert!(
        got.contains(&"create bond bond1 mode active-backup lacp_rate=fast primary=b".to_string()),
        "{got:#?}"
    );
    assert!(
        got.contains(&"create VLAN bond1.4000 (id 4000 on bond1)".to_string()),
        "{got:#?}"
    );
    assert!(
        got.contains(&"create VLAN vlan7 (id 7 on enx525400000003)".to_string()),
        "{got:#?}"
    );
    assert!(
        got.contains(&"set MTU 1400 on bond1.4000".to_string()),
        "{got:#?}"
    );
    assert!(
        got.contains(&"add route 10.9.0.0/16 via 10.1.0.1 dev bond1.4000 metric 10".to_string()),
        "{got:#?}"
    );
    let on_link = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::AddRoute { on_link: true, .. }));
    assert!(on_link, "10.1.0.1 is outside 10.0.0.0/24");
    let text = plan.problems.join("\n");
    for expected in [
        "bond pg-0b1c2d3e-aaaa-bbbb: option bond_weird is not supported by rivet; ignored",
        "bond pg-0b1c2d3e-aaaa-bbbb: bond_miimon: \"abc\" is not a number in range; ignored",
        "VLAN bad: vlan_id Some(5000) is not 1-4094; not created",
        "network n: route to :: via fe80::1: :: is not an IPv4 address; left out",
        "network m: 10.0.1.2 has no netmask; not configured",
        "network x: type \"ipv5\" is not one of",
        "DNS server \"not-an-ip\" is not an IP address; left out",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn static_config_duplicate_macs_and_bad_macs() {
    let json = r#"{"links": [
        {"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
        {"id": "b", "type": "phy", "ethernet_mac_address": "52-54-00-00-00-01"},
        {"id": "c", "type": "phy", "ethernet_mac_address": "52:54:00:00:01"},
        {"id": "d", "type": "phy"}
    ], "networks": [], "services": []}"#;
    let plan = plan(
        &NetworkData::from_json(json).unwrap(),
        &[nic("eth0", "52:54:00:00:00:01")],
    );
    assert_eq!(
        plan.problems,
        [
            "link b: MAC 52-54-00-00-00-01 is link a's too; only a is configured",
            "link c: ethernet_mac_address \"52:54:00:00:01\" is not a MAC; not configured",
            "link d: no ethernet_mac_address to find the NIC by; not configured",
        ]
    );
    assert_eq!(lines(&plan), ["set eth0 up"]);
}

#[test]
fn static_config_prefixes_and_masks() {
    use super::super::static_l3::prefix_of;
    assert_eq!(prefix_of("255.255.255.0", false), Ok(24));
    assert_eq!(prefix_of("0.0.0.0", false), Ok(0));
    assert_eq!(prefix_of("255.255.255.255", false), Ok(32));
    assert_eq!(prefix_of("24", false), Ok(24));
    assert_eq!(prefix_of("ffff:ffff:ffff:ffff::", true), Ok(64));
    assert_eq!(prefix_of("::", true), Ok(0));
    assert_eq!(prefix_of("/56", true), Ok(56));
    assert!(prefix_of("255.0.255.0", false).is_err());
    assert!(prefix_of("33", false).is_err());
    assert!(prefix_of("ffff::", false).is_err());
    assert_eq!(super::bond_mode("balance-alb"), Ok(6));
    assert_eq!(super::bond_mode("0"), Ok(0));
    assert!(super::bond_mode("7").unwrap_err().contains("802.3ad"));
}
