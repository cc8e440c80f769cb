//! rivet's ISO customized per node (docs/config-area.md) booted by QEMU in a test network
//! namespace without any DHCP server: the bundle's network_data.json puts the VM's two NICs
//! into an active-backup bond with VLAN 100 on top and a static address, its settings say
//! where Ironic is (the kernel command line no longer does), and the agent must reach the
//! real Ironic 39 through that VLAN, heartbeat and run a manual clean.
//!
//! ```text
//!  netns                                        VM (UEFI, ISO as USB virtual media)
//!  br0 10.77.0.1/24 (Ironic :6385)              eth0 ─┐
//!   └ tap0 ── VLAN switch ══ VLAN 100 tagged ══       ├ bond0 (active-backup)
//!             (user space)  ══ VLAN 100 tagged ══ eth1 ─┘   └ VLAN 100: 10.77.0.50/24,
//!                                                              default route via 10.77.0.1
//! ```
//!
//! The switch ([`rivet_tests::vlan_switch`]) is the access port for VLAN 100: the kernels
//! these tests run on may have no 8021q or bridge VLAN filtering, so tags are added and
//! removed in user space; frames the VM sends untagged are dropped, so the VM must tag.
//! Active-backup needs no switch cooperation.
//!
//! Needs what tests/tests/e2e_boot.rs needs (root, QEMU, OVMF, the Ironic venv, the static
//! agent, rivet-image-builder).

use std::net::Ipv4Addr;

use rivet_tests::e2e::{check_clean, enroll_for_clean, kernel_args, watch_clean, INIT_BANNER};
use rivet_tests::image::{boot_image, customize, target_dir};
use rivet_tests::ironic::RealIronic;
use rivet_tests::netns::{TestNet, TestNetConfig};
use rivet_tests::or_panic;
use rivet_tests::vlan_switch::VlanSwitch;
use rivet_tests::vm::{BootMedium, DiskBus, Firmware, VmBuilder};

const MAC1: &str = "52:54:00:77:01:01";
const MAC2: &str = "52:54:00:77:01:02";
const VLAN: u16 = 100;
const VM_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);

fn network_data(gateway: Ipv4Addr) -> String {
    format!(
        r#"{{
  "links": [
    {{"id": "nic1", "type": "phy", "ethernet_mac_address": "{MAC1}"}},
    {{"id": "nic2", "type": "phy", "ethernet_mac_address": "{MAC2}"}},
    {{"id": "bond0", "type": "bond", "bond_links": ["nic1", "nic2"],
      "bond_mode": "active-backup", "bond_miimon": 100, "ethernet_mac_address": "{MAC1}"}},
    {{"id": "vlan{VLAN}", "type": "vlan", "vlan_link": "bond0", "vlan_id": {VLAN},
      "vlan_mac_address": "{MAC1}"}}
  ],
  "networks": [
    {{"id": "provisioning", "type": "ipv4", "link": "vlan{VLAN}",
      "ip_address": "{VM_ADDRESS}", "netmask": "255.255.255.0",
      "routes": [{{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "{gateway}"}}]}}
  ],
  "services": []
}}"#
    )
}

#[test]
fn customized_iso_with_bond_and_vlan_heartbeats_without_dhcp() {
    let net = or_panic(TestNet::create(TestNetConfig::default()));
    let switch = or_panic(VlanSwitch::start(&net, "tap0", VLAN, 2));
    let api_url = RealIronic::url_in(&net);

    // The image the other e2e tests use (cached), customized for this node: Ironic's URL
    // moves from the kernel command line into the bundle's settings.
    let image = or_panic(boot_image(&kernel_args(&api_url)));
    let work = tempfile::tempdir_in(target_dir()).expect("a work directory under target/");
    let settings = work.path().join("node.conf");
    let json = work.path().join("network_data.json");
    std::fs::write(
        &settings,
        format!("# node bond-vlan\nipa-api-url={api_url}\n"),
    )
    .unwrap();
    std::fs::write(&json, network_data(net.bridge_address())).unwrap();
    let iso = work.path().join("node.iso");
    or_panic(customize(
        &image.iso(),
        &[
            "--config".into(),
            settings.display().to_string(),
            "--network-data".into(),
            json.display().to_string(),
            "--delete-karg".into(),
            "ipa-api-url".into(),
        ],
        &iso,
    ));

    let done = net.block_on(async {
        let ironic = or_panic(RealIronic::start_in(&net).await);
        let uuid = or_panic(enroll_for_clean(&ironic, "rivet-e2e-bond-vlan", &[MAC1, MAC2]).await);
        let mut vm = or_panic(
            VmBuilder::new("bond-vlan")
                .firmware(Firmware::Uefi)
                .boot(BootMedium::UsbCd(iso.clone()))
                .disk(DiskBus::VirtioBlk, 2 << 30)
                .nic_udp(switch.trunk(0).0, switch.trunk(0).1, MAC1)
                .nic_udp(switch.trunk(1).0, switch.trunk(1).1, MAC2)
                .start(&net),
        );
        let started = vm.started();
        let outcome = watch_clean(&ironic, &uuid, started, || vm.ensure_running())
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}\n{}", switch.summary(), vm.failure_report()));
        or_panic(check_clean(&ironic, &uuid, &outcome, VM_ADDRESS));

        let console = vm.console_text();
        for (what, pattern) in [
            ("the agent's /init banner", INIT_BANNER),
            (
                "the bundle being applied",
                "applying settings, network_data.json (unsigned)",
            ),
            (
                "the static network report",
                "static network from rivet config area on /dev/",
            ),
            ("the VLAN's address", "10.77.0.50/24"),
        ] {
            assert!(
                console.contains(pattern),
                "the console never showed {what} ({pattern:?})\n{}",
                vm.failure_report()
            );
        }
        assert!(
            !console.contains("bundle refused"),
            "the bundle was refused\n{}",
            vm.failure_report()
        );
        let cmdline = console
            .lines()
            .find(|l| l.contains("Command line:"))
            .unwrap_or_else(|| {
                panic!(
                    "no kernel command line on the console\n{}",
                    vm.failure_report()
                )
            });
        assert!(
            !cmdline.contains("ipa-api-url"),
            "customize did not delete ipa-api-url from the kernel arguments: {cmdline}"
        );
        outcome.first_heartbeat
    });
    let first_heartbeat = or_panic(done);
    eprintln!("bond + VLAN from the config area: first accepted heartbeat {first_heartbeat:.1?} after QEMU started");
}
