//! The mke2fs the builder bundles runs with nothing but the bundled files: the real builder
//! binary builds around a small kernel tree (one generated module), the test unpacks
//! `initramfs.img` into an empty directory, `chroot`s into it with an empty environment and
//! runs `/usr/sbin/mke2fs -t <fs> -F -L ephemeral0` (the agent's command) on a regular file;
//! the host's `e2fsck -fn` and `blkid` then check the file system. A second build with
//! `--no-mke2fs` must leave every bundled file out.
//!
//! Needs root (chroot) and the builder's host tools (docs/image-builder.md), e2fsprogs and
//! util-linux (blkid) on the host.

// Test helpers too: a panic is the failure report (see clippy.toml).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::write::Object;
use object::{Architecture, BinaryFormat, Endianness, SectionKind};
use rivet_image_builder::cpio::read::{parse, Parsed};

const BIN: &str = env!("CARGO_BIN_EXE_rivet-image-builder");
const VERSION: &str = "6.1.0-rivet-test";

/// A kernel tree: `boot/vmlinuz-<version>` and one module with a `.modinfo` section.
fn kernel_tree(root: &Path) {
    let moddir = root.join(format!("lib/modules/{VERSION}"));
    fs::create_dir_all(moddir.join("kernel/fs/isofs")).unwrap();
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let modinfo = obj.add_section(vec![], b".modinfo".to_vec(), SectionKind::ReadOnlyData);
    obj.append_section_data(modinfo, b"name=isofs\0", 1);
    fs::write(
        moddir.join("kernel/fs/isofs/isofs.ko"),
        obj.write().unwrap(),
    )
    .unwrap();
    fs::write(moddir.join("modules.builtin"), "").unwrap();
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::write(
        root.join(format!("boot/vmlinuz-{VERSION}")),
        b"not a kernel",
    )
    .unwrap();
}

fn build(kernel: &Path, output: &Path, extra: &[&str]) -> Vec<Parsed> {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exit0.elf");
    let out = Command::new(BIN)
        .args(["build", "--agent"])
        .arg(agent)
        .arg("--kernel-dir")
        .arg(kernel)
        .args(["--zstd-level", "1", "--output"])
        .arg(output)
        .args(extra)
        .output()
        .expect("running rivet-image-builder");
    assert!(
        out.status.success(),
        "build failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let compressed = fs::read(output.join("initramfs.img")).unwrap();
    parse(&zstd::decode_all(compressed.as_slice()).unwrap()).unwrap()
}

/// Writes the archive's directories and regular files below `root` (device nodes are
/// left out: mke2fs on a regular file needs none).
fn unpack(entries: &[Parsed], root: &Path) {
    for e in entries {
        let path = root.join(&e.name);
        match e.mode & 0o170000 {
            0o040000 => fs::create_dir_all(&path).unwrap(),
            0o100000 => {
                fs::write(&path, &e.data).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(e.mode & 0o7777)).unwrap();
            }
            _ => {}
        }
    }
}

fn host_tool(tool: &str, args: &[&str], package: &str) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian package {package}) is required: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The effective user id (the second field of `Uid:` in /proc/self/status).
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("an effective uid in /proc/self/status")
}

#[test]
fn bundled_mke2fs_runs_chrooted_in_the_unpacked_initramfs_and_no_mke2fs_leaves_it_out() {
    assert!(
        effective_uid() == 0,
        "this test chroots into the unpacked initramfs: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("kernel");
    kernel_tree(&kernel);
    let entries = build(&kernel, &dir.path().join("out"), &[]);
    let root = dir.path().join("root");
    unpack(&entries, &root);
    assert!(root.join("usr/sbin/mke2fs").is_file());

    for fs_type in ["ext2", "ext3", "ext4"] {
        let image = root.join(format!("tmp/{fs_type}.img"));
        fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
        let inside = format!("/tmp/{fs_type}.img");
        let out = Command::new("/usr/sbin/chroot")
            .arg(&root)
            .args([
                "/usr/sbin/mke2fs",
                "-t",
                fs_type,
                "-F",
                "-L",
                "ephemeral0",
                &inside,
            ])
            .env_clear()
            .output()
            .expect("chroot (Debian package coreutils) is required");
        assert!(
            out.status.success(),
            "mke2fs -t {fs_type} in the unpacked initramfs failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = image.to_str().unwrap();
        host_tool("e2fsck", &["-fn", path], "e2fsprogs");
        let blkid = |tag: &str| {
            host_tool(
                "blkid",
                &["-p", "-o", "value", "-s", tag, path],
                "util-linux",
            )
        };
        assert_eq!(blkid("TYPE"), fs_type);
        assert_eq!(blkid("LABEL"), "ephemeral0");
    }

    let without = build(&kernel, &dir.path().join("out-no-mke2fs"), &["--no-mke2fs"]);
    let names: Vec<&str> = without.iter().map(|e| e.name.as_str()).collect();
    assert!(names.contains(&"init"));
    for bundled in [
        "usr/sbin/mke2fs",
        "etc/mke2fs.conf",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
    ] {
        assert!(
            entries.iter().any(|e| e.name == bundled),
            "{bundled} missing from the default build"
        );
        assert!(
            !names.contains(&bundled),
            "{bundled} in a --no-mke2fs build"
        );
    }
    let manifest = |out: &str| -> serde_json::Value {
        let text = fs::read_to_string(dir.path().join(out).join("manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let with = manifest("out");
    assert!(with["ramdisk"]["host_files"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("usr/sbin/mke2fs")));
    assert_eq!(
        manifest("out-no-mke2fs")["ramdisk"]["host_files"],
        serde_json::json!([])
    );
    let sizes: Vec<PathBuf> = ["out", "out-no-mke2fs"]
        .iter()
        .map(|o| dir.path().join(o).join("initramfs.img"))
        .collect();
    let len = |p: &PathBuf| fs::metadata(p).unwrap().len();
    assert!(len(&sizes[0]) > len(&sizes[1]));
}
