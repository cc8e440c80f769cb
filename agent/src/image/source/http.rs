//! Images over HTTP(S), resumable.
//!
//! One GET streams the whole file into the [`Feed`], which hashes it. When the
//! connection drops (or a read times out), the transfer resumes from the byte it stopped at
//! with `Range: bytes=N-` and `If-Range: <validator>` — the strong ETag, else Last-Modified,
//! of the first response. A `206` starting at `N` continues; a `200` means the file changed
//! and the whole write starts over (so does a drop when the server gave no validator).
//! Failures without progress in between are bounded by `retries`; 4xx answers are fatal,
//! 5xx retried, as in IPA.
//!
//! Random reads (qcow2 tables) are range requests with the same `If-Range`.
//!
//! The transfers run on a small tokio runtime owned by the source (one worker thread), so
//! the caller can stay blocking.

use std::time::Instant;

use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE,
};
use reqwest::{Client, Response, StatusCode};
use tokio::sync::mpsc;
use url::Url;

use super::{
    redact_url, ChunkPool, DownloadOptions, Feed, FeedMsg, Source, SourceError, FEED_CHUNK,
};
use crate::image::checksum::Algorithm;
use crate::net::http::{client_builder, error_chain};

/// What makes a resumed range the same file: `If-Range` takes a strong ETag or a date.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Validator {
    ETag(String),
    LastModified(String),
}

impl Validator {
    fn from_headers(headers: &HeaderMap) -> Option<Validator> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        match text(ETAG) {
            Some(etag) if !etag.starts_with("W/") => Some(Validator::ETag(etag.to_string())),
            _ => text(LAST_MODIFIED).map(|date| Validator::LastModified(date.to_string())),
        }
    }

    fn value(&self) -> &str {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }

    /// A `206` belongs to the same file unless it names another ETag.
    fn matches(&self, headers: &HeaderMap) -> bool {
        match (self, headers.get(ETAG).and_then(|v| v.to_str().ok())) {
            (Validator::ETag(ours), Some(theirs)) => ours == theirs,
            _ => true,
        }
    }
}

/// An image URL being downloaded.
pub struct HttpSource {
    url: Url,
    shown: String,
    runtime: tokio::runtime::Runtime,
    client: Client,
    options: DownloadOptions,
    len: Option<u64>,
    validator: Option<Validator>,
    feed: Option<Feed>,
}

fn client(options: &DownloadOptions) -> Result<Client, SourceError> {
    let mut builder = client_builder(&options.tls)
        .map_err(|e| SourceError::Fatal(e.to_string()))?
        .connect_timeout(options.timeout)
        .read_timeout(options.timeout);
    let no_proxy = options
        .no_proxy
        .as_deref()
        .and_then(reqwest::NoProxy::from_string);
    for (proxy, https) in [(&options.http_proxy, false), (&options.https_proxy, true)] {
        if let Some(proxy) = proxy.as_deref().filter(|p| !p.is_empty()) {
            let made = if https {
                reqwest::Proxy::https(proxy)
            } else {
                reqwest::Proxy::http(proxy)
            };
            let made = made.map_err(|e| {
                SourceError::Fatal(format!("proxy {}: {}", redact_url(proxy), error_chain(&e)))
            })?;
            builder = builder.proxy(made.no_proxy(no_proxy.clone()));
        }
    }
    builder
        .build()
        .map_err(|e| SourceError::Fatal(format!("building the HTTP client: {}", error_chain(&e))))
}

fn runtime() -> Result<tokio::runtime::Runtime, SourceError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("image-http")
        .enable_all()
        .build()
        .map_err(|e| SourceError::Failed(format!("starting the download runtime: {e}")))
}

/// One request: `range` = (first byte, last byte or open-ended).
async fn get(
    client: &Client,
    url: &Url,
    options: &DownloadOptions,
    range: Option<(u64, Option<u64>)>,
    validator: Option<&Validator>,
) -> Result<Response, reqwest::Error> {
    let mut request = client.get(url.clone());
    if let Some(authorization) = &options.authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    if let Some((first, last)) = range {
        let spec = match last {
            Some(last) => format!("bytes={first}-{last}"),
            None => format!("bytes={first}-"),
        };
        request = request.header(RANGE, spec);
        if let Some(validator) = validator {
            request = request.header(IF_RANGE, validator.value());
        }
    }
    request.send().await
}

/// Whether a status is usable; 5xx is worth retrying, other failures are fatal (IPA).
fn check_status(status: StatusCode, shown: &str) -> Result<(), SourceError> {
    if status.is_success() {
        return Ok(());
    }
    let message = format!(
        "Received status code {} from {shown}, expected 200",
        status.as_u16()
    );
    if status.is_server_error() {
        Err(SourceError::Failed(message))
    } else {
        Err(SourceError::Fatal(message))
    }
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

fn deadline_error(shown: &str) -> SourceError {
    SourceError::Fatal(format!(
        "downloading {shown} took longer than image_download_max_duration"
    ))
}

/// Sends the request made by `request` until it answers with a usable status, at most
/// `retries` more times after a connection failure or 5xx, `retry_interval` apart.
async fn with_retries<F, Fut>(
    options: &DownloadOptions,
    shown: &str,
    mut request: F,
) -> Result<Response, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Response, reqwest::Error>>,
{
    let mut attempt = 0;
    loop {
        let failure = match request().await {
            Ok(response) => match check_status(response.status(), shown) {
                Ok(()) => return Ok(response),
                Err(SourceError::Failed(message)) => message,
                Err(other) => return Err(other),
            },
            Err(e) => format!("requesting {shown}: {}", error_chain(&e)),
        };
        if attempt >= options.retries {
            return Err(SourceError::Failed(format!(
                "{failure} (gave up after {} retries)",
                options.retries
            )));
        }
        if past(options.deadline) {
            return Err(deadline_error(shown));
        }
        attempt += 1;
        tracing::warn!(url = %shown, attempt, error = %failure, "image download failed; retrying");
        tokio::time::sleep(options.retry_interval).await;
    }
}

/// The first byte a `206` carries, from `Content-Range: bytes A-B/N`.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let spec = value.strip_prefix("bytes ")?;
    spec.split('-').next()?.trim().parse().ok()
}

impl HttpSource {
    /// Starts downloading `url`; returns once the server answered the first GET.
    pub fn open(
        url: Url,
        options: &DownloadOptions,
        algorithm: Algorithm,
    ) -> Result<HttpSource, SourceError> {
        let shown = redact_url(url.as_str());
        let runtime = runtime()?;
        let client = client(options)?;
        let response = runtime.block_on(with_retries(options, &shown, || {
            get(&client, &url, options, None, None)
        }))?;
        let len = response.content_length();
        let validator = Validator::from_headers(response.headers());
        tracing::info!(url = %shown, ?len, ?validator, "downloading image");
        let (tx, feed) = Feed::channel(algorithm)?;
        let pump = Pump {
            client: client.clone(),
            url: url.clone(),
            shown: shown.clone(),
            options: options.clone(),
            validator: validator.clone(),
            len,
            tx,
            pool: feed.pool(),
            position: 0,
        };
        runtime.spawn(pump.run(response));
        Ok(HttpSource {
            url,
            shown,
            runtime,
            client,
            options: options.clone(),
            len,
            validator,
            feed: Some(feed),
        })
    }

    async fn range(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let last = offset + buf.len() as u64 - 1;
        let response = with_retries(&self.options, &self.shown, || {
            get(
                &self.client,
                &self.url,
                &self.options,
                Some((offset, Some(last))),
                self.validator.as_ref(),
            )
        })
        .await?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(match &self.validator {
                Some(_) => SourceError::Changed(format!(
                    "{} changed during the download (a range request got {})",
                    self.shown,
                    response.status().as_u16()
                )),
                None => SourceError::Unsupported(format!(
                    "{} does not answer range requests, which qcow2 images need",
                    self.shown
                )),
            });
        }
        if content_range_start(response.headers()) != Some(offset)
            || self
                .validator
                .as_ref()
                .is_some_and(|v| !v.matches(response.headers()))
        {
            return Err(SourceError::Changed(format!(
                "{} answered a range request for byte {offset} with another range or file",
                self.shown
            )));
        }
        let body = response.bytes().await.map_err(|e| {
            SourceError::Failed(format!(
                "reading bytes {offset}-{last} of {}: {}",
                self.shown,
                error_chain(&e)
            ))
        })?;
        if body.len() != buf.len() {
            return Err(SourceError::Failed(format!(
                "{} returned {} bytes for the {} bytes at {offset}",
                self.shown,
                body.len(),
                buf.len()
            )));
        }
        buf.copy_from_slice(&body);
        Ok(())
    }
}

impl Source for HttpSource {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn length(&self) -> Option<u64> {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.runtime.block_on(self.range(offset, buf)) {
                Err(SourceError::Failed(message)) if attempt < self.options.retries => {
                    attempt += 1;
                    tracing::warn!(url = %self.shown, offset, error = %message, "range read failed; retrying");
                    std::thread::sleep(self.options.retry_interval);
                }
                outcome => return outcome,
            }
        }
    }

    fn take_feed(&mut self) -> Option<Feed> {
        self.feed.take()
    }
}

/// The task moving one download into its feed, resuming after drops.
struct Pump {
    client: Client,
    url: Url,
    shown: String,
    options: DownloadOptions,
    validator: Option<Validator>,
    len: Option<u64>,
    tx: mpsc::Sender<FeedMsg>,
    pool: ChunkPool,
    position: u64,
}

/// How streaming one response ended.
enum Streamed {
    Complete,
    /// Dropped or timed out; `progress`: bytes arrived before that.
    Broken {
        error: String,
        progress: bool,
    },
    /// The consumer went away or the deadline passed (already reported).
    Stop,
}

impl Pump {
    async fn run(mut self, mut response: Response) {
        let mut failures = 0u32;
        loop {
            let (error, progress) = match self.stream(&mut response).await {
                Streamed::Stop => return,
                Streamed::Complete => {
                    let _ = self.tx.send(FeedMsg::End { len: self.position }).await;
                    return;
                }
                Streamed::Broken { error, progress } => (error, progress),
            };
            if progress {
                failures = 0;
            }
            match self.resume(&mut failures, error).await {
                Ok(next) => response = next,
                Err(error) => {
                    let _ = self.tx.send(FeedMsg::Failed(error)).await;
                    return;
                }
            }
        }
    }

    async fn stream(&mut self, response: &mut Response) -> Streamed {
        let mut pending = self.pool.take();
        let mut progress = false;
        let outcome = loop {
            if past(self.options.deadline) {
                let _ = self
                    .tx
                    .send(FeedMsg::Failed(deadline_error(&self.shown)))
                    .await;
                return Streamed::Stop;
            }
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    progress = true;
                    self.position += bytes.len() as u64;
                    // Chunks are filled to exactly FEED_CHUNK, so they never grow.
                    let mut rest = &bytes[..];
                    while !rest.is_empty() {
                        let n = rest.len().min(FEED_CHUNK - pending.len());
                        pending.extend_from_slice(&rest[..n]);
                        rest = &rest[n..];
                        if pending.len() == FEED_CHUNK {
                            let full = std::mem::replace(&mut pending, self.pool.take());
                            if self.tx.send(FeedMsg::Data(full)).await.is_err() {
                                return Streamed::Stop;
                            }
                        }
                    }
                }
                Ok(None) => match self.len {
                    Some(len) if self.position < len => {
                        break Streamed::Broken {
                            error: format!("the response ended at byte {} of {len}", self.position),
                            progress,
                        }
                    }
                    _ => break Streamed::Complete,
                },
                Err(e) => {
                    break Streamed::Broken {
                        error: error_chain(&e),
                        progress,
                    }
                }
            }
        };
        if !pending.is_empty() && self.tx.send(FeedMsg::Data(pending)).await.is_err() {
            return Streamed::Stop;
        }
        outcome
    }

    /// Asks for the rest of the file after a drop at `self.position`.
    async fn resume(&mut self, failures: &mut u32, error: String) -> Result<Response, SourceError> {
        let at = self.position;
        let mut error = error;
        loop {
            *failures += 1;
            if *failures > self.options.retries {
                return Err(SourceError::Failed(format!(
                    "downloading {}: {error} (gave up after {} retries)",
                    self.shown, self.options.retries
                )));
            }
            let Some(validator) = self.validator.clone() else {
                return Err(SourceError::Changed(format!(
                    "downloading {} broke at byte {at} ({error}) and the server sent no ETag \
                     or Last-Modified to resume with",
                    self.shown
                )));
            };
            if past(self.options.deadline) {
                return Err(deadline_error(&self.shown));
            }
            tracing::warn!(url = %self.shown, at, %error, "image download broke; resuming");
            tokio::time::sleep(self.options.retry_interval).await;
            let response = match get(
                &self.client,
                &self.url,
                &self.options,
                Some((at, None)),
                Some(&validator),
            )
            .await
            {
                Ok(response) => response,
                Err(e) => {
                    error = format!("resuming: {}", error_chain(&e));
                    continue;
                }
            };
            let status = response.status();
            if status == StatusCode::PARTIAL_CONTENT
                && content_range_start(response.headers()) == Some(at)
                && validator.matches(response.headers())
            {
                return Ok(response);
            }
            if status.is_server_error() {
                error = format!("resuming: status {}", status.as_u16());
                continue;
            }
            if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
                return Err(SourceError::Changed(format!(
                    "{} changed on the server while downloading (resuming at byte {at} got \
                     status {})",
                    self.shown,
                    status.as_u16()
                )));
            }
            return Err(SourceError::Fatal(format!(
                "resuming {}: received status code {}",
                self.shown,
                status.as_u16()
            )));
        }
    }
}

/// GETs a small document (a checksum file, a config drive) of at most `max` bytes, with the
/// download retries.
pub fn fetch_bytes(
    url: Url,
    options: &DownloadOptions,
    max: usize,
) -> Result<Vec<u8>, SourceError> {
    let shown = redact_url(url.as_str());
    let runtime = runtime()?;
    let client = client(options)?;
    runtime.block_on(async {
        let mut response =
            with_retries(options, &shown, || get(&client, &url, options, None, None)).await?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SourceError::Failed(format!("reading {shown}: {}", error_chain(&e))))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > max {
                return Err(SourceError::Fatal(format!(
                    "{shown} is larger than {max} bytes"
                )));
            }
        }
        Ok(body)
    })
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
