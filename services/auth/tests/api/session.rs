//! Refresh rotation, logout, the JWKS, key ids, iss/aud, roles and the login throttle.

use axum::body::Body;
use axum::http::Request;
use orderly_http::token::{TokenVerifier, VerifierConfig, VerifyingKey};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with, verify};

async fn signed_in(app: &TestApp, email: &str) -> Value {
    assert_eq!(app.register(email, "pw-right").await.status, 200);
    let response = app.login(email, "pw-right").await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.json
}

async fn refresh(app: &TestApp, token: &Value) -> crate::helpers::TestResponse {
    let body = json!({"refresh_token": token}).to_string();
    app.post_json("/auth/refresh", &body).await
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("a kid header")
}

#[tokio::test]
async fn every_token_names_its_key_and_the_jwks_publishes_that_key() {
    let app = spawn_app().await;
    let tokens = signed_in(&app, "k@example.com").await;
    let kid = kid_of(tokens["access_token"].as_str().unwrap());

    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, 200);
    assert!(
        jwks.header("cache-control")
            .is_some_and(|v| v.contains("max-age"))
    );
    let keys = jwks.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", jwks.text);
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    // The kid is the RFC 7638 thumbprint: recomputing it from n and e agrees.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
    assert_eq!(
        jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap(),
        kid
    );
    // A verifier holding only the published key accepts the token.
    let verifier = TokenVerifier::new(
        vec![VerifyingKey::from_jwk(&jwk).unwrap()],
        &VerifierConfig::default(),
    );
    let claims = verifier
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.role.as_deref(), Some("user"));
    assert!(claims.nbf.is_some());
}

#[tokio::test]
async fn previous_public_keys_stay_in_the_jwks_during_a_rotation() {
    let old = tempfile::tempdir().unwrap();
    let (_, old_public) = orderly_auth::keys::generate_keypair(old.path()).unwrap();
    let app = spawn_app_with(|s| s.previous_public_key_paths = vec![old_public.clone()]).await;
    let tokens = signed_in(&app, "r@example.com").await;
    let current = kid_of(tokens["access_token"].as_str().unwrap());

    let jwks = app.get("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    let old_kid = VerifyingKey::from_pem(&std::fs::read_to_string(&old_public).unwrap(), "old")
        .unwrap()
        .kid;
    // The current key first: it signs; the previous one only verifies.
    assert_eq!(kids, vec![current.as_str(), old_kid.as_str()]);
}

#[tokio::test]
async fn issuer_and_audience_are_put_in_tokens_when_configured() {
    let app = spawn_app_with(|s| {
        s.verifier = VerifierConfig {
            issuer: Some("https://auth.test".into()),
            audience: Some("orders".into()),
        }
    })
    .await;
    let tokens = signed_in(&app, "i@example.com").await;
    let token = tokens["access_token"].as_str().unwrap();
    let strict = TokenVerifier::from_file(
        &crate::helpers::settings(&tempfile::tempdir().unwrap(), None).public_key_path,
        &VerifierConfig {
            issuer: Some("https://auth.test".into()),
            audience: Some("orders".into()),
        },
    )
    .unwrap();
    let claims = strict.verify(token).await.unwrap();
    assert_eq!(claims.iss.as_deref(), Some("https://auth.test"));
    assert_eq!(claims.aud.as_deref(), Some("orders"));
}

#[tokio::test]
async fn login_returns_a_refresh_token_that_rotates_once() {
    let app = spawn_app().await;
    let first = signed_in(&app, "a@example.com").await;
    let refresh_token = first["refresh_token"].as_str().expect("refresh_token");
    assert_eq!(refresh_token.len(), 43);

    let second = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_ne!(second.json["refresh_token"], first["refresh_token"]);
    assert_ne!(second.json["access_token"], first["access_token"]);
    assert_eq!(
        verify(second.json["access_token"].as_str().unwrap())
            .await
            .email,
        "a@example.com"
    );
    // The form spelling (OAuth2 clients) works too.
    let body = format!(
        "grant_type=refresh_token&refresh_token={}",
        second.json["refresh_token"].as_str().unwrap()
    );
    let third = app.post_form("/auth/refresh", &body).await;
    assert_eq!(third.status, 200, "{}", third.text);
}

#[tokio::test]
async fn replaying_a_used_refresh_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let first = signed_in(&app, "b@example.com").await;
    let second = refresh(&app, &first["refresh_token"]).await.json;
    let third = refresh(&app, &second["refresh_token"]).await.json;
    assert!(third["refresh_token"].is_string());

    let replay = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(replay.status, 401, "{}", replay.text);
    assert_eq!(replay.text, r#"{"detail":"Invalid refresh token"}"#);
    // The family's newest token is dead too.
    let current = refresh(&app, &third["refresh_token"]).await;
    assert_eq!(current.status, 401, "{}", current.text);

    // Another session of the same user is untouched.
    let other = app.login("b@example.com", "pw-right").await.json;
    assert_eq!(refresh(&app, &other["refresh_token"]).await.status, 200);
}

#[tokio::test]
async fn logout_revokes_the_session_and_answers_204_even_for_unknown_tokens() {
    let app = spawn_app().await;
    let tokens = signed_in(&app, "c@example.com").await;
    let rotated = refresh(&app, &tokens["refresh_token"]).await.json;

    let body = json!({"refresh_token": rotated["refresh_token"]}).to_string();
    assert_eq!(app.post_json("/auth/logout", &body).await.status, 204);
    assert_eq!(refresh(&app, &rotated["refresh_token"]).await.status, 401);

    let unknown = json!({"refresh_token": "not-a-token"}).to_string();
    assert_eq!(app.post_json("/auth/logout", &unknown).await.status, 204);
    assert_eq!(refresh(&app, &json!("not-a-token")).await.status, 401);
    let missing = app.post_json("/auth/refresh", "{}").await;
    assert_eq!(missing.status, 422, "{}", missing.text);
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let app = spawn_app_with(|s| s.refresh_token_ttl = std::time::Duration::from_secs(1)).await;
    let tokens = signed_in(&app, "e@example.com").await;
    // Expiry is compared in whole seconds: wait past the next boundary.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(refresh(&app, &tokens["refresh_token"]).await.status, 401);
}

#[tokio::test]
async fn a_promoted_user_gets_the_admin_role_from_the_next_refresh() {
    let db = tempfile::tempdir().unwrap();
    let settings = crate::helpers::settings(&db, None);
    let app = crate::helpers::spawn_app_on(&settings).await;
    let tokens = signed_in(&app, "Admin@Example.com").await;
    let before = verify(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(before.role.as_deref(), Some("user"));

    let user = orderly_auth::set_role(&settings, "ADMIN@example.com", "admin")
        .await
        .unwrap()
        .expect("the user exists");
    assert_eq!(user.role, "admin");
    let after = refresh(&app, &tokens["refresh_token"]).await.json;
    let claims = verify(after["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.role.as_deref(), Some("admin"));
    assert!(
        orderly_auth::set_role(&settings, "nobody@example.com", "admin")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_demoted_admin_cannot_renew_the_old_role_from_an_open_session() {
    let db = tempfile::tempdir().unwrap();
    let settings = crate::helpers::settings(&db, None);
    let app = crate::helpers::spawn_app_on(&settings).await;
    let first = signed_in(&app, "boss@example.com").await;
    orderly_auth::set_role(&settings, "boss@example.com", "admin")
        .await
        .unwrap()
        .unwrap();
    // Promotion keeps the session: its next refresh carries the new role.
    let promoted = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    let second = app.login("boss@example.com", "pw-right").await.json;

    let demoted = orderly_auth::set_role(&settings, "boss@example.com", "user")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(demoted.role, "user");
    for session in [&promoted.json, &second] {
        let response = refresh(&app, &session["refresh_token"]).await;
        assert_eq!(response.status, 401, "{}", response.text);
    }
    // A new login gets the lowered role.
    let again = app.login("boss@example.com", "pw-right").await.json;
    let claims = verify(again["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.role.as_deref(), Some("user"));
}

#[tokio::test]
async fn failed_logins_for_one_account_from_many_addresses_end_in_429() {
    let app = spawn_app().await;
    app.register("victim@example.com", "pw-right").await;
    let mut first_429 = None;
    for attempt in 1..=20u8 {
        let body = "username=victim%40example.com&password=guess";
        let request = Request::post("/auth/token/")
            .header("content-type", "application/x-www-form-urlencoded")
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [198, 51, 100, attempt],
                40000,
            ))))
            .body(Body::from(body))
            .unwrap();
        let response = app.send(request).await;
        if response.status == 429 {
            let retry_after: u64 = response
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .unwrap();
            assert!((1..=900).contains(&retry_after), "{retry_after}");
            first_429 = Some(attempt);
            break;
        }
        assert_eq!(response.status, 401, "{}", response.text);
    }
    assert_eq!(first_429, Some(6), "5 failures per account are allowed");
    // Locked means locked: the right password waits too.
    assert_eq!(
        app.login("victim@example.com", "pw-right").await.status,
        429
    );
    // Other accounts are unaffected.
    app.register("bystander@example.com", "pw").await;
    assert_eq!(app.login("bystander@example.com", "pw").await.status, 200);
}

#[tokio::test]
async fn unknown_emails_are_throttled_with_the_same_answers() {
    let app = spawn_app().await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = app.login("ghost@example.com", "guess").await;
        if response.status == 401 {
            assert_eq!(response.text, r#"{"detail":"Incorrect email or password"}"#);
        }
        statuses.push(response.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429]);
}

#[tokio::test]
async fn one_address_is_throttled_across_accounts() {
    let app = spawn_app_with(|s| s.login_limits.per_ip.limit = 3).await;
    let from = |email: &str| {
        let body = format!("username={email}&password=guess");
        Request::post("/auth/token/")
            .header("content-type", "application/x-www-form-urlencoded")
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [203, 0, 113, 7],
                1234,
            ))))
            .body(Body::from(body))
            .unwrap()
    };
    for n in 0..3 {
        assert_eq!(
            app.send(from(&format!("u{n}%40example.com"))).await.status,
            401
        );
    }
    assert_eq!(app.send(from("u9%40example.com")).await.status, 429);
}
