//! A real lldpd playing the switch the VM's NIC is cabled to, on the test namespace's tap0.

use std::process::{Child, Stdio};

use anyhow::{ensure, Context, Result};

use crate::netns::TestNet;

/// The system name tests give lldpd.
pub const SWITCH: &str = "leaf-e2e";

/// lldpd on tap0 (the switch port the VM's NIC is cabled to), announcing every second.
pub struct Switch {
    child: Child,
    dir: tempfile::TempDir,
}

impl Switch {
    /// Starts lldpd on tap0 of `net`, calling itself `name`.
    pub fn start(net: &TestNet, name: &str) -> Result<Switch> {
        let dir = tempfile::Builder::new()
            .prefix("rivet-lldpd-")
            .tempdir()
            .context("creating lldpd's directory")?;
        // lldpd's unprivileged half (user _lldpd) must reach its control socket.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .context("opening lldpd's directory to _lldpd")?;
        let config = dir.path().join("lldpd.conf");
        std::fs::write(
            &config,
            format!(
                "configure lldp tx-interval 1\n\
                 configure system hostname {name}\n\
                 configure lldp portidsubtype ifname\n"
            ),
        )
        .context("writing lldpd.conf")?;
        let log = std::fs::File::create(dir.path().join("lldpd.log")).context("lldpd.log")?;
        let child = net
            .command("lldpd")
            .args(["-d", "-I", "tap0", "-u"])
            .arg(dir.path().join("lldpd.socket"))
            .arg("-O")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting lldpd in the namespace (apt-get install lldpd; ci/setup)")?;
        Ok(Switch { child, dir })
    }

    /// lldpd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lldpd.log")).unwrap_or_default()
    }

    /// `lldpcli show neighbors details` as JSON text.
    pub fn neighbors(&self, net: &TestNet) -> Result<String> {
        let output = net
            .command("lldpcli")
            .arg("-u")
            .arg(self.dir.path().join("lldpd.socket"))
            .args(["-f", "json", "show", "neighbors", "details"])
            .output()
            .context("running lldpcli")?;
        ensure!(
            output.status.success(),
            "lldpcli failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
