//! One image, from its URLs to a verified disk: open, detect, decode, write, verify, commit.
//!
//! Attempts follow IPA: the URLs are tried in order, the whole round up to `retries + 1`
//! times, `retry_interval` apart; a fatal error (4xx, a refused format, an image larger than
//! the disk) ends everything at once. Inside one attempt an HTTP download resumes itself
//! after drops (see [`super::source::http`]). A checksum mismatch or a file that changed on
//! the server starts the write over. The disk's first MiB is only written once the stream
//! verified; on failure the partition table areas are cleared.

use std::io::{Cursor, Read};
use std::sync::Arc;

use super::checksum::{Algorithm, ExpectedDigest};
use super::format::{self, Compression, Detected, DiskFormat, SNIFF_LEN};
use super::meter::{Meter, Metered};
use super::qcow2;
use super::source::{self, DownloadOptions, Feed, FeedError, Source, SourceError};
use super::target::Target;
use super::writer::{wipe, DiskWriter, FillError, WriteStats};
use super::ImageError;

/// What to write and how.
pub struct WriteRequest<'a> {
    pub urls: &'a [String],
    pub expected: ExpectedDigest,
    /// `disk_format` of `image_info`.
    pub declared_format: Option<&'a str>,
    pub permitted_formats: &'a [String],
    pub download: DownloadOptions,
    /// The disk reads zeros everywhere (after a verified erase): zero runs are skipped.
    pub known_zero: bool,
    pub meter: Option<Meter<'a>>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The URL it came from (as logs may show it).
    pub source: String,
    pub detected: Detected,
    /// Bytes of the image file (as downloaded).
    pub file_bytes: u64,
    /// Bytes of the disk image (raw size).
    pub image_bytes: u64,
    pub stats: WriteStats,
}

/// Writes the image to `target`, or fails leaving its partition table areas cleared.
pub fn write_image(
    target: Arc<dyn Target>,
    request: &WriteRequest<'_>,
) -> Result<Written, ImageError> {
    let mut writer: Option<DiskWriter> = None;
    let outcome = attempts(&target, request, &mut writer);
    if outcome.is_err() {
        let begun = writer.is_some();
        drop(writer);
        if begun {
            if let Err(e) = wipe(target.as_ref()) {
                tracing::error!(device = %target.name(), error = %e, "clearing the partition table after a failed write");
            }
        }
    }
    outcome
}

fn attempts(
    target: &Arc<dyn Target>,
    request: &WriteRequest<'_>,
    writer: &mut Option<DiskWriter>,
) -> Result<Written, ImageError> {
    let rounds = request.download.retries + 1;
    let mut failures: Vec<String> = Vec::new();
    let mut last = None;
    for round in 0..rounds {
        if round > 0 {
            std::thread::sleep(request.download.retry_interval);
        }
        for url in request.urls {
            let shown = source::redact_url(url);
            match attempt(url, target, request, writer) {
                Ok(written) => return Ok(written),
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    tracing::warn!(url = %shown, round, error = %e, "writing the image failed");
                    failures.push(format!("{shown}: {e}"));
                    last = Some(e);
                }
            }
        }
    }
    match last {
        Some(last) => Err(ImageError::Exhausted {
            attempts: rounds,
            details: failures.join("; "),
            last: Box::new(last),
        }),
        None => Err(ImageError::Source(SourceError::Fatal(
            "no image URL to try".into(),
        ))),
    }
}

/// Reads up to `len` bytes (fewer only at the end of the stream).
fn read_head(reader: &mut dyn Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// The writer for this attempt: begun on first use, started over after a failed attempt.
fn ready_writer<'w>(
    target: &Arc<dyn Target>,
    writer: &'w mut Option<DiskWriter>,
    known_zero: bool,
) -> Result<&'w mut DiskWriter, ImageError> {
    let next = match writer.take() {
        None => DiskWriter::begin(target.clone(), known_zero)?,
        Some(previous) => previous.restart()?,
    };
    Ok(writer.insert(next))
}

/// Turns a failed read of the stream into the source's own error when it was one.
fn stream_error(feed: &Feed, e: std::io::Error, what: &str) -> ImageError {
    if let Some(source) = feed.error() {
        return ImageError::Source(source.clone());
    }
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<FeedError>()) {
        return ImageError::Source(inner.0.clone());
    }
    ImageError::Decode(format!("{what}: {e}"))
}

fn decoder<'r>(
    compression: Compression,
    input: impl Read + 'r,
) -> std::io::Result<Box<dyn Read + 'r>> {
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
    })
}

/// Copies a raw image (`head` then the rest of `reader`) to the disk from byte 0.
fn copy_raw(head: &[u8], reader: &mut dyn Read, writer: &mut DiskWriter) -> Result<u64, FillError> {
    writer.write(0, head).map_err(FillError::Write)?;
    writer.write_from(head.len() as u64, reader)
}

fn attempt(
    url: &str,
    target: &Arc<dyn Target>,
    request: &WriteRequest<'_>,
    writer: &mut Option<DiskWriter>,
) -> Result<Written, ImageError> {
    let algorithm: Algorithm = request.expected.algorithm;
    let mut source: Box<dyn Source> = source::open(url, &request.download, algorithm)?;
    let shown = source.describe();
    let Some(mut feed) = source.take_feed() else {
        return Err(ImageError::Source(SourceError::Failed(format!(
            "{shown}: the stream was already taken"
        ))));
    };
    let file_len = source.length();
    let device_size = target.size();
    let mut metered = Metered::new(&mut feed, request.meter, "download", file_len);
    let head = read_head(&mut metered, SNIFF_LEN)
        .map_err(|e| stream_error(metered.get_mut(), e, "reading the image"))?;

    let compression = format::detect_compression(&head);
    let (detected, image_bytes) = match compression {
        None => {
            let detected = Detected {
                compression: None,
                format: format::detect_disk_format(&head),
            };
            format::check(detected, request.declared_format, request.permitted_formats)?;
            tracing::info!(url = %shown, format = %detected, ?file_len, "image format detected");
            if detected.format == DiskFormat::Qcow2 {
                let header = qcow2::parse_header(&head)?;
                if header.size > device_size {
                    return Err(too_large(target.as_ref(), header.size));
                }
                let plan = qcow2::plan(header, file_len, &mut |offset, buf| {
                    source.read_at(offset, buf)
                })?;
                tracing::info!(
                    extents = plan.extents.len(),
                    zero_runs = plan.zeros.len(),
                    virtual_size = plan.header.size,
                    "qcow2 tables read"
                );
                let writer = ready_writer(target, writer, request.known_zero)?;
                let size = plan.header.size;
                match qcow2::convert(&plan, head, &mut metered, writer) {
                    Ok(_) => {}
                    Err(qcow2::Qcow2Error::Read(e)) => {
                        return Err(stream_error(
                            metered.get_mut(),
                            e,
                            "reading the qcow2 image",
                        ))
                    }
                    Err(e) => return Err(e.into()),
                }
                (detected, size)
            } else {
                if let Some(len) = file_len.filter(|&len| len > device_size) {
                    return Err(too_large(target.as_ref(), len));
                }
                let writer = ready_writer(target, writer, request.known_zero)?;
                let written = copy_raw(&head, &mut metered, writer).map_err(|e| match e {
                    FillError::Read(e) => stream_error(metered.get_mut(), e, "reading the image"),
                    FillError::Write(e) => e.into(),
                })?;
                (detected, written)
            }
        }
        Some(compression) => {
            let outcome = {
                let mut decoded = decoder(compression, Cursor::new(&head).chain(&mut metered))
                    .map_err(|e| ImageError::Decode(format!("{}: {e}", compression.name())))?;
                let inner = read_head(&mut decoded, SNIFF_LEN).map_err(FillError::Read);
                match inner {
                    Err(e) => Err(e),
                    Ok(inner) => {
                        let detected = Detected {
                            compression: Some(compression),
                            format: format::detect_disk_format(&inner),
                        };
                        format::check(
                            detected,
                            request.declared_format,
                            request.permitted_formats,
                        )?;
                        tracing::info!(url = %shown, format = %detected, "image format detected");
                        let writer = ready_writer(target, writer, request.known_zero)?;
                        copy_raw(&inner, &mut decoded, writer).map(|n| (detected, n))
                    }
                }
            };
            outcome.map_err(|e| match e {
                FillError::Read(e) => stream_error(
                    metered.get_mut(),
                    e,
                    &format!("decompressing {}", compression.name()),
                ),
                FillError::Write(e) => e.into(),
            })?
        }
    };

    let finished = metered.get_mut().finish();
    let (file_bytes, hex) =
        finished.map_err(|e| stream_error(metered.get_mut(), e, "reading the image"))?;
    if !hex.eq_ignore_ascii_case(&request.expected.hex) {
        return Err(ImageError::Mismatch {
            algorithm: algorithm.name(),
            expected: request.expected.hex.clone(),
            actual: hex,
        });
    }
    tracing::info!(url = %shown, algorithm = algorithm.name(), "image checksum verified");
    let Some(verified) = writer.take() else {
        return Err(ImageError::Decode("the image wrote nothing".into()));
    };
    let stats = verified.finish()?;
    if let Err(e) = target.reread_partitions() {
        tracing::warn!(device = %target.name(), error = %e, "re-reading the partition table failed");
    }
    Ok(Written {
        source: shown,
        detected,
        file_bytes,
        image_bytes,
        stats,
    })
}

fn too_large(target: &dyn Target, needed: u64) -> ImageError {
    ImageError::Write(super::writer::WriteError::TooLarge {
        device: target.name(),
        needed,
        size: target.size(),
    })
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
