//! The discard erase (IPA 13's `enable_discard_erase` fallback, spec §8.2 step 5): markers
//! in sampled blocks, `BLKSECDISCARD` (falling back to `BLKDISCARD`), then the samples must
//! read back as zeroes. Discard alone promises nothing about what later reads return, so a
//! device that does not read zeroes gets `BLKZEROOUT` over the whole device when it can
//! offload writing zeroes; otherwise the discard erase fails.

use std::io;

use super::io::BlockIo;
use super::overwrite::unsupported;
use super::verify::{read_back, write_markers, ReadBack, Samples};

/// Bytes per discard call (progress and abort are checked between calls).
const DISCARD_CHUNK: u64 = 1024 * 1024 * 1024;

/// How the discard erase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiscardOutcome {
    /// `BLKSECDISCARD` worked (else plain `BLKDISCARD`).
    pub secure: bool,
    /// The samples did not read as zeroes after the discard and `BLKZEROOUT` followed.
    pub zeroed_out: bool,
    pub read_back: ReadBack,
}

/// Why the discard erase failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscardError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(
        "after discarding, {} of {} sampled blocks do not read as zeroes and the device \
         cannot write zeroes (BLKZEROOUT): discard does not erase this device",
        .0.samples - .0.zero, .0.samples
    )]
    NotZeroed(ReadBack),
}

fn discard_all(
    io: &mut dyn BlockIo,
    secure: bool,
    progress: &mut dyn FnMut(u64, u64) -> io::Result<()>,
) -> io::Result<()> {
    let size = io.size();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(DISCARD_CHUNK);
        io.discard(offset, len, secure)?;
        offset += len;
        progress(offset, size)?;
    }
    Ok(())
}

/// Runs the discard erase. `can_zero_out` is whether the queue reports write-zeroes support.
pub fn discard_erase(
    io: &mut dyn BlockIo,
    samples: &Samples,
    nonce: u64,
    can_zero_out: bool,
    progress: &mut dyn FnMut(u64, u64) -> io::Result<()>,
) -> Result<DiscardOutcome, DiscardError> {
    write_markers(io, samples, nonce)?;
    let secure = match discard_all(io, true, progress) {
        Ok(()) => true,
        Err(e) if unsupported(&e) => {
            tracing::info!("secure discard is not available ({e}); discarding");
            discard_all(io, false, progress)?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    io.sync()?;
    let after_discard = read_back(io, samples, nonce)?;
    if after_discard.all_zero() {
        return Ok(DiscardOutcome {
            secure,
            zeroed_out: false,
            read_back: after_discard,
        });
    }
    if !can_zero_out {
        return Err(DiscardError::NotZeroed(after_discard));
    }
    let size = io.size();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(DISCARD_CHUNK);
        io.zero_out(offset, len)?;
        offset += len;
        progress(offset, size)?;
    }
    io.sync()?;
    let after_zero_out = read_back(io, samples, nonce)?;
    if !after_zero_out.all_zero() {
        return Err(DiscardError::NotZeroed(after_zero_out));
    }
    Ok(DiscardOutcome {
        secure,
        zeroed_out: true,
        read_back: after_zero_out,
    })
}

#[cfg(test)]
#[path = "tests/discard.rs"]
mod tests;
