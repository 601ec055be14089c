use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orderly_core::config::{GoogleSettings, Secret};
use orderly_http::token::{VerifyingKey, jwk_set};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{TestApp, TestResponse, spawn_app, spawn_app_with, verify};

const NOT_CONFIGURED: &str = r#"{"detail":"Google login is not configured"}"#;
const INVALID_STATE: &str = r#"{"detail":"Invalid state parameter (CSRF check failed)"}"#;
const INVALID_ID_TOKEN: &str = r#"{"detail":"Invalid Google ID token"}"#;
const ISSUER: &str = "https://accounts.fake.test";
const REDIRECT_URI: &str = "http://localhost:8001/auth/callback/google";

/// An RSA pair the fake provider signs with, and one it does not publish.
struct ProviderKeys {
    _dir: TempDir,
    signing: EncodingKey,
    public: VerifyingKey,
    stranger: EncodingKey,
}

static PROVIDER_KEYS: LazyLock<ProviderKeys> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = |name: &str| {
        let sub = dir.path().join(name);
        let (private, public) = orderly_auth::keys::generate_keypair(&sub).expect("keygen");
        (
            std::fs::read_to_string(private).expect("private pem"),
            std::fs::read_to_string(public).expect("public pem"),
        )
    };
    let (private, public) = pair("google");
    let (stranger, _) = pair("stranger");
    ProviderKeys {
        signing: EncodingKey::from_rsa_pem(private.as_bytes()).expect("signing key"),
        public: VerifyingKey::from_pem(&public, "fake google").expect("public key"),
        stranger: EncodingKey::from_rsa_pem(stranger.as_bytes()).expect("stranger key"),
        _dir: dir,
    }
});

/// How the fake provider bends the id_token of one grant.
#[derive(Clone, Default)]
struct Twist {
    /// Merged over the honest claims.
    claims: Value,
    /// Sign with a key that is not in the JWKS (but name the published kid).
    forge_signature: bool,
}

#[derive(Clone)]
struct Grant {
    code_challenge: String,
    nonce: String,
    twist: Twist,
}

/// A stand-in for Google's token endpoint and JWKS on 127.0.0.1:0. Codes are
/// minted by [`Provider::authorize`] (what Google does after the user consents),
/// are single-use, and only redeem with the client credentials and the PKCE
/// verifier whose S256 challenge the authorize URL carried.
#[derive(Clone)]
struct Provider {
    url: String,
    grants: Arc<Mutex<HashMap<String, Grant>>>,
    jwks_fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn spawn() -> Self {
        let grants: Arc<Mutex<HashMap<String, Grant>>> = Arc::default();
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/token", post(token))
            .route("/certs", get(certs))
            .with_state((grants.clone(), jwks_fetches.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}"),
            grants,
            jwks_fetches,
        }
    }

    /// The user consented at "Google": a code bound to the login URL's nonce and
    /// PKCE challenge.
    fn authorize(&self, login_url: &str, twist: Twist) -> String {
        let url = url::Url::parse(login_url).expect("login url");
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["client_id"], "client-1");
        let mut grants = self.grants.lock().unwrap();
        let code = format!("code-{}", grants.len());
        grants.insert(
            code.clone(),
            Grant {
                code_challenge: query["code_challenge"].clone(),
                nonce: query["nonce"].clone(),
                twist,
            },
        );
        code
    }
}

type ProviderState = (Arc<Mutex<HashMap<String, Grant>>>, Arc<AtomicUsize>);

async fn token(
    State((grants, _)): State<ProviderState>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let invalid_grant = (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "secret": "leak-me-not"})),
    );
    let Some(grant) = grants.lock().unwrap().remove(field("code")) else {
        return invalid_grant;
    };
    let ok = field("grant_type") == "authorization_code"
        && field("client_id") == "client-1"
        && field("client_secret") == "shh"
        && field("redirect_uri") == REDIRECT_URI
        && orderly_auth::google::code_challenge(field("code_verifier")) == grant.code_challenge;
    if !ok {
        return invalid_grant;
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "iss": ISSUER, "aud": "client-1", "sub": "g-123", "azp": "client-1",
        "email": "Carol@Example.com", "email_verified": true,
        "nonce": grant.nonce, "iat": now, "exp": now + 300,
    });
    if let Value::Object(patch) = grant.twist.claims {
        claims.as_object_mut().unwrap().extend(patch);
    }
    let keys = &*PROVIDER_KEYS;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(keys.public.kid.clone());
    let key = if grant.twist.forge_signature {
        &keys.stranger
    } else {
        &keys.signing
    };
    let id_token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    (
        StatusCode::OK,
        Json(json!({"access_token": "google-at", "token_type": "Bearer", "id_token": id_token})),
    )
}

async fn certs(State((_, fetches)): State<ProviderState>) -> Json<Value> {
    fetches.fetch_add(1, Ordering::SeqCst);
    Json(serde_json::to_value(jwk_set(std::slice::from_ref(&PROVIDER_KEYS.public))).unwrap())
}

fn google_settings(provider: &str) -> GoogleSettings {
    GoogleSettings {
        client_id: "client-1".into(),
        client_secret: Secret::new("shh"),
        redirect_uri: REDIRECT_URI.into(),
        auth_url: "https://accounts.example.test/o/oauth2/v2/auth".into(),
        token_url: format!("{provider}/token"),
        jwks_url: format!("{provider}/certs"),
        issuers: vec![ISSUER.into()],
    }
}

async fn app_with_provider() -> (TestApp, Provider) {
    let provider = Provider::spawn().await;
    let app = spawn_app_with(|s| s.google = Some(google_settings(&provider.url))).await;
    (app, provider)
}

/// A started login: the two flow cookies and the authorize URL.
struct Login {
    state: String,
    nonce: String,
    verifier: String,
    url: String,
}

impl Login {
    fn cookies(&self) -> String {
        format!(
            "oauth_state={}.{}; oauth_pkce={}",
            self.state, self.nonce, self.verifier
        )
    }
}

fn set_cookies(response: &TestResponse) -> Vec<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(set_cookies: &[String], name: &str) -> String {
    let prefix = format!("{name}=");
    set_cookies
        .iter()
        .find_map(|c| c.split(';').next().unwrap().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} cookie in {set_cookies:?}"))
        .to_string()
}

async fn start_login(app: &TestApp) -> Login {
    let response = app.get("/auth/login/google", None).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let cookies = set_cookies(&response);
    let flow = cookie_value(&cookies, "oauth_state");
    let (state, nonce) = flow.split_once('.').expect("state.nonce");
    Login {
        state: state.into(),
        nonce: nonce.into(),
        verifier: cookie_value(&cookies, "oauth_pkce"),
        url: response.json["login_url"].as_str().unwrap().into(),
    }
}

/// Log in at the fake Google with `twist` and call our callback as the browser would.
async fn sign_in(app: &TestApp, provider: &Provider, twist: Twist) -> TestResponse {
    let login = start_login(app).await;
    let code = provider.authorize(&login.url, twist);
    app.get(
        &format!("/auth/callback/google?code={code}&state={}", login.state),
        Some(&login.cookies()),
    )
    .await
}

fn claims(patch: Value) -> Twist {
    Twist {
        claims: patch,
        forge_signature: false,
    }
}

#[tokio::test]
async fn the_google_routes_answer_404_and_are_undocumented_when_google_is_not_configured() {
    let app = spawn_app().await;
    for path in ["/auth/login/google", "/auth/callback/google?code=c&state=s"] {
        let response = app.get(path, None).await;
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.text, NOT_CONFIGURED);
    }
    let response = app
        .send(link_request(
            "any-token",
            "c",
            "s",
            "oauth_state=s.n; oauth_pkce=v",
        ))
        .await;
    assert_eq!(response.status, 404, "{}", response.text);
    assert_eq!(response.text, NOT_CONFIGURED);

    let served = app.get("/openapi.json", None).await.json;
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.contains_key("/auth/token/"));
    assert!(!paths.keys().any(|p| p.contains("google")), "{paths:?}");
    let (configured, _provider) = app_with_provider().await;
    let served = configured.get("/openapi.json", None).await.json;
    for path in [
        "/auth/login/google",
        "/auth/callback/google",
        "/auth/link/google",
    ] {
        assert!(served["paths"][path].is_object(), "{path}");
    }
}

#[tokio::test]
async fn login_returns_the_authorize_url_with_nonce_and_pkce_and_sets_the_flow_cookies() {
    let (app, _provider) = app_with_provider().await;
    let response = app.get("/auth/login/google", None).await;
    assert_eq!(response.status, 200);

    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let flow = cookie_value(&cookies, "oauth_state");
    let (state, nonce) = flow.split_once('.').unwrap();
    let verifier = cookie_value(&cookies, "oauth_pkce");
    for value in [state, nonce, verifier.as_str()] {
        assert_eq!(value.len(), 43, "32 random bytes, base64url");
    }
    assert_ne!(state, nonce);
    assert_eq!(
        cookies,
        [
            format!("oauth_state={flow}; HttpOnly; SameSite=Lax; Max-Age=600; Path=/"),
            format!("oauth_pkce={verifier}; HttpOnly; SameSite=Lax; Max-Age=600; Path=/"),
        ]
    );
    let challenge = orderly_auth::google::code_challenge(&verifier);
    assert_eq!(
        response.json["login_url"],
        format!(
            "https://accounts.example.test/o/oauth2/v2/auth?response_type=code&client_id=client-1\
             &redirect_uri=http%3A%2F%2Flocalhost%3A8001%2Fauth%2Fcallback%2Fgoogle\
             &scope=openid%20email%20profile&state={state}&nonce={nonce}\
             &code_challenge={challenge}&code_challenge_method=S256"
        )
    );
    let again = start_login(&app).await;
    assert_ne!(again.state, state, "each login gets a fresh state");
    assert_ne!(again.nonce, nonce, "and a fresh nonce");
    assert_ne!(again.verifier, verifier, "and a fresh verifier");
}

#[tokio::test]
async fn the_flow_cookies_are_secure_when_configured() {
    let provider = Provider::spawn().await;
    let app = spawn_app_with(|s| {
        s.google = Some(google_settings(&provider.url));
        s.cookie_secure = true;
    })
    .await;
    let response = app.get("/auth/login/google", None).await;
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 2);
    assert!(cookies.iter().all(|c| c.ends_with("; Path=/; Secure")));
}

#[tokio::test]
async fn a_callback_without_state_is_rejected() {
    let (app, provider) = app_with_provider().await;
    let login = start_login(&app).await;
    let code = provider.authorize(&login.url, Twist::default());
    let response = app
        .get(
            &format!("/auth/callback/google?code={code}"),
            Some(&login.cookies()),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.text, r#"{"detail":"Missing state parameter"}"#);
}

#[tokio::test]
async fn a_callback_whose_state_differs_from_the_cookie_or_lacks_a_flow_cookie_is_rejected() {
    let (app, provider) = app_with_provider().await;
    let login = start_login(&app).await;
    let code = provider.authorize(&login.url, Twist::default());
    let path = format!("/auth/callback/google?code={code}&state={}", login.state);

    let someone_elses = start_login(&app).await;
    let mismatched = app.get(&path, Some(&someone_elses.cookies())).await;
    assert_eq!(mismatched.status, 400);
    assert_eq!(mismatched.text, INVALID_STATE);

    let no_cookie = app.get(&path, None).await;
    assert_eq!(no_cookie.status, 400);
    assert_eq!(no_cookie.text, INVALID_STATE);

    let state_only = format!("oauth_state={}.{}", login.state, login.nonce);
    let no_pkce = app.get(&path, Some(&state_only)).await;
    assert_eq!(no_pkce.status, 400);
    assert_eq!(no_pkce.text, INVALID_STATE);

    let no_nonce = format!("oauth_state={}; oauth_pkce={}", login.state, login.verifier);
    let response = app.get(&path, Some(&no_nonce)).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.text, INVALID_STATE);

    // None of that spent the code: the rightful browser still signs in.
    let response = app.get(&path, Some(&login.cookies())).await;
    assert_eq!(response.status, 200, "{}", response.text);
}

#[tokio::test]
async fn a_callback_without_code_is_rejected() {
    let (app, _provider) = app_with_provider().await;
    let login = start_login(&app).await;
    let response = app
        .get(
            &format!(
                "/auth/callback/google?state={}&error=access_denied",
                login.state
            ),
            Some(&login.cookies()),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.text, r#"{"detail":"Missing code parameter"}"#);
}

#[tokio::test]
async fn a_verified_google_account_signs_in_and_gets_the_same_user_next_time() {
    let (app, provider) = app_with_provider().await;
    for _ in 0..2 {
        let response = sign_in(&app, &provider, Twist::default()).await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.json["token_type"], "bearer");
        let claims = verify(response.json["access_token"].as_str().unwrap()).await;
        assert_eq!(claims.sub, "1");
        assert_eq!(claims.email, "carol@example.com");
        let cleared = set_cookies(&response);
        assert_eq!(cleared.len(), 2, "{cleared:?}");
        assert!(cleared[0].starts_with("oauth_state=; HttpOnly"));
        assert!(cleared[1].starts_with("oauth_pkce=; HttpOnly"));
        assert!(cleared.iter().all(|c| c.contains("Max-Age=0")));
    }
    // Google's keys were fetched once and then served from the cache.
    assert_eq!(provider.jwks_fetches.load(Ordering::SeqCst), 1);
    // The Google-only account has no password to log in with.
    let response = app.login("carol@example.com", "").await;
    assert_eq!(response.status, 401);
}

#[tokio::test]
async fn the_account_is_found_by_google_sub_even_after_the_google_email_changes() {
    let (app, provider) = app_with_provider().await;
    let first = sign_in(&app, &provider, Twist::default()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let renamed = sign_in(
        &app,
        &provider,
        claims(json!({"email": "carol.new@example.com"})),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let claims = verify(renamed.json["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sub, "1", "same account, linked by sub");
}

/// `POST /auth/link/google` as a signed-in client passes on Google's answer.
fn link_request(access_token: &str, code: &str, state: &str, cookies: &str) -> Request<Body> {
    Request::post("/auth/link/google")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {access_token}"))
        .header("cookie", cookies)
        .body(Body::from(
            json!({"code": code, "state": state}).to_string(),
        ))
        .unwrap()
}

/// Start a Google login, consent at the fake provider, and ask to link the
/// identity to the account `access_token` belongs to.
async fn link(app: &TestApp, provider: &Provider, access_token: &str) -> TestResponse {
    let login = start_login(app).await;
    let code = provider.authorize(&login.url, Twist::default());
    app.send(link_request(
        access_token,
        &code,
        &login.state,
        &login.cookies(),
    ))
    .await
}

async fn password_login(app: &TestApp, email: &str, password: &str) -> String {
    let response = app.login(email, password).await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.json["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn google_login_never_takes_over_a_password_account_with_that_email() {
    let (app, provider) = app_with_provider().await;
    // Anyone can register an address they do not own: e-mails are not verified.
    let registered = app.register("carol@example.com", "attacker-pw").await;
    assert_eq!(registered.json["user_id"], 1);

    let response = sign_in(&app, &provider, Twist::default()).await;
    assert_eq!(response.status, 409, "{}", response.text);
    let detail = response.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("POST") && detail.contains("/auth/link/google"),
        "{detail}"
    );
    // Nothing was linked: a second try is refused the same way.
    let again = sign_in(&app, &provider, Twist::default()).await;
    assert_eq!(again.status, 409, "{}", again.text);
}

#[tokio::test]
async fn a_signed_in_account_links_google_and_then_signs_in_with_either() {
    let (app, provider) = app_with_provider().await;
    app.register("someone@example.com", "pw").await;
    let registered = app.register("carol@example.com", "pw").await;
    assert_eq!(registered.json["user_id"], 2);
    let access_token = password_login(&app, "carol@example.com", "pw").await;

    let linked = link(&app, &provider, &access_token).await;
    assert_eq!(linked.status, 200, "{}", linked.text);
    assert_eq!(
        linked.json,
        json!({"msg": "Google account linked", "user_id": 2})
    );
    let cleared = set_cookies(&linked);
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    // Linking the same identity again changes nothing.
    assert_eq!(link(&app, &provider, &access_token).await.status, 200);

    let response = sign_in(&app, &provider, Twist::default()).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        verify(response.json["access_token"].as_str().unwrap())
            .await
            .sub,
        "2"
    );
    // The password still works too.
    assert_eq!(app.login("carol@example.com", "pw").await.status, 200);
}

#[tokio::test]
async fn linking_needs_a_valid_session_and_the_flow_cookies() {
    let (app, provider) = app_with_provider().await;
    app.register("carol@example.com", "pw").await;
    let access_token = password_login(&app, "carol@example.com", "pw").await;
    let login = start_login(&app).await;
    let code = provider.authorize(&login.url, Twist::default());

    let mut no_token = link_request("x", &code, &login.state, &login.cookies());
    no_token.headers_mut().remove("authorization");
    let response = app.send(no_token).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.text, r#"{"detail":"Not authenticated"}"#);
    let forged = app
        .send(link_request(
            "not.a.token",
            &code,
            &login.state,
            &login.cookies(),
        ))
        .await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        forged.text,
        r#"{"detail":"Could not validate credentials"}"#
    );
    let someone_elses = start_login(&app).await;
    let response = app
        .send(link_request(
            &access_token,
            &code,
            &login.state,
            &someone_elses.cookies(),
        ))
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.text, INVALID_STATE);
    // None of that spent the code or linked anything.
    let response = app
        .send(link_request(
            &access_token,
            &code,
            &login.state,
            &login.cookies(),
        ))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
}

#[tokio::test]
async fn a_google_identity_links_to_one_account_only() {
    let (app, provider) = app_with_provider().await;
    // Carol's Google identity first signs in on its own: a Google-only account.
    let first = sign_in(&app, &provider, Twist::default()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    app.register("dave@example.com", "pw").await;
    let dave = password_login(&app, "dave@example.com", "pw").await;
    let response = link(&app, &provider, &dave).await;
    assert_eq!(response.status, 409, "{}", response.text);
    assert_eq!(
        response.text,
        r#"{"detail":"This account or this Google account is already linked to a different one"}"#
    );
}

#[tokio::test]
async fn an_unverified_google_email_is_rejected() {
    let (app, provider) = app_with_provider().await;
    for unverified in [json!(false), json!("false"), Value::Null] {
        let response = sign_in(
            &app,
            &provider,
            claims(json!({"email_verified": unverified})),
        )
        .await;
        assert_eq!(response.status, 400, "{unverified}");
        assert_eq!(
            response.text,
            r#"{"detail":"Google account e-mail is not verified"}"#
        );
    }
    // Google has sent the string form too.
    let response = sign_in(&app, &provider, claims(json!({"email_verified": "true"}))).await;
    assert_eq!(response.status, 200, "{}", response.text);
}

#[tokio::test]
async fn an_id_token_with_a_wrong_nonce_is_rejected() {
    let (app, provider) = app_with_provider().await;
    // An id_token minted for another login (a replayed or injected code).
    let other = start_login(&app).await;
    let response = sign_in(&app, &provider, claims(json!({"nonce": other.nonce}))).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.text, INVALID_ID_TOKEN);

    let response = sign_in(&app, &provider, claims(json!({"nonce": null}))).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.text, INVALID_ID_TOKEN);
}

#[tokio::test]
async fn an_id_token_with_a_bad_signature_is_rejected() {
    let (app, provider) = app_with_provider().await;
    let forged = Twist {
        claims: Value::Null,
        forge_signature: true,
    };
    let response = sign_in(&app, &provider, forged).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.text, INVALID_ID_TOKEN);
}

#[tokio::test]
async fn an_id_token_for_another_client_issuer_or_time_is_rejected() {
    let (app, provider) = app_with_provider().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for patch in [
        json!({"aud": "someone-elses-client"}),
        json!({"iss": "https://evil.example"}),
        json!({"exp": now - 3600}),
        json!({"sub": ""}),
        json!({"email": null}),
    ] {
        let response = sign_in(&app, &provider, claims(patch.clone())).await;
        assert_eq!(response.status, 401, "{patch}: {}", response.text);
        assert_eq!(response.text, INVALID_ID_TOKEN, "{patch}");
    }
}

#[tokio::test]
async fn a_code_redeemed_without_the_right_pkce_verifier_fails_at_the_provider() {
    let (app, provider) = app_with_provider().await;
    let login = start_login(&app).await;
    let code = provider.authorize(&login.url, Twist::default());
    // An attacker who stole the code but not the victim's verifier cookie.
    let attacker = start_login(&app).await;
    let cookies = format!(
        "oauth_state={}.{}; oauth_pkce={}",
        login.state, login.nonce, attacker.verifier
    );
    let response = app
        .get(
            &format!("/auth/callback/google?code={code}&state={}", login.state),
            Some(&cookies),
        )
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.text, r#"{"detail":"Google login failed"}"#);
}

#[tokio::test]
async fn a_provider_failure_is_a_502_that_leaks_nothing() {
    let (app, _provider) = app_with_provider().await;
    let login = start_login(&app).await;
    let response = app
        .get(
            &format!(
                "/auth/callback/google?code=stolen-code&state={}",
                login.state
            ),
            Some(&login.cookies()),
        )
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.text, r#"{"detail":"Google login failed"}"#);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502() {
    // Port 9 on localhost: nothing listens, the connection is refused at once.
    let app = spawn_app_with(|s| s.google = Some(google_settings("http://127.0.0.1:9"))).await;
    let login = start_login(&app).await;
    let response = app
        .get(
            &format!("/auth/callback/google?code=any&state={}", login.state),
            Some(&login.cookies()),
        )
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.text, r#"{"detail":"Google login failed"}"#);
}
