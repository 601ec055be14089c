//! TLS and authentication settings of the backing services, read from sample
//! environments.

use super::*;

/// A file that exists wherever the tests run.
const A_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

fn error(pairs: &[(&str, &str)]) -> ConfigError {
    Settings::from_env(&Env::from_pairs(pairs.iter().copied())).unwrap_err()
}

fn named(err: &ConfigError) -> &str {
    match err {
        ConfigError::Invalid { name, .. } => name,
        ConfigError::Unsupported(_) => "",
    }
}

#[test]
fn rediss_urls_are_taken_with_the_ca_and_client_certificate() {
    let env = Env::from_pairs([
        ("REDIS_URL", "rediss://:pw@cache:6380/0"),
        ("REDIS_CA_FILE", A_FILE),
        ("REDIS_CLIENT_CERT_FILE", A_FILE),
        ("REDIS_CLIENT_KEY_FILE", A_FILE),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.jobs.kind, JobQueueKind::Redis);
    assert_eq!(
        s.orders.redis_limiter_url.unwrap().expose(),
        "rediss://:pw@cache:6380/2"
    );
    assert_eq!(
        s.jobs.results_url.unwrap().expose(),
        "rediss://:pw@cache:6380/1"
    );
    for tls in [&s.jobs.redis_tls, &s.orders.redis_tls] {
        assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new(A_FILE)));
        assert!(tls.cert_file.is_some() && tls.key_file.is_some());
    }
}

#[test]
fn redis_tls_files_without_a_rediss_url_are_refused() {
    let err = error(&[
        ("REDIS_URL", "redis://cache:6379"),
        ("REDIS_CA_FILE", A_FILE),
    ]);
    assert_eq!(named(&err), "REDIS_CA_FILE", "{err}");
    assert!(err.to_string().contains("rediss://"), "{err}");
}

#[test]
fn a_missing_certificate_file_is_named() {
    let err = error(&[
        ("REDIS_URL", "rediss://cache:6379"),
        ("REDIS_CA_FILE", "/nowhere/ca.pem"),
    ]);
    assert_eq!(named(&err), "REDIS_CA_FILE", "{err}");
    let err = error(&[("PGSSLROOTCERT", "/nowhere/root.crt")]);
    assert_eq!(named(&err), "PGSSLROOTCERT", "{err}");
}

#[test]
fn a_client_certificate_needs_its_key() {
    let err = error(&[
        ("REDIS_URL", "rediss://cache:6379"),
        ("REDIS_CLIENT_CERT_FILE", A_FILE),
    ]);
    assert_eq!(named(&err), "REDIS_CLIENT_CERT_FILE", "{err}");
    let err = error(&[("PGSSLKEY", A_FILE)]);
    assert_eq!(named(&err), "PGSSLKEY", "{err}");
}

#[test]
fn pgsslmode_takes_libpqs_values() {
    for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        assert!(
            Settings::from_env(&Env::from_pairs([("PGSSLMODE", mode)])).is_ok(),
            "{mode}"
        );
    }
    let err = error(&[("PGSSLMODE", "verify")]);
    assert_eq!(named(&err), "PGSSLMODE", "{err}");
    assert!(err.to_string().contains("verify-full"), "{err}");
}

#[test]
fn kafka_is_plaintext_unless_told() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.kafka.security.protocol, "PLAINTEXT");
    assert!(s.kafka.security.sasl.is_none());
}

#[test]
fn kafka_sasl_ssl_with_scram_is_read_and_its_password_not_shown() {
    let env = Env::from_pairs([
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
        ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
        ("KAFKA_SASL_USERNAME", "orderly"),
        ("KAFKA_SASL_PASSWORD", "hunter2"),
        ("KAFKA_SSL_CA_LOCATION", A_FILE),
    ]);
    let security = Settings::from_env(&env).unwrap().kafka.security;
    assert_eq!(security.protocol, "SASL_SSL");
    let sasl = security.sasl.clone().unwrap();
    assert_eq!(sasl.mechanism, "SCRAM-SHA-512");
    assert_eq!(sasl.username, "orderly");
    assert_eq!(sasl.password.expose(), "hunter2");
    assert!(security.ssl_ca_location.is_some());
    assert!(!format!("{security:?}").contains("hunter2"));
}

#[test]
fn kafka_sasl_needs_a_supported_mechanism_and_credentials() {
    let err = error(&[("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")]);
    assert_eq!(named(&err), "KAFKA_SASL_MECHANISM", "{err}");
    let err = error(&[
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("KAFKA_SASL_MECHANISM", "GSSAPI"),
    ]);
    assert_eq!(named(&err), "KAFKA_SASL_MECHANISM", "{err}");
    assert!(err.to_string().contains("SCRAM-SHA-256"), "{err}");
    let err = error(&[
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ("KAFKA_SASL_USERNAME", "orderly"),
    ]);
    assert_eq!(named(&err), "KAFKA_SASL_PASSWORD", "{err}");
    let err = error(&[("KAFKA_SECURITY_PROTOCOL", "TLS")]);
    assert_eq!(named(&err), "KAFKA_SECURITY_PROTOCOL", "{err}");
}

#[test]
fn kafka_settings_the_protocol_would_ignore_are_refused() {
    let err = error(&[("KAFKA_SASL_PASSWORD", "hunter2")]);
    assert_eq!(named(&err), "KAFKA_SASL_PASSWORD", "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = error(&[
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ("KAFKA_SASL_USERNAME", "u"),
        ("KAFKA_SASL_PASSWORD", "p"),
        ("KAFKA_SSL_CA_LOCATION", A_FILE),
    ]);
    assert_eq!(named(&err), "KAFKA_SSL_CA_LOCATION", "{err}");
}
