//! Network bring-up against a real dnsmasq, between two network namespaces this test
//! creates (never the machine's own interfaces):
//!
//! ```text
//!  netns rivet-srv-PID                      netns rivet-cli-PID
//!  rvsrv0 10.203.0.1/24  <---- veth ---->   rvcli0   (DHCP client, cabled)
//!  dnsmasq: DHCP 10.203.0.50-60, DNS :53
//!  rvpeer0 (left down)   <---- veth ---->   rvdead0  (no carrier: uncabled NIC)
//! ```
//!
//! The client runs in a thread of this process that entered the client namespace with
//! setns(2); every socket it opens (netlink, UDP 68, the TCP readiness probe) lives there.
//! Needs root, `ip` (iproute2) and `dnsmasq`: missing ones fail the test.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sched::CloneFlags;
use rivet_agent::net::bringup::{tcp_reachable, LinkResult};
use rivet_agent::net::{bring_up_network, BringupOptions, BringupReport};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);

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

fn require_tool(name: &str, version_arg: &str) {
    let found = Command::new(name)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "this test needs `{name}` on PATH (Debian: apt-get install {}); it is missing",
        if name == "ip" { "iproute2" } else { name }
    );
}

/// The two namespaces and dnsmasq; torn down on drop, even when the test fails.
struct Lab {
    server_ns: String,
    client_ns: String,
    dnsmasq: Option<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        require_tool("ip", "-V");
        require_tool("dnsmasq", "--version");
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and needs root"
        );
        let pid = std::process::id();
        let mut lab = Lab {
            server_ns: format!("rivet-srv-{pid}"),
            client_ns: format!("rivet-cli-{pid}"),
            dnsmasq: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let (s, c) = (lab.server_ns.clone(), lab.client_ns.clone());
        run(&["ip", "netns", "add", &s]);
        run(&["ip", "netns", "add", &c]);
        // Both ends are created directly inside the namespaces.
        run(&[
            "ip", "link", "add", "rvsrv0", "netns", &s, "type", "veth", "peer", "name", "rvcli0",
            "netns", &c,
        ]);
        run(&[
            "ip", "link", "add", "rvpeer0", "netns", &s, "type", "veth", "peer", "name", "rvdead0",
            "netns", &c,
        ]);
        run(&[
            "ip",
            "-n",
            &s,
            "addr",
            "add",
            "10.203.0.1/24",
            "dev",
            "rvsrv0",
        ]);
        run(&["ip", "-n", &s, "link", "set", "rvsrv0", "up"]);
        run(&["ip", "-n", &s, "link", "set", "lo", "up"]);
        let dir = lab.dir.path();
        let dnsmasq = Command::new("ip")
            .args([
                "netns",
                "exec",
                &s,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
            ])
            .args([
                "--interface=rvsrv0",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
            ])
            .arg("--user=root")
            .arg("--dhcp-range=10.203.0.50,10.203.0.60,255.255.255.0,1h")
            .arg("--dhcp-option=option:router,10.203.0.1")
            .arg("--dhcp-option=option:dns-server,10.203.0.1")
            .arg("--domain=rivet.test")
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg("--log-dhcp")
            .arg("--no-ping")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dnsmasq");
        lab.dnsmasq = Some(dnsmasq);
        lab
    }

    fn client(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", self.client_ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    fn in_client_ns(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", self.client_ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs network bring-up inside the client namespace.
    fn bring_up(&self, options: BringupOptions) -> BringupReport {
        let ns_path = PathBuf::from("/run/netns").join(&self.client_ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path)
                .unwrap_or_else(|e| panic!("opening {}: {e}", ns_path.display()));
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).expect("setns into the client netns");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(bring_up_network(options))
        })
        .join()
        .expect("bring-up thread")
    }

    fn dnsmasq_log(&mut self) -> String {
        let Some(mut child) = self.dnsmasq.take() else {
            return String::new();
        };
        let _ = child.kill();
        match child.wait_with_output() {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => format!("(no dnsmasq output: {e})"),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn net_bringup_dhcp_from_dnsmasq_configures_the_cabled_link() {
    let mut lab = Lab::new();
    let resolv = lab.dir.path().join("etc/resolv.conf");
    let report = lab.bring_up(BringupOptions {
        ready: Some(tcp_reachable(
            vec![(SERVER.to_string(), 53)],
            Duration::from_secs(1),
        )),
        dhcp_timeout: Duration::from_secs(20),
        resolv_conf: resolv.clone(),
        ..BringupOptions::default()
    });
    let log = lab.dnsmasq_log();
    assert!(
        report.ready,
        "control server not reachable:\n{report}\ndnsmasq:\n{log}"
    );
    let cabled = report
        .links
        .iter()
        .find(|l| l.name == "rvcli0")
        .unwrap_or_else(|| panic!("rvcli0 missing from\n{report}"));
    assert_eq!(
        cabled.result,
        LinkResult::Configured,
        "{report}\ndnsmasq:\n{log}"
    );
    let (address, prefix) = cabled.address.expect("an address");
    assert_eq!(prefix, 24);
    assert!(
        (50..=60).contains(&address.octets()[3]) && address.octets()[..3] == [10, 203, 0],
        "{address} is outside dnsmasq's range"
    );
    assert_eq!(cabled.gateway, Some(SERVER));
    let dead = report
        .links
        .iter()
        .find(|l| l.name == "rvdead0")
        .unwrap_or_else(|| panic!("rvdead0 missing from\n{report}"));
    assert!(!dead.carrier && dead.address.is_none(), "{report}");

    // What the kernel in the client namespace now has.
    let addrs = lab.client(&["-4", "addr", "show", "dev", "rvcli0"]);
    assert!(addrs.contains(&format!("inet {address}/24")), "{addrs}");
    let routes = lab.client(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains("default via 10.203.0.1 dev rvcli0"),
        "{routes}"
    );
    assert!(routes.contains("proto dhcp"), "{routes}");
    let accept_ra = lab.in_client_ns(&["cat", "/proc/sys/net/ipv6/conf/rvcli0/accept_ra"]);
    assert_eq!(accept_ra.trim(), "2");
    assert_eq!(
        read(&resolv),
        "# Written by rivet-agent from DHCP leases.\nsearch rivet.test\nnameserver 10.203.0.1\n"
    );
    // dnsmasq recorded the lease for our MAC.
    let mac = lab.client(&["link", "show", "dev", "rvcli0"]);
    let mac = mac
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("MAC in `ip link` output")
        .to_string();
    let leases = read(&lab.dir.path().join("leases"));
    assert!(
        leases.contains(&mac) && leases.contains(&address.to_string()),
        "lease file:\n{leases}\ndnsmasq:\n{log}"
    );
}
