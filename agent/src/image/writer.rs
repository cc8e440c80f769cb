//! Writing an image to a [`Target`] so that a failed write never looks deployed.
//!
//! - On the first write the disk's first and last MiB are cleared (old partition tables, the
//!   protective MBR and both GPT headers), so an interrupted write cannot boot as the previous
//!   deployment either.
//! - The image's own first MiB (MBR, GPT header and entries, boot sector) is held back in
//!   memory and written only by [`DiskWriter::finish`], which the caller calls once the whole
//!   image has been verified; everything else is flushed to stable storage before it.
//! - On failure [`wipe`] clears the first and last MiB again.
//! - Writes are coalesced into 4 MiB buffers written by a worker thread (bounded queue), so
//!   decoding and disk I/O overlap. The worker hands written buffers back for reuse, and
//!   [`DiskWriter::write_from`] reads a stream straight into them (no intermediate copy). All-zero 64 KiB blocks are not written: they are zeroed
//!   with `BLKZEROOUT` (fast on devices that offload it), or skipped entirely when the
//!   device is known to read zeros already (after a verified erase).

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::target::Target;
use buffer::AlignedBuf;

mod buffer;

/// The part of the disk held back until the image is verified.
pub const HOLD_BACK: u64 = 1 << 20;
/// Size of coalesced writes.
const BUFFER: usize = 4 << 20;
/// Granularity of zero detection.
const ZERO_BLOCK: usize = 64 << 10;
/// Buffers queued for the worker at most (bounds memory to `(QUEUE + 2) * BUFFER`).
const QUEUE: usize = 4;

/// Why writing failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the image needs {needed} bytes but {device} has only {size}")]
    TooLarge {
        device: String,
        needed: u64,
        size: u64,
    },
    #[error("{action} {device} at byte {offset}: {source}")]
    Io {
        action: &'static str,
        device: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("the disk writer thread stopped unexpectedly")]
    WorkerGone,
}

/// Why [`DiskWriter::write_from`] stopped.
#[derive(Debug)]
pub enum FillError {
    /// Reading the stream failed.
    Read(std::io::Error),
    Write(WriteError),
}

impl From<WriteError> for FillError {
    fn from(e: WriteError) -> Self {
        FillError::Write(e)
    }
}

/// What the worker does, in order.
enum Job {
    /// Write `data`, whose blocks listed as zero are zeroed (or skipped) instead.
    Write {
        offset: u64,
        data: AlignedBuf,
        segments: Vec<(usize, usize, bool)>,
    },
    Zero {
        offset: u64,
        len: u64,
    },
}

/// Counters of what reached the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub written: u64,
    pub zeroed: u64,
    pub skipped: u64,
}

/// Writes one image (see the module docs).
pub struct DiskWriter {
    target: Arc<dyn Target>,
    size: u64,
    hold: Vec<u8>,
    known_zero: bool,
    pending_offset: u64,
    /// The buffer being filled, `pending_len` bytes of it used.
    pending: Option<AlignedBuf>,
    pending_len: usize,
    jobs: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<Result<WriteStats, WriteError>>>,
    spare: Receiver<AlignedBuf>,
}

fn io_error(
    action: &'static str,
    target: &dyn Target,
    offset: u64,
) -> impl FnOnce(std::io::Error) -> WriteError {
    let device = target.name();
    move |source| WriteError::Io {
        action,
        device,
        offset,
        source,
    }
}

/// Clears the first and last [`HOLD_BACK`] bytes of `target` and syncs.
pub fn wipe(target: &dyn Target) -> Result<(), WriteError> {
    let size = target.size();
    let head = HOLD_BACK.min(size);
    target
        .zero(0, head)
        .map_err(io_error("clearing the partition table of", target, 0))?;
    let tail = size.saturating_sub(HOLD_BACK).max(head);
    target
        .zero(tail, size - tail)
        .map_err(io_error("clearing the backup GPT of", target, tail))?;
    target.sync().map_err(io_error("flushing", target, 0))
}

impl DiskWriter {
    /// Clears the disk's first and last MiB and starts the worker. `known_zero`: the whole
    /// device reads zeros now (zero blocks are then skipped).
    pub fn begin(target: Arc<dyn Target>, known_zero: bool) -> Result<DiskWriter, WriteError> {
        wipe(target.as_ref())?;
        let size = target.size();
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let (give_back, spare) = sync_channel::<AlignedBuf>(QUEUE + 1);
        let worker_target = target.clone();
        let worker = std::thread::Builder::new()
            .name("image-writer".into())
            .spawn(move || work(worker_target.as_ref(), queue, give_back, known_zero))
            .map_err(|source| WriteError::Io {
                action: "starting a writer thread for",
                device: target.name(),
                offset: 0,
                source,
            })?;
        Ok(DiskWriter {
            hold: vec![0; HOLD_BACK.min(size) as usize],
            target,
            size,
            known_zero,
            pending_offset: 0,
            pending: None,
            pending_len: 0,
            jobs: Some(jobs),
            worker: Some(worker),
            spare,
        })
    }

    fn check_fits(&self, offset: u64, len: u64) -> Result<(), WriteError> {
        let end = offset.saturating_add(len);
        if end > self.size {
            return Err(WriteError::TooLarge {
                device: self.target.name(),
                needed: end,
                size: self.size,
            });
        }
        Ok(())
    }

    /// Writes `data` at `offset` of the disk.
    pub fn write(&mut self, offset: u64, mut data: &[u8]) -> Result<(), WriteError> {
        self.check_fits(offset, data.len() as u64)?;
        let mut offset = offset;
        if offset < HOLD_BACK {
            let held = ((HOLD_BACK - offset) as usize).min(data.len());
            self.hold[offset as usize..offset as usize + held].copy_from_slice(&data[..held]);
            data = &data[held..];
            offset += held as u64;
        }
        while !data.is_empty() {
            let room = self.room_at(offset)?;
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            data = &data[n..];
            offset += n as u64;
            self.filled(n)?;
        }
        Ok(())
    }

    /// Writes everything `reader` yields, from `offset` of the disk on, reading it straight
    /// into the held-back MiB and the write buffers. Returns the offset after the last byte.
    pub fn write_from(&mut self, offset: u64, reader: &mut dyn Read) -> Result<u64, FillError> {
        let mut offset = offset;
        while offset < self.hold.len() as u64 {
            let n = read_some(reader, &mut self.hold[offset as usize..])?;
            if n == 0 {
                return Ok(offset);
            }
            offset += n as u64;
        }
        loop {
            if offset >= self.size {
                // Only an empty rest of the stream fits.
                let mut probe = [0u8; 1];
                if read_some(reader, &mut probe)? == 0 {
                    return Ok(offset);
                }
                self.check_fits(offset, 1)?;
            }
            let limit = (self.size - offset).min(BUFFER as u64) as usize;
            let room = self.room_at(offset)?;
            let end = room.len().min(limit);
            let n = read_some(reader, &mut room[..end])?;
            if n == 0 {
                return Ok(offset);
            }
            offset += n as u64;
            self.filled(n)?;
        }
    }

    /// The free part of the write buffer, which continues at `offset` (a buffer that
    /// does not is sent first).
    fn room_at(&mut self, offset: u64) -> Result<&mut [u8], WriteError> {
        if self.pending_len > 0 && self.pending_offset + self.pending_len as u64 != offset {
            self.flush_pending()?;
        }
        if self.pending_len == 0 {
            self.pending_offset = offset;
        }
        let used = self.pending_len;
        let buf = match self.pending.take() {
            Some(buf) => buf,
            None => self
                .spare
                .try_recv()
                .unwrap_or_else(|_| AlignedBuf::new(BUFFER)),
        };
        Ok(&mut self.pending.insert(buf)[used..])
    }

    /// `n` more bytes of the write buffer are used; a full one is sent.
    fn filled(&mut self, n: usize) -> Result<(), WriteError> {
        self.pending_len += n;
        if self.pending_len == BUFFER {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Makes `[offset, offset + len)` of the disk read as zeros.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<(), WriteError> {
        self.check_fits(offset, len)?;
        let (mut offset, mut len) = (offset, len);
        if offset < HOLD_BACK {
            let held = (HOLD_BACK - offset).min(len);
            self.hold[offset as usize..(offset + held) as usize].fill(0);
            offset += held;
            len -= held;
        }
        if len == 0 || self.known_zero {
            return Ok(());
        }
        self.flush_pending()?;
        self.send(Job::Zero { offset, len })
    }

    fn send(&mut self, job: Job) -> Result<(), WriteError> {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The worker stopped: its error says why.
            Err(self.join().err().unwrap_or(WriteError::WorkerGone))
        }
    }

    fn flush_pending(&mut self) -> Result<(), WriteError> {
        if self.pending_len == 0 {
            return Ok(());
        }
        let len = std::mem::take(&mut self.pending_len);
        let Some(data) = self.pending.take() else {
            return Ok(());
        };
        let segments = zero_segments(&data[..len]);
        let offset = self.pending_offset;
        self.send(Job::Write {
            offset,
            data,
            segments,
        })
    }

    fn join(&mut self) -> Result<WriteStats, WriteError> {
        self.jobs = None;
        match self.worker.take() {
            Some(worker) => worker.join().map_err(|_| WriteError::WorkerGone)?,
            None => Err(WriteError::WorkerGone),
        }
    }

    /// Starts over for another attempt: waits for queued writes, forgets the held-back MiB
    /// and no longer trusts the device to read zeros (the failed attempt wrote data).
    pub fn restart(mut self) -> Result<DiskWriter, WriteError> {
        self.pending_len = 0;
        self.join()?;
        let target = self.target.clone();
        drop(self);
        DiskWriter::begin(target, false)
    }

    /// Writes what is queued, syncs, then writes the held-back first MiB and syncs again.
    /// Call only after the image was verified.
    pub fn finish(mut self) -> Result<WriteStats, WriteError> {
        self.flush_pending()?;
        let mut stats = self.join()?;
        let target = self.target.as_ref();
        target.sync().map_err(io_error("flushing", target, 0))?;
        target
            .write_at(0, &self.hold)
            .map_err(io_error("writing the first MiB of", target, 0))?;
        target.sync().map_err(io_error("flushing", target, 0))?;
        stats.written += self.hold.len() as u64;
        Ok(stats)
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// One `read`, retried when interrupted.
fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize, FillError> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other.map_err(FillError::Read),
        }
    }
}

/// Whether every byte is zero; ORs 64-byte lanes (which the compiler vectorises) and stops
/// at the first lane that is not.
fn all_zero(block: &[u8]) -> bool {
    let mut lanes = block.chunks_exact(64);
    let lanes_zero = lanes
        .by_ref()
        .all(|lane| lane.iter().fold(0u8, |acc, &b| acc | b) == 0);
    lanes_zero && lanes.remainder().iter().all(|&b| b == 0)
}

/// Splits `data` into runs of all-zero and other [`ZERO_BLOCK`]s: `(start, end, zero)`.
fn zero_segments(data: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut segments: Vec<(usize, usize, bool)> = Vec::new();
    for (i, block) in data.chunks(ZERO_BLOCK).enumerate() {
        let start = i * ZERO_BLOCK;
        let end = start + block.len();
        let zero = all_zero(block);
        match segments.last_mut() {
            Some(last) if last.2 == zero => last.1 = end,
            _ => segments.push((start, end, zero)),
        }
    }
    segments
}

fn work(
    target: &dyn Target,
    queue: Receiver<Job>,
    give_back: SyncSender<AlignedBuf>,
    known_zero: bool,
) -> Result<WriteStats, WriteError> {
    let mut stats = WriteStats::default();
    for job in queue {
        match job {
            Job::Write {
                offset,
                data,
                segments,
            } => {
                for (start, end, zero) in segments {
                    let at = offset + start as u64;
                    let len = (end - start) as u64;
                    if !zero {
                        target
                            .write_at(at, &data[start..end])
                            .map_err(io_error("writing", target, at))?;
                        stats.written += len;
                    } else if known_zero {
                        stats.skipped += len;
                    } else {
                        target
                            .zero(at, len)
                            .map_err(io_error("zeroing", target, at))?;
                        stats.zeroed += len;
                    }
                }
                let _ = give_back.try_send(data);
            }
            Job::Zero { offset, len } => {
                target
                    .zero(offset, len)
                    .map_err(io_error("zeroing", target, offset))?;
                stats.zeroed += len;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
