//! In-band inspection of a QEMU machine by the real Ironic 39 in a test namespace, with a
//! real lldpd on the VM's tap playing the switch. See docs/e2e-tests.md and
//! docs/inventory.md.
//!
//! Needs what tests/tests/e2e_boot.rs needs, plus lldpd (ci/setup). A missing one fails.

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rivet_tests::e2e::{Lab, Medium, TRANSITION_TIMEOUT, VM_MAC};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::netns::TestNet;
use rivet_tests::or_panic;
use rivet_tests::vm::Firmware;
use serde_json::Value;

/// The agent inspects, listens for LLDP (and announces itself), reports every collector
/// rivet has, and puts the raw LLDP into each interface too (`ipa-collect-lldp`).
const KERNEL_ARGS: &str = "ipa-inspection-callback-url={api}/v1/continue_inspection \
    ipa-inspection-collectors=default,logs,lldp,pci-devices,numa-topology,dmi-decode \
    ipa-collect-lldp=1 rivet-lldp-transmit=1";
/// What lldpd calls itself.
const SWITCH: &str = "leaf-e2e";
/// Bound from QEMU's start to the end of inspection: boot, DHCP, LLDP, collection, hooks.
const INSPECTION_TIMEOUT: Duration = Duration::from_secs(420);

/// lldpd on tap0 (the switch port the VM's NIC is cabled to), announcing every second.
struct Switch {
    child: Child,
    dir: tempfile::TempDir,
}

impl Switch {
    fn start(net: &TestNet) -> Result<Switch> {
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
                 configure system hostname {SWITCH}\n\
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lldpd.log")).unwrap_or_default()
    }

    /// `lldpcli show neighbors details` as JSON text.
    fn neighbors(&self, net: &TestNet) -> Result<String> {
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

#[test]
fn inspection_of_a_vm_with_lldp_from_its_switch() {
    let lab = or_panic(Lab::create_with_args(KERNEL_ARGS));
    // lldpd, Ironic and the VM end with the thread that started them: all live in here.
    let outcome = lab.net.block_on(async {
        let switch = or_panic(Switch::start(&lab.net));
        let ironic = or_panic(RealIronic::start_in(&lab.net).await);
        let uuid = or_panic(enroll_for_inspection(&ironic).await);
        let mut vm = or_panic(
            lab.vm("bios-inspect", Firmware::Bios, Medium::Cd)
                .start(&lab.net),
        );
        let done = ironic
            .watch_node(&uuid, INSPECTION_TIMEOUT, "the end of inspection", |node| {
                vm.ensure_running()?;
                match node["provision_state"].as_str() {
                    Some("manageable") => Ok(Some(node.clone())),
                    Some("inspect failed") => {
                        anyhow::bail!("inspection failed: {}", node_summary(node))
                    }
                    _ => Ok(None),
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}\nlldpd:\n{}", vm.failure_report(), switch.log()));
        let stored = or_panic(ironic.inventory(&uuid).await);
        let ports = or_panic(
            ironic
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/nodes/{uuid}/ports?detail=True"),
                    None,
                )
                .await,
        );
        if let Err(e) = check(&done, &stored, &ports) {
            panic!("{e:#}\nlldpd:\n{}", switch.log());
        }
        let neighbors = or_panic(switch.neighbors(&lab.net));
        assert!(
            neighbors.contains("rivet-agent") && neighbors.contains("eth0"),
            "lldpd did not list the VM's own LLDPDU (system description rivet-agent, port \
             eth0): {neighbors}"
        );
    });
    or_panic(outcome);
}

async fn enroll_for_inspection(ironic: &RealIronic) -> Result<String> {
    let node = ironic.create_node("rivet-e2e-inspect").await?;
    let uuid = node["uuid"]
        .as_str()
        .context("created node has no uuid")?
        .to_owned();
    ironic.create_port(&uuid, VM_MAC).await?;
    ironic.manage(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "manageable", TRANSITION_TIMEOUT)
        .await?;
    ironic.inspect(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "inspect wait", TRANSITION_TIMEOUT)
        .await?;
    Ok(uuid)
}

fn check(done: &Value, stored: &Value, ports: &Value) -> Result<()> {
    ensure!(
        done["last_error"].is_null(),
        "inspection ended with an error: {}",
        node_summary(done)
    );
    let properties = &done["properties"];
    ensure!(
        properties["cpu_arch"] == "x86_64",
        "properties: {properties}"
    );
    ensure!(
        properties["memory_mb"] == 1024,
        "memory_mb should be the VM's 1 GiB DIMM from SMBIOS: {properties}"
    );

    let inventory = &stored["inventory"];
    let vendor = &inventory["system_vendor"];
    ensure!(vendor["manufacturer"] == "QEMU", "system_vendor: {vendor}");
    ensure!(
        inventory["boot"]["current_boot_mode"] == "bios",
        "boot: {}",
        inventory["boot"]
    );
    let eth0 = &inventory["interfaces"][0];
    ensure!(
        eth0["mac_address"] == VM_MAC && eth0["driver"] == "virtio_net",
        "interface: {eth0}"
    );
    ensure!(
        eth0["lldp"].as_array().is_some_and(|l| !l.is_empty()),
        "interfaces[0].lldp is empty though ipa-collect-lldp is set: {eth0}"
    );
    let disks: Vec<&str> = inventory["disks"]
        .as_array()
        .context("no disks")?
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for disk in ["/dev/vda", "/dev/nvme0n1"] {
        ensure!(disks.contains(&disk), "disks {disks:?} lack {disk}");
    }

    let plugin = &stored["plugin_data"];
    let raw = plugin["lldp_raw"]["eth0"]
        .as_array()
        .with_context(|| format!("no lldp_raw for eth0: {}", plugin["lldp_raw"]))?;
    let name_tlv = serde_json::json!([5, hex(SWITCH)]);
    ensure!(
        raw.contains(&name_tlv),
        "lldp_raw lacks {name_tlv}: {raw:?}"
    );
    let neighbor = &plugin["lldp_neighbors"]["eth0"];
    ensure!(
        neighbor["system_name"] == SWITCH && neighbor["port_id"] == "tap0",
        "lldp_neighbors: {neighbor}"
    );
    // Ironic's own LLDP parser on our raw TLVs.
    let parsed = &plugin["parsed_lldp"]["eth0"];
    ensure!(
        parsed["switch_system_name"] == SWITCH,
        "parse-lldp: {}",
        plugin["parsed_lldp"]
    );
    for key in ["pci_devices", "numa_topology", "dmi", "logs"] {
        ensure!(
            plugin.get(key).is_some_and(|v| !v.is_null()),
            "plugin data lacks {key}"
        );
    }
    ensure!(plugin["error"].is_null(), "error: {}", plugin["error"]);

    let port = ports["ports"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["address"] == VM_MAC))
        .with_context(|| format!("no port {VM_MAC}: {ports}"))?;
    let link = &port["local_link_connection"];
    ensure!(
        link["port_id"] == "tap0" && link["switch_info"] == SWITCH,
        "local_link_connection from LLDP: {link}"
    );
    ensure!(link["switch_id"].is_string(), "no switch_id: {link}");
    Ok(())
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
