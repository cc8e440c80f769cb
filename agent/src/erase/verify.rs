//! Read-back checks of an erase: before it, a marker (a per-run nonce and the block's
//! offset) is written into sampled blocks; after it, the same blocks are read back. A
//! marker still present means the erase did not reach that block; zeroes are what a
//! zeroing method must leave.

use std::io;

use rand::{Rng, RngCore};

use super::io::{AlignedBuf, BlockIo};
use super::metadata::MetadataOutcome;

/// Blocks sampled between the first and the last block.
pub const SAMPLES: usize = 62;

const MARKER_TAG: &[u8; 16] = b"rivet-erase-mark";

/// The sampled block offsets of one device: the first and last block, plus evenly spread
/// blocks each moved by a random amount inside its stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Samples {
    pub block: u32,
    pub offsets: Vec<u64>,
}

impl Samples {
    pub fn choose(size: u64, block: u32, rng: &mut impl Rng) -> Self {
        let b = u64::from(block.max(512));
        let blocks = size / b;
        let mut offsets = Vec::new();
        if blocks > 0 {
            offsets.push(0);
            let stripe = blocks / (SAMPLES as u64 + 1);
            if stripe > 0 {
                for i in 0..SAMPLES as u64 {
                    offsets.push((i * stripe + rng.gen_range(0..stripe)) * b);
                }
            }
            offsets.push((blocks - 1) * b);
        }
        offsets.sort_unstable();
        offsets.dedup();
        Samples {
            block: block.max(512),
            offsets,
        }
    }
}

/// The marker written at `offset` in a run with `nonce`: tag, nonce, offset, repeated.
fn marker(nonce: u64, offset: u64, block: &mut [u8]) {
    let mut unit = [0u8; 32];
    unit[..16].copy_from_slice(MARKER_TAG);
    unit[16..24].copy_from_slice(&nonce.to_le_bytes());
    unit[24..].copy_from_slice(&offset.to_le_bytes());
    for chunk in block.chunks_mut(32) {
        let n = chunk.len();
        chunk.copy_from_slice(&unit[..n]);
    }
}

/// A fresh nonce for one run.
pub fn new_nonce() -> u64 {
    rand::thread_rng().next_u64()
}

/// Writes the markers and syncs.
pub fn write_markers(io: &mut dyn BlockIo, samples: &Samples, nonce: u64) -> io::Result<()> {
    let mut buf = AlignedBuf::zeroed(samples.block as usize);
    for &offset in &samples.offsets {
        marker(nonce, offset, buf.as_mut_slice());
        io.write_at(offset, buf.as_slice())?;
    }
    io.sync()
}

/// What the sampled blocks held after the erase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReadBack {
    pub samples: usize,
    /// All zero.
    pub zero: usize,
    /// Still holding (any part of) the marker.
    pub marked: usize,
}

impl ReadBack {
    pub fn all_zero(&self) -> bool {
        self.samples > 0 && self.zero == self.samples
    }

    pub fn markers_gone(&self) -> bool {
        self.samples > 0 && self.marked == 0
    }
}

/// Reads the sampled blocks back.
pub fn read_back(io: &mut dyn BlockIo, samples: &Samples, nonce: u64) -> io::Result<ReadBack> {
    let mut buf = AlignedBuf::zeroed(samples.block as usize);
    let mut expected = vec![0u8; samples.block as usize];
    let mut result = ReadBack::default();
    for &offset in &samples.offsets {
        io.read_at(offset, buf.as_mut_slice())?;
        marker(nonce, offset, &mut expected);
        let block = buf.as_slice();
        result.samples += 1;
        if block.iter().all(|&b| b == 0) {
            result.zero += 1;
        }
        // Any 32-byte unit of the marker left means this block was not erased.
        if block
            .chunks(32)
            .zip(expected.chunks(32))
            .any(|(got, want)| got == want)
        {
            result.marked += 1;
        }
    }
    Ok(result)
}

/// How a method's read-back is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Every sample must read as zeroes.
    Zeroes,
    /// No sample may still hold its marker (the content after the erase is the device's
    /// choice, e.g. a crypto erase leaves unreadable ciphertext).
    MarkersGone,
    /// Metadata erase: every zeroed region reads back as zeroes (`samples` counts regions)
    /// and no signature is found any more.
    MetadataGone,
}

/// The verification part of an erase report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verification {
    pub expect: Expect,
    #[serde(flatten)]
    pub read_back: ReadBack,
    pub passed: bool,
    pub detail: String,
}

impl Verification {
    /// Judges a sampled read-back (`expect` is [`Expect::Zeroes`] or [`Expect::MarkersGone`]).
    pub fn judge(expect: Expect, read_back: ReadBack) -> Self {
        let passed = match expect {
            Expect::Zeroes => read_back.all_zero() && read_back.markers_gone(),
            Expect::MarkersGone | Expect::MetadataGone => read_back.markers_gone(),
        };
        let detail = format!(
            "{} sampled blocks read back: {} all zeroes, {} still holding the marker written \
             before the erase",
            read_back.samples, read_back.zero, read_back.marked
        );
        Verification {
            expect,
            read_back,
            passed,
            detail,
        }
    }
}

/// The verification of a metadata erase: the regions read back and the signatures left.
pub fn metadata_verification(outcome: &MetadataOutcome) -> Verification {
    let regions = outcome.regions.len();
    let dirty = outcome.regions_not_zero.len();
    let left: Vec<String> = outcome
        .found_after
        .iter()
        .map(|f| format!("{} at {}", f.name, f.offset))
        .collect();
    Verification {
        expect: Expect::MetadataGone,
        read_back: ReadBack {
            samples: regions,
            zero: regions - dirty,
            marked: 0,
        },
        passed: outcome.clean() && regions > 0,
        detail: format!(
            "{} of {regions} zeroed regions read back as zeroes; signatures left: {}",
            regions - dirty,
            if left.is_empty() {
                "none".to_string()
            } else {
                left.join(", ")
            }
        ),
    }
}

#[cfg(test)]
#[path = "tests/verify.rs"]
mod tests;
