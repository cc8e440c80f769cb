//! dnsmasq as the DHCP server of a [`TestNet`]: DHCP only (`--port=0` turns DNS off), on
//! the bridge, leases and log in a temporary directory, ended on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tempfile::TempDir;

use crate::netns::{TestNet, BRIDGE};
use crate::process::LoggedChild;

/// Where Debian's dnsmasq package puts the binary.
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// The first and last host number of the DHCP range inside the bridge's subnet.
const RANGE: (u32, u32) = (100, 199);
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A fixed address for one MAC (`--dhcp-host=MAC,IP`).
#[derive(Debug, Clone)]
pub struct DhcpHost {
    pub mac: String,
    pub address: std::net::Ipv4Addr,
}

/// A running dnsmasq inside a namespace. Dropping it ends the process; when the test is
/// failing its log's tail is printed and the directory is kept.
pub struct Dnsmasq {
    // Declared first: the process ends before its directory goes.
    process: LoggedChild,
    dir: Option<TempDir>,
    dir_path: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq on [`BRIDGE`] in `net`, handing out `.100`-`.199` of the bridge's
    /// subnet (and `hosts`' fixed addresses), with the bridge as router, and waits until it
    /// listens. Fails with a clear message when dnsmasq is not installed.
    pub fn start(net: &TestNet, hosts: &[DhcpHost]) -> Result<Dnsmasq> {
        ensure!(
            Path::new(DNSMASQ).is_file(),
            "{DNSMASQ} is missing: install Debian's dnsmasq-base package (ci/setup does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("rivet-dnsmasq-")
            .tempdir()
            .context("creating dnsmasq's directory")?;
        let dir_path = dir.path().to_owned();
        let leases = dir_path.join("leases");
        let mut command = net.command(DNSMASQ);
        command
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--port=0")
            .arg(format!("--interface={BRIDGE}"))
            .arg("--bind-interfaces")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--user=root")
            .arg("--group=root")
            .arg("--log-facility=-")
            .arg("--log-dhcp")
            .arg("--no-ping")
            .arg("--dhcp-authoritative")
            .arg(format!(
                "--dhcp-range={},{},{},1h",
                net.subnet_host(RANGE.0),
                net.subnet_host(RANGE.1),
                net.netmask()
            ))
            .arg(format!(
                "--dhcp-option=option:router,{}",
                net.bridge_address()
            ))
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!(
                "--pid-file={}",
                dir_path.join("dnsmasq.pid").display()
            ));
        for host in hosts {
            command.arg(format!("--dhcp-host={},{}", host.mac, host.address));
        }
        let process = LoggedChild::spawn("dnsmasq", command, &dir_path.join("dnsmasq.log"))?;
        let mut dnsmasq = Dnsmasq {
            process,
            dir: Some(dir),
            dir_path,
        };
        dnsmasq.wait_started()?;
        Ok(dnsmasq)
    }

    /// dnsmasq writes "DHCP, IP range ..." once its socket is bound.
    fn wait_started(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.process.ensure_running()?;
            if self.log_text()?.contains("DHCP, IP range") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "dnsmasq did not report its DHCP range within {START_TIMEOUT:?}; log:\n{}",
                    self.process.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The whole log (with `--log-dhcp`: every DISCOVER, OFFER, REQUEST and ACK).
    pub fn log_text(&self) -> Result<String> {
        self.process.log_text()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The address dnsmasq acknowledged to `mac` (from its `DHCPACK(br0) IP MAC` log line),
    /// if it has.
    pub fn acked_address(&self, mac: &str) -> Result<Option<std::net::Ipv4Addr>> {
        let log = self.log_text()?;
        let mac = mac.to_ascii_lowercase();
        for line in log.lines() {
            let Some((_, rest)) = line.split_once("DHCPACK(") else {
                continue;
            };
            let mut words = rest.split_whitespace().skip(1);
            let (Some(address), Some(seen_mac)) = (words.next(), words.next()) else {
                continue;
            };
            if seen_mac.eq_ignore_ascii_case(&mac) {
                let address = address
                    .parse()
                    .with_context(|| format!("parsing the address in dnsmasq's line {line:?}"))?;
                return Ok(Some(address));
            }
        }
        Ok(None)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept dnsmasq's directory: {}", dir.keep().display());
            }
        }
    }
}
