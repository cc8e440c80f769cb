//! End to end: the real builder binary fetches Debian's kernel package through apt (cached
//! under target/tmp so reruns are quick), builds every output twice, and checks identical
//! bytes, the outputs and the ISO's El Torito entries. Between the two builds the cached
//! package is corrupted: the second build must notice, refetch, and still give the same bytes.
//!
//! Needs the host tools of docs/image-builder.md and an apt index (`apt-get update`).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rivet-image-builder");
const OUTPUTS: [&str; 7] = [
    "vmlinuz",
    "initramfs.img",
    "esp.img",
    "ironic-python-agent.kernel",
    "ironic-python-agent.initramfs",
    "rivet.iso",
    "manifest.json",
];

fn agent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exit0.elf")
}

fn build(cache: &Path, output: &Path) -> Output {
    let out = Command::new(BIN)
        .args(["build", "--agent"])
        .arg(agent())
        .arg("--cache-dir")
        .arg(cache)
        .args(["--append", "ipa-debug=1", "--output"])
        .arg(output)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("running rivet-image-builder");
    assert!(
        out.status.success(),
        "build failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cached_debs(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("debs");
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("listing the package cache")
        .map(|e| e.expect("listing the package cache").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs
}

#[test]
fn builds_reproducible_bios_and_uefi_iso_from_debians_kernel() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cache = tmp.join("rivet-image-builder-cache");
    let work = tempfile::tempdir_in(tmp).unwrap();
    let (first, second) = (work.path().join("first"), work.path().join("second"));

    let run1 = build(&cache, &first);
    let report = String::from_utf8_lossy(&run1.stdout);
    for name in ["vmlinuz", "initramfs.img", "rivet.iso"] {
        assert!(report.contains(name), "size report lacks {name}:\n{report}");
    }
    let debs = cached_debs(&cache);
    assert_eq!(debs.len(), 1, "{debs:?}");

    // Corrupt the cached package in place (same size): it must be refetched, not used.
    let mut f = fs::OpenOptions::new().write(true).open(&debs[0]).unwrap();
    f.seek(SeekFrom::Start(1000)).unwrap();
    f.write_all(b"corrupt").unwrap();
    drop(f);
    let run2 = build(&cache, &second);
    let log = String::from_utf8_lossy(&run2.stderr);
    assert!(
        log.contains("the cached copy was bad"),
        "no refetch reported:\n{log}"
    );

    for name in OUTPUTS {
        let a = fs::read(first.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let b = fs::read(second.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!a.is_empty(), "{name} is empty");
        assert!(
            a == b,
            "{name} differs between two builds of the same inputs"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(&first)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !OUTPUTS.contains(&n.as_str()))
        .collect();
    assert!(
        leftovers.is_empty(),
        "unexpected files in the output: {leftovers:?}"
    );

    let read = |n: &str| fs::read(first.join(n)).unwrap();
    assert_eq!(read("vmlinuz"), read("ironic-python-agent.kernel"));
    assert_eq!(read("initramfs.img"), read("ironic-python-agent.initramfs"));

    let manifest: serde_json::Value =
        serde_json::from_slice(&read("manifest.json")).expect("manifest.json is JSON");
    let version = manifest["kernel"]["version"].as_str().unwrap().to_owned();
    assert!(version.ends_with("-amd64"), "{version}");
    assert!(manifest["kernel"]["package"]
        .as_str()
        .unwrap()
        .starts_with("linux-image-"));
    assert_eq!(
        manifest["kernel_cmdline"],
        "console=tty0 console=ttyS0,115200n8 ipa-debug=1"
    );
    assert!(
        manifest["ramdisk"]["modules"].as_u64().unwrap() > 200,
        "{manifest}"
    );
    let outputs = manifest["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 6);
    for o in outputs {
        let name = o["path"].as_str().unwrap();
        assert_eq!(
            o["size"].as_u64().unwrap(),
            read(name).len() as u64,
            "{name}"
        );
    }

    // The initramfs is zstd over newc cpio with the agent as /init and the module index.
    let raw = zstd::decode_all(read("initramfs.img").as_slice()).unwrap();
    assert!(raw.starts_with(b"070701"));
    let has_name = |n: &str| {
        let needle = format!("{n}\0");
        raw.windows(needle.len()).any(|w| w == needle.as_bytes())
    };
    for n in [
        "init".to_owned(),
        "etc/rivet-release".to_owned(),
        format!("lib/modules/{version}/modules.dep"),
        format!("lib/modules/{version}/modules.alias"),
        format!("lib/modules/{version}/modules.softdep"),
        format!("lib/modules/{version}/modules.builtin"),
        format!("lib/modules/{version}/kernel/drivers/nvme/host/nvme.ko"),
        format!("lib/modules/{version}/kernel/fs/isofs/isofs.ko"),
        format!("lib/modules/{version}/kernel/drivers/usb/storage/uas.ko"),
        format!("lib/modules/{version}/kernel/drivers/virtio/virtio_pci.ko"),
    ] {
        assert!(has_name(&n), "initramfs lacks {n}");
    }

    let report = Command::new("xorriso")
        .arg("-indev")
        .arg(first.join("rivet.iso"))
        .args(["-report_el_torito", "plain"])
        .output()
        .expect("running xorriso");
    // xorriso prints the volume summary on stderr and the El Torito report on stdout.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&report.stderr),
        String::from_utf8_lossy(&report.stdout)
    );
    assert!(report.status.success(), "xorriso failed:\n{text}");
    let boot_imgs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("El Torito boot img"))
        .collect();
    assert!(
        boot_imgs.iter().any(|l| l.contains(" BIOS ")),
        "no BIOS entry:\n{text}"
    );
    assert!(
        boot_imgs.iter().any(|l| l.contains(" UEFI ")),
        "no UEFI entry:\n{text}"
    );
    assert!(text.contains("/isolinux/isolinux.bin"), "{text}");
    assert!(text.contains("/boot/efiboot.img"), "{text}");
    assert!(text.contains("Volume id    : 'RIVET'"), "{text}");
    assert!(
        text.contains("MBR isohybrid"),
        "not hybrid for USB:\n{text}"
    );
    assert!(text.contains("GPT"), "no GPT for UEFI from USB:\n{text}");
}

#[test]
fn missing_host_tools_are_named_with_their_packages() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["build", "--agent"])
        .arg(agent())
        .arg("--output")
        .arg(out_dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .expect("running rivet-image-builder");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing host tools"), "{err}");
    assert!(
        err.contains("xorriso (assembles the hybrid ISO), from Debian package xorriso"),
        "{err}"
    );
    assert!(
        err.contains("install them with: apt-get install apt dosfstools dpkg"),
        "{err}"
    );
}
