//! The ramdisk's API filesystems (proc, sys, dev, run, tmp) and, at shutdown, what to unmount.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

/// One filesystem to mount at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
    /// Optional mounts (efivarfs on BIOS machines) may fail without a warning.
    pub optional: bool,
}

/// The boot mounts, in order. `/dev` comes before `/dev/pts`; `/sys` before efivarfs.
pub fn boot_mounts() -> Vec<MountSpec> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let spec = |source, target, fstype, flags, data, optional| MountSpec {
        source,
        target,
        fstype,
        flags,
        data,
        optional,
    };
    vec![
        spec("proc", "/proc", "proc", nosuid_nodev_noexec, None, false),
        spec("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, None, false),
        spec(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
            false,
        ),
        spec(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0620,ptmxmode=0666"),
            false,
        ),
        spec(
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
            false,
        ),
        spec(
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
            false,
        ),
        spec(
            "efivarfs",
            "/sys/firmware/efi/efivars",
            "efivarfs",
            nosuid_nodev_noexec,
            None,
            true,
        ),
    ]
}

/// The system calls mounting needs, so the sequence is tested with a fake.
pub trait MountOps {
    /// Contents of `/proc/self/mountinfo` (fails before /proc is mounted).
    fn mountinfo(&self) -> std::io::Result<String>;
    fn create_dir(&self, path: &Path) -> std::io::Result<()>;
    fn mount(&self, spec: &MountSpec) -> Result<(), Errno>;
}

/// What happened to one boot mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOutcome {
    Mounted,
    AlreadyMounted,
    /// An optional mount that does not apply here (no EFI, no efivarfs in the kernel).
    NotApplicable(String),
    Failed(String),
}

/// Mounts every spec not mounted yet. Already-mounted targets (found in mountinfo, or
/// EBUSY) are left alone: mounting a tmpfs again would hide what is on the old one.
pub fn mount_all(ops: &dyn MountOps, specs: &[MountSpec]) -> Vec<(MountSpec, MountOutcome)> {
    let mut results = Vec::new();
    for spec in specs {
        let mounted = ops
            .mountinfo()
            .map(|info| {
                parse_mountinfo(&info)
                    .iter()
                    .any(|m| m.target == Path::new(spec.target))
            })
            .unwrap_or(false);
        let outcome = if mounted {
            MountOutcome::AlreadyMounted
        } else {
            mount_one(ops, spec)
        };
        results.push((spec.clone(), outcome));
    }
    results
}

fn mount_one(ops: &dyn MountOps, spec: &MountSpec) -> MountOutcome {
    let target = Path::new(spec.target);
    if spec.optional && !target.parent().is_some_and(Path::exists) {
        return MountOutcome::NotApplicable(format!("{} does not exist", spec.target));
    }
    if let Err(e) = ops.create_dir(target) {
        if spec.optional {
            return MountOutcome::NotApplicable(format!("creating {}: {e}", spec.target));
        }
        return MountOutcome::Failed(format!("creating {}: {e}", spec.target));
    }
    match ops.mount(spec) {
        Ok(()) => MountOutcome::Mounted,
        Err(Errno::EBUSY) => MountOutcome::AlreadyMounted,
        Err(e) if spec.optional => MountOutcome::NotApplicable(format!("{e}")),
        Err(e) => MountOutcome::Failed(format!(
            "mounting {} ({}) on {}: {e}",
            spec.source, spec.fstype, spec.target
        )),
    }
}

/// The real system calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealMountOps;

impl MountOps for RealMountOps {
    fn mountinfo(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn mount(&self, spec: &MountSpec) -> Result<(), Errno> {
        nix::mount::mount(
            Some(spec.source),
            spec.target,
            Some(spec.fstype),
            spec.flags,
            spec.data,
        )
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Parses mountinfo (proc(5)); mount points have `\040`-style octal escapes.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let target = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let source = right.next().unwrap_or("none");
            Some(MountEntry {
                target: PathBuf::from(unescape(target)),
                fstype: fstype.to_string(),
                source: unescape(source),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Filesystems with no backing store: nothing to flush, left mounted at shutdown.
const VIRTUAL_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "securityfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// What to unmount before powering off, innermost first: every mount with a backing store
/// (disks, ISOs, NFS) except `/` itself.
pub fn unmount_plan(mountinfo: &str) -> Vec<MountEntry> {
    let mut plan: Vec<MountEntry> = parse_mountinfo(mountinfo)
        .into_iter()
        .filter(|m| m.target != Path::new("/") && !VIRTUAL_FS.contains(&m.fstype.as_str()))
        .collect();
    plan.reverse();
    plan
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const MOUNTINFO: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
24 1 0:5 / /dev rw,nosuid,relatime - devtmpfs devtmpfs rw,size=1000k,mode=755
30 1 8:1 / /mnt/config\\0402 ro,relatime - iso9660 /dev/sr0 ro
31 1 259:2 / /mnt/root rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
32 31 259:1 / /mnt/root/boot/efi rw,relatime - vfat /dev/nvme0n1p1 rw
33 1 0:30 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
";

    #[test]
    fn parses_mountinfo_with_escapes() {
        let entries = parse_mountinfo(MOUNTINFO);
        assert_eq!(entries.len(), 8);
        assert_eq!(entries[4].target, Path::new("/mnt/config 2"));
        assert_eq!(entries[4].fstype, "iso9660");
        assert_eq!(entries[4].source, "/dev/sr0");
    }

    #[test]
    fn unmount_plan_is_innermost_first_and_skips_virtual() {
        let plan: Vec<PathBuf> = unmount_plan(MOUNTINFO)
            .into_iter()
            .map(|m| m.target)
            .collect();
        assert_eq!(
            plan,
            [
                PathBuf::from("/mnt/root/boot/efi"),
                PathBuf::from("/mnt/root"),
                PathBuf::from("/mnt/config 2")
            ]
        );
    }

    /// Pretends to be the kernel: `mounted` is what mountinfo shows.
    struct FakeMountOps {
        mounted: RefCell<Vec<&'static str>>,
        proc_mounted: RefCell<bool>,
        fail: Vec<(&'static str, Errno)>,
        calls: RefCell<Vec<&'static str>>,
    }

    impl MountOps for FakeMountOps {
        fn mountinfo(&self) -> std::io::Result<String> {
            if !*self.proc_mounted.borrow() {
                return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
            }
            Ok(self
                .mounted
                .borrow()
                .iter()
                .map(|t| format!("1 1 0:1 / {t} rw - fake fake rw\n"))
                .collect())
        }
        fn create_dir(&self, _path: &Path) -> std::io::Result<()> {
            Ok(())
        }
        fn mount(&self, spec: &MountSpec) -> Result<(), Errno> {
            self.calls.borrow_mut().push(spec.target);
            if let Some((_, e)) = self.fail.iter().find(|(t, _)| *t == spec.target) {
                return Err(*e);
            }
            if spec.target == "/proc" {
                *self.proc_mounted.borrow_mut() = true;
            }
            self.mounted.borrow_mut().push(spec.target);
            Ok(())
        }
    }

    #[test]
    fn mounts_what_is_missing_and_tolerates_busy() {
        let ops = FakeMountOps {
            mounted: RefCell::new(vec!["/run"]),
            proc_mounted: RefCell::new(false),
            fail: vec![("/sys", Errno::EBUSY), ("/tmp", Errno::ENOMEM)],
            calls: RefCell::new(Vec::new()),
        };
        let specs: Vec<MountSpec> = boot_mounts().into_iter().filter(|s| !s.optional).collect();
        let results = mount_all(&ops, &specs);
        let outcomes: Vec<(&str, &MountOutcome)> =
            results.iter().map(|(s, o)| (s.target, o)).collect();
        assert_eq!(outcomes[0], ("/proc", &MountOutcome::Mounted));
        assert_eq!(outcomes[1], ("/sys", &MountOutcome::AlreadyMounted));
        assert_eq!(outcomes[2], ("/dev", &MountOutcome::Mounted));
        assert_eq!(outcomes[4], ("/run", &MountOutcome::AlreadyMounted));
        assert!(
            matches!(outcomes[5], ("/tmp", MountOutcome::Failed(m)) if m.contains("ENOMEM")),
            "{outcomes:?}"
        );
        // /run was seen in mountinfo and not mounted over.
        assert!(!ops.calls.borrow().contains(&"/run"));
    }
}
