//! Static configuration from a network_data.json applied by the real rtnetlink code inside a
//! network namespace this test creates (never the machine's own interfaces):
//!
//! ```text
//!  netns rivet-static-PID
//!  rvst0 (MAC 52:54:00:5a:00:01) <-> rvst0p   static IPv4 + IPv6, routes, MTU 1400
//!  rvst1 (MAC 52:54:00:5a:00:02) <-> rvst1p   ipv4_dhcp: left to DHCP
//!  rvst2 (not described)         <-> rvst2p   left to DHCP
//! ```
//!
//! The applier runs in a thread of this process that entered the namespace with setns(2).
//! Bonds and VLANs are not part of it: the kernels this suite runs on may lack the bonding
//! and 8021q drivers (their netlink messages are checked by the VM scenario instead).
//! Needs root and `ip` (iproute2): a missing one fails the test.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sched::CloneFlags;
use rivet_agent::net::static_apply::{configure, LinkOutcome, StaticOptions, StaticReport};
use rivet_protocol::network_data::NetworkData;

fn run(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Namespace {
    name: String,
}

impl Namespace {
    fn new() -> Namespace {
        let found = Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "this test needs `ip` (Debian: apt-get install iproute2)"
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates a network namespace and needs root"
        );
        let ns = Namespace {
            name: format!("rivet-static-{}", std::process::id()),
        };
        run(&["ip", "netns", "add", &ns.name]);
        for (i, mac) in [
            "52:54:00:5a:00:01",
            "52:54:00:5a:00:02",
            "52:54:00:5a:00:03",
        ]
        .iter()
        .enumerate()
        {
            let (name, peer) = (format!("rvst{i}"), format!("rvst{i}p"));
            run(&[
                "ip", "link", "add", &name, "netns", &ns.name, "address", mac, "type", "veth",
                "peer", "name", &peer, "netns", &ns.name,
            ]);
            ns.ip(&["link", "set", &peer, "up"]);
        }
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    fn configure(&self, data: NetworkData, options: StaticOptions) -> StaticReport {
        let ns_path = PathBuf::from("/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path)
                .unwrap_or_else(|e| panic!("opening {}: {e}", ns_path.display()));
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).expect("setns into the test netns");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(configure(&data, "the test's network_data.json", &options))
        })
        .join()
        .expect("configure thread")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

const NETWORK_DATA: &str = r#"{
  "links": [
    {"id": "port-a", "type": "phy", "ethernet_mac_address": "52:54:00:5A:00:01", "mtu": 1400},
    {"id": "port-b", "type": "phy", "ethernet_mac_address": "52:54:00:5a:00:02"},
    {"id": "port-gone", "type": "phy", "ethernet_mac_address": "52:54:00:5a:00:99"}
  ],
  "networks": [
    {"id": "v4", "type": "ipv4", "link": "port-a", "network_id": "n",
     "ip_address": "10.204.0.2", "netmask": "255.255.255.0",
     "routes": [
       {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.204.0.1"},
       {"network": "10.205.0.0", "netmask": "255.255.0.0", "gateway": "10.204.0.254"},
       {"network": "10.206.0.0", "netmask": "255.255.0.0", "gateway": "10.99.0.1"}
     ]},
    {"id": "v6", "type": "ipv6", "link": "port-a", "network_id": "n",
     "ip_address": "fd00:204::2/64",
     "routes": [{"network": "fd00:999::", "netmask": "ffff:ffff:ffff::", "gateway": "fd00:204::1"}],
     "services": [{"type": "dns", "address": "fd00:204::53"}]},
    {"id": "dhcp", "type": "ipv4_dhcp", "link": "port-b", "network_id": "m"},
    {"id": "lost", "type": "ipv4", "link": "port-gone", "network_id": "o",
     "ip_address": "10.207.0.2", "netmask": "255.255.255.0"}
  ],
  "services": [{"type": "dns", "address": "10.204.0.53"}]
}"#;

#[test]
fn static_netns_applies_network_data_with_rtnetlink() {
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let resolv = dir.path().join("resolv.conf");
    let data = NetworkData::from_json(NETWORK_DATA).expect("network_data");
    let report = ns.configure(
        data,
        StaticOptions {
            resolv_conf: resolv.clone(),
            ..StaticOptions::default()
        },
    );
    let text = report.to_string();
    let outcomes: Vec<(&str, &LinkOutcome)> = report
        .links
        .iter()
        .map(|l| (l.link.name.as_str(), &l.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("rvst0", &LinkOutcome::Configured),
            ("rvst1", &LinkOutcome::Configured)
        ],
        "{text}"
    );
    assert_eq!(report.exclude_from_dhcp(), ["rvst0"], "{text}");
    assert_eq!(report.problems.len(), 2, "{text}");
    assert!(
        text.contains("problem: link port-gone: no NIC with MAC 52:54:00:5a:00:99"),
        "{text}"
    );
    assert!(
        text.contains("problem: network lost: its link port-gone is not configured"),
        "{text}"
    );
    assert!(
        text.contains("configured, gateway 10.204.0.1"),
        "the table shows the gateway:\n{text}"
    );

    // What the kernel in the namespace now has.
    let link = ns.ip(&["link", "show", "dev", "rvst0"]);
    assert!(
        link.contains("mtu 1400") && link.contains("state UP"),
        "{link}"
    );
    let v4 = ns.ip(&["-4", "addr", "show", "dev", "rvst0"]);
    assert!(v4.contains("inet 10.204.0.2/24"), "{v4}");
    let v6 = ns.ip(&["-6", "addr", "show", "dev", "rvst0"]);
    assert!(v6.contains("inet6 fd00:204::2/64"), "{v6}");
    let routes = ns.ip(&["-4", "route", "show"]);
    for expected in [
        "default via 10.204.0.1 dev rvst0 proto static metric 10",
        "10.205.0.0/16 via 10.204.0.254 dev rvst0 proto static metric 10",
        "10.206.0.0/16 via 10.99.0.1 dev rvst0 proto static metric 10 onlink",
    ] {
        assert!(routes.contains(expected), "{expected:?} not in:\n{routes}");
    }
    let routes6 = ns.ip(&["-6", "route", "show"]);
    assert!(
        routes6.contains("fd00:999::/48 via fd00:204::1 dev rvst0 proto static metric 11"),
        "{routes6}"
    );
    let accept_ra = run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "cat",
        "/proc/sys/net/ipv6/conf/rvst0/accept_ra",
    ]);
    assert_eq!(
        accept_ra.trim(),
        "0",
        "routes come from network_data, not RAs"
    );
    // rvst1 (ipv4_dhcp) and rvst2 (not described) were not touched.
    let untouched = ns.ip(&["-4", "addr", "show", "dev", "rvst1"]);
    assert!(!untouched.contains("inet "), "{untouched}");
    let untouched = ns.ip(&["link", "show", "dev", "rvst2"]);
    assert!(untouched.contains("state DOWN"), "{untouched}");
    assert_eq!(
        std::fs::read_to_string(&resolv).expect("resolv.conf"),
        "# Written by rivet-agent from network_data.json.\n\
         nameserver 10.204.0.53\nnameserver fd00:204::53\n"
    );

    // The agent restarted: applying again changes nothing and fails nothing.
    let again = ns.configure(
        NetworkData::from_json(NETWORK_DATA).expect("network_data"),
        StaticOptions {
            resolv_conf: resolv,
            ..StaticOptions::default()
        },
    );
    assert_eq!(again.failed(), 0, "{again}");
    assert_eq!(ns.ip(&["-4", "route", "show"]), routes);
}
