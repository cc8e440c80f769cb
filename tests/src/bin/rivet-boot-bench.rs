//! Boot benchmark, run by `ci/bench/boot`: image sizes against IPA's, and one UEFI
//! virtual-media boot (QEMU TCG) timed from QEMU's start to the agent running as `/init`
//! and to the first heartbeat the real Ironic 39 accepted, both in the same run. It prints
//! measurements and ratios; it judges nothing.

use std::time::Duration;

use anyhow::{Context, Result};
use rivet_tests::e2e::{
    check_clean, enroll_for_clean, watch_clean, Lab, Medium, DHCP_LEASE, INIT_BANNER, VM_MAC,
};
use rivet_tests::ironic::RealIronic;
use rivet_tests::vm::Firmware;

/// IPA's published ramdisk (the figures this project compares against), in bytes:
/// kernel 13 MB + initramfs 438 MB = 451 MB.
const IPA_KERNEL: u64 = 13_000_000;
const IPA_INITRAMFS: u64 = 438_000_000;

fn main() -> Result<()> {
    let lab = Lab::create()?;
    let image = &lab.image;
    let kernel = image.size_of(&image.kernel())?;
    let initramfs = image.size_of(&image.initramfs())?;
    let iso = image.size_of(&image.iso())?;
    let ipa = IPA_KERNEL + IPA_INITRAMFS;
    println!("image {}", image.dir.display());
    println!("sizes (MB = 10^6 bytes)");
    println!("  vmlinuz              {:>8.1} MB", mb(kernel));
    println!("  initramfs.img        {:>8.1} MB", mb(initramfs));
    println!(
        "  kernel + initramfs   {:>8.1} MB   = {:.3} of IPA's {:.0} MB ({:.1}x smaller)",
        mb(kernel + initramfs),
        ratio(kernel + initramfs, ipa),
        mb(ipa),
        ratio(ipa, kernel + initramfs)
    );
    println!(
        "  rivet.iso            {:>8.1} MB   = {:.3} of IPA's {:.0} MB ({:.1}x smaller)",
        mb(iso),
        ratio(iso, ipa),
        mb(ipa),
        ratio(ipa, iso)
    );

    let timing = lab
        .net
        .block_on(boot_once(&lab))
        .context("entering the test namespace")??;
    let init = timing.init.as_secs_f64();
    let heartbeat = timing.heartbeat.as_secs_f64();
    println!("boot: UEFI, ISO as USB virtual media, QEMU TCG, times from QEMU's start");
    println!("  /init running (agent banner)      {init:>7.2} s");
    if let Some(lease) = timing.lease {
        println!(
            "  first DHCP lease                  {:>7.2} s",
            lease.as_secs_f64()
        );
    }
    println!("  first heartbeat Ironic accepted   {heartbeat:>7.2} s");
    println!(
        "  ratio heartbeat / init            {:>7.2}   (the agent's part: {:.2} s after /init)",
        heartbeat / init,
        heartbeat - init
    );
    Ok(())
}

struct Timing {
    init: Duration,
    lease: Option<Duration>,
    heartbeat: Duration,
}

async fn boot_once(lab: &Lab) -> Result<Timing> {
    let ironic = RealIronic::start_in(&lab.net).await?;
    let uuid = enroll_for_clean(&ironic, "rivet-boot-bench", &[VM_MAC]).await?;
    let mut vm = lab
        .vm("bench-uefi-vmedia", Firmware::Uefi, Medium::UsbCd)
        .start(&lab.net)?;
    let started = vm.started();
    let result = async {
        let outcome = watch_clean(&ironic, &uuid, started, || vm.ensure_running()).await?;
        check_clean(&ironic, &uuid, &outcome, lab.vm_address()?)?;
        let init = vm
            .console_line_at(INIT_BANNER)
            .with_context(|| format!("the console never showed {INIT_BANNER:?}"))?;
        Ok(Timing {
            init,
            lease: vm.console_line_at(DHCP_LEASE),
            heartbeat: outcome.first_heartbeat,
        })
    }
    .await;
    result.map_err(|e: anyhow::Error| e.context(vm.failure_report()))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}
