//! Auth hardening through the running binary: key ids and the JWKS, forged tokens
//! refused by orders, refresh rotation, `orderly keygen` and `orderly user
//! promote`, orders verifying through the JWKS during a key rotation, and the
//! default (strict) status policy and login throttling under parallel guesses.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{TestApp, one_item_order, spawn_app_with, start_role};

fn orderly(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderly"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run orderly")
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("a kid header")
}

async fn login(app: &TestApp, email: &str) -> Value {
    let response = app.token_response(email, "secret-password").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn orders_status(app: &TestApp, token: &str) -> u16 {
    app.create_order(token, one_item_order())
        .await
        .status()
        .as_u16()
}

/// `orderly keygen --dir`: a fresh pair, the private key 0600; returns its directory's files.
fn keygen(dir: &Path) -> (String, String) {
    let out = orderly(&["keygen", "--dir", dir.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("kid: "), "{stdout}");
    let private = dir.join("private.pem");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // An existing pair is never overwritten.
    assert!(
        !orderly(&["keygen", "--dir", dir.to_str().unwrap()], &[])
            .status
            .success()
    );
    (
        std::fs::read_to_string(private).unwrap(),
        std::fs::read_to_string(dir.join("public.pem")).unwrap(),
    )
}

#[tokio::test]
async fn orders_refuses_forged_tokens_and_auth_publishes_the_signing_key() {
    let app = spawn_app_with(&[]).await;
    app.user("sec@example.com").await;
    let tokens = login(&app, "sec@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(tokens["refresh_token"].is_string(), "{tokens}");

    let jwks: Value = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.auth_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid_of(access).as_str());
    assert_eq!(orders_status(&app, access).await, 200);

    // alg none, with the real kid and a copied payload.
    let parts: Vec<&str> = access.split('.').collect();
    let none_header = URL_SAFE_NO_PAD
        .encode(json!({"alg": "none", "typ": "JWT", "kid": kid_of(access)}).to_string());
    assert_eq!(
        orders_status(&app, &format!("{none_header}.{}.", parts[1])).await,
        401
    );
    // Tampered payload: someone else's id under the original signature.
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("999");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    assert_eq!(orders_status(&app, &tampered).await, 401);
    // A well-formed token from a key orders does not trust.
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keygen(&dir.path().join("other"));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid_of(access));
    let foreign = jsonwebtoken::encode(
        &header,
        &payload,
        &jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(orders_status(&app, &foreign).await, 401);

    // Refresh rotates; the spent token replayed kills the family.
    let refresh = |token: Value| {
        let http = app.http.clone();
        let url = format!("{}/auth/refresh", app.auth_url);
        async move {
            http.post(url)
                .json(&json!({"refresh_token": token}))
                .send()
                .await
                .unwrap()
        }
    };
    let second: Value = refresh(tokens["refresh_token"].clone())
        .await
        .json()
        .await
        .unwrap();
    let new_access = second["access_token"].as_str().unwrap();
    assert_eq!(orders_status(&app, new_access).await, 200);
    assert_eq!(refresh(tokens["refresh_token"].clone()).await.status(), 401);
    assert_eq!(refresh(second["refresh_token"].clone()).await.status(), 401);
}

#[tokio::test]
async fn orders_follows_a_key_rotation_through_the_jwks() {
    let tmp = tempfile::tempdir().unwrap();
    let claims_env = [
        ("AUTH_ISSUER", "https://auth.orderly.test"),
        ("AUTH_AUDIENCE", "orders"),
    ];
    let auth_dir = tmp.path().join("auth");
    let mut auth = start_role("auth", &auth_dir, &claims_env, 0).await;
    let jwks_url = format!("{}/.well-known/jwks.json", auth.auth_url);
    let mut orders_env = claims_env.to_vec();
    orders_env.push(("ORDERS_JWKS_URL", &jwks_url));
    // No key file for orders at all: the JWKS is its only source.
    orders_env.push(("ORDERS_PUBLIC_KEY_PATH", "/nonexistent/public.pem"));
    // Orders fetched the JWKS moments ago; in production the last fetch is long
    // past when a rotation happens, so the floor does not delay the new kid.
    orders_env.push(("ORDERS_JWKS_MIN_REFETCH_SECONDS", "0"));
    let orders = start_role("orders", &tmp.path().join("orders"), &orders_env, 0).await;
    let with_orders = |mut app: TestApp| {
        app.orders_url = orders.orders_url.clone();
        app
    };

    auth = with_orders(auth);
    auth.user("rot@example.com").await;
    let before = login(&auth, "rot@example.com").await;
    let old_token = before["access_token"].as_str().unwrap().to_string();
    assert_eq!(orders_status(&auth, &old_token).await, 200);

    // The documented rotation: new pair; the old public key becomes "previous".
    let keys = auth_dir.join("keys");
    keygen(&tmp.path().join("new"));
    std::fs::rename(keys.join("public.pem"), keys.join("previous.pem")).unwrap();
    std::fs::remove_file(keys.join("private.pem")).unwrap();
    std::fs::rename(tmp.path().join("new/private.pem"), keys.join("private.pem")).unwrap();
    std::fs::rename(tmp.path().join("new/public.pem"), keys.join("public.pem")).unwrap();
    assert!(auth.terminate(Duration::from_secs(20)).is_some());
    let previous = keys.join("previous.pem");
    let mut rotated_env = claims_env.to_vec();
    let previous_path = previous.display().to_string();
    rotated_env.push(("AUTH_PREVIOUS_PUBLIC_KEY_PATHS", &previous_path));
    // Same address: orders keeps its JWKS URL across the auth restart.
    let auth_addr = auth.auth_url.trim_start_matches("http://").to_string();
    rotated_env.push(("AUTH_BIND", &auth_addr));
    let auth = with_orders(start_role("auth", &auth_dir, &rotated_env, 1).await);

    let after = login(&auth, "rot@example.com").await;
    let new_token = after["access_token"].as_str().unwrap();
    assert_ne!(kid_of(new_token), kid_of(&old_token));
    // Orders learns the new kid by refetching, and still trusts the old one.
    assert_eq!(orders_status(&auth, new_token).await, 200);
    assert_eq!(orders_status(&auth, &old_token).await, 200);
}

#[tokio::test]
async fn by_default_owners_may_only_cancel_and_admins_pay() {
    // No ORDERS_STATUS_POLICY: the default (strict) policy.
    let app = spawn_app_with(&[
        // The worker must not pay the orders before the test does.
        ("WORKER_PAYMENT_DELAY_MS", "600000"),
    ])
    .await;
    let (_, owner) = app.user("owner@example.com").await;
    app.user("boss@example.com").await;
    let data_dir = app.data_dir.display().to_string();
    let out = orderly(
        &["user", "promote", "boss@example.com"],
        &[("ORDERLY_DATA_DIR", &data_dir)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = login(&app, "boss@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = orderly(
        &["user", "promote", "nobody@example.com"],
        &[("ORDERLY_DATA_DIR", &data_dir)],
    );
    assert!(!unknown.status.success());

    let patch = |token: String, id: String, status: &'static str| {
        let http = app.http.clone();
        let url = format!("{}/orders/{id}/", app.orders_url);
        async move {
            http.patch(url)
                .bearer_auth(token)
                .json(&json!({"status": status}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let create = || async {
        let order: Value = app
            .create_order(&owner, one_item_order())
            .await
            .json()
            .await
            .unwrap();
        order["id"].as_str().unwrap().to_string()
    };
    let first = create().await;
    assert_eq!(patch(owner.clone(), first.clone(), "PAID").await, 403);
    assert_eq!(patch(admin.clone(), first.clone(), "PAID").await, 200);
    let second = create().await;
    assert_eq!(patch(owner.clone(), second, "CANCELED").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_wrong_passwords_get_429_after_the_account_limit() {
    let app = spawn_app_with(&[]).await;
    app.user("victim@example.com").await;
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let request = app
            .http
            .post(format!("{}/auth/token/", app.auth_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=victim%40example.com&password=wrong");
        guesses.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let statuses = guesses.join_all().await;
    let count = |status: u16| statuses.iter().filter(|s| **s == status).count();
    // The default limits: 5 per account, 20 per address.
    assert_eq!(count(401), 5, "{statuses:?}");
    assert_eq!(count(429), 55, "{statuses:?}");
    assert_eq!(
        app.token_response("victim@example.com", "secret-password")
            .await
            .status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_from_one_address_are_limited() {
    let app = spawn_app_with(&[("AUTH_REGISTER_RATE_LIMIT", "3/hour")]).await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        let r = app.register(&format!("r{n}@example.com"), "pw").await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

/// Polls until orders answers a create with `status` for this token; auth's
/// revocations reach orders within its poll interval (1 s here).
async fn orders_answers_eventually(app: &TestApp, token: &str, status: u16) -> bool {
    for _ in 0..100 {
        if orders_status(app, token).await == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn a_logout_or_a_lowered_role_revokes_access_tokens_already_issued() {
    let app = spawn_app_with(&[("ORDERS_REVOKED_TOKENS_POLL_SECONDS", "1")]).await;
    app.user("leaver@example.com").await;
    let session = login(&app, "leaver@example.com").await;
    let other_session = login(&app, "leaver@example.com").await;
    let token = session["access_token"].as_str().unwrap();
    let other = other_session["access_token"].as_str().unwrap();
    assert_eq!(orders_status(&app, token).await, 200);

    let logout = app
        .http
        .post(format!("{}/auth/logout", app.auth_url))
        .json(&json!({"refresh_token": session["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert!(
        orders_answers_eventually(&app, token, 401).await,
        "the logged-out session's access token still works"
    );
    // The user's other session is not touched by that logout.
    assert_eq!(orders_status(&app, other).await, 200);

    // Losing the admin role revokes every access token the user holds.
    let data_dir = app.data_dir.display().to_string();
    let env = [("ORDERLY_DATA_DIR", data_dir.as_str())];
    assert!(
        orderly(&["user", "promote", "leaver@example.com"], &env)
            .status
            .success()
    );
    let admin = login(&app, "leaver@example.com").await;
    let admin = admin["access_token"].as_str().unwrap();
    assert_eq!(orders_status(&app, admin).await, 200);
    assert!(
        orderly(&["user", "demote", "leaver@example.com"], &env)
            .status
            .success()
    );
    assert!(
        orders_answers_eventually(&app, admin, 401).await,
        "a demoted admin's access token still works"
    );
    assert!(orders_answers_eventually(&app, other, 401).await);
    let listed: Value = app
        .http
        .get(format!("{}/auth/revoked-tokens", app.auth_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The logged-out session's token, then the demotion's three: the token of
    // the login `app.user` made, the other session's and the admin's.
    assert_eq!(listed["revoked"].as_array().unwrap().len(), 4, "{listed}");
}
