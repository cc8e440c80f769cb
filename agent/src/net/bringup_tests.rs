//! Bring-up logic with `FakeLinks` and `FakeDhcpServer`s, on tokio's paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;
use crate::net::dhcp::fake::{FakeConfig, FakeDhcpServer};
use crate::net::link::LinkError;

/// Links in memory; carrier comes up at a given time after the link is set up.
struct FakeLinks {
    links: Mutex<Vec<Link>>,
    carrier_after: HashMap<String, Duration>,
    up_at: Mutex<HashMap<u32, Instant>>,
    ops: Mutex<Vec<String>>,
}

impl FakeLinks {
    fn new(links: Vec<Link>, carrier_after: &[(&str, Duration)]) -> Self {
        FakeLinks {
            links: Mutex::new(links),
            carrier_after: carrier_after
                .iter()
                .map(|(n, d)| (n.to_string(), *d))
                .collect(),
            up_at: Mutex::default(),
            ops: Mutex::default(),
        }
    }

    fn record(&self, op: String) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    fn ops(&self) -> Vec<String> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn ether(index: u32, name: &str) -> Link {
    Link {
        index,
        name: name.into(),
        mac: vec![0x52, 0x54, 0, 0, 0, index as u8],
        loopback: false,
        ethernet: true,
        up: false,
        carrier: false,
        mtu: 1500,
        perm_mac: Vec::new(),
    }
}

fn loopback() -> Link {
    Link {
        index: 1,
        name: "lo".into(),
        mac: vec![0; 6],
        loopback: true,
        ethernet: false,
        up: false,
        carrier: false,
        mtu: 65536,
        perm_mac: Vec::new(),
    }
}

impl LinkControl for FakeLinks {
    async fn links(&self) -> Result<Vec<Link>, LinkError> {
        let up_at = self.up_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for link in &mut links {
            link.up = up_at.contains_key(&link.index);
            link.carrier = match (up_at.get(&link.index), self.carrier_after.get(&link.name)) {
                (Some(at), Some(after)) => Instant::now() >= *at + *after,
                _ => false,
            };
        }
        Ok(links)
    }
    async fn set_up(&self, link: &Link) -> Result<(), LinkError> {
        self.up_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(link.index, Instant::now());
        self.record(format!("up {}", link.name));
        Ok(())
    }
    async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), LinkError> {
        self.record(format!("mtu {} {mtu}", link.name));
        Ok(())
    }
    async fn add_address(&self, link: &Link, a: Ipv4Addr, p: u8) -> Result<(), LinkError> {
        self.record(format!("addr {} {a}/{p}", link.name));
        Ok(())
    }
    async fn add_default_route(
        &self,
        link: &Link,
        gateway: Ipv4Addr,
        on_link: bool,
        metric: u32,
    ) -> Result<(), LinkError> {
        self.record(format!(
            "route {} via {gateway} metric {metric}{}",
            link.name,
            if on_link { " onlink" } else { "" }
        ));
        Ok(())
    }
    fn enable_ipv6_autoconf(&self, link: &Link) -> Result<(), LinkError> {
        self.record(format!("ipv6 {}", link.name));
        Ok(())
    }
}

/// One fake DHCP server per link name.
struct FakeTransports(HashMap<String, FakeDhcpServer>);

impl TransportFactory for FakeTransports {
    type Transport = FakeDhcpServer;
    fn open(&self, link: &Link) -> Result<FakeDhcpServer, DhcpError> {
        Ok(self.0.get(&link.name).cloned().unwrap_or_else(|| {
            FakeDhcpServer::new(FakeConfig {
                silent: true,
                ..FakeConfig::default()
            })
        }))
    }
}

fn options(resolv: &std::path::Path) -> BringupOptions {
    BringupOptions {
        resolv_conf: resolv.to_path_buf(),
        ..BringupOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn configures_cabled_links_and_skips_uncabled_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let resolv = dir.path().join("etc/resolv.conf");
    let links = Arc::new(FakeLinks::new(
        vec![
            loopback(),
            ether(2, "eno1"),
            ether(3, "eno2"),
            ether(4, "eno3"),
        ],
        &[
            ("eno1", Duration::from_millis(300)),
            ("eno3", Duration::from_secs(3)),
        ],
    ));
    let second = FakeConfig {
        server_id: Ipv4Addr::new(198, 51, 100, 1),
        address: Ipv4Addr::new(198, 51, 100, 7),
        router: Some(Ipv4Addr::new(203, 0, 113, 1)),
        dns: vec![
            Ipv4Addr::new(198, 51, 100, 53),
            Ipv4Addr::new(192, 0, 2, 53),
        ],
        mtu: Some(9000),
        ..FakeConfig::default()
    };
    let transports = Arc::new(FakeTransports(HashMap::from([
        (
            "eno1".to_string(),
            FakeDhcpServer::new(FakeConfig::default()),
        ),
        ("eno3".to_string(), FakeDhcpServer::new(second)),
    ])));
    let started = Instant::now();
    let report = bring_up(links.clone(), transports, options(&resolv)).await;

    // The uncabled eno2 gave up after the 5 s carrier bound, not the DHCP bound.
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(!report.ready);
    let rows: Vec<(&str, bool, LinkResult)> = report
        .links
        .iter()
        .map(|r| (r.name.as_str(), r.carrier, r.result.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            ("eno1", true, LinkResult::Configured),
            ("eno2", false, LinkResult::NoCarrier),
            ("eno3", true, LinkResult::Configured)
        ]
    );
    assert_eq!(
        report.links[0].address,
        Some((Ipv4Addr::new(192, 0, 2, 50), 24))
    );
    let ops = links.ops();
    for expected in [
        "up lo",
        "ipv6 eno1",
        "addr eno1 192.0.2.50/24",
        "route eno1 via 192.0.2.1 metric 102",
        "mtu eno3 9000",
        "route eno3 via 203.0.113.1 metric 104 onlink",
    ] {
        assert!(
            ops.iter().any(|op| op == expected),
            "{expected} missing in {ops:?}"
        );
    }
    let position = |op: &str| ops.iter().position(|o| o == op);
    assert!(
        position("ipv6 eno2") < position("up eno2"),
        "sysctls before up: {ops:?}"
    );
    let resolv_text = std::fs::read_to_string(&resolv).expect("resolv.conf written");
    assert_eq!(
        resolv_text,
        "# Written by rivet-agent from DHCP leases.\n\
         nameserver 192.0.2.53\nnameserver 198.51.100.53\n"
    );
    let table = report.to_string();
    assert!(table.contains("eno2             no       -"), "{table}");
    assert!(table.contains("no carrier"), "{table}");
}

#[tokio::test(start_paused = true)]
async fn returns_as_soon_as_the_control_server_is_reachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = Arc::new(FakeLinks::new(
        vec![ether(2, "eno1"), ether(3, "eno2")],
        &[("eno1", Duration::ZERO), ("eno2", Duration::ZERO)],
    ));
    // eno1 gets a lease after two lost DISCOVERs (~3 s); eno2 never hears back.
    let transports = Arc::new(FakeTransports(HashMap::from([(
        "eno1".to_string(),
        FakeDhcpServer::new(FakeConfig {
            drop_first: 2,
            ..FakeConfig::default()
        }),
    )])));
    // "Reachable" once eno1 has its address.
    let probe_links = links.clone();
    let reachable = Arc::new(AtomicBool::new(false));
    let seen = reachable.clone();
    let check: ReadinessCheck = Arc::new(move || {
        let ops = probe_links.ops();
        let seen = seen.clone();
        Box::pin(async move {
            let up = ops.iter().any(|op| op.starts_with("addr eno1"));
            seen.store(up, Ordering::SeqCst);
            up
        })
    });
    let report = bring_up(
        links.clone(),
        transports,
        BringupOptions {
            ready: Some(check),
            ..options(&dir.path().join("resolv.conf"))
        },
    )
    .await;
    assert!(report.ready && reachable.load(Ordering::SeqCst));
    assert!(
        report.elapsed < Duration::from_secs(30),
        "did not wait for eno2's DHCP"
    );
    let eno2 = &report.links[1];
    assert_eq!(
        (eno2.name.as_str(), &eno2.result),
        ("eno2", &LinkResult::Pending)
    );
}

#[tokio::test(start_paused = true)]
async fn late_cable_gets_dhcp_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = Arc::new(FakeLinks::new(
        vec![ether(2, "eno1")],
        &[("eno1", Duration::from_secs(20))],
    ));
    let transports = Arc::new(FakeTransports(HashMap::from([(
        "eno1".to_string(),
        FakeDhcpServer::new(FakeConfig::default()),
    )])));
    let report = bring_up(links.clone(), transports, options(&dir.path().join("r"))).await;
    assert_eq!(report.links[0].result, LinkResult::NoCarrier);
    assert!(!links.ops().iter().any(|op| op.starts_with("addr")));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        links.ops().iter().any(|op| op == "addr eno1 192.0.2.50/24"),
        "{:?}",
        links.ops()
    );
}

#[tokio::test(start_paused = true)]
async fn excluded_links_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = Arc::new(FakeLinks::new(vec![ether(2, "eno1")], &[]));
    let report = bring_up(
        links.clone(),
        Arc::new(FakeTransports(HashMap::new())),
        BringupOptions {
            exclude: vec!["eno1".into()],
            ..options(&dir.path().join("r"))
        },
    )
    .await;
    assert_eq!(report.links[0].result, LinkResult::Excluded);
    assert!(links.ops().is_empty());
}

#[test]
fn subnets_and_resolv_conf() {
    let a = Ipv4Addr::new(10, 0, 0, 5);
    assert!(same_subnet(a, Ipv4Addr::new(10, 0, 0, 1), 24));
    assert!(!same_subnet(a, Ipv4Addr::new(10, 0, 1, 1), 24));
    assert!(same_subnet(a, Ipv4Addr::new(99, 0, 0, 1), 0));
    assert!(!same_subnet(a, Ipv4Addr::new(10, 0, 0, 1), 32));
    let dns = BTreeMap::from([
        (
            "eno1".to_string(),
            (
                vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)],
                Some("a.example".to_string()),
            ),
        ),
        (
            "eno2".to_string(),
            (
                vec![
                    Ipv4Addr::new(2, 2, 2, 2),
                    Ipv4Addr::new(3, 3, 3, 3),
                    Ipv4Addr::new(4, 4, 4, 4),
                ],
                Some("b.example".to_string()),
            ),
        ),
    ]);
    assert_eq!(
        resolv_conf_text(&[], &dns),
        "# Written by rivet-agent from DHCP leases.\nsearch a.example b.example\n\
         nameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\n"
    );
    let fixed: Vec<std::net::IpAddr> = vec!["2001:db8::53".parse().unwrap()];
    assert_eq!(
        resolv_conf_text(&fixed, &dns),
        "# Written by rivet-agent from network_data.json and DHCP leases.\n\
         search a.example b.example\n\
         nameserver 2001:db8::53\nnameserver 1.1.1.1\nnameserver 2.2.2.2\n"
    );
    assert_eq!(
        resolv_conf_text(&fixed, &BTreeMap::new()),
        "# Written by rivet-agent from network_data.json.\nnameserver 2001:db8::53\n"
    );
}
