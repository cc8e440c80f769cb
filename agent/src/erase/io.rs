//! Reading and writing a block device (or a regular file standing in for one): direct I/O
//! with aligned buffers, and the block ioctls the erase uses (`BLKGETSIZE64`, `BLKSSZGET`,
//! `BLKFLSBUF`, `BLKDISCARD`, `BLKSECDISCARD`, `BLKZEROOUT`, `BLKRRPART`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Memory alignment of I/O buffers: enough for `O_DIRECT` on any logical block size up to
/// 4 KiB.
pub const BUFFER_ALIGN: usize = 4096;

/// A zero-filled buffer whose start is aligned to [`BUFFER_ALIGN`].
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> Self {
        let storage = vec![0u8; len + BUFFER_ALIGN];
        let start = storage
            .as_ptr()
            .align_offset(BUFFER_ALIGN)
            .min(BUFFER_ALIGN);
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// What the erase does to one open device. The real one is [`DeviceFile`]; tests use
/// `FakeDisk` (erase/fake.rs).
pub trait BlockIo: Send {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Logical block size: every offset and length the erase uses is a multiple of it.
    fn logical_block_size(&self) -> u32;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes writes durable and drops cached pages of the device.
    fn sync(&mut self) -> io::Result<()>;
    /// `BLKSECDISCARD` (`secure`) or `BLKDISCARD` of a range.
    fn discard(&mut self, offset: u64, len: u64, secure: bool) -> io::Result<()>;
    /// `BLKZEROOUT` of a range: the kernel writes zeroes, offloaded when the device can.
    fn zero_out(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// `BLKRRPART`: the kernel rereads the partition table.
    fn reread_partitions(&mut self) -> io::Result<()>;
}

mod ioctls {
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
    nix::ioctl_none!(blkflsbuf, 0x12, 97);
    nix::ioctl_none!(blkrrpart, 0x12, 95);
    nix::ioctl_write_ptr_bad!(blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);
    nix::ioctl_write_ptr_bad!(blksecdiscard, nix::request_code_none!(0x12, 125), [u64; 2]);
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
}

/// A block device (or a regular file, for tests) opened for the erase. Block devices are
/// opened with `O_DIRECT`, so writes reach the device and do not linger in the page cache;
/// a file system that refuses `O_DIRECT` for a regular file gets buffered I/O plus fsync.
#[derive(Debug)]
pub struct DeviceFile {
    file: File,
    path: PathBuf,
    size: u64,
    logical_block_size: u32,
    is_block_device: bool,
}

fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl DeviceFile {
    /// Opens `path` for reading, and for writing when `write`.
    pub fn open(path: &Path, write: bool) -> io::Result<Self> {
        let open = |direct: bool| {
            let mut options = OpenOptions::new();
            options.read(true).write(write);
            let mut flags = libc::O_CLOEXEC;
            if direct {
                flags |= libc::O_DIRECT;
            }
            options.custom_flags(flags).open(path)
        };
        let file = match open(true) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => open(false),
            other => other,
        }
        .map_err(context(format!(
            "opening {} for {}",
            path.display(),
            if write { "writing" } else { "reading" }
        )))?;
        let meta = file.metadata().map_err(context(format!(
            "reading the metadata of {}",
            path.display()
        )))?;
        let is_block_device = meta.file_type().is_block_device();
        let (size, logical_block_size) = if is_block_device {
            let mut size = 0u64;
            // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which is valid.
            unsafe { ioctls::blkgetsize64(file.as_raw_fd(), &mut size) }
                .map_err(io::Error::from)
                .map_err(context(format!("BLKGETSIZE64 on {}", path.display())))?;
            let mut lbs: libc::c_int = 0;
            // SAFETY: BLKSSZGET writes one int to the pointer, which is valid.
            unsafe { ioctls::blksszget(file.as_raw_fd(), &mut lbs) }
                .map_err(io::Error::from)
                .map_err(context(format!("BLKSSZGET on {}", path.display())))?;
            (size, u32::try_from(lbs).unwrap_or(512).max(512))
        } else {
            (meta.len(), 512)
        };
        Ok(DeviceFile {
            file,
            path: path.to_owned(),
            size,
            logical_block_size,
            is_block_device,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open handle (NVMe and SG_IO passthrough go through it).
    pub fn into_file(self) -> File {
        self.file
    }

    fn range_ioctl(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        call: unsafe fn(i32, *const [u64; 2]) -> nix::Result<i32>,
    ) -> io::Result<()> {
        if !self.is_block_device {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{name} on {}: not a block device", self.path.display()),
            ));
        }
        let range = [offset, len];
        // SAFETY: the range ioctls read two u64 from the pointer, which points at `range`.
        unsafe { call(self.file.as_raw_fd(), &range) }
            .map(|_| ())
            .map_err(io::Error::from)
            .map_err(context(format!(
                "{name} of {len} bytes at {offset} on {}",
                self.path.display()
            )))
    }
}

impl BlockIo for DeviceFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn logical_block_size(&self) -> u32 {
        self.logical_block_size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(context(format!(
                "reading {} bytes at {offset} from {}",
                buf.len(),
                self.path.display()
            )))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset).map_err(context(format!(
            "writing {} bytes at {offset} to {}",
            buf.len(),
            self.path.display()
        )))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file
            .sync_data()
            .map_err(context(format!("flushing {}", self.path.display())))?;
        if self.is_block_device {
            // SAFETY: BLKFLSBUF takes no argument; the descriptor is open for the call.
            unsafe { ioctls::blkflsbuf(self.file.as_raw_fd()) }
                .map_err(io::Error::from)
                .map_err(context(format!("BLKFLSBUF on {}", self.path.display())))?;
        }
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64, secure: bool) -> io::Result<()> {
        if secure {
            self.range_ioctl("BLKSECDISCARD", offset, len, ioctls::blksecdiscard)
        } else {
            self.range_ioctl("BLKDISCARD", offset, len, ioctls::blkdiscard)
        }
    }

    fn zero_out(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.range_ioctl("BLKZEROOUT", offset, len, ioctls::blkzeroout)
    }

    fn reread_partitions(&mut self) -> io::Result<()> {
        if !self.is_block_device {
            return Ok(());
        }
        // A partition table that is in use (EBUSY) may become free a moment later.
        let mut last = None;
        for attempt in 0..5u32 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
            }
            // SAFETY: BLKRRPART takes no argument; the descriptor is open for the call.
            match unsafe { ioctls::blkrrpart(self.file.as_raw_fd()) } {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EBUSY) => last = Some(nix::errno::Errno::EBUSY),
                Err(other) => {
                    return Err(io::Error::from(other))
                        .map_err(context(format!("BLKRRPART on {}", self.path.display())))
                }
            }
        }
        Err(io::Error::from(last.unwrap_or(nix::errno::Errno::EBUSY))).map_err(context(format!(
            "BLKRRPART on {} (still busy after 5 attempts)",
            self.path.display()
        )))
    }
}

/// Rounds `value` down to a multiple of `align` (a power of two or any non-zero number).
pub fn align_down(value: u64, align: u64) -> u64 {
    value - value % align.max(1)
}

/// Rounds `value` up to a multiple of `align`.
pub fn align_up(value: u64, align: u64) -> u64 {
    align_down(value.saturating_add(align.max(1) - 1), align)
}

/// Reads `len` bytes at `offset` through an aligned buffer (any offset and length, as long as
/// the range lies inside the device). `None` when it does not.
pub fn read_bytes(io: &mut dyn BlockIo, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
    let end = offset.saturating_add(len as u64);
    if end > io.size() {
        return Ok(None);
    }
    let lbs = u64::from(io.logical_block_size());
    let start = align_down(offset, lbs);
    let stop = align_up(end, lbs).min(io.size());
    let mut buf = AlignedBuf::zeroed((stop - start) as usize);
    io.read_at(start, buf.as_mut_slice())?;
    let skip = (offset - start) as usize;
    Ok(Some(buf.as_slice()[skip..skip + len].to_vec()))
}
