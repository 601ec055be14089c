//! orderly on a PostgreSQL that takes TLS connections only: the old E2E
//! script ends PAID with `sslmode=verify-full` against the test CA, given in
//! the URL or through `SSL_CERT_FILE` (the system trust store's override);
//! plain text is refused by the server and a certificate from another CA by
//! orderly, each as an exit with the reason in the log.

use crate::e2e::run_old_script;
use crate::helpers::{spawn_app_with, try_start_role};

use super::certs::Certs;
use super::exit_of;
use super::private_postgres::PrivatePostgres;

fn verify_full(pg: &PrivatePostgres, ca: &std::path::Path) -> String {
    pg.url(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_readme_script_prints_paid_on_a_tls_only_postgres() {
    let Some(certs) = Certs::make() else { return };
    let Some(pg) = PrivatePostgres::start(&certs) else {
        return;
    };
    let url = verify_full(&pg, &certs.ca());
    let app = spawn_app_with(&[
        ("AUTH_DATABASE_URL", &url),
        ("ORDERS_DATABASE_URL", &url),
        // The real 2 s payment and the real limit: the defaults the script meets.
        ("WORKER_PAYMENT_DELAY_MS", "2000"),
        ("ORDERS_RATE_LIMIT", "10/minute"),
    ])
    .await;
    let (auth, orders) = (app.auth_url.clone(), app.orders_url.clone());
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth, &orders))
        .await
        .unwrap();
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}\nserver log:\n{}",
        app.logs(),
        pg.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_cert_file_stands_for_the_system_trust_store() {
    let Some(certs) = Certs::make() else { return };
    let Some(pg) = PrivatePostgres::start(&certs) else {
        return;
    };
    let url = pg.url("sslmode=verify-full");
    let ca = certs.ca().to_string_lossy().into_owned();
    let data = tempfile::tempdir().unwrap();
    let app = try_start_role(
        "auth",
        &data.path().join("data"),
        &[("AUTH_DATABASE_URL", &url), ("SSL_CERT_FILE", &ca)],
        0,
    )
    .await;
    let app = app.unwrap_or_else(|log| panic!("{log}\nserver log:\n{}", pg.log()));
    let status = app
        .register("tls@example.com", "correct horse battery")
        .await
        .status();
    assert!(status.is_success(), "{status}\n{}", app.logs());
}

/// Starts `auth` with this database URL and expects it to exit with an
/// error whose log contains one of `expected`.
fn refused(url: &str, expected: &[&str]) {
    let (status, log) = exit_of("auth", &[("AUTH_DATABASE_URL", url)]);
    assert!(!status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        expected.iter().any(|e| log.contains(e)),
        "expected one of {expected:?} in:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_text_connection_is_refused() {
    let Some(certs) = Certs::make() else { return };
    let Some(pg) = PrivatePostgres::start(&certs) else {
        return;
    };
    refused(&pg.url("sslmode=disable"), &["no encryption"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_another_ca_is_refused() {
    let Some(certs) = Certs::make() else { return };
    let Some(pg) = PrivatePostgres::start(&certs) else {
        return;
    };
    refused(
        &verify_full(&pg, &certs.other_ca()),
        &["UnknownIssuer", "certificate"],
    );
}
