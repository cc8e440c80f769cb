//! Writing disk images (the `write_image` deploy step, spec §5): faster than IPA, in bounded
//! memory, and never leaving a half-written disk that looks deployed.
//!
//! - [`source`]: HTTP(S) with resume by range requests, or local files; hashed in flight.
//! - [`checksum`]: which digest to expect; checksum files.
//! - [`format`]: formats told by content; `permitted_image_formats`.
//! - [`qcow2`]: native qcow2 to raw while streaming.
//! - [`writer`]: the first MiB held back until verified; cleared on failure.
//! - [`pipeline`]: one image from its URLs to a verified disk.
//! - [`partition`]: partition images: IPA's layout, the image into the root partition.

pub mod checksum;
pub mod chroot;
pub mod disklabel;
pub mod format;
pub mod grub;
pub mod meter;
pub mod partition;
pub mod pipeline;
pub mod qcow2;
pub mod source;
pub mod step;
pub mod target;
pub mod writer;

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod testutil;

use checksum::ChecksumError;
use format::FormatError;
use qcow2::Qcow2Error;
use source::SourceError;
use writer::WriteError;

/// Why an image was not written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{0}")]
    Qcow2(String),
    #[error("{0}")]
    Decode(String),
    #[error("image checksum mismatch: expected {algorithm} {expected}, got {actual}")]
    Mismatch {
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Every attempt failed; `last` is the last failure.
    #[error("the image could not be written in {attempts} attempt(s): {details}")]
    Exhausted {
        attempts: u32,
        details: String,
        last: Box<ImageError>,
    },
}

impl From<Qcow2Error> for ImageError {
    fn from(e: Qcow2Error) -> Self {
        match e {
            Qcow2Error::Source(e) => ImageError::Source(e),
            Qcow2Error::Write(e) => ImageError::Write(e),
            Qcow2Error::Read(e) => ImageError::Decode(format!("reading the qcow2 image: {e}")),
            refused @ Qcow2Error::Refused(_) => ImageError::Qcow2(refused.to_string()),
        }
    }
}

impl ImageError {
    /// Whether trying again (another URL, another round) cannot help.
    pub fn is_fatal(&self) -> bool {
        match self {
            ImageError::Source(e) => matches!(e, SourceError::Fatal(_)),
            ImageError::Mismatch { .. } | ImageError::Decode(_) => false,
            ImageError::Checksum(_)
            | ImageError::Format(_)
            | ImageError::Qcow2(_)
            | ImageError::Write(_)
            | ImageError::Exhausted { .. } => true,
        }
    }
}
