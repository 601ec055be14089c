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
