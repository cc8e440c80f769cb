//! Boots the built ISO in QEMU (TCG) the ways operators boot it: BIOS and UEFI, from CD,
//! from a USB disk, and as a BMC-style USB CD (virtual media); and boots an ISO assembled
//! the way Ironic assembles one around `esp.img` (`[DEFAULT]esp_image`). Each boot must
//! reach the initramfs and run `/init` — the test's agent is a static `exit(0)`, so the kernel
//! then reports that init exited with code 0, which proves our `/init` ran.
//!
//! Needs qemu-system-x86 and ovmf besides the builder's host tools.

// Test helpers too: a panic is the failure report (see clippy.toml).
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use std::{fs, thread};

const BIN: &str = env!("CARGO_BIN_EXE_rivet-image-builder");
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Printed by the kernel when `/init` exits with status 0.
const INIT_RAN: &str = "Attempted to kill init! exitcode=0x00000000";
/// Console output after which a boot is over: the end of a kernel panic (after `/init`
/// exited, or instead of it), GRUB's prompt, or rivet's GRUB config giving up.
const STOP_MARKERS: [&str; 3] = ["end Kernel panic", "grub>", "rivet: no boot volume found"];
/// How long to wait for one boot before giving up (TCG boots take ~10-20 s here).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

fn require_prerequisites() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
    );
    for f in [OVMF_CODE, OVMF_VARS] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: apt-get install ovmf"
        );
    }
}

fn build_outputs(dir: &Path) {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rivet-image-builder-cache");
    let out = Command::new(BIN)
        .args(["build", "--agent"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exit0.elf"))
        .arg("--cache-dir")
        .arg(cache)
        // Level 3 keeps this test quick; the level does not change how the kernel boots it.
        .args([
            "--zstd-level",
            "3",
            "--append",
            "rivet-boot-test=1",
            "--output",
        ])
        .arg(dir)
        .output()
        .expect("running rivet-image-builder");
    assert!(
        out.status.success(),
        "build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Boots QEMU with `args` and returns the serial console output up to the point where
/// `/init` has run (or everything seen when the VM stops or the limit passes).
fn boot(work: &Path, uefi: bool, args: &[&str]) -> String {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        "q35,accel=tcg",
        "-m",
        "1024",
        "-no-reboot",
        "-nic",
        "none",
    ])
    .args(["-display", "none", "-monitor", "none", "-serial", "stdio"]);
    if uefi {
        let vars = work.join("OVMF_VARS.fd");
        fs::copy(OVMF_VARS, &vars).expect("copying the OVMF variable store");
        cmd.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting qemu-system-x86_64");
    let mut stdout = child.stdout.take().expect("qemu's stdout");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + BOOT_LIMIT;
    let mut log = Vec::new();
    while let Ok(chunk) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        log.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&log);
        if STOP_MARKERS.iter().any(|m| text.contains(m)) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    String::from_utf8_lossy(&log).into_owned()
}

fn assert_booted(what: &str, log: &str, cmdline_has: &str) {
    let cmdline = log
        .lines()
        .find(|l| l.contains("Command line:"))
        .unwrap_or_default();
    assert!(
        cmdline.contains(cmdline_has),
        "{what}: kernel command line lacks {cmdline_has}:\n{log}"
    );
    assert!(
        log.contains("Run /init as init process"),
        "{what}: /init never started:\n{log}"
    );
    assert!(
        log.contains(INIT_RAN),
        "{what}: /init did not run to its exit:\n{log}"
    );
}

/// An ISO laid out as Ironic's `create_isolinux_image_for_uefi` does with `esp_image`,
/// its GRUB config at `grub_config_path`.
fn ironic_style_iso(out: &Path, work: &Path, grub_config_path: &str) -> PathBuf {
    let root = work.join(format!(
        "ironic-root-{}",
        grub_config_path.replace('/', "_")
    ));
    let cfg = root.join(grub_config_path);
    fs::create_dir_all(root.join("boot/grub")).unwrap();
    fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    fs::copy(out.join("vmlinuz"), root.join("vmlinuz")).unwrap();
    fs::copy(out.join("initramfs.img"), root.join("initrd")).unwrap();
    fs::copy(out.join("esp.img"), root.join("boot/grub/efiboot.img")).unwrap();
    fs::write(
        &cfg,
        "set default=0\nset timeout=5\nset hidden_timeout_quiet=false\n\n\
         menuentry \"boot_partition\" {\n\
         linux /vmlinuz console=ttyS0 ironic-built=1 --\n\
         initrd /initrd\n}\n",
    )
    .unwrap();
    let iso = root.with_extension("iso");
    let status = Command::new("xorriso")
        .args(["-as", "mkisofs", "-r", "-V", "VMEDIA_BOOT_ISO", "-l"])
        .args(["-e", "boot/grub/efiboot.img", "-no-emul-boot", "-o"])
        .arg(&iso)
        .arg(&root)
        .stderr(Stdio::null())
        .status()
        .expect("running xorriso");
    assert!(
        status.success(),
        "xorriso failed building the Ironic-style ISO"
    );
    iso
}

#[test]
fn iso_boots_bios_and_uefi_from_cd_usb_and_virtual_media() {
    require_prerequisites();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = work.path().join("out");
    build_outputs(&out);
    let iso = out.join("rivet.iso");
    let iso = iso.to_str().unwrap();
    let cd = format!("if=none,id=cd,format=raw,media=cdrom,readonly=on,file={iso}");
    let usb_disk = format!("if=none,id=stick,format=raw,readonly=on,file={iso}");
    let ours = "rivet-boot-test=1";

    let cd_args = ["-drive", &cd, "-device", "ide-cd,drive=cd,bootindex=1"];
    assert_booted("BIOS CD", &boot(work.path(), false, &cd_args), ours);
    assert_booted("UEFI CD", &boot(work.path(), true, &cd_args), ours);

    let usb_args = [
        "-drive",
        &usb_disk,
        "-device",
        "qemu-xhci,id=xhci",
        "-device",
        "usb-storage,bus=xhci.0,drive=stick,bootindex=1",
    ];
    assert_booted("BIOS USB disk", &boot(work.path(), false, &usb_args), ours);
    assert_booted("UEFI USB disk", &boot(work.path(), true, &usb_args), ours);

    let vmedia_args = [
        "-drive",
        &cd,
        "-device",
        "qemu-xhci,id=xhci",
        "-device",
        "usb-bot,id=bot,bus=xhci.0",
        "-device",
        "scsi-cd,bus=bot.0,drive=cd,bootindex=1",
    ];
    assert_booted(
        "BIOS virtual media",
        &boot(work.path(), false, &vmedia_args),
        ours,
    );
    assert_booted(
        "UEFI virtual media",
        &boot(work.path(), true, &vmedia_args),
        ours,
    );

    // Ironic's default grub_config_path, then Metal3's.
    for grub_config_path in ["EFI/BOOT/grub.cfg", "EFI/centos/grub.cfg"] {
        let ironic = ironic_style_iso(&out, work.path(), grub_config_path);
        let ironic_cd = format!(
            "if=none,id=cd,format=raw,media=cdrom,readonly=on,file={}",
            ironic.display()
        );
        let args = [
            "-drive",
            &ironic_cd,
            "-device",
            "ide-cd,drive=cd,bootindex=1",
        ];
        assert_booted(
            &format!("UEFI Ironic-built ISO with esp.img, config at {grub_config_path}"),
            &boot(work.path(), true, &args),
            "ironic-built=1",
        );
    }
}
