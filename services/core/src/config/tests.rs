//! The whole configuration read from sample environments.

use std::time::Duration;

use super::*;

#[test]
fn nothing_set_means_everything_embedded_on_default_ports() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.auth.bind, "0.0.0.0:8001");
    assert_eq!(s.orders.bind, "0.0.0.0:8000");
    assert_eq!(
        s.auth.database_url.expose(),
        "sqlite://data/auth.db?mode=rwc"
    );
    assert!(s.orders.redis_cache_url.is_none());
    assert!(s.orders.redis_limiter_url.is_none());
    assert!(!s.orders.rate_limit_fail_closed);
    assert_eq!(s.orders.rate_limit.limit, 10);
    assert_eq!(s.auth.access_token_ttl, Duration::from_secs(1800));
    assert!(s.auth.google.is_none());
}

#[test]
fn google_defaults_to_googles_oidc_endpoints_and_both_issuer_spellings() {
    let env = Env::from_pairs([("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")]);
    let google = Settings::from_env(&env).unwrap().auth.google.unwrap();
    assert_eq!(
        google.jwks_url,
        "https://www.googleapis.com/oauth2/v3/certs"
    );
    assert_eq!(
        google.issuers,
        ["https://accounts.google.com", "accounts.google.com"]
    );

    let env = Env::from_pairs([
        ("GOOGLE_CLIENT_ID", "id"),
        ("GOOGLE_CLIENT_SECRET", "s"),
        ("GOOGLE_JWKS_URL", "http://fake/certs"),
        ("GOOGLE_ISSUER", "http://fake"),
    ]);
    let google = Settings::from_env(&env).unwrap().auth.google.unwrap();
    assert_eq!(google.jwks_url, "http://fake/certs");
    assert_eq!(google.issuers, ["http://fake"]);
}

#[test]
fn the_token_format_is_jwt_unless_paseto_is_asked_for() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.auth.token_format, TokenFormat::Jwt);
    let env = Env::from_pairs([
        ("AUTH_TOKEN_FORMAT", "paseto"),
        ("AUTH_PASETO_KEY_PATH", "/k/p.key"),
    ]);
    assert_eq!(
        Settings::from_env(&env).unwrap().auth.token_format,
        TokenFormat::Paseto {
            key_path: "/k/p.key".into()
        }
    );
    let e = Settings::from_env(&Env::from_pairs([("AUTH_TOKEN_FORMAT", "saml")])).unwrap_err();
    assert!(e.to_string().contains("AUTH_TOKEN_FORMAT"), "{e}");
}

#[test]
fn bus_kafka_reads_its_settings_and_needs_the_brokers() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.bus, BusKind::Embedded);
    assert_eq!(s.kafka.topic_partitions, 3);
    assert_eq!(s.kafka.replication_factor, 1);

    let e = Settings::from_env(&Env::from_pairs([("BUS", "kafka")])).unwrap_err();
    assert!(e.to_string().contains("KAFKA_BOOTSTRAP_SERVERS"), "{e}");

    let env = Env::from_pairs([
        ("BUS", "kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
        ("KAFKA_TOPIC_PARTITIONS", "6"),
        ("KAFKA_REPLICATION_FACTOR", "3"),
        ("KAFKA_MESSAGE_TIMEOUT_MS", "5000"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.bus, BusKind::Kafka);
    assert_eq!(s.kafka.bootstrap_servers, "k1:9092,k2:9092");
    assert_eq!(
        (s.kafka.topic_partitions, s.kafka.replication_factor),
        (6, 3)
    );
    assert_eq!(s.kafka.message_timeout, Duration::from_secs(5));

    let zero = Env::from_pairs([
        ("BUS", "kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
        ("KAFKA_TOPIC_PARTITIONS", "0"),
    ]);
    assert!(Settings::from_env(&zero).is_err());
}

#[test]
fn the_old_token_lifetime_name_is_an_alias() {
    let env = Env::from_pairs([("ACCESS_TOKEN_EXPIRE_MINUTES", "5")]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.auth.access_token_ttl, Duration::from_secs(300));
}

#[test]
fn a_bad_value_names_the_variable() {
    let env = Env::from_pairs([("ORDERS_BIND", "localhost")]);
    let err = Settings::from_env(&env).unwrap_err().to_string();
    assert!(err.starts_with("ORDERS_BIND="), "{err}");
    let env = Env::from_pairs([("ORDERS_RATE_LIMIT", "ten")]);
    assert!(Settings::from_env(&env).is_err());
}

#[test]
fn the_broker_limits_have_safe_defaults_and_refuse_zero() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(
        s.broker_limits,
        BrokerLimits {
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_subscriptions: 1024,
            max_pending_bytes: 64 * 1024 * 1024,
            max_pending_total_bytes: 512 * 1024 * 1024,
        }
    );
    let env = Env::from_pairs([
        ("ORDERLY_BROKER_MAX_CONNECTIONS", "200"),
        ("ORDERLY_BROKER_MAX_CONNECTIONS_PER_IP", "10"),
        ("ORDERLY_BROKER_MAX_SUBSCRIPTIONS", "50"),
        ("ORDERLY_BROKER_MAX_PENDING_BYTES", "1048576"),
    ]);
    let limits = Settings::from_env(&env).unwrap().broker_limits;
    assert_eq!(
        (
            limits.max_connections,
            limits.max_connections_per_ip,
            limits.max_subscriptions,
            limits.max_pending_bytes
        ),
        (200, 10, 50, 1_048_576)
    );
    let err = Settings::from_env(&Env::from_pairs([(
        "ORDERLY_BROKER_MAX_SUBSCRIPTIONS",
        "0",
    )]))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("ORDERLY_BROKER_MAX_SUBSCRIPTIONS="),
        "{err}"
    );
}

#[test]
fn the_ops_endpoint_is_off_unless_an_address_is_set() {
    let none = Settings::from_env(&Env::from_pairs([("ORDERLY_OPS_BIND", " ")])).unwrap();
    assert_eq!(none.ops_bind, None);
    let set = Settings::from_env(&Env::from_pairs([("ORDERLY_OPS_BIND", "127.0.0.1:0")])).unwrap();
    assert_eq!(set.ops_bind.as_deref(), Some("127.0.0.1:0"));
    let err = Settings::from_env(&Env::from_pairs([("ORDERLY_OPS_BIND", "9090")]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("ORDERLY_OPS_BIND="), "{err}");
}

#[test]
fn postgres_parts_make_a_url_with_the_password_encoded_and_hidden() {
    let env = Env::from_pairs([
        ("POSTGRES_USER", "orders user"),
        ("POSTGRES_ORDERS_HOST", "db.internal"),
        ("POSTGRES_ORDERS_PASSWORD", "p@ss:w/rd"),
        ("POSTGRES_AUTH_HOST", "authdb.internal"),
        ("POSTGRES_AUTH_PORT", "6543"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(
        s.orders.database_url.expose(),
        "postgres://orders%20user:p%40ss%3Aw%2Frd@db.internal:5432/ordersdb"
    );
    assert_eq!(
        s.auth.database_url.expose(),
        "postgres://orders%20user@authdb.internal:6543/authdb"
    );
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("p%40ss") && !shown.contains("p@ss"),
        "{shown}"
    );
    assert_eq!(
        redact_url(s.orders.database_url.expose()),
        "postgres://orders%20user:***@db.internal:5432/ordersdb"
    );
}

#[test]
fn a_whole_database_url_wins_over_the_parts() {
    let env = Env::from_pairs([
        ("ORDERS_DATABASE_URL", "postgresql://u:pw@h/orders"),
        ("POSTGRES_ORDERS_HOST", "ignored"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.orders.database_url.expose(), "postgresql://u:pw@h/orders");
    let env = Env::from_pairs([("AUTH_DATABASE_URL", "mysql://u:secret@h/db")]);
    let err = Settings::from_env(&env).unwrap_err().to_string();
    assert!(err.starts_with("AUTH_DATABASE_URL="), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn redis_url_is_the_cache_and_database_2_of_it_the_limiter() {
    let env = Env::from_pairs([("REDIS_URL", "redis://:pw@cache:6379/0")]);
    let s = Settings::from_env(&env).unwrap();
    let cache = s.orders.redis_cache_url.unwrap();
    assert_eq!(cache.expose(), "redis://:pw@cache:6379/0");
    assert_eq!(
        s.orders.redis_limiter_url.unwrap().expose(),
        "redis://:pw@cache:6379/2"
    );
    let env = Env::from_pairs([
        ("REDIS_URL", "redis://queue:6379"),
        ("ORDERS_REDIS_URL", "redis://cache:6379"),
        ("ORDERS_REDIS_LIMITER_URL", "redis://limits:6379/5"),
        ("ORDERS_RATE_LIMIT_FAIL_CLOSED", "true"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(
        s.orders.redis_cache_url.unwrap().expose(),
        "redis://cache:6379"
    );
    assert_eq!(
        s.orders.redis_limiter_url.unwrap().expose(),
        "redis://limits:6379/5"
    );
    assert!(s.orders.rate_limit_fail_closed);
    let env = Env::from_pairs([("REDIS_URL", "http://cache")]);
    assert!(Settings::from_env(&env).is_err());
}

#[test]
fn the_job_queue_follows_the_redis_url_unless_chosen() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.jobs.kind, JobQueueKind::Embedded);
    assert!(s.jobs.redis_url.is_none());

    let env = Env::from_pairs([("REDIS_URL", "redis://cache:6379/0")]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.jobs.kind, JobQueueKind::Redis);
    assert_eq!(s.jobs.redis_url.unwrap().expose(), "redis://cache:6379/0");
    assert_eq!(s.jobs.results_url.unwrap().expose(), "redis://cache:6379/1");
    assert_eq!(s.jobs.prefix, "orderly");
    assert_eq!(s.jobs.max_deliveries, 4);

    let env = Env::from_pairs([
        ("REDIS_URL", "redis://cache:6379/0"),
        ("JOB_QUEUE", "embedded"),
    ]);
    assert_eq!(
        Settings::from_env(&env).unwrap().jobs.kind,
        JobQueueKind::Embedded
    );

    // The old compose file's names.
    let env = Env::from_pairs([
        ("CELERY_BROKER_URL", "redis://broker:6379/0"),
        ("CELERY_RESULT_BACKEND", "redis://results:6379/3"),
        ("REDIS_URL", "redis://cache:6379/0"),
        ("JOB_QUEUE_PREFIX", "run-7"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.jobs.kind, JobQueueKind::Redis);
    assert_eq!(s.jobs.redis_url.unwrap().expose(), "redis://broker:6379/0");
    assert_eq!(
        s.jobs.results_url.unwrap().expose(),
        "redis://results:6379/3"
    );
    assert_eq!(s.jobs.prefix, "run-7");

    let err = Settings::from_env(&Env::from_pairs([("JOB_QUEUE", "redis")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("JOB_QUEUE=") && err.contains("REDIS_URL"),
        "{err}"
    );
    assert!(Settings::from_env(&Env::from_pairs([("JOB_QUEUE", "sqs")])).is_err());
}

#[test]
fn auth_hardening_settings_have_defaults_and_are_read() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(14 * 86_400));
    assert_eq!(s.auth.login_limits, LoginLimits::default());
    assert_eq!(s.auth.register_limit.limit, 30);
    assert_eq!(s.auth.register_limit.window, Duration::from_secs(3600));
    assert_eq!(s.orders.status_policy, StatusPolicy::Strict);
    assert_eq!(s.auth.verifier, VerifierConfig::default());
    assert!(s.orders.jwks_url.is_none());
    let env = Env::from_pairs([
        ("AUTH_ISSUER", "https://auth.test"),
        ("AUTH_AUDIENCE", "orders"),
        ("AUTH_REFRESH_TOKEN_EXPIRE_DAYS", "2"),
        ("AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"),
        ("AUTH_LOGIN_IP_WINDOW_SECONDS", "30"),
        ("AUTH_PREVIOUS_PUBLIC_KEY_PATHS", "a.pem, b.pem"),
        ("AUTH_TRUSTED_PROXIES", "10.0.0.1"),
        ("AUTH_REGISTER_RATE_LIMIT", "3/minute"),
        ("ORDERS_JWKS_URL", "http://auth:8001/.well-known/jwks.json"),
        ("ORDERS_STATUS_POLICY", "owner"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.auth.verifier.issuer.as_deref(), Some("https://auth.test"));
    assert_eq!(s.orders.verifier, s.auth.verifier);
    assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(2 * 86_400));
    assert_eq!(s.auth.login_limits.per_account.limit, 3);
    assert_eq!(s.auth.login_limits.per_ip.window, Duration::from_secs(30));
    assert_eq!(s.auth.previous_public_key_paths.len(), 2);
    assert_eq!(s.auth.trusted_proxies.len(), 1);
    assert_eq!(s.auth.register_limit.limit, 3);
    assert_eq!(s.orders.status_policy, StatusPolicy::Owner);
    assert!(s.orders.jwks_url.is_some());
    for bad in [
        ("ORDERS_JWKS_URL", "ftp://x"),
        ("AUTH_REFRESH_TOKEN_EXPIRE_DAYS", "0"),
        ("AUTH_TRUSTED_PROXIES", "nope"),
        ("AUTH_REGISTER_RATE_LIMIT", "0/hour"),
        ("ORDERS_STATUS_POLICY", "anyone"),
    ] {
        let err = Settings::from_env(&Env::from_pairs([bad])).unwrap_err();
        assert!(err.to_string().starts_with(bad.0), "{err}");
    }
}

#[test]
fn the_http_edge_defaults_to_localhost_cors_and_bounded_clients() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.http, HttpSettings::default());
    assert_eq!(s.http.cors, CorsOrigins::Localhost);
    assert_eq!(s.http.header_read_timeout, Duration::from_secs(10));
    let env = Env::from_pairs([
        (
            "CORS_ALLOWED_ORIGINS",
            "https://shop.example.com, http://localhost:3000",
        ),
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "2"),
        ("HTTP_BODY_TIMEOUT_SECONDS", "3"),
        ("HTTP_REQUEST_TIMEOUT_SECONDS", "4"),
        ("HTTP_WRITE_TIMEOUT_SECONDS", "5"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(
        s.http.cors,
        CorsOrigins::List(vec![
            "https://shop.example.com".into(),
            "http://localhost:3000".into()
        ])
    );
    assert_eq!(
        (
            s.http.header_read_timeout,
            s.http.body_timeout,
            s.http.request_timeout,
            s.http.write_timeout
        ),
        (
            Duration::from_secs(2),
            Duration::from_secs(3),
            Duration::from_secs(4),
            Duration::from_secs(5)
        )
    );
    let any = Env::from_pairs([("CORS_ALLOWED_ORIGINS", "*")]);
    assert_eq!(
        Settings::from_env(&any).unwrap().http.cors,
        CorsOrigins::Any
    );
}

#[test]
fn a_bad_http_edge_setting_fails_with_one_line_naming_it() {
    for bad in [
        ("CORS_ALLOWED_ORIGINS", "https://shop.example.com/app"),
        ("CORS_ALLOWED_ORIGINS", "ftp://shop.example.com"),
        ("CORS_ALLOWED_ORIGINS", "shop.example.com"),
        ("CORS_ALLOWED_ORIGINS", "*,https://a.example"),
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "0"),
        ("HTTP_BODY_TIMEOUT_SECONDS", "soon"),
        ("HTTP_REQUEST_TIMEOUT_SECONDS", "-1"),
        ("HTTP_WRITE_TIMEOUT_SECONDS", "0"),
    ] {
        let err = Settings::from_env(&Env::from_pairs([bad]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}=", bad.0)), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn rate_limits_parse() {
    assert_eq!(
        "100/second".parse::<RateLimit>().unwrap(),
        RateLimit {
            limit: 100,
            window: Duration::from_secs(1)
        }
    );
    assert!("0/minute".parse::<RateLimit>().is_err());
}

#[test]
fn the_revoked_token_list_is_found_from_the_local_auth_or_the_jwks_origin() {
    let orders = |pairs: &[(&str, &str)]| {
        Settings::from_env(&Env::from_pairs(pairs.iter().copied()))
            .unwrap()
            .orders
    };
    let auto = orders(&[]);
    assert_eq!(auto.revoked_tokens_url(None), None);
    assert_eq!(
        auto.revoked_tokens_url(Some("http://127.0.0.1:8001"))
            .as_deref(),
        Some("http://127.0.0.1:8001/auth/revoked-tokens")
    );
    let jwks = orders(&[(
        "ORDERS_JWKS_URL",
        "https://auth.example/.well-known/jwks.json",
    )]);
    assert_eq!(
        jwks.revoked_tokens_url(None).as_deref(),
        Some("https://auth.example/auth/revoked-tokens")
    );
    let off = orders(&[("ORDERS_REVOKED_TOKENS_URL", "off")]);
    assert_eq!(off.revoked_tokens_url(Some("http://127.0.0.1:8001")), None);
    let explicit = orders(&[(
        "ORDERS_REVOKED_TOKENS_URL",
        "http://auth:8001/auth/revoked-tokens",
    )]);
    assert_eq!(
        explicit.revoked_tokens_url(None).as_deref(),
        Some("http://auth:8001/auth/revoked-tokens")
    );
    assert!(
        Settings::from_env(&Env::from_pairs([(
            "ORDERS_REVOKED_TOKENS_URL",
            "auth:8001"
        )]))
        .is_err()
    );
}

#[test]
fn the_console_under_orders_is_off_by_default_and_finds_auth_like_the_revocations() {
    let orders = |pairs: &[(&str, &str)]| {
        Settings::from_env(&Env::from_pairs(pairs.iter().copied()))
            .unwrap()
            .orders
    };
    let auto = orders(&[]);
    assert!(!auto.console, "ORDERS_CONSOLE is on by default");
    assert!(orders(&[("ORDERS_CONSOLE", "on")]).console);
    assert!(Settings::from_env(&Env::from_pairs([("ORDERS_CONSOLE", "maybe")])).is_err());
    assert_eq!(auto.token_url(None), None);
    assert_eq!(
        auto.token_url(Some("http://127.0.0.1:8001/")).as_deref(),
        Some("http://127.0.0.1:8001/auth/token/")
    );
    let jwks = orders(&[(
        "ORDERS_JWKS_URL",
        "https://auth.example/.well-known/jwks.json",
    )]);
    assert_eq!(
        jwks.token_url(None).as_deref(),
        Some("https://auth.example/auth/token/")
    );
    let explicit = orders(&[
        (
            "ORDERS_REVOKED_TOKENS_URL",
            "http://auth:8001/auth/revoked-tokens",
        ),
        ("ORDERS_JWKS_URL", "https://elsewhere.example/jwks.json"),
    ]);
    assert_eq!(
        explicit.token_url(None).as_deref(),
        Some("http://auth:8001/auth/token/")
    );
}

#[test]
fn the_reconciler_runs_every_30_s_on_orders_pending_a_minute() {
    let s = Settings::from_env(&Env::default()).unwrap().reconcile;
    assert_eq!(s.schedule, "*/30 * * * * *");
    assert_eq!(s.after, Duration::from_secs(60));
    assert_eq!(s.batch, 100);

    let env = Env::from_pairs([
        ("RECONCILE_SCHEDULE", "*/5 * * * * *"),
        ("RECONCILE_AFTER_SECONDS", "10"),
        ("RECONCILE_BATCH", "7"),
    ]);
    let s = Settings::from_env(&env).unwrap().reconcile;
    assert_eq!(
        (s.schedule.as_str(), s.after, s.batch),
        ("*/5 * * * * *", Duration::from_secs(10), 7)
    );
}

#[test]
fn the_broker_fsyncs_every_50_ms_by_default_and_can_be_told_otherwise() {
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(
        s.broker_storage.sync,
        BrokerSync::Interval(Duration::from_millis(50))
    );
    assert_eq!(s.broker_storage.dedup_window, Duration::from_secs(120));
    let env = Env::from_pairs([
        ("ORDERLY_BROKER_SYNC", "always"),
        ("ORDERLY_BROKER_DEDUP_WINDOW_SECONDS", "600"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(s.broker_storage.sync, BrokerSync::Always);
    assert_eq!(s.broker_storage.dedup_window, Duration::from_secs(600));
    let env = Env::from_pairs([("ORDERLY_BROKER_SYNC", "interval:200")]);
    assert_eq!(
        Settings::from_env(&env).unwrap().broker_storage.sync,
        BrokerSync::Interval(Duration::from_millis(200))
    );
    for bad in ["sometimes", "interval:", "interval:0", "interval:-5", "50"] {
        let env = Env::from_pairs([("ORDERLY_BROKER_SYNC", bad)]);
        let err = Settings::from_env(&env).unwrap_err().to_string();
        assert!(err.starts_with("ORDERLY_BROKER_SYNC="), "{bad}: {err}");
    }
    let env = Env::from_pairs([("ORDERLY_BROKER_DEDUP_WINDOW_SECONDS", "0")]);
    assert!(Settings::from_env(&env).is_err());
}

#[test]
fn a_schedule_that_is_not_cron_with_seconds_is_refused_by_name() {
    for bad in ["every minute", "*/5 * * * *", "61 * * * * *"] {
        let env = Env::from_pairs([("RECONCILE_SCHEDULE", bad)]);
        let e = Settings::from_env(&env).unwrap_err().to_string();
        assert!(e.contains("RECONCILE_SCHEDULE"), "{bad:?}: {e}");
    }
    let env = Env::from_pairs([("RECONCILE_AFTER_SECONDS", "0")]);
    assert!(Settings::from_env(&env).is_err());
}

#[test]
fn orderly_sqlite_sync_goes_into_sqlite_urls_that_do_not_name_their_own() {
    let env = Env::from_pairs([("ORDERLY_SQLITE_SYNC", "normal")]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(
        s.auth.database_url.expose(),
        "sqlite://data/auth.db?mode=rwc&synchronous=normal"
    );
    let env = Env::from_pairs([
        ("ORDERLY_SQLITE_SYNC", "normal"),
        ("ORDERS_DATABASE_URL", "sqlite:///tmp/o.db?synchronous=full"),
        ("AUTH_DATABASE_URL", "postgres://u@h/authdb"),
    ]);
    let s = Settings::from_env(&env).unwrap();
    assert_eq!(
        s.orders.database_url.expose(),
        "sqlite:///tmp/o.db?synchronous=full"
    );
    assert_eq!(s.auth.database_url.expose(), "postgres://u@h/authdb");

    let env = Env::from_pairs([("ORDERLY_SQLITE_SYNC", "off")]);
    let e = Settings::from_env(&env).unwrap_err().to_string();
    assert!(e.contains("ORDERLY_SQLITE_SYNC"), "{e}");
}
