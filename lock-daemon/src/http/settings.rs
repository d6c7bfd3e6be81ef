//! `[http]` settings, validated in `config.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::auth::TokenEntry;

/// The default address: loopback only (put a reverse proxy in front, or turn TLS on to
/// listen on the network).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Connections served at once; more wait up to `QUEUE_WAIT` for a place (as many again at
/// most), and are closed after that.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// The validated `[http]` section (present only when `http.enabled = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// `None`: plain HTTP (loopback only).
    pub tls: Option<TlsSettings>,
    pub tokens: Vec<TokenEntry>,
    /// `GET /api/v1/preview.mjpeg` (admin): live annotated frames. Off by default: these
    /// are photos of people.
    pub preview: bool,
    /// `POST /face-recognition` without a token (read-only, loopback only).
    pub compat_without_token: bool,
    /// `GET /metrics` without a token (loopback only).
    pub metrics_without_token: bool,
    pub max_connections: usize,
}

/// Certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}
