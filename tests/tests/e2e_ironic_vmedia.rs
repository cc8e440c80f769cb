//! DHCP-less boot the Ironic way (spec §9.2-§9.4, issue #4's scenario 2): the deploy ISO is
//! built by Ironic 39's own code (`ironic.common.images.create_boot_iso` through
//! `ci/ironic/vmedia_iso`, see [`rivet_tests::ironic_iso`]) around the kernel and initramfs
//! of rivet's image, the way the redfish virtual-media boot interface builds it: label
//! `config-2`, a fresh publisher uuid that is also `ir_pub_id` on the kernel command line,
//! the node's network_data.json at `openstack/latest/`, the API's CA with `ironic-tls.conf`.
//! The VM boots it in a test namespace where no DHCP server runs (two tests: BIOS with
//! isolinux from a CD drive; UEFI with rivet's esp.img as the node's bootloader, from USB
//! virtual media); the agent must find that ISO by its publisher, apply the static network,
//! reach the real Ironic 39, heartbeat from its static address and run a manual clean.
//!
//! ```text
//!  netns                                       VM (Ironic's ISO: BIOS CD or UEFI USB CD)
//!  br0 10.77.0.1/24 (Ironic :6385) ── tap0 ──  eth0 52:54:00:77:00:01
//!  no dnsmasq                                   10.77.0.60/24 via 10.77.0.1, DNS 10.77.0.1
//!                                               (from network_data.json on the ISO)
//! ```
//!
//! The conductor under test runs the fake hardware type (no BMC to attach media to), so the
//! ISO is built before the VM starts rather than by the conductor's boot interface; what goes
//! into it is computed by Ironic's functions all the same.
//!
//! Needs what tests/tests/e2e_boot.rs needs (root, QEMU, the Ironic venv, the static agent,
//! rivet-image-builder) plus Ironic's ISO tools: mkisofs (genisoimage), zstd, and for BIOS
//! isolinux and syslinux-common. A missing one fails the test.

use std::net::Ipv4Addr;

use rivet_tests::e2e::{
    check_clean, enroll_for_clean, kernel_args, watch_clean, INIT_BANNER, VM_MAC,
};
use rivet_tests::image::{boot_image, target_dir};
use rivet_tests::ironic::RealIronic;
use rivet_tests::ironic_iso::{self, IronicIsoRequest};
use rivet_tests::netns::{TestNet, TestNetConfig};
use rivet_tests::or_panic;
use rivet_tests::vm::{BootMedium, DiskBus, Firmware, VmBuilder};

const VM_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 60);

/// The node's network_data as Neutron (or `node.network_data`) gives it to Ironic.
fn network_data(gateway: Ipv4Addr) -> String {
    format!(
        r#"{{
  "links": [
    {{"id": "port-0", "type": "phy", "ethernet_mac_address": "{VM_MAC}", "mtu": 1500}}
  ],
  "networks": [
    {{"id": "network0", "type": "ipv4", "link": "port-0", "network_id": "provisioning",
      "ip_address": "{VM_ADDRESS}", "netmask": "255.255.255.0",
      "routes": [{{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "{gateway}"}}]}}
  ],
  "services": [{{"type": "dns", "address": "{gateway}"}}]
}}"#
    )
}

/// BIOS: isolinux, the ISO in an AHCI CD drive.
#[test]
fn ironic_built_config_2_iso_boots_without_dhcp_and_cleans() {
    boot_ironic_iso("ironic-vmedia-bios", Firmware::Bios);
}

/// UEFI: the image's esp.img as the node's bootloader (its GRUB finds the `config-2` volume
/// and Ironic's `EFI/BOOT/grub.cfg` on it), the ISO as BMC-style USB virtual media.
#[test]
fn ironic_built_uefi_config_2_iso_boots_without_dhcp_and_cleans() {
    boot_ironic_iso("ironic-vmedia-uefi", Firmware::Uefi);
}

/// The scenario: Ironic's ISO for `firmware`, booted without DHCP, cleans a node.
fn boot_ironic_iso(name: &str, firmware: Firmware) {
    or_panic(ironic_iso::check_prerequisites(firmware));
    let net = or_panic(TestNet::create(TestNetConfig::default()));
    let api_url = RealIronic::url_in(&net);

    // Only the kernel and initramfs of the image the other e2e tests use (cached) are taken;
    // its own ISO and kernel arguments are not.
    let image = or_panic(boot_image(&kernel_args(&api_url)));
    let work = tempfile::tempdir_in(target_dir()).expect("a work directory under target/");
    let json = work.path().join("network_data.json");
    std::fs::write(&json, network_data(net.bridge_address())).expect("writing network_data.json");
    let ca = work.path().join("ironic-ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec![net.bridge_address().to_string()])
        .expect("a self-signed certificate");
    std::fs::write(&ca, cert.cert.pem()).expect("writing the CA file");
    let request = IronicIsoRequest {
        firmware,
        kernel_append: "%default% console=ttyS0,115200n8".into(),
        params: vec![
            ("ipa-api-url".into(), api_url.clone()),
            ("boot_method".into(), "vmedia".into()),
        ],
        network_data: Some(json),
        api_ca_file: Some(ca),
    };
    let iso = or_panic(ironic_iso::build(
        &image,
        &request,
        &work.path().join("boot.iso"),
    ));
    assert_eq!(
        iso.label, "config-2",
        "Ironic's label with openstack/ files"
    );
    assert!(
        iso.kernel_params
            .contains(&format!("ir_pub_id={}", iso.publisher_id)),
        "Ironic's command line lacks ir_pub_id: {}",
        iso.kernel_params
    );
    eprintln!(
        "Ironic built {} (publisher {}), kernel command line: {}",
        iso.path.display(),
        iso.publisher_id,
        iso.kernel_params
    );

    let done = net.block_on(async {
        let ironic = or_panic(RealIronic::start_in(&net).await);
        let uuid =
            or_panic(enroll_for_clean(&ironic, &format!("rivet-e2e-{name}"), &[VM_MAC]).await);
        let medium = match firmware {
            Firmware::Bios => BootMedium::Cd(iso.path.clone()),
            Firmware::Uefi => BootMedium::UsbCd(iso.path.clone()),
        };
        let mut vm = or_panic(
            VmBuilder::new(name)
                .firmware(firmware)
                .boot(medium)
                .disk(DiskBus::VirtioBlk, 2 << 30)
                .nic("tap0", VM_MAC)
                .start(&net),
        );
        let started = vm.started();
        let outcome = or_panic(watch_clean(&ironic, &uuid, started, || vm.ensure_running()).await);
        or_panic(check_clean(&ironic, &uuid, &outcome, VM_ADDRESS));

        let console = vm.console_text();
        let found = format!(
            "is the config iso (label \"config-2\", publisher \"{}\")",
            iso.publisher_id.to_lowercase()
        );
        for (what, pattern) in [
            ("the agent's /init banner", INIT_BANNER.to_owned()),
            ("the config-2 ISO found by its publisher", found),
            (
                "the CA copied from the ISO",
                "installed /etc/ironic-python-agent/ironic.crt from config iso /dev/".into(),
            ),
            (
                "ironic-tls.conf copied from the ISO",
                "installed /etc/ironic-python-agent.d/ironic-tls.conf from config iso /dev/".into(),
            ),
            (
                "the static network report",
                "static network from config iso /dev/".into(),
            ),
            ("the static address", format!("{VM_ADDRESS}/24")),
            ("the gateway", "configured, gateway 10.77.0.1".into()),
            ("the DNS server", "dns servers: 10.77.0.1".into()),
            (
                "no static network problem",
                "1 links configured, 0 failed, 0 problems".into(),
            ),
        ] {
            assert!(
                console.to_lowercase().contains(&pattern),
                "the console never showed {what} ({pattern:?})\n{}",
                vm.failure_report()
            );
        }
        let cmdline = console
            .lines()
            .find(|l| l.contains("Command line:"))
            .unwrap_or_else(|| {
                panic!(
                    "no kernel command line on the console\n{}",
                    vm.failure_report()
                )
            });
        for expected in [
            format!("ir_pub_id={}", iso.publisher_id),
            "boot_method=vmedia".into(),
            format!("ipa-api-url={api_url}"),
        ] {
            assert!(
                cmdline.contains(&expected),
                "the booted command line lacks {expected}: {cmdline}"
            );
        }
        outcome.first_heartbeat
    });
    let first_heartbeat = or_panic(done);
    eprintln!(
        "{name}: Ironic's config-2 ISO without DHCP: first accepted heartbeat \
         {first_heartbeat:.1?} after QEMU started"
    );
}
