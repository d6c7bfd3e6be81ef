//! TLS for the HTTP API: rustls with the ring provider, the certificate chain and key from
//! PEM files (`http.tls_cert`, `http.tls_key`).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use super::{HttpError, TlsSettings};

/// The acceptor for `settings`; every problem names the file and the fix.
pub(super) fn acceptor(settings: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
    let certs = certificates(&settings.cert)?;
    let key = private_key(&settings.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| HttpError::Tls {
            key: "tls_key",
            path: settings.key.clone(),
            reason: format!(
                "{e}; the key must be the private key of the first certificate in \
                 http.tls_cert"
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    warn_if_readable_by_others(&settings.key);
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let fail = |reason: String| HttpError::Tls {
        key: "tls_cert",
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read it: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "holds no certificate (expected \"-----BEGIN CERTIFICATE-----\" blocks, the \
             server's own first)"
                .into(),
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, HttpError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| HttpError::Tls {
        key: "tls_key",
        path: path.to_owned(),
        reason: format!(
            "no usable private key ({e}); expected a PEM \"PRIVATE KEY\" (PKCS#8), \"RSA \
             PRIVATE KEY\" or \"EC PRIVATE KEY\" block"
        ),
    })
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o007 != 0 {
            log::warn!(
                "{} is readable by every user; run `chmod 640 {}` (owner root, group facelock)",
                path.display(),
                path.display()
            );
        }
    }
}
