//! `serve`: opens the database, makes sure an operator token exists, binds and serves both
//! APIs over HTTP/1.1, plain or TLS, until asked to stop.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::app::{self, AppState};
use crate::db::{now_ms, Database, DbError};
use crate::error::ApiError;
use crate::iso::{IsoError, IsoSource};
use crate::settings::{ServeSettings, TlsMode, AUTO_TLS_CERT_FILE, ISO_URL_KEY_FILE};
use crate::tls::{self, TlsError};
use crate::token;

/// How long a client may take for the TLS handshake and for a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("creating the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("creating the operator token: {0}")]
    OperatorToken(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("per-node ISOs: {0}")]
    Iso(#[from] IsoError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server. Dropping it stops the server in the background.
#[derive(Debug)]
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub tls: bool,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// `http(s)://<bound address>`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting, lets requests in flight finish, and returns when done.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "server task ended abnormally");
        }
    }
}

/// Starts serving; must run inside a Tokio runtime.
pub async fn start(settings: ServeSettings) -> Result<RunningServer, ServeError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| ServeError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    let db = Database::open(&settings.database_path())?;
    ensure_operator_token(&db, &settings)
        .await
        .map_err(|error| ServeError::OperatorToken(error.message))?;
    let tls_config = tls::server_config(&settings)?;
    let listener = listen(settings.listen).map_err(|source| ServeError::Bind {
        addr: settings.listen,
        source,
    })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: settings.listen,
        source,
    })?;
    let iso = match &settings.iso {
        Some(iso) => {
            let auto_ca =
                (settings.tls == TlsMode::Auto).then(|| settings.data_dir.join(AUTO_TLS_CERT_FILE));
            let url_key = settings.data_dir.join(ISO_URL_KEY_FILE);
            Some(Arc::new(IsoSource::load(
                iso,
                auto_ca.as_deref(),
                &url_key,
            )?))
        }
        None => None,
    };
    let state = AppState {
        db,
        settings: Arc::new(settings),
        tls: tls_config.is_some(),
        iso,
    };
    let router = app::router(state);
    let (shutdown, stop) = watch::channel(false);
    let tls = tls_config.is_some();
    tracing::info!(%local_addr, tls, "rivet-server listening");
    let task = tokio::spawn(accept_loop(
        listener,
        router,
        tls_config.map(TlsAcceptor::from),
        stop,
    ));
    Ok(RunningServer {
        local_addr,
        tls,
        shutdown,
        task,
    })
}

/// On first start (no operator token in the database), makes one and writes it to
/// `<data dir>/operator-token` (mode 0600), where the CLI on this host finds it.
async fn ensure_operator_token(db: &Database, settings: &ServeSettings) -> Result<(), ApiError> {
    let path = settings.operator_token_path();
    let fresh = token::generate();
    let digest = token::digest(&fresh);
    let created = db
        .write(move |conn| {
            let count: i64 = conn.query_row("SELECT count(*) FROM operator_tokens", [], |row| row.get(0))?;
            if count > 0 {
                return Ok(false);
            }
            conn.execute(
                "INSERT INTO operator_tokens (name, token_sha256, created_at) VALUES ('default', ?1, ?2)",
                rusqlite::params![digest, now_ms()],
            )?;
            Ok(true)
        })
        .await?;
    if created {
        tls::write_new(&path, format!("{fresh}\n").as_bytes(), 0o600)
            .map_err(|error| ApiError::internal(error.to_string()))?;
        tracing::info!(file = %path.display(), "created the operator token");
    }
    Ok(())
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let http = Arc::new(http);
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = closed(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        tls.clone(),
                        router.clone(),
                        Arc::clone(&http),
                        closing_rx.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    closing.send_replace(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        connections.shutdown().await;
    }
    tracing::info!("rivet-server stopped");
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    http: Arc<http1::Builder>,
    closing: watch::Receiver<bool>,
) {
    match tls {
        None => serve_http(stream, peer, router, http, closing).await,
        Some(acceptor) => {
            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, peer, router, http, closing).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Resolves when the server starts closing (or is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means closing.
    let _ = closing.wait_for(|closing| *closing).await;
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    http: Arc<http1::Builder>,
    mut closing: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut router = router.clone();
        async move {
            poll_fn(|cx| <Router as Service<hyper::Request<Body>>>::poll_ready(&mut router, cx))
                .await?;
            router.call(request.map(Body::new)).await
        }
    });
    let connection = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = closed(&mut closing) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
