//! Where an image is written: a block device, or a regular file in tests.
//!
//! [`Target`] is the small seam the writer needs; [`DiskFile`] is the real one. A block
//! device is opened `O_EXCL`, which the kernel refuses while the device (or a partition of
//! it) is mounted or held by RAID, device mapper or another exclusive opener.
//!
//! A block device is also opened a second time with `O_DIRECT`: writes whose buffer, offset
//! and length are [`DIRECT_ALIGN`]-aligned (the writer's 4 MiB buffers) go through it,
//! straight to the device without a copy into the page cache; other writes (the first MiB,
//! a last partial block) go through the page cache. `fdatasync` flushes the device's cache
//! for both.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
nix::ioctl_none!(blkrrpart, 0x12, 95);
nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

/// The operations image writing needs from a disk.
pub trait Target: Send + Sync {
    /// What to call it in messages (`/dev/sda`).
    fn name(&self) -> String;
    /// Size in bytes.
    fn size(&self) -> u64;
    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Makes `[offset, offset + len)` read as zeros (`BLKZEROOUT` on a device, a punched
    /// hole in a file), writing zeros where that is not available.
    fn zero(&self, offset: u64, len: u64) -> std::io::Result<()>;
    /// Everything written so far is on stable storage (`fdatasync`).
    fn sync(&self) -> std::io::Result<()>;
    /// Asks the kernel to read the partition table again (`BLKRRPART`); nothing for a file.
    fn reread_partitions(&self) -> std::io::Result<()>;
}

/// A block device or a regular file, opened for writing.
#[derive(Debug)]
pub struct DiskFile {
    path: PathBuf,
    file: File,
    size: u64,
    block_device: bool,
    /// The same device opened with `O_DIRECT` (when the kernel allows it).
    direct: Option<File>,
}

/// Alignment of buffer, offset and length for a write through `O_DIRECT` (covers logical
/// block sizes up to 4 KiB).
pub const DIRECT_ALIGN: usize = 4096;

/// Zeros written at once where a device or file cannot zero a range itself.
const ZERO_CHUNK: usize = 1 << 20;

impl DiskFile {
    /// Opens `path` read-write (exclusively for a block device).
    pub fn open(path: &Path) -> std::io::Result<DiskFile> {
        let with_path =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let metadata = std::fs::metadata(path).map_err(with_path)?;
        let block_device = metadata.file_type().is_block_device();
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if block_device {
            options.custom_flags(libc::O_EXCL | libc::O_CLOEXEC);
        } else {
            options.custom_flags(libc::O_CLOEXEC);
        }
        let file = options.open(path).map_err(with_path)?;
        let size = if block_device {
            let mut size = 0u64;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a
            // live local; the fd is an open block device.
            unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }
                .map_err(|e| with_path(std::io::Error::from(e)))?;
            size
        } else {
            metadata.len()
        };
        // Opened after the exclusive open above, which holds the device; O_EXCL again would
        // be refused by that very open.
        let direct = if block_device {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| {
                    tracing::info!(device = %path.display(), error = %e, "no O_DIRECT writes");
                })
                .ok()
        } else {
            None
        };
        Ok(DiskFile {
            path: path.to_path_buf(),
            file,
            size,
            block_device,
            direct,
        })
    }

    /// The open file, for partition-table edits.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn write_zeros(&self, mut offset: u64, len: u64) -> std::io::Result<()> {
        let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let end = offset + len;
        while offset < end {
            let n = (end - offset).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }
}

impl Target for DiskFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let aligned = |n: usize| n.is_multiple_of(DIRECT_ALIGN);
        if let Some(direct) = &self.direct {
            if aligned(offset as usize) && aligned(data.len()) && aligned(data.as_ptr() as usize) {
                match direct.write_all_at(data, offset) {
                    // A device with larger logical blocks: the page cache takes it.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    other => return other,
                }
            }
        }
        self.file.write_all_at(data, offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn zero(&self, offset: u64, len: u64) -> std::io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let offloaded = if self.block_device {
            let range = [offset, len];
            // SAFETY: BLKZEROOUT reads two u64 (start, length) through the pointer, which
            // points to a live local array.
            unsafe { blkzeroout(self.file.as_raw_fd(), &range) }.map(drop)
        } else {
            use nix::fcntl::{fallocate, FallocateFlags};
            fallocate(
                self.file.as_raw_fd(),
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                offset as i64,
                len as i64,
            )
        };
        match offloaded {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL) => {
                self.write_zeros(offset, len)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    fn reread_partitions(&self) -> std::io::Result<()> {
        if !self.block_device {
            return Ok(());
        }
        // SAFETY: BLKRRPART takes no argument; the fd is an open block device.
        unsafe { blkrrpart(self.file.as_raw_fd()) }
            .map(drop)
            .map_err(std::io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_target_zeroes_and_writes_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, vec![0xa5u8; 3 << 20]).unwrap();
        let disk = DiskFile::open(&path).unwrap();
        assert_eq!(disk.size(), 3 << 20);
        disk.zero(4096, 2 << 20).unwrap();
        disk.write_at(8192, b"rivet").unwrap();
        disk.sync().unwrap();
        disk.reread_partitions().unwrap();
        let content = std::fs::read(&path).unwrap();
        assert!(content[..4096].iter().all(|&b| b == 0xa5));
        assert!(content[4096..8192].iter().all(|&b| b == 0));
        assert_eq!(&content[8192..8197], b"rivet");
        assert!(content[8197..4096 + (2 << 20)].iter().all(|&b| b == 0));
        assert!(content[4096 + (2 << 20)..].iter().all(|&b| b == 0xa5));
        let mut back = [0u8; 5];
        disk.read_at(8192, &mut back).unwrap();
        assert_eq!(&back, b"rivet");
    }

    #[test]
    fn opening_a_missing_disk_names_it() {
        let err = DiskFile::open(Path::new("/nonexistent/rivet-disk")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rivet-disk"), "{err}");
    }
}

/// The real block-device path (`O_EXCL`, `BLKGETSIZE64`, `BLKZEROOUT`, `BLKRRPART`) on a
/// loop device over a temporary file; never on this machine's disks.
#[cfg(test)]
mod loop_tests {
    use std::process::Command;

    use super::*;
    use crate::image::testutil::*;

    /// A loop device, detached when dropped.
    struct LoopDevice(PathBuf);

    impl LoopDevice {
        fn attach(file: &Path) -> LoopDevice {
            let output = Command::new("losetup")
                .args(["--find", "--show", "--partscan", path_str(file)])
                .output()
                .expect("losetup (util-linux) is required by this test");
            assert!(
                output.status.success(),
                "losetup needs root and /dev/loop-control: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            LoopDevice(PathBuf::from(
                String::from_utf8_lossy(&output.stdout).trim(),
            ))
        }
    }

    impl Drop for LoopDevice {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }

    #[test]
    fn a_loop_device_takes_a_qcow2_image_like_qemu_img_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("source.raw");
        let mut source = content(6 * MIB, 21);
        // An MBR with one partition, for the partition table re-read.
        source[446 + 4] = 0x83;
        source[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        source[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        source[510] = 0x55;
        source[511] = 0xaa;
        std::fs::write(&raw, &source).unwrap();
        let qcow2 = dir.path().join("image.qcow2");
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            path_str(&raw),
            path_str(&qcow2),
        ]);
        let backing = disk(dir.path(), 16 * MIB, 0xee);
        let device = LoopDevice::attach(&backing);

        let held = DiskFile::open(&device.0).unwrap();
        assert!(held.block_device);
        assert!(held.direct.is_some(), "a loop device takes O_DIRECT writes");
        assert_eq!(held.size(), 16 * MIB as u64);
        // O_EXCL: a second exclusive opener is refused while the first holds it.
        let busy = DiskFile::open(&device.0).unwrap_err();
        assert_eq!(busy.kind(), std::io::ErrorKind::ResourceBusy, "{busy}");
        drop(held);

        write_to(
            &device.0,
            &[file_url(&qcow2)],
            &sha256_file(&qcow2),
            None,
            options(0),
        )
        .unwrap();
        let written = std::fs::read(&backing).unwrap();
        assert_eq!(&written[..source.len()], &source[..]);
        assert!(written[source.len()..15 * MIB].iter().all(|&b| b == 0xee));
        assert!(
            written[15 * MIB..].iter().all(|&b| b == 0),
            "BLKZEROOUT cleared the end"
        );
        // Whether a partition node appears depends on the kernel's partition parsers (not
        // all kernels this runs on have MBR support); the ioctl itself must succeed.
        DiskFile::open(&device.0)
            .unwrap()
            .reread_partitions()
            .unwrap();
    }
}
