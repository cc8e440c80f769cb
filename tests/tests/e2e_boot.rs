//! The rivet ISO booted by QEMU (TCG) in a test network namespace, against the real
//! Ironic 39 running in that namespace. See docs/e2e-tests.md.
//!
//! Needs root, qemu-system-x86, ovmf, dnsmasq, iproute2, the Ironic venv (ci/setup), the
//! static agent (`cargo build --release --target x86_64-unknown-linux-musl -p rivet-agent`)
//! and `rivet-image-builder` (ci/test builds both). A missing one fails the test.
//!
//! Boots are slow under TCG (10-20 s each), so the scenarios are few: the full one runs in
//! the variant a BMC uses (UEFI, ISO as USB virtual media), and the other variants are
//! booted in one test up to the agent's banner and its DHCP lease.

use rivet_tests::e2e::{
    check_clean, enroll_for_clean, watch_clean, Lab, Medium, BOOT_TIMEOUT, DHCP_LEASE,
    DHCP_TIMEOUT, INIT_BANNER, VM_MAC,
};
use rivet_tests::ironic::RealIronic;
use rivet_tests::or_panic;
use rivet_tests::vm::Firmware;

/// UEFI + USB virtual media: the VM boots, gets DHCP, looks up and heartbeats over TLS to
/// Ironic, and the conductor runs a manual clean through it to `manageable`.
#[test]
fn uefi_virtual_media_boot_heartbeats_and_cleans() {
    let lab = or_panic(Lab::create());
    let done = lab.net.block_on(async {
        let ironic = or_panic(RealIronic::start_in(&lab.net).await);
        let uuid = or_panic(enroll_for_clean(&ironic, "rivet-e2e-uefi-vmedia", &[VM_MAC]).await);
        // As with a BMC: the conductor waits in `clean wait`, then the machine boots the ISO.
        let mut vm = or_panic(
            lab.vm("uefi-vmedia", Firmware::Uefi, Medium::UsbCd)
                .start(&lab.net),
        );
        let started = vm.started();
        let outcome = or_panic(watch_clean(&ironic, &uuid, started, || vm.ensure_running()).await);
        let address = or_panic(lab.vm_address());
        or_panic(check_clean(&ironic, &uuid, &outcome, address));

        let console = vm.console_text();
        for (what, pattern) in [
            ("the agent's /init banner", INIT_BANNER),
            ("a DHCP lease", DHCP_LEASE),
        ] {
            assert!(
                console.contains(pattern),
                "the console never showed {what} ({pattern:?})\n{}",
                vm.failure_report()
            );
        }
        assert!(
            console.contains(&address.to_string()),
            "the console never mentions the leased address {address}\n{}",
            vm.failure_report()
        );
        outcome.first_heartbeat
    });
    let first_heartbeat = or_panic(done);
    eprintln!("first accepted heartbeat {first_heartbeat:.1?} after QEMU started");
}

/// The same ISO in the other variants (BIOS CD, UEFI CD, BIOS USB stick), one after the
/// other, each only until the agent runs as `/init` and has a DHCP lease.
#[test]
fn other_boot_variants_reach_init_and_dhcp() {
    let lab = or_panic(Lab::create());
    for (name, firmware, medium) in [
        ("bios-cd", Firmware::Bios, Medium::Cd),
        ("uefi-cd", Firmware::Uefi, Medium::Cd),
        ("bios-usb-disk", Firmware::Bios, Medium::UsbDisk),
    ] {
        let mut vm = or_panic(lab.vm(name, firmware, medium).start(&lab.net));
        let (init_at, _) = or_panic(vm.wait_for_console(INIT_BANNER, BOOT_TIMEOUT));
        let (lease_at, line) = or_panic(vm.wait_for_console(DHCP_LEASE, DHCP_TIMEOUT));
        let address = or_panic(lab.vm_address());
        assert!(
            line.contains(&address.to_string()),
            "{name}: the agent's lease line {line:?} does not show dnsmasq's address {address}"
        );
        eprintln!("{name}: /init after {init_at:.1?}, DHCP lease after {lease_at:.1?}");
    }
}
