//! Per-node ISOs: `GET`/`HEAD /v1/nodes/{node}/iso` answers the operator's base ISO (built
//! by rivet-image-builder, `serve --iso-base`) with the node's config bundle spliced into
//! its config area on the fly (docs/config-area.md): no temporary file, the ISO is read in
//! chunks as the client takes them, and range requests are answered, as BMCs' virtual
//! media read them. The bundle, the patches and the splicing are the image builder's
//! ([`rivet_image_builder::customize`], [`rivet_image_builder::splice`]).

pub mod network_data;
pub mod range;
pub mod signed;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use rivet_image_builder::customize::{self, Base, Request};
use rivet_image_builder::splice::{splice, Patch, Spliced};
use rivet_protocol::config_area::keys::SigningKey;
use rivet_protocol::config_area::payload::Contents;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::{ApiError, OperatorError};
use crate::settings::IsoSettings;
use crate::store;
use range::Answer;

/// Bytes read from the ISO per chunk of the answer.
const CHUNK: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("reading {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("--iso-signing-key {}: {source}", path.display())]
    SigningKey {
        path: PathBuf,
        source: rivet_protocol::config_area::FormatError,
    },
    #[error("the base ISO {}: {message}", path.display())]
    Base { path: PathBuf, message: String },
    #[error("the key of node ISO URLs: {0}")]
    UrlKey(String),
}

/// Identifies one version of the base ISO file: a replaced or rewritten file is rescanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(file: &File) -> io::Result<FileId> {
        let meta = file.metadata()?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// The base ISO and what goes into every node's bundle besides the node's own parts.
#[derive(Debug)]
pub struct IsoSource {
    base: PathBuf,
    ca: Option<String>,
    /// PEM; parsed per request (ring's key pair is not `Clone`, parsing takes microseconds).
    signing_key: Option<String>,
    /// Signs the token-less URLs BMCs are given ([`signed`]).
    url_key: signed::UrlKey,
    scanned: Mutex<Option<(FileId, Arc<Base>)>>,
}

/// One node's ISO, ready to be read.
struct Prepared {
    iso: Spliced<File>,
    etag: String,
    /// Seconds since the epoch.
    modified: i64,
}

impl IsoSource {
    /// Reads the CA and the signing key and checks the base ISO, so a misconfiguration
    /// stops `serve` instead of failing each download. `auto_ca` is the auto-TLS certificate
    /// (used when `settings.ca` is not given); `url_key` the file of the URL signing key.
    pub fn load(
        settings: &IsoSettings,
        auto_ca: Option<&Path>,
        url_key: &Path,
    ) -> Result<IsoSource, IsoError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| IsoError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let ca = match settings.ca.as_deref().or(auto_ca) {
            Some(path) => Some(read("the CA for per-node ISOs", path)?),
            None => None,
        };
        let signing_key = match &settings.signing_key {
            Some(path) => {
                let pem = read("the bundle signing key", path)?;
                SigningKey::from_pem(&pem).map_err(|source| IsoError::SigningKey {
                    path: path.clone(),
                    source,
                })?;
                Some(pem)
            }
            None => None,
        };
        let source = IsoSource {
            base: settings.base.clone(),
            ca,
            signing_key,
            url_key: signed::UrlKey::load_or_create(url_key)?,
            scanned: Mutex::new(None),
        };
        let probe = Contents {
            settings: Some("ipa-api-url=https://192.0.2.1:6385\n".into()),
            ca: source.ca.clone(),
            ..Contents::default()
        };
        source.prepare(probe, 0).map_err(|error| IsoError::Base {
            path: source.base.clone(),
            message: format!("{error:#}"),
        })?;
        Ok(source)
    }

    /// The scan of the base ISO `file`, from the cache when the file is unchanged.
    fn scan(&self, file: &mut File) -> anyhow::Result<(FileId, Arc<Base>)> {
        let id = FileId::of(file).context("reading the base ISO's metadata")?;
        let cached = |slot: &Option<(FileId, Arc<Base>)>| {
            slot.as_ref()
                .filter(|(known, _)| *known == id)
                .map(|(_, base)| Arc::clone(base))
        };
        if let Some(base) = self.scanned.lock().ok().and_then(|slot| cached(&slot)) {
            return Ok((id, base));
        }
        let base = Arc::new(customize::scan(file)?);
        if let Ok(mut slot) = self.scanned.lock() {
            *slot = Some((id, Arc::clone(&base)));
        }
        Ok((id, base))
    }

    /// Opens the base ISO and splices `contents` into it (blocking file I/O).
    fn prepare(&self, contents: Contents, node_updated_ms: i64) -> anyhow::Result<Prepared> {
        let mut file = File::open(&self.base)
            .with_context(|| format!("opening the base ISO {}", self.base.display()))?;
        let (id, base) = self
            .scan(&mut file)
            .with_context(|| format!("reading the base ISO {}", self.base.display()))?;
        contents.validate().context("the node's bundle")?;
        let sign_key = self
            .signing_key
            .as_deref()
            .map(SigningKey::from_pem)
            .transpose()
            .context("the bundle signing key")?;
        let request = Request {
            bundle: Some(contents),
            sign_key,
            ..Request::default()
        };
        let patches = customize::patches(&base, &request)?;
        let etag = etag(id, &patches);
        let modified = (id.mtime_ns / 1_000_000_000) as i64;
        let iso = splice(file, patches).context("splicing the bundle into the base ISO")?;
        Ok(Prepared {
            iso,
            etag,
            modified: modified.max(node_updated_ms / 1000),
        })
    }
}

/// A strong validator: the base file's identity and every patched byte.
fn etag(id: FileId, patches: &[Patch]) -> String {
    let mut hash = Sha256::new();
    hash.update(id.dev.to_le_bytes());
    hash.update(id.ino.to_le_bytes());
    hash.update(id.len.to_le_bytes());
    hash.update(id.mtime_ns.to_le_bytes());
    for patch in patches {
        hash.update(patch.offset.to_le_bytes());
        hash.update((patch.data.len() as u64).to_le_bytes());
        hash.update(&patch.data);
    }
    format!("\"{}\"", hex::encode(&hash.finalize()[..16]))
}

/// The settings entry of a node's bundle: the agent looks up and heartbeats here.
pub fn bundle_settings(node_uuid: &str, api_url: &str) -> String {
    format!("# rivet-server, node {node_uuid}\nipa-api-url={api_url}\n")
}

fn no_isos() -> ApiError {
    ApiError::not_found("this server hands out no ISOs: start it with --iso-base FILE")
}

/// `GET`/`HEAD /v1/nodes/{node}/iso`.
pub async fn get_iso(
    State(app): State<AppState>,
    UrlPath(ident): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, OperatorError> {
    let source = app.iso.clone().ok_or_else(no_isos)?;
    serve(app, source, ident, method, headers).await
}

/// The ISO of node `ident` (UUID or name), for a request with `method` and `headers`.
async fn serve(
    app: AppState,
    source: Arc<IsoSource>,
    ident: String,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, OperatorError> {
    let (node, network_data) = app
        .db
        .read(move |conn| {
            let node = store::get(conn, &ident)?;
            let network_data = network_data::get(conn, node.id)?;
            Ok((node, network_data))
        })
        .await?;
    let contents = Contents {
        settings: Some(bundle_settings(&node.uuid, &app.base_url(&headers))),
        network_data,
        ca: source.ca.clone(),
        // The node's plan comes at lookup (plan mode, reporting here); a plan in the bundle
        // would make the agent run it offline.
        plan: None,
        files: Vec::new(),
    };
    let updated = node.updated_at;
    let prepared = tokio::task::spawn_blocking(move || source.prepare(contents, updated))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| ApiError::internal(format!("node ISO: {error:#}")))?;
    let name = match &node.name {
        Some(name)
            if name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            name.clone()
        }
        _ => node.uuid.clone(),
    };
    respond(prepared, &name, &method, &headers)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The answer to a request with these headers: 304, 200, 206 or 416.
fn respond(
    prepared: Prepared,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, OperatorError> {
    let len = prepared.iso.len();
    let last_modified = crate::time::http_date(prepared.modified);
    let etag = prepared.etag.clone();
    let builder = || {
        Response::builder()
            .header(header::ETAG, &etag)
            .header(header::LAST_MODIFIED, &last_modified)
            .header(header::ACCEPT_RANGES, "bytes")
    };
    let build = |builder: axum::http::response::Builder, body: Body| {
        builder.body(body).map_err(ApiError::internal)
    };
    if let Some(tags) = header_text(headers, header::IF_NONE_MATCH) {
        if tags.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        }) {
            return Ok(build(
                builder().status(StatusCode::NOT_MODIFIED),
                Body::empty(),
            )?);
        }
    }
    // A range applies only to the version the client has (RFC 9110 13.1.5).
    let range_applies = header_text(headers, header::IF_RANGE)
        .is_none_or(|validator| validator == etag || validator == last_modified);
    let range = header_text(headers, header::RANGE).filter(|_| range_applies);
    let (status, content_type, parts) = match range::answer(range, len) {
        Answer::Full => (StatusCode::OK, OCTETS.to_string(), vec![Part::Iso(0, len)]),
        Answer::Partial { start, end } => (
            StatusCode::PARTIAL_CONTENT,
            OCTETS.to_string(),
            vec![Part::Iso(start, end - start + 1)],
        ),
        Answer::Multipart(ranges) => {
            let boundary = uuid::Uuid::new_v4().simple().to_string();
            (
                StatusCode::PARTIAL_CONTENT,
                format!("multipart/byteranges; boundary={boundary}"),
                multipart(&ranges, len, &boundary),
            )
        }
        Answer::Unsatisfiable => {
            let response = builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .header(header::CONTENT_LENGTH, 0);
            return Ok(build(response, Body::empty())?);
        }
    };
    let count: u64 = parts.iter().map(Part::len).sum();
    let mut response = builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.iso\""),
        )
        .header(header::CONTENT_LENGTH, count);
    if let [Part::Iso(start, count)] = parts.as_slice() {
        if status == StatusCode::PARTIAL_CONTENT {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", start + count - 1),
            );
        }
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        stream(prepared.iso, parts)
    };
    Ok(build(response, body)?)
}

const OCTETS: &str = "application/octet-stream";

/// A piece of an answer's body: bytes of the node's ISO (from, count), or text between them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Iso(u64, u64),
    Text(Bytes),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Iso(_, count) => *count,
            Part::Text(text) => text.len() as u64,
        }
    }
}

/// The body of a `multipart/byteranges` answer (RFC 9110 14.6) for inclusive `ranges` of a
/// resource of `len` bytes.
fn multipart(ranges: &[(u64, u64)], len: u64, boundary: &str) -> Vec<Part> {
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    for (start, end) in ranges {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {OCTETS}\r\nContent-Range: bytes {start}-{end}/{len}\r\n\r\n"
        );
        parts.push(Part::Text(Bytes::from(head)));
        parts.push(Part::Iso(*start, end - start + 1));
    }
    parts.push(Part::Text(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
    parts
}

/// The body made of `parts`, the ISO's read one chunk at a time as the client takes them.
/// Each chunk is read on the blocking pool, which is held only while reading: a slow client
/// (a BMC on a thin link) must not keep a blocking thread the database readers need.
fn stream(iso: Spliced<File>, parts: Vec<Part>) -> Body {
    let parts: std::collections::VecDeque<Part> = parts.into();
    let chunks = futures_util::stream::unfold((Some(iso), parts), |(iso, mut parts)| async move {
        let mut iso = iso?;
        let (at, left) = loop {
            match parts.pop_front()? {
                Part::Text(text) => return Some((Ok(text), (Some(iso), parts))),
                Part::Iso(_, 0) => continue,
                Part::Iso(at, left) => break (at, left),
            }
        };
        let len = CHUNK.min(left) as usize;
        let read = tokio::task::spawn_blocking(move || {
            let mut chunk = vec![0u8; len];
            let result = iso
                .seek(SeekFrom::Start(at))
                .and_then(|_| iso.read_exact(&mut chunk));
            (iso, result.map(|()| chunk))
        })
        .await;
        let failed = |error: io::Error| {
            tracing::warn!(%error, "reading the base ISO for a node ISO");
            Some((Err(error), (None, std::collections::VecDeque::new())))
        };
        match read {
            Ok((iso, Ok(chunk))) => {
                if left > len as u64 {
                    parts.push_front(Part::Iso(at + len as u64, left - len as u64));
                }
                Some((Ok(Bytes::from(chunk)), (Some(iso), parts)))
            }
            Ok((_, Err(error))) => failed(error),
            Err(error) => failed(io::Error::other(error)),
        }
    });
    Body::from_stream(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_frame_each_range() {
        let parts = multipart(&[(5, 9), (0, 0)], 100, "B");
        let text = |part: &Part| match part {
            Part::Text(text) => String::from_utf8(text.to_vec()).expect("utf-8"),
            Part::Iso(from, count) => format!("<{from}+{count}>"),
        };
        let body: String = parts.iter().map(text).collect();
        assert_eq!(
            body,
            "\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 5-9/100\r\n\r\n<5+5>\
             \r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-0/100\r\n\r\n<0+1>\
             \r\n--B--\r\n"
        );
    }
}
