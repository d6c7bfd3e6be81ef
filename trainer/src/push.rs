//! `trainer push`: upload a classifier file to the lock daemon's HTTP API
//! (`PUT /api/v1/classifier`), so retraining on the workstation and updating the lock is one
//! command.
//!
//! Everything that can be checked before sending is checked here first (the URL, the token
//! file, the classifier itself), so that a mistake is reported with a fix rather than as an
//! HTTP error. The token is only ever sent in the `Authorization` header: it is never printed
//! and never part of a URL.

use std::fmt;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use recognition::ClassifierMeta;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The largest classifier file the lock accepts.
pub const MAX_CLASSIFIER_BYTES: u64 = 8 * 1024 * 1024;

/// Path of the classifier endpoint, below the base URL.
pub const ENDPOINT: &str = "/api/v1/classifier";

/// Default for `--timeout-secs`: the whole exchange, upload and reload included.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// The most of a response body read (answers are small JSON documents).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Why a push failed. Each message says what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A problem found before anything was sent: the URL, the token file, the CA file or the
    /// classifier file.
    #[error("{0}")]
    Local(String),
    /// No HTTP answer: connection refused, name not found, TLS failure, timeout.
    #[error("{0}")]
    Transport(String),
    /// The lock answered with an error status.
    #[error("{}", status_message(*.status, .server.as_deref(), .retry_after.as_deref(), .location.as_deref()))]
    Status {
        status: u16,
        /// The `error` field of the server's JSON answer (or a short plain-text answer).
        server: Option<String>,
        /// `Retry-After` (429, 503).
        retry_after: Option<String>,
        /// `Location` (redirects, which are never followed).
        location: Option<String>,
    },
    /// The lock answered 200 with something other than the documented JSON.
    #[error("{0}")]
    BadAnswer(String),
    /// The lock reports a different sha256 than the file that was sent.
    #[error(
        "the lock reports sha256 {server} for the classifier it put in service, but the file \
         sent has sha256 {local}; something between here and the lock changed it (a proxy?): \
         check the lock's classifier and push again"
    )]
    ShaMismatch { local: String, server: String },
}

impl PushError {
    /// The HTTP status, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PushError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type Result<T, E = PushError> = std::result::Result<T, E>;

fn local(message: impl Into<String>) -> PushError {
    PushError::Local(message.into())
}

fn status_message(
    status: u16,
    server: Option<&str>,
    retry_after: Option<&str>,
    location: Option<&str>,
) -> String {
    let what = match status {
        300..=399 => format!(
            "the server answered {status} with a redirect to {}: redirects are not followed \
             (the token must not travel on to another address); pass the final address to --url",
            location.unwrap_or("(no Location)")
        ),
        400 => "the lock refused the request as malformed (400): are this trainer and the \
                lock-daemon the same version?"
            .to_owned(),
        401 => "the token was not accepted (401): check --token-file (it must hold the token \
                `lock-daemon token new` printed, and its hash must be in this lock's \
                configuration)"
            .to_owned(),
        403 => "the token lacks the admin scope (403): create one with \
                `lock-daemon token new NAME --scope admin` and add its lines to the lock's \
                configuration"
            .to_owned(),
        404 => "there is no classifier endpoint at this address (404): is --url the base \
                address of the lock's HTTP API (e.g. https://lock.example:8443), and does the \
                lock run a lock-daemon with the HTTP API?"
            .to_owned(),
        405 => "the server does not accept uploads at this address (405): is --url the lock's \
                HTTP API and not some other server?"
            .to_owned(),
        413 => format!(
            "the lock refused the file as too large (413): it accepts at most {} MiB",
            MAX_CLASSIFIER_BYTES / (1024 * 1024)
        ),
        415 => "the lock refused the content type (415): are this trainer and the lock-daemon \
                the same version?"
            .to_owned(),
        422 => {
            "the lock refused the classifier (422); the old classifier stays in service".to_owned()
        }
        429 => match retry_after {
            Some(secs) => format!(
                "too many requests (429): the lock rate-limits its API; try again in {secs} s"
            ),
            None => "too many requests (429): the lock rate-limits its API; try again in a \
                     minute"
                .to_owned(),
        },
        503 => match retry_after {
            Some(secs) => format!(
                "the lock is busy or stopping (503); the old classifier stays in service: try \
                 again in {secs} s"
            ),
            None => "the lock is busy or stopping (503); the old classifier stays in service: \
                     try again in a moment"
                .to_owned(),
        },
        500..=599 => format!(
            "the lock failed to handle the request ({status}): see the lock-daemon's log; the \
             old classifier should still be in service"
        ),
        _ => format!("unexpected answer from the lock ({status})"),
    };
    match server {
        Some(text) => format!("{what}\nthe lock says: {text}"),
        None => what,
    }
}

/// A checked `--url`: where to send the classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The full URL of the classifier endpoint.
    pub endpoint: String,
    /// The host, without brackets for IPv6.
    pub host: String,
    pub https: bool,
}

impl Target {
    /// Whether the host is this machine (`localhost`, 127.0.0.0/8, `::1`): the case of an SSH
    /// tunnel, where plain HTTP is fine.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The warning due when the token would cross the network in clear text.
    pub fn clear_text_warning(&self) -> Option<String> {
        (!self.https && !self.is_loopback()).then(|| {
            format!(
                "--url is plain http:// to {}: the token travels in clear text; use https or \
                 an SSH tunnel (ssh -L 8080:127.0.0.1:8080 LOCK, then --url http://127.0.0.1:8080)",
                self.host
            )
        })
    }
}

/// Checks `--url` and derives the endpoint. The URL is the base address of the lock's API
/// (`https://lock.example:8443`, or with a path prefix behind a reverse proxy); the full
/// endpoint URL is accepted too.
pub fn parse_url(url: &str) -> Result<Target> {
    let url = url.trim();
    let example = "write it as https://HOST:PORT or http://127.0.0.1:PORT";
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(local(format!(
            "--url has spaces or control characters; {example}"
        )));
    }
    let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
        (false, rest)
    } else {
        return Err(local(format!(
            "--url {url:?} must start with http:// or https://; {example}"
        )));
    };
    // Tokens and secrets in URLs end up in logs (shell history, proxies, server access logs).
    if url.contains('?') {
        return Err(local(
            "--url carries a query string (?...): the token goes in --token-file, never in the \
             URL (URLs end up in logs); remove everything from the '?'",
        ));
    }
    if url.contains('#') {
        return Err(local(
            "--url carries a fragment (#...); remove everything from the '#'",
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(local(
            "--url carries a user name or password (user:pass@): credentials do not belong in \
             URLs (they end up in logs); remove them and pass the token with --token-file",
        ));
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        let end = bracketed.find(']').ok_or_else(|| {
            local(format!(
                "--url has an unclosed '[' in {authority:?}; {example}"
            ))
        })?;
        let (host, after) = bracketed.split_at(end);
        check_port(&after[1..], example)?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(local(format!(
                "--url: [{host}] is not an IPv6 address; {example}"
            )));
        }
        host
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, format!(":{port}")),
            None => (authority, String::new()),
        };
        check_port(&port, example)?;
        host
    };
    if host.is_empty() {
        return Err(local(format!("--url {url:?} names no host; {example}")));
    }
    let path = path.trim_end_matches('/');
    let base = format!("{}{}", &url[..url.len() - rest.len()], authority);
    let endpoint = if path.ends_with(ENDPOINT) {
        format!("{base}{path}")
    } else {
        format!("{base}{path}{ENDPOINT}")
    };
    Ok(Target {
        endpoint,
        host: host.to_owned(),
        https,
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `port` is empty or `:` followed by a port number.
fn check_port(port: &str, example: &str) -> Result<()> {
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(()),
        Some(n) if n.parse::<u16>().is_ok_and(|n| n > 0) => Ok(()),
        _ => Err(local(format!("--url has a bad port {port:?}; {example}"))),
    }
}

/// An API token. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A token read from its file, and the warnings due about the file.
#[derive(Debug)]
pub struct TokenFile {
    pub token: Token,
    pub warnings: Vec<String>,
}

/// Reads the token from `path` (surrounding whitespace trimmed). Refuses a missing or empty
/// file and one that holds more than a token; warns when others than the owner may read it.
pub fn read_token(path: &Path) -> Result<TokenFile> {
    let create = "save the token printed by `lock-daemon token new NAME --scope admin` in it \
                  (only the token, on one line) and `chmod 600` it";
    let text = std::fs::read(path).map_err(|e| {
        local(format!(
            "cannot read the token file {}: {e}; {create}",
            path.display()
        ))
    })?;
    let text = String::from_utf8(text).map_err(|_| {
        local(format!(
            "the token file {} is not text; {create}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(local(format!(
            "the token file {} is empty; {create}",
            path.display()
        )));
    }
    // Nothing of the file's content is quoted: it may be a token with a typo.
    if token.starts_with("sha256:") || token.contains("hash") {
        return Err(local(format!(
            "the token file {} holds the token's hash (the configuration line), not the token; \
             {create}",
            path.display()
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(local(format!(
            "the token file {} holds more than one word or non-ASCII characters; {create}",
            path.display()
        )));
    }
    let mut warnings = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "the token file {} can be read by other users (mode {:03o}): \
                     run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ));
            }
        }
    }
    Ok(TokenFile {
        token: Token(token.to_owned()),
        warnings,
    })
}

/// A classifier file checked before sending.
#[derive(Debug)]
pub struct LocalClassifier {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub meta: ClassifierMeta,
    pub signed: bool,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
}

impl LocalClassifier {
    /// The warning due for an unsigned file.
    pub fn unsigned_warning(&self) -> Option<String> {
        (!self.signed).then(|| {
            format!(
                "{} carries no signature: a lock with security.trusted_key set refuses it; \
                 sign it first with `trainer sign KEY {}`",
                self.path.display(),
                self.path.display()
            )
        })
    }
}

/// Reads `path` and checks that it is a classifier the lock could accept: at most
/// [`MAX_CLASSIFIER_BYTES`], with readable facelock metadata.
pub fn check_classifier(path: &Path) -> Result<LocalClassifier> {
    let size = std::fs::metadata(path)
        .map_err(|e| {
            local(format!(
                "cannot read the classifier {}: {e}; pass the file written by `trainer train -o`",
                path.display()
            ))
        })?
        .len();
    if size > MAX_CLASSIFIER_BYTES {
        return Err(local(format!(
            "{} is {size} bytes; the lock accepts at most {} MiB: is it a classifier file (from \
             `trainer train -o`)?",
            path.display(),
            MAX_CLASSIFIER_BYTES / (1024 * 1024)
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        local(format!(
            "cannot read the classifier {}: {e}",
            path.display()
        ))
    })?;
    if bytes.len() as u64 > MAX_CLASSIFIER_BYTES {
        return Err(local(format!(
            "{} grew past {} MiB while being read; push it again once it is written",
            path.display(),
            MAX_CLASSIFIER_BYTES / (1024 * 1024)
        )));
    }
    let meta = recognition::artifact::meta_from_bytes(path, &bytes).map_err(|e| {
        local(format!(
            "{e}; nothing was sent: push the classifier file written by `trainer train -o`"
        ))
    })?;
    Ok(LocalClassifier {
        path: path.to_owned(),
        signed: recognition::signature::is_signed(&bytes),
        sha256: sha256_hex(&bytes),
        meta,
        bytes,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// How to reach the lock.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Trust only the certificates in this PEM file (instead of the public web roots).
    pub ca_cert: Option<PathBuf>,
    /// The longest the whole exchange may take.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_cert: None,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        }
    }
}

/// The lock's answer to a successful push.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pushed {
    /// Whether the lock confirmed the classifier in service (false with 202: written and
    /// checked, the reload still pending).
    #[serde(default = "yes")]
    pub ok: bool,
    #[serde(default)]
    pub message: String,
    /// The people the classifier now in service enrols.
    #[serde(default)]
    pub people: Vec<String>,
    /// Its creation time (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// sha256 of the file the lock put in service; equal to the local file's.
    pub sha256: String,
}

/// Reads the certificates of a `--ca-cert` PEM file.
fn read_ca_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path)
        .map_err(|e| local(format!("cannot read --ca-cert {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(local(format!(
                    "--ca-cert {} is not a readable PEM file ({e}); pass the lock's certificate \
                     or its CA's, as PEM",
                    path.display()
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(local(format!(
            "--ca-cert {} holds no certificate (no -----BEGIN CERTIFICATE----- block); pass \
             the lock's certificate (http.tls_cert) or its CA's, not a private key",
            path.display()
        )));
    }
    Ok(certs)
}

fn agent(target: &Target, options: &ClientOptions) -> Result<ureq::Agent> {
    let mut config = ureq::Agent::config_builder()
        // Error statuses are answers to report, with the server's explanation.
        .http_status_as_error(false)
        // A redirect would carry the classifier (and, to the same host, the token) elsewhere.
        .max_redirects(0)
        .timeout_global(Some(options.timeout))
        .user_agent(concat!("facelock-trainer/", env!("CARGO_PKG_VERSION")));
    if target.is_loopback() {
        // An SSH tunnel or the lock itself: a proxy from the environment cannot reach it.
        config = config.proxy(None);
    }
    if let Some(path) = &options.ca_cert {
        let certs = read_ca_certs(path)?;
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    Ok(config.build().new_agent())
}

/// Sends classifier bytes to the lock and checks its answer. `bytes` are sent as they are:
/// the local checks are [`check_classifier`]'s.
pub fn push_bytes(
    target: &Target,
    token: &Token,
    bytes: &[u8],
    options: &ClientOptions,
) -> Result<Pushed> {
    let agent = agent(target, options)?;
    let response = agent
        .put(&target.endpoint)
        .header("Authorization", token.header_value())
        .header("Content-Type", "application/octet-stream")
        .header("Accept", "application/json")
        .send(bytes)
        .map_err(|e| transport_error(e, target, options))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| clip(v, 200))
    };
    let retry_after = header("retry-after");
    let location = header("location");
    let mut body = response.into_body();
    let text = body
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    // 202: checked and written, but the lock did not confirm it in service in time.
    if status != 200 && status != 202 {
        return Err(PushError::Status {
            status,
            server: server_error(&text),
            retry_after,
            location,
        });
    }
    let pushed: Pushed = serde_json::from_str(&text).map_err(|e| {
        PushError::BadAnswer(format!(
            "the lock answered 200 but not with the expected JSON ({e}): is --url the lock's \
             HTTP API? Check on the lock whether the classifier was replaced"
        ))
    })?;
    let local_sha = sha256_hex(bytes);
    if !pushed.sha256.trim().eq_ignore_ascii_case(&local_sha) {
        return Err(PushError::ShaMismatch {
            local: local_sha,
            server: clip(pushed.sha256.trim(), 80),
        });
    }
    Ok(pushed)
}

fn yes() -> bool {
    true
}

/// The `error` field of a JSON answer; failing that, a short plain-text answer.
fn server_error(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        error: String,
    }
    if let Ok(answer) = serde_json::from_str::<ErrorAnswer>(text) {
        return Some(clip(answer.error.trim(), 2000));
    }
    let text = text.trim();
    // A reverse proxy's HTML error page says nothing useful.
    (!text.is_empty() && !text.starts_with('<')).then(|| clip(text, 300))
}

/// At most `max` characters of `text`, without control characters (server text goes to a
/// terminal).
fn clip(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

fn transport_error(e: ureq::Error, target: &Target, options: &ClientOptions) -> PushError {
    let endpoint = &target.endpoint;
    let tls_hint = if options.ca_cert.is_some() {
        "check that --ca-cert is the lock's certificate (http.tls_cert) or the CA that signed \
         it, and that the certificate names the host in --url"
    } else {
        "if the lock uses its own certificate (self-signed or a private CA), pass it with \
         --ca-cert PEM; the certificate must name the host in --url"
    };
    let message = match &e {
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => format!(
            "cannot connect to {endpoint}: connection refused; is the daemon running with \
             [http] enabled, and is the address right (host and port of http.listen, or of the \
             SSH tunnel)?"
        ),
        ureq::Error::ConnectionFailed => format!(
            "cannot connect to {endpoint}; is the daemon running with [http] enabled, and is \
             the address right?"
        ),
        ureq::Error::HostNotFound => format!(
            "cannot find the host {}: check the host name in --url",
            target.host
        ),
        ureq::Error::Timeout(_) => format!(
            "no answer from {endpoint} within {} s: is the address right and the lock \
             reachable (firewall)? On a slow link raise --timeout-secs",
            options.timeout.as_secs()
        ),
        ureq::Error::Io(io) if io.kind() == ErrorKind::TimedOut => format!(
            "no answer from {endpoint} within {} s: is the address right and the lock \
             reachable (firewall)? On a slow link raise --timeout-secs",
            options.timeout.as_secs()
        ),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            format!("TLS with {endpoint} failed ({e}): {tls_hint}")
        }
        // rustls reports handshake failures (bad certificate, not TLS at all) as invalid data.
        ureq::Error::Io(io) if target.https && io.kind() == ErrorKind::InvalidData => format!(
            "TLS with {endpoint} failed ({io}): {tls_hint}; if the lock serves plain HTTP, use \
             an http:// URL over an SSH tunnel"
        ),
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
            ) =>
        {
            format!(
                "the connection to {endpoint} was closed before the lock answered ({io}): the \
                 lock may have refused the request before reading it (check --token-file), or \
                 it is restarting; is the address right (https:// for a lock with TLS)?"
            )
        }
        _ => format!("the request to {endpoint} failed: {e}"),
    };
    PushError::Transport(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use recognition::artifact::{self, HeadParams};
    use recognition::Thresholds;

    const TOKEN: &str = "flk_test-token-0123456789";

    // ---- URL checks ----

    #[test]
    fn base_url_gets_the_endpoint_appended() {
        let t = parse_url("https://lock.example:8443").unwrap();
        assert_eq!(t.endpoint, "https://lock.example:8443/api/v1/classifier");
        assert_eq!(t.host, "lock.example");
        assert!(t.https);
        let t = parse_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!(t.endpoint, "http://127.0.0.1:8080/api/v1/classifier");
        assert!(!t.https);
    }

    #[test]
    fn path_prefix_of_a_reverse_proxy_is_kept() {
        let t = parse_url("https://home.example/facelock/").unwrap();
        assert_eq!(
            t.endpoint,
            "https://home.example/facelock/api/v1/classifier"
        );
    }

    #[test]
    fn full_endpoint_url_is_accepted_as_is() {
        let t = parse_url("http://localhost:8080/api/v1/classifier").unwrap();
        assert_eq!(t.endpoint, "http://localhost:8080/api/v1/classifier");
    }

    #[test]
    fn ipv6_hosts_are_understood() {
        let t = parse_url("http://[::1]:8080").unwrap();
        assert_eq!(t.host, "::1");
        assert!(t.is_loopback());
        assert_eq!(t.endpoint, "http://[::1]:8080/api/v1/classifier");
        assert!(parse_url("http://[nonsense]:8080").is_err());
    }

    #[test]
    fn url_without_http_scheme_is_refused() {
        for url in [
            "lock.example:8443",
            "ftp://lock.example",
            "file:///etc/passwd",
            "",
        ] {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(err.contains("http:// or https://"), "{url}: {err}");
        }
    }

    #[test]
    fn url_with_query_string_is_refused() {
        let err = parse_url("https://lock.example/?token=flk_abc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("query string"), "{err}");
        assert!(
            !err.contains("flk_abc"),
            "the URL's secret is not repeated: {err}"
        );
    }

    #[test]
    fn url_with_userinfo_is_refused() {
        let err = parse_url("https://admin:secret@lock.example:8443")
            .unwrap_err()
            .to_string();
        assert!(err.contains("user:pass@"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn url_with_fragment_is_refused() {
        let err = parse_url("https://lock.example/#flk_abc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fragment"), "{err}");
    }

    #[test]
    fn url_with_bad_port_or_no_host_is_refused() {
        assert!(parse_url("http://lock:port").is_err());
        assert!(parse_url("http://lock:0").is_err());
        assert!(parse_url("http://:8080").is_err());
        assert!(parse_url("http:///api").is_err());
        assert!(parse_url("http://lock example").is_err());
    }

    #[test]
    fn plain_http_warns_only_off_this_machine() {
        for url in [
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "HTTP://LOCALHOST",
        ] {
            assert_eq!(parse_url(url).unwrap().clear_text_warning(), None, "{url}");
        }
        let warning = parse_url("http://192.168.1.20:8080")
            .unwrap()
            .clear_text_warning()
            .unwrap();
        assert!(warning.contains("clear text"), "{warning}");
        assert!(warning.contains("SSH tunnel"), "{warning}");
        assert_eq!(
            parse_url("https://192.168.1.20:8443")
                .unwrap()
                .clear_text_warning(),
            None
        );
    }

    // ---- token file ----

    fn token_file(content: &str, mode: u32) -> tempfile::NamedTempFile {
        use std::os::unix::fs::PermissionsExt;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn token_is_read_trimmed_from_a_private_file() {
        let f = token_file(&format!("  {TOKEN}\n\n"), 0o600);
        let read = read_token(f.path()).unwrap();
        assert_eq!(read.token, Token(TOKEN.into()));
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    }

    #[test]
    fn token_file_readable_by_others_warns_with_chmod() {
        let f = token_file(TOKEN, 0o644);
        let read = read_token(f.path()).unwrap();
        assert_eq!(read.warnings.len(), 1);
        let warning = &read.warnings[0];
        assert!(
            warning.contains(&format!("chmod 600 {}", f.path().display())),
            "{warning}"
        );
        assert!(!warning.contains(TOKEN), "{warning}");
        let group = token_file(TOKEN, 0o640);
        assert_eq!(read_token(group.path()).unwrap().warnings.len(), 1);
    }

    #[test]
    fn missing_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_token(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the token file"), "{err}");
        assert!(err.contains("lock-daemon token new"), "{err}");
    }

    #[test]
    fn empty_token_file_is_refused() {
        let f = token_file(" \n\t\n", 0o600);
        let err = read_token(f.path()).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn token_file_with_more_than_a_token_is_refused_without_quoting_it() {
        let f = token_file("flk_abc flk_def\n", 0o600);
        let err = read_token(f.path()).unwrap_err().to_string();
        assert!(err.contains("more than one word"), "{err}");
        assert!(!err.contains("flk_abc"), "{err}");
        let f = token_file("hash = \"sha256:00ff\"\n", 0o600);
        let err = read_token(f.path()).unwrap_err().to_string();
        assert!(err.contains("hash"), "{err}");
    }

    #[test]
    fn token_debug_output_hides_it() {
        let shown = format!("{:?}", Token(TOKEN.into()));
        assert!(!shown.contains(TOKEN), "{shown}");
    }

    // ---- the classifier file ----

    fn classifier_bytes() -> Vec<u8> {
        let meta = ClassifierMeta {
            labels: vec!["ada".into(), "grace".into()],
            thresholds: Thresholds {
                min_probability: 0.5,
                min_similarity: 0.5,
            },
            embedder_sha256: "00".into(),
            embedding_size: 2,
            created: "2026-01-02T03:04:05Z".into(),
            photos_per_person: Default::default(),
            notes: Default::default(),
            crop_margin: 0.0,
            detector_min_face_px: 20.0,
            pipeline_version: recognition::artifact::PIPELINE_VERSION,
        };
        let head = HeadParams {
            weights: vec![0.1; 4],
            bias: vec![0.0; 2],
            centroids: vec![0.5; 4],
        };
        artifact::encode(&meta, &head, &[])
    }

    fn signed_classifier_bytes() -> Vec<u8> {
        let keys = recognition::signature::keygen();
        let key =
            recognition::signature::signing_key_from_pem(&keys.private_pem, Path::new("k.pem"))
                .unwrap();
        recognition::signature::sign(&classifier_bytes(), &key)
    }

    #[test]
    fn classifier_check_reads_people_and_signature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classifier.onnx");
        std::fs::write(&path, signed_classifier_bytes()).unwrap();
        let c = check_classifier(&path).unwrap();
        assert_eq!(c.meta.labels, ["ada", "grace"]);
        assert_eq!(c.meta.created, "2026-01-02T03:04:05Z");
        assert!(c.signed);
        assert_eq!(c.unsigned_warning(), None);
        assert_eq!(c.sha256, sha256_hex(&std::fs::read(&path).unwrap()));
    }

    #[test]
    fn unsigned_classifier_warns_that_the_lock_may_refuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classifier.onnx");
        std::fs::write(&path, classifier_bytes()).unwrap();
        let c = check_classifier(&path).unwrap();
        assert!(!c.signed);
        let warning = c.unsigned_warning().unwrap();
        assert!(warning.contains("trainer sign"), "{warning}");
    }

    #[test]
    fn file_that_is_not_a_classifier_is_refused_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photo.jpg");
        std::fs::write(&path, b"\xff\xd8\xff\xe0 not a classifier").unwrap();
        let err = check_classifier(&path).unwrap_err().to_string();
        assert!(err.contains("nothing was sent"), "{err}");
        let missing = check_classifier(&dir.path().join("missing.onnx"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read the classifier"), "{missing}");
    }

    #[test]
    fn classifier_over_8_mib_is_refused_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.onnx");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_CLASSIFIER_BYTES + 1).unwrap();
        let err = check_classifier(&path).unwrap_err().to_string();
        assert!(err.contains("at most 8 MiB"), "{err}");
    }

    #[test]
    fn ca_file_without_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "not a pem file\n").unwrap();
        let target = parse_url("https://127.0.0.1:1").unwrap();
        let options = ClientOptions {
            ca_cert: Some(path),
            ..ClientOptions::default()
        };
        let err = push_bytes(&target, &Token(TOKEN.into()), b"x", &options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no certificate"), "{err}");
    }

    // ---- against a real HTTP server ----

    /// What the tiny server received.
    #[derive(Debug)]
    struct Received {
        request_line: String,
        /// Header names lowercased.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Serves one request on 127.0.0.1 with a canned answer; returns the base URL and the
    /// thread that yields what was received.
    fn serve_once(status: &str, headers: &[&str], body: String) -> (String, JoinHandle<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n",
            body.len()
        );
        for h in headers {
            answer.push_str(h);
            answer.push_str("\r\n");
        }
        answer.push_str("\r\n");
        answer.push_str(&body);
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut stream = reader.into_inner();
            stream.write_all(answer.as_bytes()).unwrap();
            stream.flush().unwrap();
            Received {
                request_line: request_line.trim_end().to_owned(),
                headers,
                body,
            }
        });
        (url, handle)
    }

    fn push_to(url: &str, bytes: &[u8]) -> Result<Pushed> {
        let options = ClientOptions {
            timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        };
        push_bytes(
            &parse_url(url).unwrap(),
            &Token(TOKEN.into()),
            bytes,
            &options,
        )
    }

    #[test]
    fn accepted_push_sends_the_file_with_the_token_and_reports_the_lock_answer() {
        let bytes = signed_classifier_bytes();
        let answer = serde_json::json!({
            "ok": true,
            "message": "classifier replaced and reloaded",
            "people": ["ada", "grace"],
            "created": "2026-01-02T03:04:05Z",
            "sha256": sha256_hex(&bytes).to_uppercase(),
        });
        let (url, server) = serve_once("200 OK", &[], answer.to_string());
        let pushed = push_to(&url, &bytes).unwrap();
        let received = server.join().unwrap();

        assert_eq!(received.request_line, "PUT /api/v1/classifier HTTP/1.1");
        assert_eq!(
            received.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(
            received.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(received.body, bytes, "the exact file bytes are sent");
        assert!(
            !received.request_line.contains(TOKEN),
            "the token is never in the URL"
        );

        assert_eq!(pushed.message, "classifier replaced and reloaded");
        assert_eq!(pushed.people, ["ada", "grace"]);
        assert_eq!(pushed.created, "2026-01-02T03:04:05Z");
    }

    #[test]
    fn accepted_push_with_another_sha256_is_an_error() {
        let bytes = signed_classifier_bytes();
        let answer = serde_json::json!({
            "ok": true, "message": "ok", "people": ["ada"], "created": "x",
            "sha256": sha256_hex(b"something else"),
        });
        let (url, server) = serve_once("200 OK", &[], answer.to_string());
        let err = push_to(&url, &bytes).unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, PushError::ShaMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains(&sha256_hex(&bytes)), "{err}");
    }

    #[test]
    fn refused_classifier_shows_the_lock_reason_and_that_the_old_one_stays() {
        let body = serde_json::json!({
            "error": "older than the classifier in service (created 2026-02-01); retrain"
        });
        let (url, server) = serve_once("422 Unprocessable Entity", &[], body.to_string());
        let err = push_to(&url, &classifier_bytes()).unwrap_err();
        server.join().unwrap();
        assert_eq!(err.status(), Some(422));
        let text = err.to_string();
        assert!(text.contains("old classifier stays in service"), "{text}");
        assert!(
            text.contains("the lock says: older than the classifier in service"),
            "{text}"
        );
    }

    #[test]
    fn rejected_token_points_at_the_token_file() {
        let body = serde_json::json!({"error": "missing or unknown token"});
        let (url, server) = serve_once("401 Unauthorized", &[], body.to_string());
        let err = push_to(&url, &classifier_bytes()).unwrap_err();
        server.join().unwrap();
        assert_eq!(err.status(), Some(401));
        let text = err.to_string();
        assert!(text.contains("check --token-file"), "{text}");
        assert!(
            text.contains("the lock says: missing or unknown token"),
            "{text}"
        );
        assert!(!text.contains(TOKEN), "{text}");
    }

    #[test]
    fn token_without_admin_scope_says_how_to_make_one() {
        let (url, server) = serve_once("403 Forbidden", &[], r#"{"error":"needs admin"}"#.into());
        let err = push_to(&url, &classifier_bytes()).unwrap_err();
        server.join().unwrap();
        assert!(
            err.to_string()
                .contains("lock-daemon token new NAME --scope admin"),
            "{err}"
        );
    }

    #[test]
    fn rate_limit_reports_retry_after() {
        let (url, server) = serve_once(
            "429 Too Many Requests",
            &["Retry-After: 17"],
            r#"{"error":"slow down"}"#.into(),
        );
        let err = push_to(&url, &classifier_bytes()).unwrap_err();
        server.join().unwrap();
        assert_eq!(err.status(), Some(429));
        assert!(err.to_string().contains("try again in 17 s"), "{err}");
    }

    #[test]
    fn server_failure_without_json_still_reports_the_status() {
        let (url, server) = serve_once("500 Internal Server Error", &[], String::new());
        let err = push_to(&url, &classifier_bytes()).unwrap_err();
        server.join().unwrap();
        assert_eq!(err.status(), Some(500));
        assert!(err.to_string().contains("lock-daemon's log"), "{err}");
    }

    #[test]
    fn redirect_is_not_followed() {
        let (url, server) = serve_once(
            "308 Permanent Redirect",
            &["Location: https://elsewhere.example/api/v1/classifier"],
            String::new(),
        );
        let err = push_to(&url, &classifier_bytes()).unwrap_err();
        server.join().unwrap();
        assert_eq!(err.status(), Some(308));
        assert!(err.to_string().contains("elsewhere.example"), "{err}");
    }

    #[test]
    fn nothing_listening_says_to_check_the_daemon_and_address() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = push_to(&format!("http://127.0.0.1:{port}"), b"x").unwrap_err();
        assert!(matches!(err, PushError::Transport(_)), "{err:?}");
        assert!(err.to_string().contains("[http] enabled"), "{err}");
    }

    #[test]
    fn https_to_a_server_without_tls_mentions_ca_cert() {
        // A plain HTTP server answers the TLS hello with HTTP text.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            // Read what the client sends, so that closing does not reset the connection.
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        });
        let err = push_to(&url, &classifier_bytes()).unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, PushError::Transport(_)), "{err:?}");
        assert!(err.to_string().contains("--ca-cert"), "{err}");
    }
}
