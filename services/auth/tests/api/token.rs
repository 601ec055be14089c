use serde_json::json;

use crate::helpers::{spawn_app, verify};

const BAD_LOGIN: &str = r#"{"detail":"Incorrect email or password"}"#;

#[tokio::test]
async fn a_registered_user_gets_a_bearer_token_that_verifies() {
    let app = spawn_app().await;
    app.register("alice@example.com", "pw-alice").await;

    let response = app.login("alice@example.com", "pw-alice").await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["token_type"], "bearer");
    assert_eq!(response.json["expires_in"], 1800);
    // Compact JSON: the old E2E script greps for `"access_token":"`.
    assert!(
        response.text.contains(r#""access_token":""#),
        "{}",
        response.text
    );

    let claims = verify(response.json["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sub, "1");
    assert_eq!(claims.email, "alice@example.com");
    let iat = claims.iat.expect("iat");
    assert_eq!(claims.exp - iat, 1800);
    assert!(claims.jti.is_some_and(|j| j.len() == 36));
}

#[tokio::test]
async fn the_email_in_the_form_is_matched_ignoring_case_and_the_slash_is_optional() {
    let app = spawn_app().await;
    app.register("Alice@Example.com", "pw").await;
    let response = app
        .post_form(
            "/auth/token",
            "username=ALICE%40example.com&password=pw&grant_type=password",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        verify(response.json["access_token"].as_str().unwrap())
            .await
            .email,
        "alice@example.com"
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_401() {
    let app = spawn_app().await;
    app.register("alice@example.com", "pw").await;

    for (email, password) in [("alice@example.com", "wrong"), ("nobody@example.com", "pw")] {
        let response = app.login(email, password).await;
        assert_eq!(response.status, 401, "{email}");
        assert_eq!(response.text, BAD_LOGIN);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
}

#[tokio::test]
async fn a_missing_form_field_is_a_422() {
    let app = spawn_app().await;
    let response = app
        .post_form("/auth/token/", "username=a%40example.com")
        .await;
    assert_eq!(response.status, 422, "{}", response.text);
    assert_eq!(
        response.json["detail"][0]["loc"],
        json!(["body", "password"])
    );
    assert_eq!(response.json["detail"][0]["type"], "missing");
}

#[tokio::test]
async fn an_unsupported_grant_type_is_a_422() {
    let app = spawn_app().await;
    let response = app
        .post_form(
            "/auth/token/",
            "username=a%40example.com&password=x&grant_type=client_credentials",
        )
        .await;
    assert_eq!(response.status, 422, "{}", response.text);
    assert_eq!(
        response.json["detail"][0]["loc"],
        json!(["body", "grant_type"])
    );
}

#[tokio::test]
async fn with_the_paseto_format_logins_get_v4_public_tokens_verifiable_through_the_jwks() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("paseto.key");
    let app = crate::helpers::spawn_app_with(|s| {
        s.token_format = orderly_core::config::TokenFormat::Paseto {
            key_path: key_path.clone(),
        }
    })
    .await;
    app.register("pia@example.com", "pw").await;
    let response = app.login("pia@example.com", "pw").await;
    assert_eq!(response.status, 200, "{}", response.text);
    let token = response.json["access_token"].as_str().unwrap();
    assert!(token.starts_with("v4.public."), "{token}");

    // The JWKS lists the RSA key and the Ed25519 key; a verifier built from it
    // accepts the PASETO token (a verifier with only the RSA key does not).
    let jwks = app.get("/.well-known/jwks.json", None).await;
    let keys = jwks.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{}", jwks.text);
    let okp = keys.iter().find(|k| k["kty"] == "OKP").expect("an OKP key");
    assert_eq!(okp["crv"], "Ed25519");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(okp.clone()).unwrap();
    let paseto_key = orderly_http::token::PasetoKey::from_jwk(&jwk).unwrap();
    assert!(crate::helpers::verifier().verify(token).await.is_err());
    let verifier = crate::helpers::verifier().with_paseto_keys(vec![paseto_key]);
    let claims = verifier
        .verify(token)
        .await
        .expect("the PASETO token verifies");
    assert_eq!(claims.sub, "1");
    assert_eq!(claims.email, "pia@example.com");
    assert_eq!(claims.role.as_deref(), Some("user"));

    // A restart reuses the key file: the same kid signs.
    let again = crate::helpers::spawn_app_with(|s| {
        s.token_format = orderly_core::config::TokenFormat::Paseto {
            key_path: key_path.clone(),
        }
    })
    .await;
    let jwks_again = again.get("/.well-known/jwks.json", None).await;
    assert!(
        jwks_again.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == okp["kid"])
    );
}
