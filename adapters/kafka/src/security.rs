//! How clients reach the brokers: TLS and SASL, as librdkafka's
//! `security.protocol`, `sasl.*` and `ssl.*` properties.
//!
//! Without a CA location the brokers' certificates are checked against the
//! system's trust store (librdkafka calls OpenSSL's default paths, which honour
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`); a CA location is trusted instead.
//! Host names are verified (`ssl.endpoint.identification.algorithm=https`,
//! librdkafka's default).

use std::path::PathBuf;
use std::str::FromStr;

use rdkafka::ClientConfig;

/// A SASL mechanism this adapter does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported SASL mechanism {0:?} (expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")]
pub struct UnknownMechanism(pub String);

/// The SASL mechanisms librdkafka has built in (GSSAPI would need libsasl2,
/// OAUTHBEARER a token source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// User name and password in the clear (inside TLS with `SASL_SSL`).
    Plain,
    /// Salted challenge-response with SHA-256.
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// The name librdkafka and Kafka use.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = UnknownMechanism;

    /// Case-insensitive: `scram-sha-512` is `SCRAM-SHA-512`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(UnknownMechanism(s.to_string())),
        }
    }
}

/// A SASL mechanism with its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslLogin {
    /// How the password is proven.
    pub mechanism: SaslMechanism,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password`; never printed.
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// The TLS side: whom to trust and, for mutual TLS, who we are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaTls {
    /// `ssl.ca.location`: PEM CA certificates trusted instead of the system's.
    pub ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: the client's PEM certificate.
    pub certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: its PEM private key.
    pub key_location: Option<PathBuf>,
    /// `ssl.key.password`: the key's passphrase; never printed.
    pub key_password: Option<String>,
}

impl std::fmt::Debug for KafkaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTls")
            .field("ca_location", &self.ca_location)
            .field("certificate_location", &self.certificate_location)
            .field("key_location", &self.key_location)
            .field("key_password", &self.key_password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `security.protocol` with what each protocol needs, so that a SASL protocol
/// without credentials cannot be built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KafkaSecurity {
    /// No TLS, no authentication (librdkafka's default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl(KafkaTls),
    /// SASL without TLS: the credentials (with PLAIN, the password) cross the
    /// network unprotected.
    SaslPlaintext(SaslLogin),
    /// SASL inside TLS: what managed Kafka services ask for.
    SaslSsl(SaslLogin, KafkaTls),
}

impl KafkaSecurity {
    /// The `security.protocol` value.
    pub fn protocol(&self) -> &'static str {
        match self {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl(_) => "ssl",
            KafkaSecurity::SaslPlaintext(_) => "sasl_plaintext",
            KafkaSecurity::SaslSsl(..) => "sasl_ssl",
        }
    }

    /// Set the properties on a client configuration; plaintext sets none.
    pub(crate) fn apply(&self, c: &mut ClientConfig) {
        let (login, tls) = match self {
            KafkaSecurity::Plaintext => return,
            KafkaSecurity::Ssl(tls) => (None, Some(tls)),
            KafkaSecurity::SaslPlaintext(login) => (Some(login), None),
            KafkaSecurity::SaslSsl(login, tls) => (Some(login), Some(tls)),
        };
        c.set("security.protocol", self.protocol());
        if let Some(login) = login {
            c.set("sasl.mechanisms", login.mechanism.as_str())
                .set("sasl.username", &login.username)
                .set("sasl.password", &login.password);
        }
        if let Some(tls) = tls {
            let paths = [
                ("ssl.ca.location", &tls.ca_location),
                ("ssl.certificate.location", &tls.certificate_location),
                ("ssl.key.location", &tls.key_location),
            ];
            for (key, path) in paths {
                if let Some(path) = path {
                    c.set(key, path.to_string_lossy());
                }
            }
            if let Some(password) = &tls.key_password {
                c.set("ssl.key.password", password);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! librdkafka checks every property when a client is created (and loads
    //! the CA and client certificate then), without reaching a broker: these
    //! create the adapter's three kinds of client with each protocol.

    use std::path::Path;
    use std::process::Command;

    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::error::KafkaError;
    use rdkafka::producer::BaseProducer;

    use super::*;
    use crate::KafkaConfig;

    /// Every client the adapter makes, from `security`; nothing listens at
    /// the address.
    fn create_clients(security: KafkaSecurity) -> Result<(), KafkaError> {
        let mut config = KafkaConfig::new("127.0.0.1:9");
        let protocol = security.protocol();
        config.security = security;
        for client in [
            config.producer_config(),
            config.consumer_config("tls-test"),
            config.admin_config(),
        ] {
            let set = client.get("security.protocol").unwrap_or("plaintext");
            assert_eq!(set, protocol);
        }
        config.producer_config().create::<BaseProducer>()?;
        config
            .consumer_config("tls-test")
            .create::<BaseConsumer>()?;
        config
            .admin_config()
            .create::<AdminClient<DefaultClientContext>>()?;
        Ok(())
    }

    /// A self-signed certificate and its key, made with `openssl`.
    fn certificate(dir: &Path) -> KafkaTls {
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-subj",
                "/CN=kafka-test",
            ])
            .current_dir(dir)
            .output()
            .expect("openssl is needed to make test certificates");
        assert!(status.status.success(), "{status:?}");
        KafkaTls {
            ca_location: Some(dir.join("cert.pem")),
            certificate_location: Some(dir.join("cert.pem")),
            key_location: Some(dir.join("key.pem")),
            key_password: None,
        }
    }

    fn login(mechanism: SaslMechanism) -> SaslLogin {
        SaslLogin {
            mechanism,
            username: "orderly".into(),
            password: "secret".into(),
        }
    }

    const MECHANISMS: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];

    #[test]
    fn ssl_with_the_system_trust_store_is_accepted() {
        create_clients(KafkaSecurity::Ssl(KafkaTls::default())).unwrap();
    }

    #[test]
    fn ssl_with_a_ca_and_a_client_certificate_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        create_clients(KafkaSecurity::Ssl(certificate(dir.path()))).unwrap();
    }

    #[test]
    fn sasl_ssl_with_plain_and_scram_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        for mechanism in MECHANISMS {
            let tls = certificate(dir.path());
            create_clients(KafkaSecurity::SaslSsl(login(mechanism), tls))
                .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        }
    }

    #[test]
    fn sasl_plaintext_is_accepted() {
        for mechanism in MECHANISMS {
            create_clients(KafkaSecurity::SaslPlaintext(login(mechanism)))
                .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        }
    }

    #[test]
    fn a_missing_ca_file_fails_client_creation_naming_the_property() {
        let tls = KafkaTls {
            ca_location: Some("/nowhere/ca.pem".into()),
            ..KafkaTls::default()
        };
        let err = create_clients(KafkaSecurity::Ssl(tls)).unwrap_err();
        assert!(err.to_string().contains("ssl.ca.location"), "{err}");
    }

    #[test]
    fn an_unknown_mechanism_is_a_clear_error() {
        let err = "GSSAPI".parse::<SaslMechanism>().unwrap_err();
        assert!(err.to_string().contains("GSSAPI"), "{err}");
        assert!(err.to_string().contains("SCRAM-SHA-512"), "{err}");
        assert_eq!(
            "scram-sha-256".parse::<SaslMechanism>(),
            Ok(SaslMechanism::ScramSha256)
        );
        // And librdkafka's own check, for a mechanism set by hand.
        let mut config = KafkaConfig::new("127.0.0.1:9");
        config.security = KafkaSecurity::SaslSsl(login(SaslMechanism::Plain), KafkaTls::default());
        config.extra = vec![("sasl.mechanisms".into(), "NOT-A-MECHANISM".into())];
        let err = config
            .producer_config()
            .create::<BaseProducer>()
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("NOT-A-MECHANISM"), "{err}");
    }

    #[test]
    fn the_password_is_not_printed() {
        let security = KafkaSecurity::SaslSsl(
            login(SaslMechanism::ScramSha512),
            KafkaTls {
                key_password: Some("key-secret".into()),
                ..KafkaTls::default()
            },
        );
        let shown = format!("{security:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
