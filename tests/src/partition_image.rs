//! A partition image that really boots once the agent installed its GRUB: an ext4 root file
//! system assembled from this host's own files (no network, no package manager), with just
//! what `install_bootloader` runs in its chroot and what the deployed disk then boots.
//!
//! - GRUB's tools: `grub-install`, `grub-mkconfig` and the programs they run (`grub-probe`,
//!   `grub-mkimage`, `grub-mkrelpath`, `grub-editenv`, `grub-script-check`, `grub-file`;
//!   Debian's `grub-install` has the BIOS setup and the EFI variables built in), GRUB's modules for each requested platform (`/usr/lib/grub/i386-pc`
//!   from Debian's grub-pc-bin, `/usr/lib/grub/x86_64-efi` from grub-efi-amd64-bin),
//!   `/usr/share/grub`, `/etc/grub.d`;
//! - a `/bin/sh` and the utilities `grub-mkconfig` and its scripts call, each binary with
//!   its shared libraries (the closure `ldd` prints, the dynamic loader included);
//! - the given kernel as `/boot/vmlinuz-<version>` and no initrd (`10_linux` then puts the
//!   root partition's device name on the command line instead of its UUID, which nothing
//!   here needs: the check is the command line itself);
//! - `/etc/default/grub`: no menu delay, `console=ttyS0 panic=-1 <marker>` in
//!   `GRUB_CMDLINE_LINUX`. The marker on the booted kernel's command line proves that the
//!   `grub.cfg` the agent's `grub-mkconfig` wrote on the deployed disk was used.
//!
//! The host paths keep their places in the image (Debian 12 is merged-/usr: `/bin`, `/sbin`,
//! `/lib`, `/lib64` are symlinks into `/usr`, and so they are in the image).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

const MIB: u64 = 1 << 20;

/// The programs copied into the image: GRUB's, then what `grub-mkconfig`, its library and
/// `/etc/grub.d/{00_header,10_linux,40_custom,41_custom}` run.
const PROGRAMS: &[&str] = &[
    "grub-install",
    "grub-mkconfig",
    "grub-probe",
    "grub-mkimage",
    "grub-mkrelpath",
    "grub-editenv",
    "grub-script-check",
    "grub-file",
    "sh",
    "dash",
    "sed",
    "grep",
    "fgrep",
    "cat",
    "rm",
    "mkdir",
    "mv",
    "cp",
    "chmod",
    "ls",
    "basename",
    "dirname",
    "head",
    "tail",
    "sort",
    "uname",
    "readlink",
    "realpath",
    "tr",
    "wc",
    "cut",
    "stat",
    "id",
    "awk",
    "gettext",
    "touch",
    "sync",
];

/// The `/etc/grub.d` scripts the image keeps: the header, Linux entries and the custom
/// files (no os-prober, Xen or firmware entries, whose tools the image does not have).
const GRUB_D: &[&str] = &["00_header", "10_linux", "40_custom", "41_custom", "README"];

/// The top-level merged-/usr symlinks of a Debian 12 root.
const USR_LINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

/// What [`bootable_partition_image`] builds.
#[derive(Debug, Clone)]
pub struct PartitionImage {
    /// The ext4 file system image.
    pub path: PathBuf,
    /// Its file system UUID (what the conductor must get as `root_uuid_or_disk_id`).
    pub uuid: String,
}

/// Builds `<dir>/<name>`, an ext4 image of `mib` MiB holding a root file system as described
/// in the module documentation, with GRUB's modules for `platforms` (`i386-pc`,
/// `x86_64-efi`), `kernel` as `/boot/vmlinuz-<kernel_version>` and `marker` on GRUB's
/// kernel command line. The tree is assembled in `<dir>/<name>.root` and put into the file
/// system by `mkfs.ext4 -d` (nothing is mounted).
pub fn bootable_partition_image(
    dir: &Path,
    name: &str,
    mib: u64,
    kernel: &Path,
    kernel_version: &str,
    marker: &str,
    platforms: &[&str],
) -> Result<PartitionImage> {
    let root = dir.join(format!("{name}.root"));
    std::fs::create_dir_all(root.join("usr"))
        .with_context(|| format!("creating {}", root.display()))?;
    for (link, to) in USR_LINKS {
        std::fs::create_dir_all(root.join(to)).with_context(|| format!("creating /{to}"))?;
        std::os::unix::fs::symlink(to, root.join(link))
            .with_context(|| format!("linking /{link} to {to} in the image"))?;
    }
    for empty in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "boot/grub",
        "etc/default",
        // grub-install warns without it (no translations are copied).
        "usr/share/locale",
    ] {
        std::fs::create_dir_all(root.join(empty))
            .with_context(|| format!("creating /{empty} in the image"))?;
    }
    let mut binaries = Vec::new();
    for program in PROGRAMS {
        let found = find_program(program)?;
        copy_into(&root, &found, true)?;
        binaries.push(found);
    }
    let mut libraries = std::collections::BTreeSet::new();
    for binary in &binaries {
        libraries.extend(shared_libraries(binary)?);
    }
    for library in &libraries {
        copy_into(&root, library, true)?;
    }
    let mut trees: Vec<PathBuf> = vec![
        "/usr/share/grub".into(),
        "/usr/lib/grub/grub-mkconfig_lib".into(),
    ];
    for platform in platforms {
        let modules = Path::new("/usr/lib/grub").join(platform);
        ensure!(
            modules.join("modinfo.sh").is_file(),
            "GRUB's {platform} modules are not installed in {}: install Debian's {} \
             (ci/setup does)",
            modules.display(),
            match *platform {
                "i386-pc" => "grub-pc-bin",
                "x86_64-efi" => "grub-efi-amd64-bin",
                _ => "GRUB package for that platform",
            }
        );
        trees.push(modules);
    }
    for script in GRUB_D {
        trees.push(Path::new("/etc/grub.d").join(script));
    }
    for tree in &trees {
        copy_into(&root, tree, false)?;
    }
    let vmlinuz = root.join(format!("boot/vmlinuz-{kernel_version}"));
    std::fs::copy(kernel, &vmlinuz)
        .with_context(|| format!("copying {} to {}", kernel.display(), vmlinuz.display()))?;
    let default = root.join("etc/default/grub");
    std::fs::write(
        &default,
        format!(
            "GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_TIMEOUT_STYLE=hidden\n\
             GRUB_DISTRIBUTOR=rivet\nGRUB_TERMINAL=console\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
             GRUB_CMDLINE_LINUX=\"console=ttyS0 panic=-1 {marker}\"\n\
             GRUB_DISABLE_RECOVERY=true\nGRUB_DISABLE_OS_PROBER=true\n"
        ),
    )
    .with_context(|| format!("writing {}", default.display()))?;

    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(mib * MIB))
        .with_context(|| format!("creating {}", path.display()))?;
    let output = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rivet-root", "-d"])
        .arg(&root)
        .arg(&path)
        .output()
        .context("running mkfs.ext4 (e2fsprogs)")?;
    ensure!(
        output.status.success(),
        "mkfs.ext4 -d {} {}: {}",
        root.display(),
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    let uuid = super::deploy::fs_uuid(&path)?;
    Ok(PartitionImage { path, uuid })
}

/// The first `/usr/sbin`, `/usr/bin`, `/sbin` or `/bin` entry called `program`.
fn find_program(program: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{program} is not installed on this host: the partition image is built from \
                 the host's files (ci/setup installs grub-common, grub-pc-bin, \
                 grub-efi-amd64-bin; the rest is Debian's base system)"
            )
        })
}

/// The shared libraries `ldd` lists for `binary` (its whole closure, the dynamic loader
/// included); none for a static binary or a script.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (libc-bin)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // "not a dynamic executable": scripts (grub-mkconfig) and static programs.
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
        // "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)".
        let path = match line.split_once("=>") {
            Some((_, right)) => right.trim(),
            None => line.trim(),
        };
        let path = path.split(" (").next().unwrap_or_default().trim();
        if path == "not found" {
            bail!("ldd {}: a library is missing: {line}", binary.display());
        }
        if path.starts_with('/') {
            found.push(PathBuf::from(path));
        }
    }
    Ok(found)
}

/// Copies host path `from` to the same path under `root` (`cp --parents`): with
/// `dereference` the file's content even where `from` is a symlink, else as it is (trees
/// recursively, symlinks kept).
fn copy_into(root: &Path, from: &Path, dereference: bool) -> Result<()> {
    let mut command = Command::new("cp");
    command.arg("--parents").arg("--no-preserve=ownership");
    command.arg(if dereference { "-L" } else { "-a" });
    // From inside the tree: cp --parents fixes up the copied parents' attributes by their
    // relative names.
    let output = command
        .arg(from)
        .arg(".")
        .current_dir(root)
        .output()
        .context("running cp (coreutils)")?;
    ensure!(
        output.status.success(),
        "copying {} into the image tree {}: {}",
        from.display(),
        root.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `debugfs -R "stat <path>"` on `image`: whether `path` exists in it.
    fn exists_in(image: &Path, path: &str) -> bool {
        Command::new("debugfs")
            .args(["-R", &format!("stat {path}")])
            .arg(image)
            .output()
            .map(|o| {
                o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("not found")
            })
            .unwrap_or(false)
    }

    #[test]
    fn the_image_holds_grub_its_libraries_the_kernel_and_the_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("vmlinuz");
        std::fs::write(&kernel, b"not really a kernel").expect("kernel");
        let image = crate::or_panic(bootable_partition_image(
            dir.path(),
            "root.img",
            96,
            &kernel,
            "6.1.0-test",
            "the-marker=1",
            &["i386-pc"],
        ));
        assert_eq!(image.uuid.len(), 36, "{image:?}");
        for path in [
            "/usr/sbin/grub-install",
            "/usr/sbin/grub-mkconfig",
            "/usr/bin/grub-mkrelpath",
            "/usr/lib/grub/i386-pc/modinfo.sh",
            "/usr/share/grub/grub-mkconfig_lib",
            "/etc/grub.d/10_linux",
            "/usr/bin/sh",
            "/usr/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/boot/vmlinuz-6.1.0-test",
            "/etc/default/grub",
        ] {
            assert!(exists_in(&image.path, path), "{path} is not in the image");
        }
        assert!(!exists_in(&image.path, "/usr/lib/grub/x86_64-efi"));
        let output = Command::new("debugfs")
            .args(["-R", "cat /etc/default/grub"])
            .arg(&image.path)
            .output()
            .expect("debugfs");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("GRUB_CMDLINE_LINUX=\"console=ttyS0 panic=-1 the-marker=1\""),
            "{text}"
        );
    }
}
