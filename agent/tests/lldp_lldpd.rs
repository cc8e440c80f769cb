//! LLDP against a real lldpd, between two network namespaces this test creates (never the
//! machine's own interfaces):
//!
//! ```text
//!  netns rivet-lsw-PID-N ("the switch")          netns rivet-lnode-PID-N ("the server")
//!  rvsw0 192.0.2.1/24, lldpd (tx-interval 1,       rvnic0: rivet-agent's listener,
//!        hostname leaf-test-1, port id = ifname) <-- veth --> which also sends its LLDPDU
//!  rvswdead0 (down)                              <-- veth --> rvnodead0 (no carrier)
//! ```
//!
//! The listener runs in a thread of this process that entered the node namespace with
//! setns(2). Needs root, `ip` (iproute2), `lldpd` and `lldpcli`: missing ones fail the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use rivet_agent::lldp::{listen, KernelLinks, ListenOptions, LldpBoard, SessionEnd};

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

fn require_tool(name: &str, arg: &str, package: &str) {
    let found = Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "this test needs `{name}` on PATH (Debian: apt-get install {package}; ci/setup installs it)"
    );
}

struct Lab {
    switch_ns: String,
    node_ns: String,
    lldpd: Option<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        require_tool("ip", "-V", "iproute2");
        require_tool("lldpd", "-v", "lldpd");
        require_tool("lldpcli", "-v", "lldpd");
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and needs root"
        );
        // Tests run in parallel: each lab gets its own names.
        static LABS: AtomicU32 = AtomicU32::new(0);
        let pid = format!(
            "{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        // lldpd's unprivileged half (user _lldpd) must reach the control socket.
        run(&[
            "chmod",
            "755",
            dir.path().to_str().expect("UTF-8 temp path"),
        ]);
        let lab = Lab {
            switch_ns: format!("rivet-lsw-{pid}"),
            node_ns: format!("rivet-lnode-{pid}"),
            lldpd: None,
            dir,
        };
        let (s, n) = (lab.switch_ns.as_str(), lab.node_ns.as_str());
        run(&["ip", "netns", "add", s]);
        run(&["ip", "netns", "add", n]);
        run(&[
            "ip", "link", "add", "rvsw0", "netns", s, "type", "veth", "peer", "name", "rvnic0",
            "netns", n,
        ]);
        run(&[
            "ip",
            "link",
            "add",
            "rvswdead0",
            "netns",
            s,
            "type",
            "veth",
            "peer",
            "name",
            "rvnodead0",
            "netns",
            n,
        ]);
        run(&["ip", "-n", s, "addr", "add", "192.0.2.1/24", "dev", "rvsw0"]);
        for (ns, link) in [
            (s, "lo"),
            (s, "rvsw0"),
            (n, "lo"),
            (n, "rvnic0"),
            (n, "rvnodead0"),
        ] {
            run(&["ip", "-n", ns, "link", "set", link, "up"]);
        }
        lab
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("lldpd.socket")
    }

    fn start_lldpd(&mut self) {
        let config = self.dir.path().join("lldpd.conf");
        std::fs::write(
            &config,
            "configure lldp tx-interval 1\n\
             configure system hostname leaf-test-1\n\
             configure lldp portidsubtype ifname\n",
        )
        .expect("writing lldpd.conf");
        let log = std::fs::File::create(self.dir.path().join("lldpd.log")).expect("lldpd.log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.switch_ns,
                "lldpd",
                "-d",
                "-I",
                "rvsw0",
            ])
            .arg("-u")
            .arg(self.socket())
            .arg("-O")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting lldpd");
        self.lldpd = Some(child);
    }

    fn lldpd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lldpd.log")).unwrap_or_default()
    }

    /// `lldpcli show neighbors` on the switch, as JSON.
    fn switch_neighbors(&self) -> serde_json::Value {
        let socket = self.socket();
        let text = run(&[
            "ip",
            "netns",
            "exec",
            &self.switch_ns,
            "lldpcli",
            "-u",
            socket.to_str().expect("UTF-8 socket path"),
            "-f",
            "json",
            "show",
            "neighbors",
            "details",
        ]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("lldpcli JSON: {e}: {text}"))
    }

    /// Runs `work` in a thread inside the node namespace.
    fn in_node<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let ns_path = PathBuf::from("/run/netns").join(&self.node_ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path)
                .unwrap_or_else(|e| panic!("opening {}: {e}", ns_path.display()));
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).expect("setns into the node netns");
            work()
        })
        .join()
        .expect("node thread")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.lldpd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.switch_ns, &self.node_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn lldp_hears_lldpd_and_lldpd_hears_us() {
    let mut lab = Lab::new();
    lab.start_lldpd();
    let (summary, observations, raw) = lab.in_node(|| {
        let board = LldpBoard::default();
        let links = vec!["rvnic0".to_string(), "rvnodead0".to_string()];
        let options = ListenOptions {
            timeout: Duration::from_secs(35),
            end_early: true,
            transmit_as: Some("rivet-test-node".to_string()),
        };
        let summary = listen(&links, &options, &board, &KernelLinks).expect("no session running");
        (summary, board.observations(), board.raw(&links))
    });
    let log = lab.lldpd_log();
    assert_eq!(
        summary.end,
        SessionEnd::AllNeighbors,
        "{summary:?}\nlldpd:\n{log}"
    );
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let seen = observations
        .get("rvnic0")
        .unwrap_or_else(|| panic!("no LLDP frame on rvnic0: {summary:?}\nlldpd:\n{log}"));
    let n = &seen.neighbor;
    assert_eq!(n.system_name.as_deref(), Some("leaf-test-1"), "{n:?}");
    assert_eq!(n.port_id.as_deref(), Some("rvsw0"), "{n:?}");
    assert_eq!(n.port_id_subtype.as_deref(), Some("interface_name"));
    assert_eq!(n.chassis_id_subtype.as_deref(), Some("mac_address"));
    assert_eq!(n.port_description.as_deref(), Some("rvsw0"));
    assert!(
        n.management_addresses.contains(&"192.0.2.1".to_string()),
        "{n:?}"
    );
    assert_eq!(n.ttl, Some(4), "tx-interval 1 x hold 4");
    assert!(n.autonegotiation.is_some(), "802.3 MAC/PHY: {n:?}");
    assert!(n.link_aggregation.is_some(), "link aggregation: {n:?}");
    // The chassis id is the switch's MAC; the frame came from rvsw0's MAC.
    assert_eq!(seen.source.len(), 17);
    assert!(
        !observations.contains_key("rvnodead0"),
        "no cable, no frame"
    );
    // Ironic's raw form: [type, "hex"], chassis first, End last; [] for the dead link.
    let tlvs = &raw["rvnic0"];
    assert_eq!(tlvs.first().map(|t| t.0), Some(1));
    assert_eq!(tlvs.last().map(|t| (t.0, t.1.as_str())), Some((0, "")));
    assert!(tlvs
        .iter()
        .any(|t| t.0 == 5 && t.1 == hex_of("leaf-test-1")));
    assert_eq!(raw["rvnodead0"], vec![]);

    // lldpd decoded the LLDPDU we sent: our hostname as system name, our port by name.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let neighbors = lab.switch_neighbors();
        let text = neighbors.to_string();
        if text.contains("rivet-test-node") {
            assert!(text.contains("rvnic0"), "port id: {text}");
            assert!(text.contains("rivet-agent"), "system description: {text}");
            // lldpd decoded our LLDP-MED capabilities TLV: an endpoint of class I.
            assert!(
                text.contains("lldp-med") && text.contains("Generic Endpoint (Class I)"),
                "LLDP-MED: {text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lldpd never listed our LLDPDU: {text}\nlldpd:\n{}",
            lab.lldpd_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn lldp_session_times_out_without_a_neighbour() {
    let lab = Lab::new();
    let summary = lab.in_node(|| {
        let board = LldpBoard::default();
        let options = ListenOptions {
            timeout: Duration::from_secs(2),
            end_early: true,
            transmit_as: None,
        };
        listen(&["rvnic0".to_string()], &options, &board, &KernelLinks).expect("session")
    });
    assert_eq!(summary.end, SessionEnd::Timeout, "{summary:?}");
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
