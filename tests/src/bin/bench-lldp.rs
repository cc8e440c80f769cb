//! Time from link up to LLDP neighbour known (ci/bench/lldp), against a real lldpd at its
//! default 30 s transmit interval, in one run. Each lab is a pair of network namespaces made
//! here ("switch": lldpd on one end of a veth pair; "node": rivet-agent's LLDP listener on
//! the other), never the machine's own interfaces. Four ways, `--rounds` labs each, all labs
//! at once:
//!
//! - `listen-from-link-up`: the listener starts the moment the node's link comes up (lldpd
//!   sends when its port gets carrier);
//! - `listen-after-boot`: the listener starts a random 2-32 s after link up, as an agent does
//!   once its ramdisk has booted (IPA's situation: the switch's link-up frame is gone, the
//!   next one comes on the switch's 30 s timer);
//! - `transmit-plain-switch`: the same, and the agent sends its own LLDPDU first
//!   (`rivet-lldp-transmit`), to a switch without fast start (lldpd's default);
//! - `transmit-fast-start`: the same, to a switch with LLDP-MED fast start
//!   (`configure med fast-start enable`, as switches with MED endpoints run): our LLDPDU
//!   carries the LLDP-MED capabilities, so the switch answers at once.
//!
//! Prints the median, fastest and slowest time per way and the ratio of medians
//! listen-after-boot / transmit-fast-start. Asserts nothing. Needs root, iproute2 and lldpd.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use nix::sched::CloneFlags;
use rivet_agent::lldp::{listen, KernelLinks, ListenOptions, LldpBoard, SessionEnd};

/// The listener's bound: a full 30 s interval plus margin, as the agent's default.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(35);

#[derive(Clone, Copy, PartialEq)]
enum Way {
    FromLinkUp,
    AfterBoot,
    TransmitPlain,
    TransmitFastStart,
}

impl Way {
    const ALL: [Way; 4] = [
        Way::FromLinkUp,
        Way::AfterBoot,
        Way::TransmitPlain,
        Way::TransmitFastStart,
    ];

    fn name(self) -> &'static str {
        match self {
            Way::FromLinkUp => "listen-from-link-up",
            Way::AfterBoot => "listen-after-boot",
            Way::TransmitPlain => "transmit-plain-switch",
            Way::TransmitFastStart => "transmit-fast-start",
        }
    }

    fn transmit(self) -> bool {
        matches!(self, Way::TransmitPlain | Way::TransmitFastStart)
    }

    /// lldpd's configuration: its default 30 s interval, ifname port ids.
    fn switch_config(self) -> &'static str {
        match self {
            Way::TransmitFastStart => {
                "configure system hostname leaf-bench\nconfigure lldp portidsubtype ifname\n\
                 configure med fast-start enable\n"
            }
            _ => "configure system hostname leaf-bench\nconfigure lldp portidsubtype ifname\n",
        }
    }
}

/// Two namespaces joined by a veth pair, lldpd on the switch end. Removed on drop.
struct Lab {
    switch_ns: String,
    node_ns: String,
    lldpd: Option<Child>,
    dir: tempfile::TempDir,
}

fn run(args: &[&str]) -> Result<()> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    ensure!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

impl Lab {
    fn create(index: usize, way: Way) -> Result<Lab> {
        let tag = format!("{}-{index}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("rivet-bench-lldp-")
            .tempdir()
            .context("creating a temporary directory")?;
        // lldpd's unprivileged half (user _lldpd) must reach its control socket.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .context("opening the lab directory to _lldpd")?;
        let mut lab = Lab {
            switch_ns: format!("rivet-bsw-{tag}"),
            node_ns: format!("rivet-bnode-{tag}"),
            lldpd: None,
            dir,
        };
        let (s, n) = (lab.switch_ns.clone(), lab.node_ns.clone());
        run(&["ip", "netns", "add", &s])?;
        run(&["ip", "netns", "add", &n])?;
        run(&[
            "ip", "link", "add", "sw0", "netns", &s, "type", "veth", "peer", "name", "eth0",
            "netns", &n,
        ])?;
        for (ns, link) in [(&s, "lo"), (&s, "sw0"), (&n, "lo")] {
            run(&["ip", "-n", ns, "link", "set", link, "up"])?;
        }
        let config = lab.dir.path().join("lldpd.conf");
        std::fs::write(&config, way.switch_config()).context("writing lldpd.conf")?;
        let log = std::fs::File::create(lab.dir.path().join("lldpd.log")).context("lldpd.log")?;
        let child = Command::new("ip")
            .args(["netns", "exec", &s, "lldpd", "-d", "-I", "sw0", "-u"])
            .arg(lab.dir.path().join("lldpd.socket"))
            .arg("-O")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting lldpd (apt-get install lldpd; ci/setup)")?;
        lab.lldpd = Some(child);
        Ok(lab)
    }

    /// Brings the node's end up, waits `delay`, then listens (and with `transmit`, first
    /// sends our LLDPDU); the time from the start of listening to the neighbour.
    fn measure(&self, delay: Duration, transmit: bool) -> Result<(Duration, Duration)> {
        let ns_path = PathBuf::from("/run/netns").join(&self.node_ns);
        let node_ns = self.node_ns.clone();
        let lldpd_log = self.dir.path().join("lldpd.log");
        std::thread::spawn(move || -> Result<(Duration, Duration)> {
            let ns = std::fs::File::open(&ns_path)
                .with_context(|| format!("opening {}", ns_path.display()))?;
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).context("entering the node netns")?;
            run(&["ip", "-n", &node_ns, "link", "set", "eth0", "up"])?;
            std::thread::sleep(delay);
            let board = LldpBoard::default();
            let options = ListenOptions {
                timeout: LISTEN_TIMEOUT,
                end_early: true,
                transmit_as: transmit.then(|| "rivet-bench-node".to_string()),
            };
            let summary = listen(&["eth0".to_string()], &options, &board, &KernelLinks)
                .context("an LLDP session was already running")?;
            if summary.end != SessionEnd::AllNeighbors {
                bail!(
                    "no neighbour within {LISTEN_TIMEOUT:?}: {summary:?}\nlldpd:\n{}",
                    std::fs::read_to_string(&lldpd_log).unwrap_or_default()
                );
            }
            Ok((delay, summary.took))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the listener thread panicked"))?
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

fn rounds() -> Result<usize> {
    let mut rounds = 5;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .context("--rounds needs a value")?
                    .parse()
                    .context("--rounds")?
            }
            other => bail!("unknown argument {other}; use --rounds N"),
        }
    }
    ensure!(rounds > 0, "--rounds must be at least 1");
    Ok(rounds)
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "bench-lldp creates network namespaces and needs root"
    );
    let rounds = rounds()?;
    let ways = Way::ALL;
    // Labs first (lldpd needs a moment to start), then every measurement at once.
    let mut labs = Vec::new();
    for index in 0..rounds * ways.len() {
        labs.push(Lab::create(index, ways[index % ways.len()])?);
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut handles = Vec::new();
    for (index, lab) in labs.iter().enumerate() {
        let way = ways[index % ways.len()];
        let delay = match way {
            Way::FromLinkUp => Duration::ZERO,
            _ => {
                Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 2_000..32_000))
            }
        };
        handles.push((way, lab, delay));
    }
    let results: Vec<(Way, Result<(Duration, Duration)>)> = std::thread::scope(|scope| {
        let running: Vec<_> = handles
            .iter()
            .map(|(way, lab, delay)| {
                (
                    *way,
                    scope.spawn(move || lab.measure(*delay, way.transmit())),
                )
            })
            .collect();
        running
            .into_iter()
            .map(|(way, handle)| {
                let result = handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("measurement panicked")));
                (way, result)
            })
            .collect()
    });

    println!("LLDP: time from the start of listening to the neighbour, lldpd at its default");
    println!("30 s interval, {rounds} labs per way, all at once\n");
    println!(
        "{:<22} {:>8} {:>8} {:>8}   started after link up",
        "way", "median", "fastest", "slowest"
    );
    let mut medians = Vec::new();
    for way in ways {
        let mut times = Vec::new();
        let mut delays = Vec::new();
        for (w, result) in &results {
            if *w != way {
                continue;
            }
            match result {
                Ok((delay, took)) => {
                    times.push(seconds(*took));
                    delays.push(format!("{:.1}", seconds(*delay)));
                }
                Err(e) => bail!("{}: {e:#}", way.name()),
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        medians.push(median);
        println!(
            "{:<22} {:>7.2}s {:>7.2}s {:>7.2}s   {} s",
            way.name(),
            median,
            times[0],
            times[times.len() - 1],
            delays.join(", ")
        );
    }
    println!(
        "\nratio listen-after-boot / transmit-fast-start (medians): {:.1}x",
        medians[1] / medians[3].max(0.001)
    );
    Ok(())
}
