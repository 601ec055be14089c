//! TLS on the listener (rustls), as nats-server does it: the INFO goes out in
//! plain text with `tls_required`, then the client starts the handshake.
//!
//! The session's fast path writes with `try_write` on a socket, which a TLS
//! stream does not offer, so a TLS connection is terminated in a task of its
//! own that pumps plain text to the session through a local socket pair: the
//! session code is the same for both, at the cost of one copy per direction.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A certificate or key file is missing or not PEM.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file it is (certificate, key, client CA).
        what: &'static str,
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the combination (a key that does not fit the certificate…).
    #[error("TLS settings refused: {0}")]
    Rustls(String),
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsConfigError {
    TlsConfigError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The server side of TLS: certificate chain and key (PEM), and with
/// `client_ca` client certificates required and checked against it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let chain = certificates("certificate", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates("client CA", ca)? {
                roots.add(c).map_err(|e| file_error("client CA", ca, e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Sends `info` in plain text, takes the client's handshake (within
/// `deadline`), and returns the plain-text end of the connection; a task
/// pumps between the two until either side closes.
pub(super) async fn accept(
    mut socket: TcpStream,
    info: &[u8],
    tls: Arc<rustls::ServerConfig>,
    deadline: Duration,
) -> io::Result<UnixStream> {
    let _ = socket.set_nodelay(true);
    let handshake = async {
        socket.write_all(info).await?;
        TlsAcceptor::from(tls).accept(socket).await
    };
    let stream = tokio::time::timeout(deadline, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let (session_end, pump_end) = UnixStream::pair()?;
    let (mut tls_read, mut tls_write) = tokio::io::split(stream);
    let (mut pipe_read, mut pipe_write) = pump_end.into_split();
    tokio::spawn(async move {
        let inbound = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tls_read, &mut pipe_write).await;
            // The client left: the session reads the end of its input.
            let _ = pipe_write.shutdown().await;
        });
        let _ = tokio::io::copy(&mut pipe_read, &mut tls_write).await;
        // The session ended: close_notify, and no client can keep the task.
        let _ = tokio::time::timeout(Duration::from_secs(1), tls_write.shutdown()).await;
        inbound.abort();
    });
    Ok(session_end)
}
