use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use rivet_protocol::network_data::NetworkData;

use super::*;
use crate::net::static_config::{parse_mac, plan};

/// Records the actions it is asked to apply; fails or hangs on the ones named.
#[derive(Default)]
struct FakeStatic {
    links: Vec<Link>,
    fail: BTreeSet<String>,
    hang: BTreeSet<String>,
    applied: Mutex<Vec<String>>,
}

impl FakeStatic {
    fn applied(&self) -> Vec<String> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl StaticControl for FakeStatic {
    async fn links(&self) -> Result<Vec<Link>, LinkError> {
        Ok(self.links.clone())
    }

    async fn apply(&self, action: &Action) -> Result<(), LinkError> {
        let text = action.to_string();
        if self.hang.contains(&text) {
            std::future::pending::<()>().await;
        }
        if self.fail.contains(&text) {
            return Err(LinkError::Invalid(format!("{text}: refused by the fake")));
        }
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text);
        Ok(())
    }
}

fn nic(index: u32, name: &str, mac: &str, perm: &str) -> Link {
    Link {
        index,
        name: name.into(),
        mac: parse_mac(mac).unwrap().to_vec(),
        loopback: false,
        ethernet: true,
        up: false,
        carrier: true,
        mtu: 1500,
        perm_mac: if perm.is_empty() {
            Vec::new()
        } else {
            parse_mac(perm).unwrap().to_vec()
        },
    }
}

fn bond_sample() -> NetworkData {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/fixtures/network_data/cloud-init-bond.json");
    NetworkData::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn machine() -> Vec<Link> {
    vec![
        // eno2 is already a bond port (its current MAC is eno1's): found by its permanent MAC.
        nic(2, "eno1", "0c:c4:7a:34:6e:3c", "0c:c4:7a:34:6e:3c"),
        nic(3, "eno2", "0c:c4:7a:34:6e:3c", "0c:c4:7a:34:6e:3d"),
        nic(4, "eno3", "52:54:00:00:00:99", ""),
    ]
}

fn options(dir: &tempfile::TempDir) -> StaticOptions {
    StaticOptions {
        resolv_conf: dir.path().join("etc/resolv.conf"),
        ..StaticOptions::default()
    }
}

#[test]
fn static_apply_machine_links_prefer_permanent_macs() {
    let mut links = machine();
    links.push(Link {
        name: "lo".into(),
        loopback: true,
        ethernet: false,
        ..nic(1, "lo", "00:00:00:00:00:00", "")
    });
    let found = machine_links(&links);
    let macs: Vec<(&str, String)> = found
        .iter()
        .map(|m| (m.name.as_str(), crate::net::interfaces::format_mac(&m.mac)))
        .collect();
    assert_eq!(
        macs,
        [
            ("eno1", "0c:c4:7a:34:6e:3c".to_string()),
            ("eno2", "0c:c4:7a:34:6e:3d".to_string()),
            ("eno3", "52:54:00:00:00:99".to_string()),
        ]
    );
}

#[tokio::test]
async fn static_apply_runs_the_plan_in_order_and_writes_dns() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStatic {
        links: machine(),
        ..FakeStatic::default()
    };
    let plan = plan(&bond_sample(), &machine_links(&fake.links));
    let report = apply_plan(&fake, &plan, "test ISO", &options(&dir)).await;
    let expected: Vec<String> = plan.actions.iter().map(ToString::to_string).collect();
    assert_eq!(fake.applied(), expected);
    assert_eq!(report.failed(), 0, "{report}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etc/resolv.conf")).unwrap(),
        "# Written by rivet-agent from network_data.json.\nnameserver 1.1.1.191\nnameserver 1.1.1.4\n"
    );
    let text = report.to_string();
    assert!(
        text.starts_with("static network from test ISO:\n"),
        "{text}"
    );
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        row("eno1").as_deref(),
        Some("eno1 port of bond0 eth0 - configured")
    );
    assert_eq!(
        row("bond0").as_deref(),
        Some("bond0 bond bond0 - configured")
    );
    assert_eq!(
        row("bond0.602").as_deref(),
        Some("bond0.602 VLAN vlan2 2.2.2.13/29 configured, gateway 2.2.2.9")
    );
    assert!(text.contains("DNS servers: 1.1.1.191, 1.1.1.4\n"), "{text}");
    assert!(
        text.ends_with("5 links configured, 0 failed, 0 problems"),
        "{text}"
    );
}

#[tokio::test]
async fn static_apply_a_failed_bond_fails_what_sits_on_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"{"links": [
        {"id": "a", "type": "phy", "ethernet_mac_address": "0c:c4:7a:34:6e:3c"},
        {"id": "b", "type": "phy", "ethernet_mac_address": "0c:c4:7a:34:6e:3d"},
        {"id": "c", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:99"},
        {"id": "bond0", "type": "bond", "bond_mode": "active-backup", "bond_links": ["a", "b"]},
        {"id": "v", "type": "vlan", "vlan_link": "bond0", "vlan_id": 7}
    ], "networks": [
        {"id": "n1", "type": "ipv4", "link": "v", "ip_address": "10.0.0.2", "netmask": "255.255.255.0"},
        {"id": "n2", "type": "ipv4", "link": "c", "ip_address": "10.1.0.2", "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.0.1"}]}
    ], "services": []}"#;
    let fake = FakeStatic {
        links: machine(),
        fail: BTreeSet::from(["create bond bond0 mode active-backup".to_string()]),
        ..FakeStatic::default()
    };
    let plan = plan(
        &NetworkData::from_json(json).unwrap(),
        &machine_links(&fake.links),
    );
    let report = apply_plan(&fake, &plan, "test", &options(&dir)).await;
    let outcomes: Vec<(&str, &LinkOutcome)> = report
        .links
        .iter()
        .map(|l| (l.link.name.as_str(), &l.outcome))
        .collect();
    let refused = "create bond bond0 mode active-backup: refused by the fake".to_string();
    let skipped = |what: &str| LinkOutcome::Failed(format!("not done: {what} failed"));
    assert_eq!(
        outcomes,
        [
            ("eno1", &skipped("bond0")),
            ("eno2", &skipped("bond0")),
            ("eno3", &LinkOutcome::Configured),
            ("bond0", &LinkOutcome::Failed(refused)),
            ("bond0.7", &skipped("bond0")),
        ]
    );
    // eno1/eno2: their MTU-less plan only had "set up" after enslaving, which is skipped.
    assert_eq!(
        fake.applied(),
        [
            "set eno3 up",
            "add 10.1.0.2/24 to eno3",
            "add default route via 10.1.0.1 dev eno3 metric 11 (0.0.0.0)",
        ]
    );
    assert!(
        !dir.path().join("etc/resolv.conf").exists(),
        "no DNS in the plan"
    );
    assert!(report.to_string().contains("4 failed"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn static_apply_is_bounded_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStatic {
        links: machine(),
        hang: BTreeSet::from(["create VLAN bond0.602 (id 602 on bond0)".to_string()]),
        ..FakeStatic::default()
    };
    let plan = plan(&bond_sample(), &machine_links(&fake.links));
    let report = apply_plan(&fake, &plan, "test", &options(&dir)).await;
    let vlan = report
        .links
        .iter()
        .find(|l| l.link.name == "bond0.602")
        .unwrap();
    assert_eq!(
        vlan.outcome,
        LinkOutcome::Failed(
            "create VLAN bond0.602 (id 602 on bond0): no answer within 5000 ms".to_string()
        )
    );
    let other = report
        .links
        .iter()
        .find(|l| l.link.name == "bond0.612")
        .unwrap();
    assert_eq!(other.outcome, LinkOutcome::Configured);

    // Every action hangs: the whole plan stops at the total bound.
    let all: BTreeSet<String> = plan.actions.iter().map(ToString::to_string).collect();
    let stuck = FakeStatic {
        links: machine(),
        hang: all,
        ..FakeStatic::default()
    };
    let bounded = StaticOptions {
        total_timeout: std::time::Duration::from_secs(7),
        ..options(&dir)
    };
    let report = apply_plan(&stuck, &plan, "test", &bounded).await;
    assert_eq!(report.failed(), 5);
    let outcome = |name: &str| {
        report
            .links
            .iter()
            .find(|l| l.link.name == name)
            .map(|l| l.outcome.clone())
    };
    // eno1 used the first 5 s, eno2 the 2 s left; nothing more was started.
    assert_eq!(
        outcome("eno2"),
        Some(LinkOutcome::Failed(
            "set MTU 1500 on eno2: no answer within 2000 ms".to_string()
        ))
    );
    assert_eq!(
        outcome("bond0"),
        Some(LinkOutcome::Failed(
            "not done: static configuration took longer than 7 s".to_string()
        ))
    );
}
