//! The HTTP API: status, events, recognise, manual unlock, mode, live preview, metrics and
//! classifier upload, behind scoped bearer tokens (`auth.rs`). Off unless `[http]` says
//! `enabled = true`.
//!
//! * **Its own thread.** One thread runs a single-threaded tokio runtime (axum on hyper);
//!   blocking work (recognition of an uploaded photo, reading the audit log, JPEG
//!   encoding, checking a classifier) runs on at most [`BLOCKING_THREADS`] helper threads.
//!   All of them run at a lower CPU priority (nice [`NICE`]) than the door loop and the
//!   vision thread.
//! * **One way in.** Commands reach the door loop as [`Input::Command`] on the service's
//!   one channel, like the control socket's, and pass through the door controller and the
//!   audit log; status comes from the snapshot the loop publishes. The loop never waits on
//!   a client.
//! * **Bounded.** At most `http.max_connections` connections; request headers must arrive
//!   within [`HEADER_TIMEOUT`], bodies within [`BODY_TIMEOUT`] and below per-route limits;
//!   one uploaded photo is recognised at a time (others get 503); a connection lives at
//!   most [`CONNECTION_LIFETIME`].

pub mod auth;
pub mod limit;
pub mod settings;

mod api;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, Semaphore};

pub use settings::{HttpSettings, TlsSettings};

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::preview::PreviewFeed;
use crate::recognizer::PhotoRecognizer;
use crate::service::{Input, StatusBoard};

/// How long a client may take to send a request's headers (slow-drip clients are cut off).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection is kept (a live preview ends after this and reconnects).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// How long a connection over `http.max_connections` waits for a place.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Threads for blocking work (recognition, file reads, JPEG encoding).
pub const BLOCKING_THREADS: usize = 4;
/// The CPU priority of the HTTP threads (the door loop and recognition run at 0).
pub const NICE: i32 = 10;

/// What the server needs from the service.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The service's one channel to the door loop.
    pub inputs: SyncSender<Input>,
    /// The status snapshot the door loop publishes.
    pub board: StatusBoard,
    pub metrics: Arc<Metrics>,
    /// The loaded models, for `recognize` and checking uploaded classifiers (`None` when
    /// the service runs on a scripted recognizer).
    pub photos: Option<PhotoRecognizer>,
    pub preview: PreviewFeed,
    /// Asks the vision thread to reload the classifier.
    pub reload: Arc<AtomicBool>,
    pub settings: Settings,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http.listen = \"{addr}\": cannot listen: {source}; {hint}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("http.{key} = {path}: {reason}")]
    Tls {
        key: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("cannot start the HTTP server: {0}")]
    Start(std::io::Error),
}

/// The running server; stops accepting when dropped.
#[derive(Debug)]
pub struct HttpServer {
    local: SocketAddr,
    stop: Arc<Notify>,
}

impl HttpServer {
    /// The address it listens on (the port the system chose for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// Loads the certificate and key as [`serve`] would (for `check-config`).
pub fn check_tls(settings: &TlsSettings) -> Result<(), HttpError> {
    tls::acceptor(settings).map(drop)
}

/// Binds the address, loads the TLS certificate, and serves on a thread of its own.
pub fn serve(settings: &HttpSettings, shared: Shared) -> Result<HttpServer, HttpError> {
    let tls = settings.tls.as_ref().map(tls::acceptor).transpose()?;
    let addr = settings.listen;
    let bind_error = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                "another program (or another lock-daemon) uses that port; choose another"
            }
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need privileges the service does not have; use 8080 or 8443"
            }
            std::io::ErrorKind::AddrNotAvailable => "this machine has no such address",
            // EAFNOSUPPORT: RestrictAddressFamilies=AF_UNIX in the hardened unit.
            _ if source.raw_os_error() == Some(97) => {
                "the service may not open network sockets: under systemd, install the \
                 drop-in /usr/share/facelock/lock-daemon-http.conf (docs/deployment.md)"
            }
            _ => "check http.listen",
        };
        HttpError::Bind { addr, source, hint }
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("http-work")
        .on_thread_start(lower_priority)
        .build()
        .map_err(HttpError::Start)?;
    let stop = Arc::new(Notify::new());
    let router = api::router(api::App::new(settings, shared));
    let max_connections = settings.max_connections;
    let server_stop = stop.clone();
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            lower_priority();
            runtime.block_on(accept_loop(
                listener,
                tls,
                router,
                server_stop,
                max_connections,
            ));
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(HttpError::Start)?;
    log::info!(
        "HTTP API on {}://{local}",
        if settings.tls.is_some() {
            "https"
        } else {
            "http"
        }
    );
    Ok(HttpServer { local, stop })
}

/// Nice value [`NICE`] for the calling thread (Linux sets it per thread).
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, NICE) {
        log::debug!("cannot lower the HTTP threads' priority: {e}");
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    stop: Arc<Notify>,
    max_connections: usize,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            log::error!("HTTP API: {e}");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(max_connections));
    // Connections over the limit wait (a bounded number of them, a bounded time) for a
    // place rather than being reset at once: a burst of clients is served a little later.
    let waiting = Arc::new(Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            () = stop.notified() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                log::warn!("HTTP API: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(queued) = waiting.clone().try_acquire_owned() else {
            log::debug!("HTTP API: too many connections; {peer} turned away");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            let permit = tokio::time::timeout(QUEUE_WAIT, permits.acquire_owned()).await;
            drop(queued);
            let Ok(Ok(_permit)) = permit else {
                log::debug!("HTTP API: {max_connections} connections open; {peer} turned away");
                return;
            };
            match tls {
                None => serve_connection(TokioIo::new(stream), peer, router).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(TokioIo::new(stream), peer, router).await
                        }
                        Ok(Err(e)) => log::debug!("HTTP API: TLS handshake with {peer}: {e}"),
                        Err(_) => log::debug!("HTTP API: TLS handshake with {peer} timed out"),
                    }
                }
            }
        });
    }
}

/// The client's address, for rate limits and the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

async fn serve_connection<I>(io: TokioIo<I>, peer: SocketAddr, router: axum::Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt as _;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(Peer(peer));
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("HTTP API: connection from {peer}: {e}"),
        Err(_) => log::debug!("HTTP API: connection from {peer} closed at its time limit"),
    }
}
