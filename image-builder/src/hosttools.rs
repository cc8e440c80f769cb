//! The host programs and files the builder uses, each with the Debian package that ships
//! it, checked before any work starts; and running them with errors that say what failed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A program (looked up in PATH) or an absolute file the builder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub what: &'static str,
    pub package: &'static str,
    pub why: &'static str,
}

pub const fn req(what: &'static str, package: &'static str, why: &'static str) -> Requirement {
    Requirement { what, package, why }
}

pub const ISOHDPFX: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
pub const GRUB_EFI_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// Needed for every build.
pub const ALWAYS: &[Requirement] = &[
    req("xorriso", "xorriso", "assembles the hybrid ISO"),
    req("grub-mkimage", "grub-common", "builds BOOTX64.EFI"),
    req(
        GRUB_EFI_DIR,
        "grub-efi-amd64-bin",
        "GRUB's x86_64-efi modules",
    ),
    req(ISOLINUX_BIN, "isolinux", "BIOS boot from CD"),
    req(ISOHDPFX, "isolinux", "hybrid MBR for BIOS boot from USB"),
    req(LDLINUX_C32, "syslinux-common", "isolinux's core module"),
    req("mkfs.vfat", "dosfstools", "creates the ESP image"),
    req("mmd", "mtools", "makes directories in the ESP image"),
    req("mcopy", "mtools", "copies files into the ESP image"),
];
/// Needed to unpack a kernel package.
pub const FOR_DEB: &[Requirement] = &[req("dpkg-deb", "dpkg", "unpacks the kernel .deb")];
/// Needed to fetch the kernel package.
pub const FOR_APT: &[Requirement] = &[
    req(
        "apt-cache",
        "apt",
        "finds the kernel package and its checksum",
    ),
    req("apt-get", "apt", "downloads the kernel package"),
];

/// Finds `program` in PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn present(r: &Requirement) -> bool {
    if r.what.starts_with('/') {
        Path::new(r.what).exists()
    } else {
        find_program(r.what).is_some()
    }
}

/// Fails naming every missing requirement and the packages to install.
pub fn check(sets: &[&[Requirement]]) -> Result<()> {
    let missing: Vec<&Requirement> = sets
        .iter()
        .flat_map(|s| s.iter())
        .filter(|r| !present(r))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|r| r.package).collect();
    packages.sort_unstable();
    packages.dedup();
    let lines: Vec<String> = missing
        .iter()
        .map(|r| {
            format!(
                "  {} ({}), from Debian package {}",
                r.what, r.why, r.package
            )
        })
        .collect();
    bail!(
        "missing host tools:\n{}\ninstall them with: apt-get install {}",
        lines.join("\n"),
        packages.join(" ")
    )
}

/// Runs `cmd`, failing with its command line, exit status and stderr. Returns stdout.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let shown = describe(cmd);
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{shown} failed ({}):\n{}", out.status, tail.join("\n"));
    }
    Ok(out.stdout)
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .map(|a: &OsStr| a.to_string_lossy().into_owned()),
    );
    format!("`{}`", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_tools_and_their_packages() {
        let sets: &[&[Requirement]] = &[&[
            req("sh", "dash", "present"),
            req("rivet-no-such-tool", "rivet-pkg-b", "test"),
            req("/nonexistent/rivet/file", "rivet-pkg-a", "test"),
            req("rivet-no-such-tool-2", "rivet-pkg-b", "test"),
        ]];
        let err = check(sets).unwrap_err().to_string();
        assert!(
            err.contains("rivet-no-such-tool (test), from Debian package rivet-pkg-b"),
            "{err}"
        );
        assert!(
            err.ends_with("install them with: apt-get install rivet-pkg-a rivet-pkg-b"),
            "{err}"
        );
        assert!(!err.contains("dash"), "{err}");
        assert!(check(&[&[req("sh", "dash", "present")]]).is_ok());
    }

    #[test]
    fn run_reports_the_command_and_its_stderr() {
        let out = run(Command::new("sh").args(["-c", "echo hi"])).unwrap();
        assert_eq!(out, b"hi\n");
        let err = run(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])).unwrap_err();
        let err = err.to_string();
        assert!(
            err.starts_with("`sh -c echo broken >&2; exit 3` failed (exit status: 3)"),
            "{err}"
        );
        assert!(err.ends_with("broken"), "{err}");
    }
}
