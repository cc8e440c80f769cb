//! Native qcow2 (v2 and v3) to raw conversion while streaming, byte-identical to
//! `qemu-img convert -O raw`.
//!
//! Access pattern (one pass over the file, no staging):
//! 1. the header is parsed from the first bytes of the forward stream;
//! 2. the L1 table and then every L2 table are fetched with random reads (HTTP range
//!    requests; adjacent L2 tables in one request), and a [`Plan`] is built: which host byte
//!    ranges hold which guest clusters, sorted by host offset, and which guest ranges read
//!    as zeros (unallocated or zero clusters; there is never a backing file);
//! 3. the forward stream is read once from start to end ([`convert`]): data clusters are
//!    written where they belong as the stream passes them, compressed clusters (deflate, or
//!    zstd with v3's compression type) are inflated, and the bytes of the header, L1 and L2
//!    tables are checked against the SHA-256 of what the random reads returned, so the
//!    image's checksum (computed over the stream) covers the tables the conversion used.
//!
//! Memory: the plan holds one entry per run of host-contiguous, guest-contiguous clusters
//! (an image written sequentially has few; every compressed cluster is its own) and at most
//! [`MAX_EXTENTS`] of them; the stream window holds at most one 4 MiB piece or one batch
//! of compressed clusters (4 MiB of the stream plus one cluster), inflated on up to 4
//! threads into at most 4 MiB (or one cluster).
//!
//! Refused: backing files, external data files, encryption, the corrupt bit, extended L2
//! entries, unknown incompatible features, host clusters used twice, and tables or
//! clusters outside the file.

mod plan;
mod stream;

pub use plan::{
    parse_header, plan, CompressionType, Extent, ExtentKind, Header, Plan, MAX_EXTENTS,
};
pub use stream::convert;

use super::source::SourceError;
use super::writer::WriteError;

/// Why a qcow2 image could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// The image is malformed, unsafe or uses a feature this build refuses.
    #[error("qcow2 image refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Source(SourceError),
    #[error("reading the qcow2 image stream: {0}")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Write(WriteError),
}

impl From<WriteError> for Qcow2Error {
    fn from(e: WriteError) -> Self {
        Qcow2Error::Write(e)
    }
}

impl From<SourceError> for Qcow2Error {
    fn from(e: SourceError) -> Self {
        Qcow2Error::Source(e)
    }
}

fn refused(message: impl Into<String>) -> Qcow2Error {
    Qcow2Error::Refused(message.into())
}

#[cfg(test)]
mod tests;
