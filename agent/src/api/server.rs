//! The listener: binds, accepts plain or TLS connections, serves HTTP/1.1 on each, and shuts
//! down gracefully on request or when the agent's lifecycle turns to `Stopped`.

use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use super::router;
use crate::commands::service::CommandService;
use crate::context::{AgentContext, Lifecycle};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TLS configuration (see [`crate::tls::server_config`]); `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a client may take to complete the TLS handshake, and to send a request's
    /// headers (also while the connection idles between requests). Default 30 s.
    pub header_read_timeout: Duration,
    /// How long a shutdown waits for requests in flight before dropping them. Default 60 s,
    /// Ironic's `[agent]command_timeout`.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the agent API to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the agent API's bound address: {0}")]
    LocalAddr(#[source] std::io::Error),
    #[error("the agent API server task failed: {0}")]
    Task(#[from] JoinError),
}

/// What a request's handler may know about its connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionInfo {
    pub tls: bool,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// A running API server. Dropping it shuts the server down in the background.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// The address the listener is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in flight complete (up to
    /// `ServeOptions::shutdown_grace`), and returns once the server has stopped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.send_replace(true);
        Ok(self.task.await?)
    }

    /// Waits until the server stops by itself, when the agent's lifecycle turns to `Stopped`.
    pub async fn stopped(self) -> Result<(), ServeError> {
        let ApiServer { shutdown, task, .. } = self;
        let result = task.await;
        drop(shutdown);
        Ok(result?)
    }
}

/// Binds `settings.listen_host` (or `::`, falling back to `0.0.0.0` when IPv6 is unavailable)
/// on `settings.listen_port` and serves [`router`] there. Must run inside a Tokio runtime.
pub fn serve<S: CommandService>(
    ctx: Arc<AgentContext>,
    service: Arc<S>,
    options: ServeOptions,
) -> Result<ApiServer, ServeError> {
    let listener = bind(ctx.settings.listen_host, ctx.settings.listen_port)?;
    let local_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let (shutdown, shutdown_requested) = watch::channel(false);
    let lifecycle = ctx.watch_lifecycle();
    let app = router(ctx, service);
    tracing::info!(
        %local_addr,
        tls = options.tls.is_some(),
        "agent API listening"
    );
    let task = tokio::spawn(accept_loop(
        listener,
        app,
        options,
        shutdown_requested,
        lifecycle,
    ));
    Ok(ApiServer {
        local_addr,
        shutdown,
        task,
    })
}

fn bind(host: Option<IpAddr>, port: u16) -> Result<TcpListener, ServeError> {
    let bind_to = |ip: IpAddr| {
        let addr = SocketAddr::new(ip, port);
        listen(addr).map_err(|source| ServeError::Bind { addr, source })
    };
    match host {
        Some(ip) => bind_to(ip),
        None => bind_to(IpAddr::V6(Ipv6Addr::UNSPECIFIED)).or_else(|v6_error| {
            tracing::info!(error = %v6_error, "IPv6 unavailable, listening on 0.0.0.0");
            bind_to(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        }),
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `::` takes IPv4 connections too, whatever the system default.
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6V6Only, &false)
            .map_err(std::io::Error::from)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Resolves when the server should stop: on `shutdown`, when the handle is dropped, or when
/// the lifecycle turns to `Stopped`.
async fn stop_requested(
    shutdown: &mut watch::Receiver<bool>,
    lifecycle: &mut watch::Receiver<Lifecycle>,
) {
    tokio::select! {
        _ = shutdown.wait_for(|requested| *requested) => {}
        _ = lifecycle.wait_for(|state| matches!(state, Lifecycle::Stopped { .. })) => {}
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
    mut lifecycle: watch::Receiver<Lifecycle>,
) {
    let tls = options.tls.clone().map(TlsAcceptor::from);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let http = Arc::new(http);
    let (closing, closing_watch) = watch::channel(false);
    let mut connections = JoinSet::new();

    loop {
        tokio::select! {
            () = stop_requested(&mut shutdown, &mut lifecycle) => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    tracing::warn!(%error, "agent API connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection = Connection {
                        app: app.clone(),
                        http: Arc::clone(&http),
                        closing: closing_watch.clone(),
                        handshake_timeout: options.header_read_timeout,
                    };
                    connections.spawn(connection.run(stream, peer, tls.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "agent API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    drop(listener);
    closing.send_replace(true);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "agent API connections still busy after the shutdown grace period; dropping them"
        );
        connections.shutdown().await;
    }
    tracing::info!("agent API stopped");
}

/// Resolves when the server starts closing (or is gone).
async fn closing(closing: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means closing.
    let _ = closing.wait_for(|closing| *closing).await;
}

/// One accepted connection.
struct Connection {
    app: Router,
    http: Arc<http1::Builder>,
    closing: watch::Receiver<bool>,
    handshake_timeout: Duration,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(error) => {
                tracing::debug!(%peer, %error, "agent API connection lost before use");
                return;
            }
        };
        let info = ConnectionInfo {
            tls: tls.is_some(),
            local,
            peer,
        };
        let Some(acceptor) = tls else {
            return self.serve(stream, info).await;
        };
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            handshake = handshake => match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::info!(%peer, %error, "agent API TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "agent API TLS handshake timed out");
                    return;
                }
            },
            () = closing(&mut self.closing) => return,
        };
        self.serve(stream, info).await;
    }

    /// Serves HTTP/1.1 until the client leaves or the server closes; on close, the request
    /// in flight completes first.
    async fn serve<I>(mut self, io: I, info: ConnectionInfo)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(info);
            let mut app = app.clone();
            async move {
                poll_fn(|cx| <Router as Service<hyper::Request<Body>>>::poll_ready(&mut app, cx))
                    .await?;
                // Router's error type is Infallible: every request gets a response.
                app.call(request.map(Body::new)).await
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = closing(&mut self.closing) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(peer = %info.peer, %error, "agent API connection ended with an error");
        }
    }
}
