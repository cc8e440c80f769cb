//! `ImageServer`: a real HTTP server on loopback serving image files with Range support,
//! ETag or Last-Modified validators, and injected faults, recording every request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// What the server does with one GET, in the order they arrive.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Send this many body bytes, then drop the connection.
    DropAfter(usize),
    /// Send this many body bytes, then stop sending for a while (the client times out).
    StallAfter(usize, Duration),
    /// Wait before answering at all.
    Delay(Duration),
    /// Before answering, replace the file (new content, new ETag).
    Replace(Vec<u8>),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub host: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Files {
    content: HashMap<String, (Vec<u8>, String)>,
    generation: u32,
}

/// Which validators the server sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validators {
    /// A strong ETag.
    #[default]
    ETag,
    /// A weak ETag (useless for If-Range) and Last-Modified.
    WeakAndDate,
    /// Neither: a dropped transfer cannot be resumed.
    Nothing,
}

pub const LAST_MODIFIED: &str = "Wed, 21 Oct 2026 07:28:00 GMT";

#[derive(Default)]
pub struct ServerState {
    pub validators: Mutex<Validators>,
    files: Mutex<Files>,
    faults: Mutex<VecDeque<Fault>>,
    seen: Mutex<Vec<Seen>>,
}

/// The fault-injecting image server; stops when dropped.
pub struct ImageServer {
    pub base: String,
    pub state: Arc<ServerState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ImageServer {
    pub fn start() -> ImageServer {
        let state = Arc::new(ServerState::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state(state.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        });
        ImageServer {
            base,
            state,
            _stop: stop,
        }
    }

    /// Serves `content` at `/name`; returns its URL.
    pub fn put(&self, name: &str, content: &[u8]) -> String {
        let mut files = self.state.files.lock().unwrap();
        files.generation += 1;
        let etag = format!("\"{name}-{}\"", files.generation);
        files
            .content
            .insert(name.to_string(), (content.to_vec(), etag));
        format!("{}/{name}", self.base)
    }

    pub fn faults(&self, faults: &[Fault]) {
        self.state
            .faults
            .lock()
            .unwrap()
            .extend(faults.iter().cloned());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn etag(&self, name: &str) -> String {
        self.state.files.lock().unwrap().content[name].1.clone()
    }
}

enum Piece {
    Data(Bytes),
    Sleep(Duration),
    Drop,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `bytes=A-` or `bytes=A-B`.
fn parse_range(range: &str, len: usize) -> Option<(usize, usize)> {
    let spec = range.strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let first: usize = first.parse().ok()?;
    let last: usize = if last.is_empty() {
        len.checked_sub(1)?
    } else {
        last.parse::<usize>().ok()?.min(len.checked_sub(1)?)
    };
    (first <= last).then_some((first, last))
}

async fn serve(
    State(state): State<Arc<ServerState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let fault = state.faults.lock().unwrap().pop_front();
    let mut seen = Seen {
        path: name.clone(),
        host: header(&headers, "host"),
        range: header(&headers, "range"),
        if_range: header(&headers, "if-range"),
        authorization: header(&headers, "authorization"),
        status: 200,
    };
    match &fault {
        Some(Fault::Delay(wait)) => tokio::time::sleep(*wait).await,
        Some(Fault::Replace(content)) => {
            let mut files = state.files.lock().unwrap();
            files.generation += 1;
            let etag = format!("\"{name}-{}\"", files.generation);
            files.content.insert(name.clone(), (content.clone(), etag));
        }
        _ => {}
    }
    let file = state.files.lock().unwrap().content.get(&name).cloned();
    let status = match (&fault, &file) {
        (Some(Fault::Status(code)), _) => Some(*code),
        (_, None) => Some(404),
        _ => None,
    };
    if let Some(code) = status {
        seen.status = code;
        state.seen.lock().unwrap().push(seen);
        return Response::builder()
            .status(code)
            .body(Body::from("injected"))
            .unwrap();
    }
    let (content, etag) = file.unwrap();
    let len = content.len();
    let validators = *state.validators.lock().unwrap();
    let range = seen
        .range
        .as_deref()
        .and_then(|r| parse_range(r, len))
        .filter(|_| {
            seen.if_range.as_ref().is_none_or(|v| match validators {
                Validators::ETag => *v == etag,
                Validators::WeakAndDate => v == LAST_MODIFIED,
                Validators::Nothing => false,
            })
        });
    let (first, last, code) = match range {
        Some((first, last)) => (first, last, StatusCode::PARTIAL_CONTENT),
        None => (0, len.saturating_sub(1), StatusCode::OK),
    };
    seen.status = code.as_u16();
    state.seen.lock().unwrap().push(seen);
    let body = Bytes::from(content[first..(last + 1).min(len)].to_vec());
    let mut pieces: VecDeque<Piece> = VecDeque::new();
    let cut = match fault {
        Some(Fault::DropAfter(n)) => Some((n, None)),
        Some(Fault::StallAfter(n, wait)) => Some((n, Some(wait))),
        _ => None,
    };
    match cut {
        Some((n, stall)) => {
            let n = n.min(body.len());
            for chunk in body.slice(..n).chunks(256 * 1024) {
                pieces.push_back(Piece::Data(Bytes::copy_from_slice(chunk)));
            }
            match stall {
                Some(wait) => {
                    pieces.push_back(Piece::Sleep(wait));
                    pieces.push_back(Piece::Data(body.slice(n..)));
                }
                None => pieces.push_back(Piece::Drop),
            }
        }
        None => {
            for chunk in body.chunks(256 * 1024) {
                pieces.push_back(Piece::Data(Bytes::copy_from_slice(chunk)));
            }
        }
    }
    let stream = futures_util::stream::unfold(pieces, |mut pieces| async move {
        loop {
            match pieces.pop_front()? {
                Piece::Sleep(wait) => tokio::time::sleep(wait).await,
                Piece::Data(data) => return Some((Ok::<_, std::io::Error>(data), pieces)),
                Piece::Drop => {
                    return Some((Err(std::io::Error::other("injected drop")), pieces));
                }
            }
        }
    });
    let mut response = Response::builder().status(code);
    match validators {
        Validators::ETag => response = response.header("etag", etag),
        Validators::WeakAndDate => {
            response = response
                .header("etag", format!("W/{etag}"))
                .header("last-modified", LAST_MODIFIED)
        }
        Validators::Nothing => {}
    }
    let mut response = response
        .header("accept-ranges", "bytes")
        .header("content-length", (last + 1 - first).to_string());
    if code == StatusCode::PARTIAL_CONTENT {
        response = response.header("content-range", format!("bytes {first}-{last}/{len}"));
    }
    response.body(Body::from_stream(stream)).unwrap()
}
