//! The overwrite erase (IPA's `shred --force [--zero] --iterations N`): N passes of random
//! data, then optionally a pass of zeroes, with large aligned writes. The zero pass uses
//! `BLKZEROOUT` when the device offloads it and falls back to writing zeroes.

use std::io;
use std::sync::mpsc;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::io::{AlignedBuf, BlockIo};

/// Bytes per write.
pub const CHUNK: u64 = 4 * 1024 * 1024;
/// Bytes per `BLKZEROOUT` call (progress and abort are checked between calls).
const ZEROOUT_CHUNK: u64 = 256 * 1024 * 1024;

/// One pass of the overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Random,
    Zeroes,
}

/// The passes for `iterations` random passes plus a zero pass when `zeroize`.
pub fn passes(iterations: u32, zeroize: bool) -> Vec<Pass> {
    let mut passes = vec![Pass::Random; iterations as usize];
    if zeroize {
        passes.push(Pass::Zeroes);
    }
    passes
}

/// Progress of an overwrite: bytes written over all passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// 1-based.
    pub pass: usize,
    pub passes: usize,
    pub done: u64,
    pub total: u64,
}

/// Whether an error says the device lacks the operation (rather than failing at it).
pub fn unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::EINVAL)
        )
}

/// Runs `passes` over the whole device; `tick` is called after every write and may stop
/// the work by returning an error. Returns whether the zero pass was offloaded.
pub fn overwrite(
    io: &mut dyn BlockIo,
    passes: &[Pass],
    try_zeroout: bool,
    tick: &mut dyn FnMut(Tick) -> io::Result<()>,
) -> io::Result<bool> {
    let size = io.size();
    let total = size.saturating_mul(passes.len() as u64);
    let chunk = CHUNK.min(size.max(1)) as usize;
    let mut offloaded = false;
    for (index, pass) in passes.iter().enumerate() {
        let base = size * index as u64;
        let mut report = |done: u64| {
            tick(Tick {
                pass: index + 1,
                passes: passes.len(),
                done: base + done,
                total,
            })
        };
        match pass {
            Pass::Random => random_pass(io, chunk, &mut report)?,
            Pass::Zeroes => {
                if try_zeroout {
                    match zero_out_all(io, &mut report) {
                        Ok(()) => {
                            offloaded = true;
                            continue;
                        }
                        Err(e) if unsupported(&e) => tracing::info!(
                            "BLKZEROOUT is not available ({e}); writing zeroes instead"
                        ),
                        Err(e) => return Err(e),
                    }
                }
                let buf = AlignedBuf::zeroed(chunk);
                let mut offset = 0;
                while offset < size {
                    let len = (size - offset).min(buf.len() as u64) as usize;
                    io.write_at(offset, &buf.as_slice()[..len])?;
                    offset += len as u64;
                    report(offset)?;
                }
            }
        }
        io.sync()?;
    }
    Ok(offloaded)
}

/// One pass of random data over the whole device. A generator thread fills the next buffer
/// while the current one is written, so the pass runs at the device's speed rather than at
/// the sum of generating and writing (Xoshiro256++: hiding data needs no cryptographic
/// generator, as shred's ISAAC).
fn random_pass(
    io: &mut dyn BlockIo,
    chunk: usize,
    report: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<()> {
    let size = io.size();
    let (filled_tx, filled_rx) = mpsc::sync_channel::<AlignedBuf>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<AlignedBuf>();
    for _ in 0..3 {
        // The receiver lives until the generator ends, below.
        let _ = empty_tx.send(AlignedBuf::zeroed(chunk));
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut rng = SmallRng::from_entropy();
            while let Ok(mut buf) = empty_rx.recv() {
                rng.fill_bytes(buf.as_mut_slice());
                if filled_tx.send(buf).is_err() {
                    break;
                }
            }
        });
        let mut offset = 0;
        let mut write_all = || -> io::Result<()> {
            while offset < size {
                let buf = filled_rx
                    .recv()
                    .map_err(|_| io::Error::other("the random data generator stopped"))?;
                let len = (size - offset).min(buf.len() as u64) as usize;
                io.write_at(offset, &buf.as_slice()[..len])?;
                offset += len as u64;
                report(offset)?;
                let _ = empty_tx.send(buf);
            }
            Ok(())
        };
        let result = write_all();
        // Both ends closed: the generator's next send or receive fails and it ends.
        drop(filled_rx);
        drop(empty_tx);
        result
    })
}

fn zero_out_all(
    io: &mut dyn BlockIo,
    report: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<()> {
    let size = io.size();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(ZEROOUT_CHUNK);
        io.zero_out(offset, len)?;
        offset += len;
        report(offset)?;
    }
    io.sync()
}

#[cfg(test)]
#[path = "tests/overwrite.rs"]
mod tests;
