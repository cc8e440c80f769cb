//! GRUB from the deployed image itself, as IPA's `_install_grub2`: the root partition is
//! mounted, `/dev`, `/proc` and `/run` bound into it and a sysfs mounted on its `/sys` (the
//! ESP on its `/boot/efi` in UEFI), then the image's own `grub-install <disk>` (or
//! `grub2-install` where the image has `/usr/sbin/grub2-install`) runs in a chroot (again
//! with `--removable` when there is an ESP, for the firmware's fallback path), then
//! `grub-mkconfig -o /boot/grub/grub.cfg` (`grub2-mkconfig -o /boot/grub2/grub.cfg`).
//! Everything is unmounted again, in reverse order, whatever happened.
//!
//! The machine access is the [`BootHost`] trait: [`super::chroot::SystemBootHost`] on a
//! machine, a recording fake in tests.

use std::fs::File;
use std::path::{Path, PathBuf};

use gptman::GPT;

use super::partition::fs::fs_uuid;
use super::partition::layout::partition_path;

/// A mount [`BootHost::mount`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A block device with a file system the kernel recognises (tried in turn).
    Device,
    /// A bind mount of a directory.
    Bind,
    /// A new sysfs.
    Sysfs,
}

/// What installing GRUB needs from the machine.
pub trait BootHost: Send + Sync {
    /// A new empty directory to mount the root partition on.
    fn make_workdir(&self) -> Result<PathBuf, String>;
    fn mount(&self, kind: MountKind, source: &Path, target: &Path) -> Result<(), String>;
    fn umount(&self, target: &Path) -> Result<(), String>;
    /// Runs `argv` with `root` as its root directory; its output on success.
    fn run_in_chroot(&self, root: &Path, argv: &[String]) -> Result<String, String>;
    /// Removes the (unmounted) work directory.
    fn remove_workdir(&self, dir: &Path);
}

/// The partition of `disk` (a device node, `disk_file` open on it) whose file system UUID or
/// PARTUUID is `uuid` (as IPA's `_get_partition` looks it up with lsblk): its device node.
pub fn find_partition(disk: &Path, disk_file: &File, uuid: &str) -> Option<PathBuf> {
    let wanted = uuid.to_ascii_lowercase();
    let matches = |number: u32, offset: u64, partuuid: String| {
        let fs = fs_uuid(disk_file, offset).map(|u| u.to_ascii_lowercase());
        (fs.as_deref() == Some(wanted.as_str()) || partuuid == wanted)
            .then(|| partition_path(disk, number))
    };
    let mut mbr = [0u8; 512];
    std::os::unix::fs::FileExt::read_exact_at(disk_file, &mut mbr, 0).ok()?;
    let msdos = mbr[510..512] == [0x55, 0xaa] && mbr[446 + 4] != 0xee;
    if !msdos {
        let mut reader = disk_file;
        let gpt = GPT::find_from(&mut reader).ok()?;
        return gpt.iter().filter(|(_, e)| e.is_used()).find_map(|(n, e)| {
            let partuuid = uuid::Uuid::from_bytes_le(e.unique_partition_guid).to_string();
            matches(n, e.starting_lba * gpt.sector_size, partuuid)
        });
    }
    let signature = u32::from_le_bytes([mbr[440], mbr[441], mbr[442], mbr[443]]);
    (0..4u32).find_map(|i| {
        let e = &mbr[446 + 16 * i as usize..446 + 16 * (i as usize + 1)];
        let start = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        if e[4] == 0 {
            return None;
        }
        matches(i + 1, start * 512, format!("{signature:08x}-{:02x}", i + 1))
    })
}

/// Where GRUB goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubTarget {
    /// The whole disk (`grub-install <disk>`).
    pub disk: PathBuf,
    /// The partition holding the image's root file system.
    pub root: PathBuf,
    /// The EFI system partition, mounted on `/boot/efi` (UEFI).
    pub esp: Option<PathBuf>,
}

/// Mounts made so far, unmounted in reverse order.
struct Mounts<'h> {
    host: &'h dyn BootHost,
    made: Vec<PathBuf>,
}

impl Mounts<'_> {
    fn mount(&mut self, kind: MountKind, source: &Path, target: &Path) -> Result<(), String> {
        self.host.mount(kind, source, target)?;
        self.made.push(target.to_path_buf());
        Ok(())
    }

    /// Unmounts everything; the first failure is returned.
    fn release(&mut self) -> Result<(), String> {
        let mut first = Ok(());
        while let Some(target) = self.made.pop() {
            if let Err(e) = self.host.umount(&target) {
                tracing::error!(target = %target.display(), error = %e, "unmounting");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Installs the image's GRUB on `target.disk` (see the module documentation).
pub fn install_grub(host: &dyn BootHost, target: &GrubTarget) -> Result<(), String> {
    let root = host.make_workdir()?;
    let mut mounts = Mounts {
        host,
        made: Vec::new(),
    };
    let outcome = with_mounts(&mut mounts, &root, target);
    let released = mounts.release();
    if released.is_ok() {
        host.remove_workdir(&root);
    }
    outcome?;
    released.map_err(|e| format!("GRUB was installed but unmounting failed: {e}"))
}

fn with_mounts(mounts: &mut Mounts<'_>, root: &Path, target: &GrubTarget) -> Result<(), String> {
    let inside = |p: &str| root.join(p.trim_start_matches('/'));
    mounts.mount(MountKind::Device, &target.root, root)?;
    // A minimal image may lack the mount points (IPA's mount would then fail).
    let mount_point = |dir: &str| {
        let at = inside(dir);
        std::fs::create_dir_all(&at)
            .map(|()| at)
            .map_err(|e| format!("creating {dir} in the image: {e}"))
    };
    for dir in ["/dev", "/proc", "/run"] {
        mounts.mount(MountKind::Bind, Path::new(dir), &mount_point(dir)?)?;
    }
    mounts.mount(MountKind::Sysfs, Path::new("none"), &mount_point("/sys")?)?;
    if let Some(esp) = &target.esp {
        let at = inside("/boot/efi");
        std::fs::create_dir_all(&at).map_err(|e| format!("creating {}: {e}", at.display()))?;
        mounts.mount(MountKind::Device, esp, &at)?;
    }
    let grub2 = inside("/usr/sbin/grub2-install").exists();
    let bin = if grub2 { "grub2" } else { "grub" };
    let has_install = ["usr/sbin", "usr/bin", "sbin", "bin"]
        .iter()
        .any(|dir| root.join(dir).join(format!("{bin}-install")).exists());
    if !has_install {
        return Err(format!(
            "the image on {} has neither grub-install nor grub2-install: it cannot be made \
             bootable by GRUB",
            target.root.display()
        ));
    }
    let disk = target.disk.display().to_string();
    let host = mounts.host;
    let run = |argv: Vec<String>| {
        let command = argv.join(" ");
        tracing::info!(%command, "running in the image's chroot");
        let output = host
            .run_in_chroot(root, &argv)
            .map_err(|e| format!("installing GRUB on {disk}: {e}"))?;
        // What GRUB says on success (platform, warnings) is worth keeping in the log.
        tracing::info!(%command, output = output.trim(), "ran in the image's chroot");
        Ok::<(), String>(())
    };
    run(vec![format!("{bin}-install"), disk.clone()])?;
    if target.esp.is_some() {
        run(vec![
            format!("{bin}-install"),
            disk.clone(),
            "--removable".into(),
        ])?;
    }
    run(vec![
        format!("{bin}-mkconfig"),
        "-o".into(),
        format!("/boot/{bin}/grub.cfg"),
    ])?;
    tracing::info!(device = %disk, "GRUB installed");
    Ok(())
}

/// A fake [`BootHost`] (tests, in-process replays): records mounts and commands as text
/// lines, mounting and running nothing; the "mounted" root is the directory given, prepared
/// by the test. `fail_on`: a call whose line contains it fails.
pub struct FakeBootHost {
    root: PathBuf,
    log: std::sync::Mutex<Vec<String>>,
    fail_on: Option<&'static str>,
}

impl FakeBootHost {
    pub fn new(root: &Path, fail_on: Option<&'static str>) -> FakeBootHost {
        FakeBootHost {
            root: root.to_path_buf(),
            log: std::sync::Mutex::new(Vec::new()),
            fail_on,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, line: String) -> Result<(), String> {
        let fail = self.fail_on.is_some_and(|f| line.contains(f));
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.clone());
        if fail {
            Err(format!("{line}: exit status 1"))
        } else {
            Ok(())
        }
    }

    fn rel(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(rel) => format!("ROOT/{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }
}

impl BootHost for FakeBootHost {
    fn make_workdir(&self) -> Result<PathBuf, String> {
        Ok(self.root.clone())
    }

    fn mount(&self, kind: MountKind, source: &Path, target: &Path) -> Result<(), String> {
        self.note(format!(
            "mount {kind:?} {} {}",
            source.display(),
            self.rel(target)
        ))
    }

    fn umount(&self, target: &Path) -> Result<(), String> {
        self.note(format!("umount {}", self.rel(target)))
    }

    fn run_in_chroot(&self, root: &Path, argv: &[String]) -> Result<String, String> {
        self.note(format!("chroot {} {}", self.rel(root), argv.join(" ")))
            .map(|()| String::new())
    }

    fn remove_workdir(&self, _dir: &Path) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push("rmdir".into());
    }
}

#[cfg(test)]
#[path = "grub_tests.rs"]
mod tests;
