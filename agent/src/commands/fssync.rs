//! Flushing file systems and block-device buffers (IPA's `full_sync`), used by
//! `standby.sync` and before powering off or rebooting.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// The operations behind `full_sync`.
pub trait FsSync: Send + Sync {
    /// `sync(2)`.
    fn sync(&self) -> io::Result<()>;
    /// Writes `3` to `/proc/sys/vm/drop_caches`.
    fn drop_caches(&self) -> io::Result<()>;
    /// The block devices to flush (names under `/sys/block`).
    fn block_devices(&self) -> io::Result<Vec<String>>;
    /// `BLKFLSBUF` on `/dev/<name>`.
    fn flush_buffers(&self, device: &str) -> io::Result<()>;
}

// BLKFLSBUF = _IO(0x12, 97) from <linux/fs.h>.
nix::ioctl_none!(blkflsbuf, 0x12, 97);

/// The real machine, with configurable roots.
#[derive(Debug, Clone)]
pub struct HostFsSync {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
}

impl Default for HostFsSync {
    fn default() -> Self {
        HostFsSync {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
        }
    }
}

impl FsSync for HostFsSync {
    fn sync(&self) -> io::Result<()> {
        nix::unistd::sync();
        Ok(())
    }

    fn drop_caches(&self) -> io::Result<()> {
        let path = self.proc_root.join("sys/vm/drop_caches");
        std::fs::write(&path, b"3")
            .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
    }

    /// Every entry of `/sys/block` with media (size > 0).
    fn block_devices(&self) -> io::Result<Vec<String>> {
        let dir = self.sys_root.join("block");
        let mut devices = Vec::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", dir.display())))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = std::fs::read_to_string(entry.path().join("size"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if size > 0 {
                devices.push(name);
            }
        }
        devices.sort();
        Ok(devices)
    }

    fn flush_buffers(&self, device: &str) -> io::Result<()> {
        let path = self.dev_root.join(device);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
        // SAFETY: BLKFLSBUF takes no argument and the descriptor is open for the whole call.
        unsafe { blkflsbuf(file.as_raw_fd()) }
            .map(|_| ())
            .map_err(|e| io::Error::other(format!("BLKFLSBUF on {}: {e}", path.display())))
    }
}

/// Records what was asked; lists fixed devices; can fail `sync` or every flush.
#[derive(Debug, Default)]
pub struct FakeFsSync {
    pub devices: Vec<String>,
    pub fail_sync: bool,
    pub fail_flush: bool,
    pub calls: Mutex<Vec<String>>,
}

impl FakeFsSync {
    pub fn with_devices(devices: &[&str]) -> Self {
        FakeFsSync {
            devices: devices.iter().map(|d| d.to_string()).collect(),
            ..FakeFsSync::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        match self.calls.lock() {
            Ok(calls) => calls.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn record(&self, call: String) {
        match self.calls.lock() {
            Ok(mut calls) => calls.push(call),
            Err(poisoned) => poisoned.into_inner().push(call),
        }
    }
}

impl FsSync for FakeFsSync {
    fn sync(&self) -> io::Result<()> {
        self.record("sync".into());
        if self.fail_sync {
            return Err(io::Error::other("injected sync failure"));
        }
        Ok(())
    }

    fn drop_caches(&self) -> io::Result<()> {
        self.record("drop_caches".into());
        Ok(())
    }

    fn block_devices(&self) -> io::Result<Vec<String>> {
        Ok(self.devices.clone())
    }

    fn flush_buffers(&self, device: &str) -> io::Result<()> {
        self.record(format!("flush {device}"));
        if self.fail_flush {
            return Err(io::Error::other("injected flush failure"));
        }
        Ok(())
    }
}

/// IPA's `full_sync`: a failed `sync` is an error; failing to drop caches or flush a device
/// is only logged.
pub fn full_sync(fs: &dyn FsSync) -> Result<(), String> {
    tracing::debug!("flushing file system buffers");
    fs.sync()
        .map_err(|e| format!("Flushing file system buffers failed: {e}"))?;
    if let Err(e) = fs.drop_caches() {
        tracing::warn!(error = %e, "unable to tell the kernel to drop caches");
    }
    match fs.block_devices() {
        Ok(devices) => {
            for device in devices {
                if let Err(e) = fs.flush_buffers(&device) {
                    tracing::warn!(%device, error = %e, "cannot flush buffers of device");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list block devices to flush"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `HostFsSync` on fixture directories: no real disk is opened.
    fn fixture() -> (tempfile::TempDir, HostFsSync) {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, size) in [("sda", "2048"), ("sr0", "0"), ("nvme0n1", "4096\n")] {
            let block = dir.path().join("sys/block").join(name);
            std::fs::create_dir_all(&block).expect("mkdir");
            std::fs::write(block.join("size"), size).expect("write");
        }
        std::fs::create_dir_all(dir.path().join("proc/sys/vm")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("dev")).expect("mkdir");
        std::fs::write(dir.path().join("dev/sda"), "not a block device").expect("write");
        let fs = HostFsSync {
            proc_root: dir.path().join("proc"),
            sys_root: dir.path().join("sys"),
            dev_root: dir.path().join("dev"),
        };
        (dir, fs)
    }

    #[test]
    fn host_lists_disks_with_media_and_drops_caches() {
        let (dir, fs) = fixture();
        assert_eq!(fs.block_devices().expect("list"), ["nvme0n1", "sda"]);
        fs.drop_caches().expect("drop caches");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("proc/sys/vm/drop_caches")).expect("read"),
            "3"
        );
        let err = fs
            .flush_buffers("sda")
            .expect_err("a regular file has no BLKFLSBUF");
        assert!(err.to_string().contains("BLKFLSBUF on"), "{err}");
        let err = fs
            .flush_buffers("nvme0n1")
            .expect_err("no such device node");
        assert!(err.to_string().contains("opening"), "{err}");
    }

    #[test]
    fn full_sync_fails_only_when_sync_fails() {
        let flaky = FakeFsSync {
            fail_flush: true,
            ..FakeFsSync::with_devices(&["sda", "sdb"])
        };
        assert_eq!(full_sync(&flaky), Ok(()));
        assert_eq!(
            flaky.calls(),
            ["sync", "drop_caches", "flush sda", "flush sdb"]
        );
        let failing = FakeFsSync {
            fail_sync: true,
            ..FakeFsSync::with_devices(&["sda"])
        };
        let err = full_sync(&failing).expect_err("sync failed");
        assert!(
            err.starts_with("Flushing file system buffers failed"),
            "{err}"
        );
        assert_eq!(failing.calls(), ["sync"]);
    }
}
