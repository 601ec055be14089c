//! Redis clients for a URL: plain (`redis://`, `unix://`) or TLS (`rediss://`).
//!
//! A `rediss://` server's certificate is checked against the system's trust
//! store (rustls-native-certs, which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` as OpenSSL does) unless a CA file is given, which is then
//! trusted instead (as `redis-cli --cacert` does). A client certificate is
//! presented when the server asks for one (`tls-auth-clients yes|optional`).

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};

use crate::config::RedisTls;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    /// The URL is not one the client understands.
    #[error("{0}")]
    Url(#[source] redis::RedisError),
    /// TLS files were given for a server that is not reached over TLS.
    #[error(
        "a CA file or client certificate is set, but the URL is not rediss://; use rediss:// for TLS"
    )]
    NotTls,
    /// Only one of the client certificate and its key was given.
    #[error("a client certificate needs its key and a key needs its certificate")]
    HalfClientCert,
    /// A certificate or key file could not be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        /// Which file ("CA file", "client certificate", "client key").
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A file meant to hold certificates holds none in PEM form.
    #[error("the {what} {} holds no PEM certificate", path.display())]
    NoCertificate {
        /// Which file ("CA file", "client certificate").
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The files were read but are not usable PEM certificates or keys.
    #[error("{0}")]
    Tls(#[source] redis::RedisError),
}

/// A client for `url`, with `tls` applied when the URL is `rediss://`.
pub fn open_client(url: &str, tls: &RedisTls) -> Result<redis::Client, RedisClientError> {
    if !tls.is_set() {
        return redis::Client::open(url).map_err(RedisClientError::Url);
    }
    let info = url.into_connection_info().map_err(RedisClientError::Url)?;
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(RedisClientError::NotTls);
    }
    let client_tls = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_certificates("client certificate", cert)?,
            client_key: read("client key", key)?,
        }),
        (None, None) => None,
        _ => return Err(RedisClientError::HalfClientCert),
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read_certificates("CA file", path)?),
        None => None,
    };
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(RedisClientError::Tls)
}

/// A PEM file of certificates; one without any would leave nothing to trust
/// and fail only at the handshake, with a less telling error.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, RedisClientError> {
    let pem = read(what, path)?;
    if !pem
        .windows(PEM_CERTIFICATE.len())
        .any(|w| w == PEM_CERTIFICATE)
    {
        return Err(RedisClientError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(pem)
}

const PEM_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, RedisClientError> {
    std::fs::read(path).map_err(|source| RedisClientError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: &Path) -> RedisTls {
        RedisTls {
            ca_file: Some(ca.to_path_buf()),
            ..RedisTls::default()
        }
    }

    #[test]
    fn without_tls_files_any_url_scheme_is_opened_as_it_is() {
        for url in ["redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/1"] {
            assert!(open_client(url, &RedisTls::default()).is_ok(), "{url}");
        }
    }

    #[test]
    fn tls_files_on_a_plain_url_are_refused() {
        let err = open_client("redis://127.0.0.1:6379", &tls(Path::new("/x.pem"))).unwrap_err();
        assert!(matches!(err, RedisClientError::NotTls), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = open_client(
            "rediss://127.0.0.1:6379",
            &tls(Path::new("/nowhere/ca.pem")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nowhere/ca.pem"), "{err}");
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let half = RedisTls {
            client_cert_file: Some("/c.pem".into()),
            ..RedisTls::default()
        };
        let err = open_client("rediss://127.0.0.1:6379", &half).unwrap_err();
        assert!(matches!(err, RedisClientError::HalfClientCert), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = open_client("rediss://127.0.0.1:6379", &tls(&ca)).unwrap_err();
        assert!(
            matches!(err, RedisClientError::NoCertificate { .. }),
            "{err}"
        );
    }
}
