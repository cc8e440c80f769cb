//! How the simulated agents send heartbeats. Against a plain `http://` URL they share a pool
//! of HTTP/1.1 connections of this module's own and send requests prepared once: the load
//! generator shares the cores with the server it measures, and reqwest's per-request work
//! (URL parsing, header maps, its pool's bookkeeping, a timer) cost it about as much CPU as
//! the server spent answering. `https://` URLs go through the shared reqwest client (TLS and
//! `--insecure` live there).
//!
//! A connection per agent (as real agents have) was tried and doubled the kernel time of
//! both processes: 10,000 sockets each carrying one request a second, every request with
//! its own ACKs, where a pool keeps a few hundred busy sockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest a heartbeat may take (reqwest's client timeout, the same).
const TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with one heartbeat: the status, when there was an answer.
pub type Failure = Option<StatusCode>;

/// Where every agent's heartbeats go.
#[derive(Debug)]
pub enum Sender {
    Direct(Pool),
    Pooled(reqwest::Client),
}

/// Idle connections to one `host:port`, reused last-in first-out.
#[derive(Debug)]
pub struct Pool {
    authority: String,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Body>>>,
}

impl Sender {
    /// The direct pool for `http://host:port` bases, else `http`.
    pub fn new(http: &reqwest::Client, base: &str) -> Sender {
        if let Some(authority) = base.strip_prefix("http://").filter(|a| !a.contains('/')) {
            if let Ok(host) = HeaderValue::from_str(authority) {
                return Sender::Direct(Pool {
                    authority: authority.to_string(),
                    host,
                    idle: Mutex::new(Vec::new()),
                });
            }
        }
        Sender::Pooled(http.clone())
    }
}

/// One agent's heartbeat: where it goes and its body, prepared once.
pub struct Beat {
    sender: Arc<Sender>,
    /// The path (direct) or the whole URL (reqwest).
    target: String,
    body: Bytes,
}

impl Beat {
    /// Heartbeats to `{base}/v1/heartbeat/{uuid}` with `body`.
    pub fn new(sender: &Arc<Sender>, base: &str, uuid: &str, body: String) -> Beat {
        let target = match sender.as_ref() {
            Sender::Direct(_) => format!("/v1/heartbeat/{uuid}"),
            Sender::Pooled(_) => format!("{base}/v1/heartbeat/{uuid}"),
        };
        Beat {
            sender: Arc::clone(sender),
            target,
            body: Bytes::from(body),
        }
    }

    /// Sends one heartbeat; `Ok` when it was answered 202.
    pub async fn send(&self) -> Result<(), Failure> {
        let status = match self.sender.as_ref() {
            Sender::Direct(pool) => pool.post(&self.target, self.body.clone()).await?,
            Sender::Pooled(http) => http
                .post(self.target.as_str())
                .header("X-OpenStack-Ironic-API-Version", "1.68")
                .header("Content-Type", "application/json")
                .body(self.body.clone())
                .send()
                .await
                .map_err(|error| error.status())?
                .status(),
        };
        if status == StatusCode::ACCEPTED {
            Ok(())
        } else {
            Err(Some(status))
        }
    }
}

impl Pool {
    fn take(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sender);
    }

    async fn connect(&self) -> Result<SendRequest<Body>, Failure> {
        let stream = TcpStream::connect(&self.authority).await.map_err(|error| {
            tracing::debug!(%error, "connecting for heartbeats");
            None
        })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| None)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "heartbeat connection ended");
            }
        });
        Ok(sender)
    }

    /// POSTs `body` to `path` on an idle or new connection; the status of the answer.
    async fn post(&self, path: &str, body: Bytes) -> Result<StatusCode, Failure> {
        let mut sender = match self.take() {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.host.clone())
            .header("X-OpenStack-Ironic-API-Version", "1.68")
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .map_err(|_| None)?;
        let exchange = async {
            sender.ready().await.map_err(|_| None)?;
            let response = sender.send_request(request).await.map_err(|_| None)?;
            let status = response.status();
            // Read the (empty or error) body to the end so the connection can be reused.
            axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
                .await
                .map_err(|_| Some(status))?;
            Ok::<_, Failure>(status)
        };
        let status = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| None)??;
        self.give_back(sender);
        Ok(status)
    }
}
