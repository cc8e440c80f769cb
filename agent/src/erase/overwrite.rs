//! The overwrite erase (IPA's `shred --force [--zero] --iterations N`): N passes of random
//! data, then optionally a pass of zeroes, with large aligned writes. The zero pass uses
//! `BLKZEROOUT` when the device offloads it and falls back to writing zeroes.

use std::io;

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
    let mut buf = AlignedBuf::zeroed(CHUNK.min(size.max(1)) as usize);
    let mut rng = rand::rngs::StdRng::from_entropy();
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
        if *pass == Pass::Zeroes && try_zeroout {
            match zero_out_all(io, &mut report) {
                Ok(()) => {
                    offloaded = true;
                    continue;
                }
                Err(e) if unsupported(&e) => {
                    tracing::info!("BLKZEROOUT is not available ({e}); writing zeroes instead")
                }
                Err(e) => return Err(e),
            }
        }
        if *pass == Pass::Zeroes {
            buf.as_mut_slice().fill(0);
        }
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(buf.len() as u64) as usize;
            if *pass == Pass::Random {
                rng.fill_bytes(&mut buf.as_mut_slice()[..len]);
            }
            io.write_at(offset, &buf.as_slice()[..len])?;
            offset += len as u64;
            report(offset)?;
        }
        io.sync()?;
    }
    Ok(offloaded)
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
