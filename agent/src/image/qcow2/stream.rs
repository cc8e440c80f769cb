//! Executing a [`Plan`] over the forward stream of the file.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::plan::{CompressionType, Extent, ExtentKind, Plan};
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

/// Compressed clusters are inflated in batches of at most this many output bytes (at
/// least one cluster) ...
const BATCH_OUT: usize = 4 << 20;
/// ... covering at most this many bytes of the stream (besides the batch's first cluster)
/// ...
const BATCH_SPAN: u64 = 4 << 20;
/// ... on up to this many threads (the converting thread is one of them).
const MAX_INFLATE_THREADS: usize = 4;

/// Inflates compressed clusters one after the other, reusing its decompressor.
enum Inflater {
    Deflate(flate2::Decompress),
    Zstd(zstd::stream::raw::Decoder<'static>),
}

impl Inflater {
    fn new(kind: CompressionType) -> Result<Inflater, String> {
        Ok(match kind {
            CompressionType::Deflate => Inflater::Deflate(flate2::Decompress::new(false)),
            CompressionType::Zstd => Inflater::Zstd(
                zstd::stream::raw::Decoder::new().map_err(|e| format!("starting zstd: {e}"))?,
            ),
        })
    }

    /// Inflates one compressed cluster into `out` (which must be filled completely).
    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), String> {
        match self {
            Inflater::Deflate(inflater) => {
                inflater.reset(false);
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
            Inflater::Zstd(decoder) => {
                use zstd::stream::raw::Operation;
                decoder.reinit().map_err(|e| e.to_string())?;
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
}

/// Why a batch could not be inflated.
enum BatchError {
    /// The batch's `n`th cluster is not valid compressed data.
    Cluster(usize, String),
    Spawn(std::io::Error),
}

/// Inflates `inputs` (compressed clusters) into consecutive `cluster`-byte pieces of `out`,
/// split into contiguous groups over `threads` threads.
fn inflate_batch(
    kind: CompressionType,
    inputs: &[&[u8]],
    out: &mut [u8],
    cluster: usize,
    threads: usize,
) -> Result<(), BatchError> {
    let per = inputs.len().div_ceil(threads.max(1)).max(1);
    let group = |first: usize, inputs: &[&[u8]], out: &mut [u8]| -> Result<(), BatchError> {
        let mut inflater = Inflater::new(kind).map_err(|e| BatchError::Cluster(first, e))?;
        for (i, (input, out)) in inputs.iter().zip(out.chunks_mut(cluster)).enumerate() {
            inflater
                .inflate(input, out)
                .map_err(|e| BatchError::Cluster(first + i, e))?;
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let mut groups = inputs.chunks(per).zip(out.chunks_mut(per * cluster));
        let own = groups.next();
        let mut others = Vec::new();
        for (g, (inputs, out)) in groups.enumerate() {
            let spawned = std::thread::Builder::new()
                .name("image-inflate".into())
                .spawn_scoped(scope, move || group((g + 1) * per, inputs, out))
                .map_err(BatchError::Spawn)?;
            others.push(spawned);
        }
        let mut outcome = match own {
            Some((inputs, out)) => group(0, inputs, out),
            None => Ok(()),
        };
        for other in others {
            let joined = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            outcome = outcome.and(joined);
        }
        outcome
    })
}

/// Threads to inflate on: the machine's cores, at most [`MAX_INFLATE_THREADS`].
fn inflate_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_INFLATE_THREADS)
}

/// The end (exclusive) of the batch of compressed clusters starting at `extents[start]`.
fn batch_end(extents: &[Extent], start: usize, max_clusters: usize) -> usize {
    let first = extents[start].host;
    let mut end = start + 1;
    while end < extents.len()
        && end - start < max_clusters
        && matches!(extents[end].kind, ExtentKind::Compressed { .. })
        && extents[end].host + extents[end].len - first <= BATCH_SPAN
    {
        end += 1;
    }
    end
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
    let threads = inflate_threads();
    let batch_clusters = (BATCH_OUT / cluster).max(1);
    let mut inflated: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < plan.extents.len() {
        let extent = plan.extents[i];
        let mut next_i = i + 1;
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
            ExtentKind::Compressed { .. } => {
                // A run of compressed clusters, inflated together on several threads. Their
                // host ranges may overlap (a compressed cluster's last sector is often the
                // next one's first).
                next_i = batch_end(&plan.extents, i, batch_clusters);
                let batch = &plan.extents[i..next_i];
                let first = extent.host;
                let span = batch.iter().map(|e| e.host + e.len).max().unwrap_or(first) - first;
                let bytes = window.get(first, span as usize)?;
                let inputs: Vec<&[u8]> = batch
                    .iter()
                    .map(|e| {
                        let end = ((e.host + e.len - first) as usize).min(bytes.len());
                        &bytes[((e.host - first) as usize).min(end)..end]
                    })
                    .collect();
                inflated.resize(batch.len() * cluster, 0);
                inflate_batch(header.compression, &inputs, &mut inflated, cluster, threads)
                    .map_err(|e| match e {
                        BatchError::Cluster(n, message) => {
                            let host = batch[n].host;
                            let guest = match batch[n].kind {
                                ExtentKind::Compressed { guest } => guest,
                                _ => 0,
                            };
                            refused(format!(
                                "compressed cluster at {host:#x} (guest {guest:#x}): {message}"
                            ))
                        }
                        BatchError::Spawn(e) => Qcow2Error::Read(std::io::Error::new(
                            e.kind(),
                            format!("starting a thread to inflate clusters: {e}"),
                        )),
                    })?;
                for (e, out) in batch.iter().zip(inflated.chunks(cluster)) {
                    if let ExtentKind::Compressed { guest } = e.kind {
                        let len = (cluster as u64).min(size - guest) as usize;
                        writer.write(guest, &out[..len])?;
                    }
                }
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
        // Later extents start at or after the next one's start.
        let last = plan.extents[next_i - 1];
        let next = plan.extents.get(next_i).map_or(u64::MAX, |e| e.host);
        window.release(next.min(last.host + last.len))?;
        i = next_i;
    }
    Ok(window.reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_batch_is_inflated_in_order_over_threads_and_a_bad_cluster_is_named() {
        const CLUSTER: usize = 4096;
        let clusters: Vec<Vec<u8>> = (0..7u8)
            .map(|i| {
                (0..CLUSTER)
                    .map(|j| i.wrapping_mul(31) ^ (j / 7) as u8)
                    .collect()
            })
            .collect();
        let compressed: Vec<Vec<u8>> = clusters.iter().map(|c| deflate(c)).collect();
        let inputs: Vec<&[u8]> = compressed.iter().map(Vec::as_slice).collect();
        for threads in [1, 2, 3, 4] {
            let mut out = vec![0u8; inputs.len() * CLUSTER];
            assert!(inflate_batch(
                CompressionType::Deflate,
                &inputs,
                &mut out,
                CLUSTER,
                threads
            )
            .is_ok());
            assert_eq!(out, clusters.concat(), "{threads} threads");
        }
        // The sixth cluster is garbage: its index comes back, whichever thread had it.
        let garbage = vec![0xffu8; 100];
        let mut bad = inputs.clone();
        bad[5] = &garbage;
        for threads in [1, 2, 4] {
            let mut out = vec![0u8; bad.len() * CLUSTER];
            match inflate_batch(CompressionType::Deflate, &bad, &mut out, CLUSTER, threads) {
                Err(BatchError::Cluster(5, _)) => {}
                Err(BatchError::Cluster(n, e)) => panic!("cluster {n} named: {e}"),
                Err(BatchError::Spawn(e)) => panic!("{e}"),
                Ok(()) => panic!("garbage inflated"),
            }
        }
        // A cluster that inflates to less than a whole cluster fails too.
        let short = deflate(&clusters[0][..CLUSTER / 2]);
        let mut out = vec![0u8; CLUSTER];
        assert!(matches!(
            inflate_batch(CompressionType::Deflate, &[&short], &mut out, CLUSTER, 2),
            Err(BatchError::Cluster(0, e)) if e.contains("not a whole cluster")
        ));
    }

    #[test]
    fn a_batch_takes_consecutive_compressed_clusters_within_its_bounds() {
        let compressed = |host, len| Extent {
            host,
            len,
            kind: ExtentKind::Compressed { guest: host * 8 },
        };
        let extents = vec![
            compressed(0, 1000),
            // Overlapping the previous one's last sector, as qemu-img writes them.
            compressed(900, 1000),
            compressed(1900, 1000),
            Extent {
                host: 4096,
                len: 4096,
                kind: ExtentKind::Data { guest: 0 },
            },
            compressed(8192, 1000),
            // Ends 500 bytes past BATCH_SPAN from the previous one's start.
            compressed(8192 + BATCH_SPAN - 500, 1000),
            compressed(8192 + BATCH_SPAN + 500, 1000),
        ];
        // Up to the next extent that is not compressed.
        assert_eq!(batch_end(&extents, 0, 64), 3);
        // At most max_clusters.
        assert_eq!(batch_end(&extents, 0, 2), 2);
        assert_eq!(batch_end(&extents, 1, 1), 2);
        // Not past BATCH_SPAN bytes of the stream from the batch's start.
        assert_eq!(batch_end(&extents, 4, 64), 5);
        assert_eq!(batch_end(&extents, 5, 64), 7);
    }
}
