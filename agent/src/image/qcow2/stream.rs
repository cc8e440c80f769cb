//! Executing a [`Plan`] over the forward stream of the file.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::plan::{CompressionType, ExtentKind, Plan};
use super::{refused, Qcow2Error};
use crate::image::writer::DiskWriter;

/// Data extents are copied in pieces of this size.
const PIECE: u64 = 4 << 20;

/// A sliding window over a forward stream: bytes from `start` on are buffered until
/// released; the stream is never read backwards.
struct Window<R> {
    reader: R,
    buf: Vec<u8>,
    start: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    /// Up to `len` bytes at `offset` (fewer only at the end of the stream).
    fn get(&mut self, offset: u64, len: usize) -> Result<&[u8], Qcow2Error> {
        if offset < self.start {
            return Err(refused(format!(
                "bytes at {offset:#x} were needed after the stream passed them"
            )));
        }
        self.release(offset)?;
        let skip = (offset - self.start) as usize;
        let want = skip + len;
        while self.buf.len() < want && !self.eof {
            let have = self.buf.len();
            self.buf.resize(want, 0);
            let n = self
                .reader
                .read(&mut self.buf[have..])
                .map_err(Qcow2Error::Read)?;
            self.buf.truncate(have + n);
            self.eof = n == 0;
        }
        let end = want.min(self.buf.len());
        Ok(&self.buf[skip.min(end)..end])
    }

    /// Forgets bytes before `offset`, reading past them if they were not read yet.
    fn release(&mut self, offset: u64) -> Result<(), Qcow2Error> {
        if offset <= self.start {
            return Ok(());
        }
        let drop_len = offset - self.start;
        if drop_len >= self.buf.len() as u64 {
            let mut skip = drop_len - self.buf.len() as u64;
            self.buf.clear();
            let mut sink = vec![0u8; 64 << 10];
            while skip > 0 && !self.eof {
                let n = (skip as usize).min(sink.len());
                let read = self.reader.read(&mut sink[..n]).map_err(Qcow2Error::Read)?;
                self.eof = read == 0;
                skip -= read as u64;
            }
        } else {
            self.buf.drain(..drop_len as usize);
        }
        self.start = offset;
        Ok(())
    }
}

/// Inflates one compressed cluster into `out` (which must be filled completely).
fn inflate(kind: CompressionType, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    match kind {
        CompressionType::Deflate => {
            let mut inflater = flate2::Decompress::new(false);
            inflater
                .decompress(input, out, flate2::FlushDecompress::Finish)
                .map_err(|e| e.to_string())?;
            if inflater.total_out() != out.len() as u64 {
                return Err(format!(
                    "inflated to {} bytes, not a whole cluster",
                    inflater.total_out()
                ));
            }
        }
        CompressionType::Zstd => {
            use zstd::stream::raw::{Decoder, Operation};
            let mut decoder = Decoder::new().map_err(|e| e.to_string())?;
            let (mut read, mut written) = (0, 0);
            while written < out.len() {
                let status = decoder
                    .run_on_buffers(&input[read..], &mut out[written..])
                    .map_err(|e| e.to_string())?;
                read += status.bytes_read;
                written += status.bytes_written;
                if status.bytes_read == 0 && status.bytes_written == 0 {
                    return Err(format!(
                        "zstd data ended after {written} bytes, not a whole cluster"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Writes the image described by `plan` from its stream: `head` holds the first bytes of
/// the file already taken from `rest`. Returns the reader (positioned after the last extent)
/// so the caller can read the file to its end for the checksum.
pub fn convert<R: Read>(
    plan: &Plan,
    head: Vec<u8>,
    rest: R,
    writer: &mut DiskWriter,
) -> Result<R, Qcow2Error> {
    let header = &plan.header;
    let size = header.size;
    for &(guest, len) in &plan.zeros {
        writer.zero(guest, len)?;
    }
    let mut window = Window {
        reader: rest,
        buf: head,
        start: 0,
        eof: false,
    };
    let cluster = header.cluster_size() as usize;
    let mut inflated = vec![0u8; cluster];
    for (i, extent) in plan.extents.iter().enumerate() {
        match extent.kind {
            ExtentKind::Data { guest } => {
                // Data runs overlap nothing (the plan refused that): release as we go.
                let mut done = 0;
                while done < extent.len {
                    let n = PIECE.min(extent.len - done);
                    let bytes = window.get(extent.host + done, n as usize)?;
                    if (bytes.len() as u64) < n {
                        return Err(refused(format!(
                            "the file ends inside the data cluster at {:#x}",
                            extent.host + done
                        )));
                    }
                    writer.write(guest + done, bytes)?;
                    done += n;
                }
            }
            ExtentKind::Compressed { guest } => {
                let bytes = window.get(extent.host, extent.len as usize)?;
                inflate(header.compression, bytes, &mut inflated).map_err(|e| {
                    refused(format!(
                        "compressed cluster at {:#x} (guest {guest:#x}): {e}",
                        extent.host
                    ))
                })?;
                let len = (cluster as u64).min(size - guest) as usize;
                writer.write(guest, &inflated[..len])?;
            }
            ExtentKind::Check { sha256 } => {
                let bytes = window.get(extent.host, extent.len as usize)?;
                if bytes.len() as u64 != extent.len || Sha256::digest(bytes)[..] != sha256[..] {
                    return Err(Qcow2Error::Source(
                        crate::image::source::SourceError::Changed(format!(
                            "the qcow2 tables at {:#x} read with a range request differ from \
                             the same bytes in the stream",
                            extent.host
                        )),
                    ));
                }
            }
        }
        // Later extents start at or after this one's start.
        let next = plan.extents.get(i + 1).map_or(u64::MAX, |e| e.host);
        window.release(next.min(extent.host + extent.len))?;
    }
    Ok(window.reader)
}
