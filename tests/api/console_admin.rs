//! The console under the orders API (`ORDERS_CONSOLE=on`): an admin account
//! signs in on the orders port and sees the overview; a plain account, a
//! wrong password and auth being down get the sign-in page again (403, 401,
//! 503), never a session; with the setting off there is no `/console` there.

use std::process::Command;

use serde_json::Value;

use super::helpers::{TestApp, logs_when, one_item_order, spawn_app_with, start_role};

const PASSWORD: &str = "secret-password";

/// `orderly user promote EMAIL` on `app`'s data directory.
fn promote(data_dir: &std::path::Path, email: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args(["user", "promote", email])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", data_dir)
        .output()
        .expect("run orderly user promote");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct SignIn {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn sign_in(orders_url: &str, email: &str, password: &str) -> SignIn {
    let r = browser()
        .post(format!("{orders_url}/console/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (location, cookie) = (header("location"), header("set-cookie"));
    SignIn {
        status: r.status().as_u16(),
        location,
        cookie: cookie.map(|c| c.split(';').next().unwrap().to_string()),
        body: r.text().await.unwrap(),
    }
}

/// `orderly all` with the console under orders, an admin and a plain user.
async fn app_with_an_admin() -> TestApp {
    let app = spawn_app_with(&[("ORDERS_CONSOLE", "on")]).await;
    app.user("boss@example.com").await;
    app.user("plain@example.com").await;
    promote(&app.data_dir, "boss@example.com");
    app
}

#[tokio::test]
async fn with_orders_console_on_an_admin_signs_in_on_the_orders_port_and_sees_the_overview() {
    let app = app_with_an_admin().await;
    let anonymous = browser()
        .get(format!("{}/console", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        303,
        "the orders port's console needs a sign-in"
    );
    let signed = sign_in(&app.orders_url, "boss@example.com", PASSWORD).await;
    assert_eq!(signed.status, 303, "{}\nlogs:\n{}", signed.body, app.logs());
    assert_eq!(signed.location.as_deref(), Some("/console"));
    let cookie = signed.cookie.expect("a console session");
    assert!(cookie.starts_with("orderly_console_admin="), "{cookie}");

    let page = browser()
        .get(format!("{}/console", app.orders_url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // The API's policy (`default-src 'none'`) would block the page's script.
    let csp = page
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        csp.as_deref()
            .is_none_or(|c| !c.contains("default-src 'none'")),
        "the console got the API's layers: {csp:?}"
    );
    let body = page.text().await.unwrap();
    assert!(body.contains("<h1>Overview</h1>"), "{body}");
    assert!(body.contains("signed in: admin:boss@example.com"), "{body}");
    let overview: Value = browser()
        .get(format!("{}/console/api/overview", app.orders_url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        overview["fields"]["status_PENDING"]["text"], "0",
        "{overview}"
    );
    let script = browser()
        .get(format!("{}/console/assets/console.js", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    let signed_in = |logs: &str| {
        logs.lines()
            .any(|l| l.contains("console: signed in") && l.contains("admin:boss@example.com"))
    };
    let logs = logs_when(|| app.logs(), signed_in).await;
    assert!(
        signed_in(&logs),
        "the sign-in is not logged with who signed in:\n{logs}"
    );
    // The API is as it was: its routes answer in the contract's way.
    let orders = app
        .http
        .post(format!("{}/orders/", app.orders_url))
        .json(&one_item_order())
        .send()
        .await
        .unwrap();
    assert_eq!(orders.status(), 401);
    let detail = orders.text().await.unwrap();
    assert!(detail.contains("Not authenticated"), "{detail}");
}

#[tokio::test]
async fn with_orders_console_on_a_plain_account_and_a_wrong_password_are_refused() {
    let app = app_with_an_admin().await;
    let plain = sign_in(&app.orders_url, "plain@example.com", PASSWORD).await;
    assert_eq!(plain.status, 403, "{}", plain.body);
    assert!(
        plain.body.contains("This account is not an admin"),
        "{}",
        plain.body
    );
    assert!(plain.cookie.is_none(), "a plain account got a session");
    let wrong = sign_in(&app.orders_url, "boss@example.com", "not-the-password").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong.body.contains("Incorrect e-mail or password"),
        "{}",
        wrong.body
    );
    assert!(wrong.cookie.is_none(), "a wrong password got a session");
}

#[tokio::test]
async fn with_orders_console_off_there_is_no_console_on_the_orders_port() {
    let app = spawn_app_with(&[]).await;
    let r = app
        .http
        .get(format!("{}/console", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let login = browser()
        .post(format!("{}/console/login", app.orders_url))
        .form(&[("email", "a@example.com"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert!(
        matches!(login.status().as_u16(), 404 | 405),
        "{}",
        login.status()
    );
}

#[tokio::test]
async fn orders_alone_signs_console_admins_in_at_the_jwks_origin_and_says_when_auth_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let auth_dir = tmp.path().join("auth");
    let mut auth = start_role("auth", &auth_dir, &[], 0).await;
    auth.user("boss@example.com").await;
    promote(&auth_dir, "boss@example.com");
    let jwks_url = format!("{}/.well-known/jwks.json", auth.auth_url);
    let orders = start_role(
        "orders",
        &tmp.path().join("orders"),
        &[
            ("ORDERS_CONSOLE", "on"),
            ("ORDERS_JWKS_URL", &jwks_url),
            ("ORDERS_PUBLIC_KEY_PATH", "/nonexistent/public.pem"),
        ],
        0,
    )
    .await;
    let signed = sign_in(&orders.orders_url, "boss@example.com", PASSWORD).await;
    assert_eq!(
        signed.status,
        303,
        "{}\nlogs:\n{}",
        signed.body,
        orders.logs()
    );
    auth.kill();
    let down = sign_in(&orders.orders_url, "boss@example.com", PASSWORD).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(
        down.body
            .contains("The auth service cannot check the account now"),
        "{}",
        down.body
    );
    assert!(down.cookie.is_none());
}
