//! Where image bytes come from: HTTP(S) ([`http::HttpSource`]) or a local file
//! ([`file::FileSource`], `file://` URLs: the boot ISO or another attached medium).
//!
//! A source gives two things:
//! - one forward [`Feed`] of the whole file, produced by its own thread, hashed in order by
//!   another (`image-hash`) and read by the consumer, so receiving, hashing and decoding run
//!   in parallel (bounded channels: at most `FEED_DEPTH` chunks of `FEED_CHUNK` bytes in
//!   flight);
//!   an HTTP feed resumes itself after a dropped connection with a range request. The chunks
//!   come from a [`ChunkPool`] the feed returns them to once read, so a download does not
//!   allocate (and the kernel does not map and zero) a fresh MiB for every MiB;
//! - random reads ([`Source::read_at`]) for formats with tables (qcow2), as HTTP range
//!   requests.

pub mod file;
pub mod http;
#[cfg(test)]
mod test_server;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::checksum::{Algorithm, Hasher};
use crate::net::http::HttpTls;

/// Bytes per feed message.
pub const FEED_CHUNK: usize = 1 << 20;
/// Feed messages in flight at most.
pub const FEED_DEPTH: usize = 16;

/// Why a source failed; the kind decides what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Trying again cannot help (4xx, a malformed URL, a missing file): IPA's
    /// `ImageDownloadFatalError`, which also skips the remaining URLs.
    #[error("{0}")]
    Fatal(String),
    /// This attempt failed (retries exhausted, timeouts, 5xx); another attempt may work.
    #[error("{0}")]
    Failed(String),
    /// The file changed on the server (or cannot be resumed): start over from byte 0.
    #[error("{0}")]
    Changed(String),
    /// This source cannot serve what the format needs (no range requests); try the next URL.
    #[error("{0}")]
    Unsupported(String),
}

/// How to download: IPA's `image_download_*` settings plus what `image_info` adds.
#[derive(Clone)]
pub struct DownloadOptions {
    /// Connect timeout, and the longest wait for the next bytes of a response.
    pub timeout: Duration,
    /// Retries after a failed connection or a dropped transfer without progress.
    pub retries: u32,
    pub retry_interval: Duration,
    /// `image_download_max_duration`: the whole download ends by then.
    pub deadline: Option<Instant>,
    pub tls: HttpTls,
    /// `Authorization` header value (secret).
    pub authorization: Option<String>,
    /// `proxies.http`, `proxies.https` and `no_proxy` of `image_info`.
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl std::fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_interval", &self.retry_interval)
            .field("deadline", &self.deadline)
            .field("tls", &self.tls)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "http_proxy",
                &self.http_proxy.as_ref().map(|p| redact_url(p)),
            )
            .field(
                "https_proxy",
                &self.https_proxy.as_ref().map(|p| redact_url(p)),
            )
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// A URL as logs may show it: no user info, no query (temp-URL signatures).
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            let query = url.query().is_some();
            url.set_query(None);
            url.set_fragment(None);
            let mut shown = url.to_string();
            if query {
                shown.push_str("?<redacted>");
            }
            shown
        }
        Err(_) => "<malformed URL>".to_string(),
    }
}

/// Feed chunks for reuse: a producer takes one, the [`Feed`] puts it back once read. Keeps
/// at most `FEED_DEPTH + 2` (every chunk that can be in flight), so memory stays bounded.
#[derive(Debug, Clone, Default)]
pub struct ChunkPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl ChunkPool {
    /// An empty buffer with room for `FEED_CHUNK` bytes, recycled when one is free.
    pub fn take(&self) -> Vec<u8> {
        let recycled = self.0.lock().ok().and_then(|mut free| free.pop());
        match recycled {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(FEED_CHUNK),
        }
    }

    /// Returns a buffer (one smaller than a chunk is dropped instead).
    pub fn put(&self, buf: Vec<u8>) {
        if buf.capacity() < FEED_CHUNK {
            return;
        }
        if let Ok(mut free) = self.0.lock() {
            if free.len() < FEED_DEPTH + 2 {
                free.push(buf);
            }
        }
    }
}

/// A message of a feed.
#[derive(Debug)]
pub enum FeedMsg {
    Data(Vec<u8>),
    /// The whole file went through: its length.
    End {
        len: u64,
    },
    Failed(SourceError),
}

/// What the hashing thread passes on to the [`Feed`].
#[derive(Debug)]
enum Hashed {
    Data(Vec<u8>),
    /// The whole file went through: its length and hex digest.
    End {
        len: u64,
        hex: String,
    },
    Failed(SourceError),
}

/// The forward stream of a source's whole file; see [`Feed::finish`] for its digest.
///
/// Between the producer and the feed a thread of its own (`image-hash`) hashes every chunk
/// in order and passes it on, so the digest is computed in parallel with receiving (the
/// producer) and decoding and copying (the feed's reader): three threads instead of two.
#[derive(Debug)]
pub struct Feed {
    rx: mpsc::Receiver<Hashed>,
    pool: ChunkPool,
    current: Vec<u8>,
    at: usize,
    position: u64,
    end: Option<(u64, String)>,
    error: Option<SourceError>,
}

/// An `io::Error` carrying a [`SourceError`] through `Read`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FeedError(pub SourceError);

/// The hashing thread: hashes each chunk from the producer, passes it on, and at the end
/// checks the producer's count against the bytes it hashed.
fn hash_chunks(mut from: mpsc::Receiver<FeedMsg>, to: mpsc::Sender<Hashed>, mut hasher: Hasher) {
    let mut received = 0u64;
    loop {
        let next = match from.blocking_recv() {
            Some(FeedMsg::Data(data)) => {
                hasher.update(&data);
                received += data.len() as u64;
                Hashed::Data(data)
            }
            Some(FeedMsg::End { len }) if len == received => {
                let _ = to.blocking_send(Hashed::End {
                    len,
                    hex: hasher.finish_hex(),
                });
                return;
            }
            Some(FeedMsg::End { len }) => {
                let _ = to.blocking_send(Hashed::Failed(SourceError::Failed(format!(
                    "the image stream ended at byte {received} but its source counted {len}"
                ))));
                return;
            }
            Some(FeedMsg::Failed(error)) => {
                let _ = to.blocking_send(Hashed::Failed(error));
                return;
            }
            None => {
                let _ = to.blocking_send(Hashed::Failed(SourceError::Failed(
                    "the image download stopped unexpectedly".into(),
                )));
                return;
            }
        };
        // The feed went away: so does this thread, and with it the producer's receiver.
        if to.blocking_send(next).is_err() {
            return;
        }
    }
}

impl Feed {
    /// A feed hashing with `algorithm` (on its own thread), and the sender its producer
    /// uses.
    pub fn channel(algorithm: Algorithm) -> Result<(mpsc::Sender<FeedMsg>, Feed), SourceError> {
        // Chunks in flight: PRODUCED in the producer's channel, one being hashed, the
        // rest of FEED_DEPTH hashed and waiting for the reader.
        const PRODUCED: usize = FEED_DEPTH / 2;
        let (tx, from) = mpsc::channel(PRODUCED);
        let (to, rx) = mpsc::channel(FEED_DEPTH - PRODUCED - 1);
        let hasher = algorithm.hasher();
        std::thread::Builder::new()
            .name("image-hash".into())
            .spawn(move || hash_chunks(from, to, hasher))
            .map_err(|e| SourceError::Failed(format!("starting the hashing thread: {e}")))?;
        Ok((
            tx,
            Feed {
                rx,
                pool: ChunkPool::default(),
                current: Vec::new(),
                at: 0,
                position: 0,
                end: None,
                error: None,
            },
        ))
    }

    /// Where the producer takes its chunks from (they come back here once read).
    pub fn pool(&self) -> ChunkPool {
        self.pool.clone()
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The source error behind the last failed read, if that was one.
    pub fn error(&self) -> Option<&SourceError> {
        self.error.as_ref()
    }

    /// Reads what is left, then returns the file's length and digest.
    pub fn finish(&mut self) -> std::io::Result<(u64, String)> {
        let mut sink = [0u8; 64 * 1024];
        while self.read(&mut sink)? > 0 {}
        self.end
            .clone()
            .ok_or_else(|| std::io::Error::other("the image stream ended without a digest"))
    }

    fn fill(&mut self) -> std::io::Result<bool> {
        while self.at == self.current.len() {
            if self.end.is_some() {
                return Ok(false);
            }
            if let Some(error) = &self.error {
                return Err(std::io::Error::other(FeedError(error.clone())));
            }
            match self.rx.blocking_recv() {
                Some(Hashed::Data(data)) => {
                    self.pool.put(std::mem::replace(&mut self.current, data));
                    self.at = 0;
                }
                Some(Hashed::End { len, hex }) => self.end = Some((len, hex)),
                Some(Hashed::Failed(error)) => self.error = Some(error),
                None => {
                    self.error = Some(SourceError::Failed(
                        "the image hashing thread stopped unexpectedly".into(),
                    ))
                }
            }
        }
        Ok(true)
    }
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        self.position += n as u64;
        Ok(n)
    }
}

/// An opened image file.
pub trait Source: Send + Sync {
    /// The location as logs may show it.
    fn describe(&self) -> String;
    /// The file's length, when known before reading it all.
    fn length(&self) -> Option<u64>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError>;
    /// The forward stream of the whole file, hashed with the algorithm given at open.
    /// Can be taken once.
    fn take_feed(&mut self) -> Option<Feed>;
}

/// Opens `url` (`http://`, `https://` or `file://`), hashing its stream with `algorithm`.
/// Blocking: call it from a blocking thread.
pub fn open(
    url: &str,
    options: &DownloadOptions,
    algorithm: Algorithm,
) -> Result<Box<dyn Source>, SourceError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| SourceError::Fatal(format!("image URL {}: {e}", redact_url(url))))?;
    match parsed.scheme() {
        "http" | "https" => Ok(Box::new(http::HttpSource::open(
            parsed, options, algorithm,
        )?)),
        "file" => {
            let path = parsed.to_file_path().map_err(|()| {
                SourceError::Fatal(format!("image URL {url}: not a local file path"))
            })?;
            Ok(Box::new(file::FileSource::open(&path, algorithm)?))
        }
        other => Err(SourceError::Fatal(format!(
            "image URL {}: scheme {other:?} is not supported (http, https, file)",
            redact_url(url)
        ))),
    }
}

/// Fetches a small document (a checksum file, a config drive) of at most `max` bytes with
/// the same options.
pub fn fetch_bytes(
    url: &str,
    options: &DownloadOptions,
    max: usize,
) -> Result<Vec<u8>, SourceError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| SourceError::Fatal(format!("URL {}: {e}", redact_url(url))))?;
    http::fetch_bytes(parsed, options, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_logs_carry_no_secrets() {
        assert_eq!(
            redact_url("https://user:pw@h:8080/v1/AUTH_x/c/img?temp_url_sig=abc&e=1"),
            "https://h:8080/v1/AUTH_x/c/img?<redacted>"
        );
        assert_eq!(redact_url("http://h/img.raw"), "http://h/img.raw");
        assert_eq!(redact_url("::"), "<malformed URL>");
    }

    #[test]
    fn a_feed_reads_chunks_then_reports_its_digest() {
        let (tx, mut feed) = Feed::channel(Algorithm::Sha256).unwrap();
        std::thread::spawn(move || {
            tx.blocking_send(FeedMsg::Data(b"hello ".to_vec())).unwrap();
            tx.blocking_send(FeedMsg::Data(b"world".to_vec())).unwrap();
            tx.blocking_send(FeedMsg::End { len: 11 }).unwrap();
        });
        let mut first = [0u8; 3];
        feed.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"hel");
        assert_eq!(feed.position(), 3);
        assert_eq!(
            feed.finish().unwrap(),
            (
                11,
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9".to_string()
            )
        );
    }

    #[test]
    fn a_length_that_disagrees_with_the_bytes_fails() {
        let (tx, mut feed) = Feed::channel(Algorithm::Sha256).unwrap();
        tx.blocking_send(FeedMsg::Data(b"abc".to_vec())).unwrap();
        tx.blocking_send(FeedMsg::End { len: 4 }).unwrap();
        let err = feed.finish().unwrap_err();
        assert!(err.to_string().contains("ended at byte 3"), "{err}");
    }

    #[test]
    fn read_chunks_go_back_to_the_pool() {
        let (tx, mut feed) = Feed::channel(Algorithm::Sha256).unwrap();
        let pool = feed.pool();
        let mut chunk = pool.take();
        assert!(chunk.capacity() >= FEED_CHUNK);
        chunk.extend_from_slice(&[7u8; FEED_CHUNK]);
        let first = chunk.as_ptr();
        tx.blocking_send(FeedMsg::Data(chunk)).unwrap();
        tx.blocking_send(FeedMsg::Data(pool.take())).unwrap();
        let mut read = vec![0u8; FEED_CHUNK];
        feed.read_exact(&mut read).unwrap();
        assert!(read.iter().all(|&b| b == 7));
        // Reading on takes the next chunk and returns the first one, empty.
        tx.blocking_send(FeedMsg::End {
            len: FEED_CHUNK as u64,
        })
        .unwrap();
        feed.finish().unwrap();
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), first);
        // At most FEED_DEPTH + 2 are kept.
        for _ in 0..FEED_DEPTH + 5 {
            pool.put(Vec::with_capacity(FEED_CHUNK));
        }
        assert_eq!(pool.0.lock().unwrap().len(), FEED_DEPTH + 2);
    }

    #[test]
    fn a_feed_failure_is_kept_for_the_caller() {
        let (tx, mut feed) = Feed::channel(Algorithm::Sha256).unwrap();
        tx.blocking_send(FeedMsg::Failed(SourceError::Changed("etag".into())))
            .unwrap();
        let err = feed.read(&mut [0u8; 4]).unwrap_err();
        assert!(err.to_string().contains("etag"));
        assert_eq!(feed.error(), Some(&SourceError::Changed("etag".into())));
        drop(feed);
        let (tx, mut feed) = Feed::channel(Algorithm::Sha256).unwrap();
        drop(tx);
        assert!(feed.read(&mut [0u8; 4]).is_err());
        assert!(matches!(feed.error(), Some(SourceError::Failed(_))));
    }
}
