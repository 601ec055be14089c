//! From [`NatsConfig`] to async-nats's connect options: credentials, TLS
//! trust, and the log lines of a connection that comes and goes.
//!
//! TLS trusts the system's store (which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`, as OpenSSL does) and the configured CA file on top of it;
//! async-nats alone would use the CA file instead of the store.

use std::path::Path;
use std::sync::Arc;

use async_nats::{ConnectOptions, Event};
use orderly_bus::BusError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::NatsConfig;

/// The connect options for `config`; `connected` follows the connection.
pub(crate) fn options(
    config: &NatsConfig,
    connected: watch::Sender<bool>,
    background: bool,
) -> Result<ConnectOptions, BusError> {
    let url = redact(&config.url);
    let mut options = ConnectOptions::new()
        .name(&config.client_name)
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout));
    match (&config.user, &config.token, url_credentials(&config.url)) {
        (Some((user, pass)), _, _) => {
            options = options.user_and_password(user.clone(), pass.clone());
        }
        (None, Some(token), _) => options = options.token(token.clone()),
        (None, None, Some(UrlCredentials::User(user, pass))) => {
            options = options.user_and_password(user, pass);
        }
        (None, None, Some(UrlCredentials::Token(token))) => options = options.token(token),
        (None, None, None) => {}
    }
    let wants_tls = config
        .url
        .split(',')
        .any(|u| u.trim().starts_with("tls://"))
        || config.ca_file.is_some()
        || config.client_cert.is_some();
    if wants_tls {
        options = options
            .require_tls(true)
            .tls_client_config(tls_client_config(config)?);
    }
    if background {
        options = options.retry_on_initial_connect();
    }
    let options = options.event_callback(move |event| {
        let (url, connected) = (url.clone(), connected.clone());
        async move {
            match event {
                Event::Connected => {
                    tracing::info!(%url, "connected to NATS");
                    connected.send_replace(true);
                }
                Event::Disconnected => {
                    tracing::warn!(%url, "lost the connection to NATS; reconnecting with backoff");
                    connected.send_replace(false);
                }
                Event::ClientError(e) => {
                    tracing::warn!(%url, error = %e, "NATS not reachable yet; retrying with backoff");
                }
                Event::ServerError(e) => {
                    tracing::warn!(%url, error = %e, "the NATS server reported an error");
                }
                other => tracing::debug!(%url, event = %other, "NATS connection event"),
            }
        }
    });
    Ok(options)
}

/// Credentials written into the URL: `user:password@` or `token@`.
#[derive(Debug, PartialEq, Eq)]
enum UrlCredentials {
    User(String, String),
    Token(String),
}

/// The first credentials found in the (comma-separated) URLs.
fn url_credentials(urls: &str) -> Option<UrlCredentials> {
    urls.split(',').find_map(|u| {
        let rest = u.trim().split_once("://").map_or(u.trim(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        let (userinfo, _) = authority.rsplit_once('@')?;
        match userinfo.split_once(':') {
            Some((user, pass)) => Some(UrlCredentials::User(decode(user), decode(pass))),
            None => Some(UrlCredentials::Token(decode(userinfo))),
        }
    })
}

/// Percent-decoding of a URL's user or password.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URLs with any password or token replaced by `***`.
pub(crate) fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let shown = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("***@{host}"),
                },
                None => authority.to_string(),
            };
            if scheme.is_empty() {
                format!("{shown}{path}")
            } else {
                format!("{scheme}://{shown}{path}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn tls_error(what: &str, path: &Path, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("NATS TLS {what} {}: {e}", path.display()))
}

fn pem_certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, BusError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what, path, e))
}

fn tls_client_config(config: &NatsConfig) -> Result<rustls::ClientConfig, BusError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if native.certs.is_empty() && config.ca_file.is_none() {
        let why = native
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(BusError::Unavailable(format!(
            "NATS TLS: no trusted certificates (system store: {why}); set NATS_CA_FILE or SSL_CERT_FILE"
        )));
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = &config.ca_file {
        let certs = pem_certificates("CA file", ca)?;
        if certs.is_empty() {
            return Err(tls_error("CA file", ca, "no PEM certificate in it"));
        }
        for c in certs {
            roots.add(c).map_err(|e| tls_error("CA file", ca, e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BusError::Unavailable(format!("NATS TLS: {e}")))?
        .with_root_certificates(roots);
    match &config.client_cert {
        Some((cert, key)) => {
            let chain = pem_certificates("client certificate", cert)?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error("client key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| BusError::Unavailable(format!("NATS TLS client certificate: {e}")))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_read_and_never_shown() {
        assert_eq!(
            url_credentials("nats://orders:p%40ss@h:4222"),
            Some(UrlCredentials::User("orders".into(), "p@ss".into()))
        );
        assert_eq!(
            url_credentials("tls://a:1, nats://s3cret@b:2"),
            Some(UrlCredentials::Token("s3cret".into()))
        );
        assert_eq!(url_credentials("nats://h:4222"), None);
        assert_eq!(
            redact("nats://orders:pw@h:4222,nats://tok@g:1/x"),
            "nats://orders:***@h:4222,nats://***@g:1/x"
        );
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
    }
}
