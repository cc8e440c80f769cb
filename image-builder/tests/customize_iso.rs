//! customize on a full build: the real builder binary builds once (Debian's kernel through
//! apt, cached under target/tmp like tests/build_iso.rs; a signing key built in), then
//! customizes the ISO with a signed bundle and kernel arguments and checks that `--show`
//! reports it, that only the config area and the two kernel-argument fields changed, that
//! `-o -` writes the same bytes as `-o FILE`, that xorriso still reads the ISO and sees the
//! new arguments in both boot loader configs, and that bad requests are refused without
//! output. Booting customized ISOs is in tests/boot_iso.rs and the e2e tests.
//!
//! Needs the host tools of docs/image-builder.md and an apt index (`apt-get update`).

// Test helpers too: a panic is the failure report (see clippy.toml).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_rivet-image-builder");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running rivet-image-builder")
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "rivet-image-builder {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn failed(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn xorriso_extract(iso: &Path, path: &str, dest: &Path) -> String {
    let out = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", path])
        .arg(dest)
        .output()
        .expect("running xorriso");
    assert!(
        out.status.success(),
        "xorriso cannot extract {path}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(dest).unwrap();
    fs::remove_file(dest).unwrap();
    text
}

/// `offset` and `len` of `key` lines such as `config area: N bytes at offset M`.
fn area_of(show: &str) -> (u64, u64) {
    let line = show
        .lines()
        .find(|l| l.starts_with("config area: "))
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[6].parse().unwrap(), words[2].parse().unwrap())
}

#[test]
fn customize_a_built_iso_in_place_and_as_a_stream() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cache = tmp.join("rivet-image-builder-cache");
    let work = tempfile::tempdir_in(tmp).unwrap();
    let dir = work.path();
    let out_dir = dir.join("out");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    ok(&[
        "build",
        "--agent",
        &s(&fixture("exit0.elf")),
        "--cache-dir",
        &s(&cache),
        "--zstd-level",
        "3",
        "--append",
        "ipa-debug=1",
        "--config-area-size",
        "1M",
        "--signing-pubkey",
        &s(&fixture("bundle-signing.pub")),
        "--output",
        &s(&out_dir),
    ]);
    let base = out_dir.join("rivet.iso");
    let base_s = s(&base);
    // The ramdisk holds the public key the agent checks signatures with.
    let raw =
        zstd::decode_all(fs::read(out_dir.join("initramfs.img")).unwrap().as_slice()).unwrap();
    let pem = fs::read(fixture("bundle-signing.pub")).unwrap();
    let name = b"etc/rivet/bundle-signing.pub\0";
    assert!(
        raw.windows(name.len()).any(|w| w == name),
        "no signing key in the initramfs"
    );
    assert!(raw.windows(pem.len()).any(|w| w == pem.as_slice()));
    // Only the ISO is needed from here on.
    for entry in fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if path != base {
            fs::remove_file(path).unwrap();
        }
    }

    let shown = String::from_utf8(ok(&["customize", &base_s, "--show"]).stdout).unwrap();
    assert!(
        shown.contains("config area: 1048576 bytes at offset "),
        "{shown}"
    );
    assert!(shown.contains("bundles: signed only"), "{shown}");
    assert!(
        shown.contains("kernel arguments: console=tty0 console=ttyS0,115200n8 ipa-debug=1\n"),
        "{shown}"
    );
    assert!(shown.ends_with("bundle: none\n"), "{shown}");

    let settings = dir.join("node.conf");
    fs::write(
        &settings,
        "# node-1\nipa-api-url=https://192.0.2.10:6385\nipa-agent-token=tok3n\n",
    )
    .unwrap();
    let network = dir.join("network_data.json");
    fs::write(
        &network,
        r#"{"links": [{"id": "eno1", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}],
            "networks": [], "services": []}"#,
    )
    .unwrap();
    let extra = dir.join("motd");
    fs::write(&extra, "provisioned by rivet\n").unwrap();
    let custom = dir.join("node-1.iso");
    let customize_args = |output: &str| -> Vec<String> {
        [
            "customize",
            &base_s,
            "--config",
            &s(&settings),
            "--network-data",
            &s(&network),
            "--ca",
            &s(&fixture("test-ca.pem")),
            "--file",
            &format!("{}:/etc/motd", s(&extra)),
            "--sign-key",
            &s(&fixture("bundle-signing.pem")),
            "--set-karg",
            "ipa-debug=0",
            "--console",
            "ttyS1,9600",
            "-o",
            output,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args = customize_args(&s(&custom));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let shown = String::from_utf8(ok(&["customize", &s(&custom), "--show"]).stdout).unwrap();
    for expected in [
        "kernel arguments: ipa-debug=0 console=ttyS1,9600\n",
        "  as built: console=tty0 console=ttyS0,115200n8 ipa-debug=1\n",
        "signed (the signature is checked by the agent)",
        "    ipa-api-url=https://192.0.2.10:6385\n    ipa-agent-token=***\n",
        "links: eno1 (phy)",
        "ca.pem: ",
        "1 certificates",
        "file /etc/motd (0644, 21 bytes)",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
    }
    assert!(!shown.contains("tok3n"), "a secret is shown:\n{shown}");

    // Only the config area and the two kernel-argument fields differ from the base.
    let (area_offset, area_len) = area_of(&shown);
    let before = fs::read(&base).unwrap();
    let after = fs::read(&custom).unwrap();
    assert_eq!(before.len(), after.len());
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    let outside: Vec<usize> = changed
        .iter()
        .copied()
        .filter(|&i| !(area_offset..area_offset + area_len).contains(&(i as u64)))
        .collect();
    assert!(!outside.is_empty(), "the kernel arguments did not change");
    let first = outside[0];
    let second = outside
        .iter()
        .copied()
        .find(|&i| i >= first + 1024)
        .unwrap();
    assert!(
        outside
            .iter()
            .all(|&i| (first..first + 1024).contains(&i) || (second..second + 1024).contains(&i)),
        "bytes changed outside the area and the two kernel-argument fields"
    );

    // -o - streams the same bytes.
    let args = customize_args("-");
    let streamed = ok(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout;
    assert!(streamed == after, "stdout output differs from -o FILE");

    // xorriso still reads the ISO, and both boot loaders see the new arguments.
    let grub = xorriso_extract(&custom, "/boot/grub/grub.cfg", &dir.join("grub.cfg"));
    assert!(
        grub.contains("\tlinux /boot/vmlinuz ipa-debug=0 console=ttyS1,9600\n#"),
        "{grub}"
    );
    let isolinux = xorriso_extract(&custom, "/isolinux/isolinux.cfg", &dir.join("isolinux.cfg"));
    assert!(
        isolinux.contains("APPEND initrd=/boot/initramfs.img ipa-debug=0 console=ttyS1,9600\n#"),
        "{isolinux}"
    );
    let report = Command::new("xorriso")
        .arg("-indev")
        .arg(&custom)
        .args(["-report_el_torito", "plain"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success() && text.contains(" UEFI "), "{text}");

    // Refused without output: an unsigned bundle, another key, a bundle larger than 1 MiB.
    let refused = dir.join("refused.iso");
    let err = failed(&[
        "customize",
        &base_s,
        "--config",
        &s(&settings),
        "-o",
        &s(&refused),
    ]);
    assert!(err.contains("give --sign-key"), "{err}");
    let err = failed(&[
        "customize",
        &base_s,
        "--config",
        &s(&settings),
        "--sign-key",
        &s(&fixture("other-signing.pem")),
        "-o",
        &s(&refused),
    ]);
    assert!(
        err.contains("not the key this ISO's ramdisk trusts"),
        "{err}"
    );
    let big = dir.join("big");
    fs::write(&big, vec![0u8; 1 << 20]).unwrap();
    let err = failed(&[
        "customize",
        &base_s,
        "--file",
        &format!("{}:/opt/big", s(&big)),
        "--sign-key",
        &s(&fixture("bundle-signing.pem")),
        "-o",
        &s(&refused),
    ]);
    assert!(err.contains("config area holds 1048576"), "{err}");
    assert!(!refused.exists());

    // --reset gives the ISO as built back.
    let reset = dir.join("reset.iso");
    ok(&["customize", &s(&custom), "--reset", "-o", &s(&reset)]);
    assert!(
        fs::read(&reset).unwrap() == before,
        "--reset differs from the base"
    );
}
