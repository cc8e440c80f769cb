//! In-band inspection of a QEMU machine by the real Ironic 39 in a test namespace, with a
//! real lldpd on the VM's tap playing the switch. See docs/e2e-tests.md and
//! docs/inventory.md.
//!
//! Needs what tests/tests/e2e_boot.rs needs, plus lldpd (ci/setup). A missing one fails.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rivet_tests::e2e::{Lab, Medium, TRANSITION_TIMEOUT, VM_MAC};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::lldp_switch::{Switch, SWITCH};
use rivet_tests::or_panic;
use rivet_tests::vm::Firmware;
use serde_json::Value;

/// The agent inspects, listens for LLDP (and announces itself), reports every collector
/// rivet has, and puts the raw LLDP into each interface too (`ipa-collect-lldp`).
const KERNEL_ARGS: &str = "ipa-inspection-callback-url={api}/v1/continue_inspection \
    ipa-inspection-collectors=default,logs,lldp,pci-devices,numa-topology,dmi-decode \
    ipa-collect-lldp=1 rivet-lldp-transmit=1";
/// Bound from QEMU's start to the end of inspection: boot, DHCP, LLDP, collection, hooks.
const INSPECTION_TIMEOUT: Duration = Duration::from_secs(420);

#[test]
fn inspection_of_a_vm_with_lldp_from_its_switch() {
    let lab = or_panic(Lab::create_with_args(KERNEL_ARGS));
    // lldpd, Ironic and the VM end with the thread that started them: all live in here.
    let outcome = lab.net.block_on(async {
        let switch = or_panic(Switch::start(&lab.net, SWITCH));
        // Ironic keeps the `logs` collector's archive only in its deploy-logs directory (it
        // drops `logs` from the stored plugin data), and only with this option.
        let ironic = or_panic(
            RealIronic::start_in_with(&lab.net, &[("agent", "deploy_logs_collect", "always")])
                .await,
        );
        let uuid = or_panic(enroll_for_inspection(&ironic).await);
        let mut vm = or_panic(
            lab.vm("bios-inspect", Firmware::Bios, Medium::Cd)
                .start(&lab.net),
        );
        let done = ironic
            .watch_until(
                &uuid,
                INSPECTION_TIMEOUT,
                "manageable",
                "inspect failed",
                |_| vm.ensure_running(),
            )
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
        let logs = stored_inspection_logs(&ironic, &uuid);
        if let Err(e) = logs.and_then(|()| check(&done, &stored, &ports)) {
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
    for key in ["pci_devices", "numa_topology", "dmi"] {
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

/// The `logs` collector's archive as Ironic stored it (`<node>_inspect_<time>.tar.gz` under
/// `[agent] deploy_logs_local_path`): a gzip tarball with the agent's log, dmesg and the
/// inventory.
fn stored_inspection_logs(ironic: &RealIronic, uuid: &str) -> Result<()> {
    let dir = ironic.state_dir().join("deploy-logs");
    let entries = std::fs::read_dir(&dir)
        .with_context(|| format!("Ironic stored no ramdisk logs in {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    let name = names
        .iter()
        .find(|n| n.starts_with(uuid) && n.contains("_inspect_"))
        .with_context(|| format!("no inspection logs for {uuid} in {names:?}"))?;
    let file = std::fs::File::open(dir.join(name)).with_context(|| format!("opening {name}"))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut members = Vec::new();
    for entry in archive
        .entries()
        .with_context(|| format!("reading {name}"))?
    {
        let entry = entry.with_context(|| format!("reading {name}"))?;
        members.push(entry.path()?.to_string_lossy().into_owned());
    }
    for wanted in ["rivet-agent.log", "dmesg", "inventory.json"] {
        ensure!(
            members.iter().any(|m| m.ends_with(wanted)),
            "{name} lacks {wanted}: {members:?}"
        );
    }
    Ok(())
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
