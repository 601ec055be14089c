//! The attack suite: forged, stale and misdirected tokens against the orders
//! verification path (TokenVerifier + the CurrentUser extractor in a router).
//! Each case must end in 401 `Could not validate credentials`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::Request;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orderly_http::token::{
    AccessClaims, CurrentUser, PasetoSigner, TokenVerifier, VerifierConfig, VerifyingKey, jwk_set,
};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;
use tower::ServiceExt;

struct Pair {
    encoding: EncodingKey,
    public_pem: String,
    key: VerifyingKey,
}

fn pair() -> Pair {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("keygen");
    let private_pem = private.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    Pair {
        encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("encoding key"),
        key: VerifyingKey::from_pem(&public_pem, "test").expect("verifying key"),
        public_pem,
    }
}

/// The key orders trusts, and a stranger's key (RSA generation is the slow part).
static TRUSTED: LazyLock<Pair> = LazyLock::new(pair);
static STRANGER: LazyLock<Pair> = LazyLock::new(pair);

const ISSUER: &str = "https://auth.orderly.test";
const AUDIENCE: &str = "orders";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims() -> AccessClaims {
    AccessClaims {
        sub: "7".into(),
        email: "user@example.com".into(),
        exp: now() + 600,
        iat: Some(now()),
        nbf: Some(now()),
        jti: Some("j".into()),
        role: Some("user".into()),
        iss: Some(ISSUER.into()),
        aud: Some(AUDIENCE.into()),
    }
}

fn sign_with(pair: &Pair, kid: Option<&str>, claims: &AccessClaims) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &pair.encoding).expect("sign")
}

fn sign(claims: &AccessClaims) -> String {
    sign_with(&TRUSTED, Some(&TRUSTED.key.kid), claims)
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[derive(Clone)]
struct AppState(Arc<TokenVerifier>);

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.0.clone()
    }
}

fn app(verifier: TokenVerifier) -> Router {
    async fn whoami(user: CurrentUser) -> String {
        format!("{}:{}", user.id, user.role.unwrap_or_default())
    }
    Router::new()
        .route("/me", get(whoami))
        .with_state(AppState(Arc::new(verifier)))
}

fn strict_config() -> VerifierConfig {
    VerifierConfig {
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
    }
}

fn orders_app() -> Router {
    app(TokenVerifier::new(
        vec![TRUSTED.key.clone()],
        &strict_config(),
    ))
}

async fn call(app: &Router, token: &str) -> (u16, String) {
    let request = Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn assert_refused(app: &Router, token: &str, what: &str) {
    let (status, body) = call(app, token).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(
        body, r#"{"detail":"Could not validate credentials"}"#,
        "{what}"
    );
}

#[tokio::test]
async fn a_genuine_token_passes_so_the_refusals_below_mean_something() {
    let (status, body) = call(&orders_app(), &sign(&claims())).await;
    assert_eq!((status, body.as_str()), (200, "7:user"));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let header = json!({"alg": "none", "typ": "JWT", "kid": TRUSTED.key.kid});
    let payload = serde_json::to_value(claims()).unwrap();
    for token in [
        format!("{}.{}.", b64(&header), b64(&payload)),
        format!("{}.{}", b64(&header), b64(&payload)),
        format!(
            "{}.{}.",
            b64(&json!({"alg": "None", "typ": "JWT"})),
            b64(&payload)
        ),
    ] {
        assert_refused(&orders_app(), &token, "alg none").await;
    }
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(TRUSTED.key.kid.clone());
    let key = EncodingKey::from_secret(TRUSTED.public_pem.as_bytes());
    let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    assert_refused(&orders_app(), &token, "HS256 with the public key").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_leeway() {
    let mut expired = claims();
    expired.exp = now() - 60;
    assert_refused(&orders_app(), &sign(&expired), "expired").await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let mut early = claims();
    early.nbf = Some(now() + 600);
    assert_refused(&orders_app(), &sign(&early), "nbf in the future").await;
}

#[tokio::test]
async fn a_wrong_or_missing_issuer_or_audience_is_refused_when_configured() {
    let mut wrong_iss = claims();
    wrong_iss.iss = Some("https://evil.test".into());
    assert_refused(&orders_app(), &sign(&wrong_iss), "wrong iss").await;
    let mut no_iss = claims();
    no_iss.iss = None;
    assert_refused(&orders_app(), &sign(&no_iss), "missing iss").await;
    let mut wrong_aud = claims();
    wrong_aud.aud = Some("billing".into());
    assert_refused(&orders_app(), &sign(&wrong_aud), "wrong aud").await;
    let mut no_aud = claims();
    no_aud.aud = None;
    assert_refused(&orders_app(), &sign(&no_aud), "missing aud").await;

    // Without the settings neither is required (the old system's tokens).
    let lenient = app(TokenVerifier::new(
        vec![TRUSTED.key.clone()],
        &VerifierConfig::default(),
    ));
    assert_eq!(call(&lenient, &sign(&no_aud)).await.0, 200);
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let token = sign_with(&TRUSTED, Some("not-a-known-kid"), &claims());
    assert_refused(&orders_app(), &token, "unknown kid").await;
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let token = sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = serde_json::to_value(claims()).unwrap();
    payload["sub"] = json!("1");
    payload["role"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    assert_refused(&orders_app(), &forged, "tampered payload").await;
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused_whatever_kid_it_claims() {
    for kid in [
        Some(TRUSTED.key.kid.as_str()),
        Some(STRANGER.key.kid.as_str()),
        None,
    ] {
        let token = sign_with(&STRANGER, kid, &claims());
        assert_refused(&orders_app(), &token, &format!("other key, kid {kid:?}")).await;
    }
}

#[tokio::test]
async fn garbage_is_refused_and_a_missing_header_is_not_authenticated() {
    for token in ["", "a.b.c", "x", "v4.public.abc"] {
        let (status, _) = call(&orders_app(), token).await;
        assert_eq!(status, 401, "{token:?}");
    }
    let response = orders_app()
        .oneshot(Request::get("/me").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn during_a_rotation_both_keys_verify_and_tokens_without_kid_still_pass() {
    let verifier = TokenVerifier::new(
        vec![TRUSTED.key.clone(), STRANGER.key.clone()],
        &strict_config(),
    );
    let app = app(verifier);
    let old = sign_with(&STRANGER, Some(&STRANGER.key.kid), &claims());
    let new = sign(&claims());
    let legacy = sign_with(&TRUSTED, None, &claims());
    for token in [old, new, legacy] {
        assert_eq!(call(&app, &token).await.0, 200);
    }
}

#[tokio::test]
async fn a_pem_file_may_hold_the_current_and_the_previous_key() {
    let dir = std::env::temp_dir().join(format!("orderly-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("public.pem");
    std::fs::write(
        &path,
        format!("{}\n{}", TRUSTED.public_pem, STRANGER.public_pem),
    )
    .unwrap();
    let verifier = TokenVerifier::from_file(&path, &VerifierConfig::default()).unwrap();
    let mut expected = vec![TRUSTED.key.kid.clone(), STRANGER.key.kid.clone()];
    expected.sort();
    assert_eq!(verifier.kids(), expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A JWKS endpoint on 127.0.0.1:0 that counts its requests and serves whatever
/// key set the test puts in `keys`.
async fn spawn_jwks(
    keys: Arc<std::sync::Mutex<Vec<VerifyingKey>>>,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let keys = keys.clone();
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                axum::Json(jwk_set(&keys.lock().unwrap()))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/.well-known/jwks.json"), hits)
}

#[tokio::test]
async fn a_jwks_verifier_picks_up_a_rotated_key_by_refetching_on_its_unknown_kid() {
    use std::sync::atomic::Ordering;
    let published = Arc::new(std::sync::Mutex::new(vec![TRUSTED.key.clone()]));
    let (url, hits) = spawn_jwks(published.clone()).await;
    let verifier = TokenVerifier::from_jwks_url(&url, &strict_config(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let app = app(verifier);
    assert_eq!(call(&app, &sign(&claims())).await.0, 200);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "known kid: served from cache"
    );

    // Auth rotates: the new key appears in the JWKS and signs.
    published.lock().unwrap().push(STRANGER.key.clone());
    let rotated = sign_with(&STRANGER, Some(&STRANGER.key.kid), &claims());
    assert_eq!(call(&app, &rotated).await.0, 200);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "one refetch for the new kid"
    );
    // Still unknown after the refetch: refused.
    let forged = sign_with(&STRANGER, Some("forged"), &claims());
    assert_refused(&app, &forged, "unknown kid after refetch").await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_does_not_refetch_within_the_floor() {
    use std::sync::atomic::Ordering;
    let published = Arc::new(std::sync::Mutex::new(vec![TRUSTED.key.clone()]));
    let (url, hits) = spawn_jwks(published).await;
    let verifier = TokenVerifier::from_jwks_url(&url, &strict_config(), Duration::from_secs(3600))
        .await
        .unwrap();
    let app = app(verifier);
    for n in 0..20 {
        let forged = sign_with(&STRANGER, Some(&format!("forged-{n}")), &claims());
        assert_refused(&app, &forged, "unknown kid flood").await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "only the initial fetch");
    assert_eq!(call(&app, &sign(&claims())).await.0, 200);
}

#[tokio::test]
async fn an_unreachable_jwks_at_start_is_not_fatal_and_is_retried_on_the_first_token() {
    let published = Arc::new(std::sync::Mutex::new(vec![TRUSTED.key.clone()]));
    // Reserve a port, then serve on it only after the verifier has given up once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/.well-known/jwks.json");
    let verifier = TokenVerifier::from_jwks_url(&url, &strict_config(), Duration::ZERO)
        .await
        .unwrap();
    assert!(verifier.kids().is_empty());
    let keys = published.clone();
    let server = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let keys = keys.clone();
            async move { axum::Json(jwk_set(&keys.lock().unwrap())) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, server).await });
    let app = app(verifier);
    assert_eq!(call(&app, &sign(&claims())).await.0, 200);
}

#[tokio::test]
async fn jwks_readiness_fails_without_keys_and_recovers_by_itself_once_the_jwks_answers() {
    let published = Arc::new(std::sync::Mutex::new(vec![TRUSTED.key.clone()]));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/.well-known/jwks.json");
    let verifier = TokenVerifier::from_jwks_url(&url, &strict_config(), Duration::ZERO)
        .await
        .unwrap();
    let err = verifier.jwks_ready().await.unwrap_err();
    assert!(err.contains(&url), "{err}");
    let keys = published.clone();
    let server = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let keys = keys.clone();
            async move { axum::Json(jwk_set(&keys.lock().unwrap())) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, server).await });
    // No token needed: the readiness probe itself fetches the keys.
    verifier
        .jwks_ready()
        .await
        .expect("keys fetched by the probe");
    assert!(!verifier.kids().is_empty());
    // A verifier with its keys in a file has no JWKS to be ready for.
    let file_keys = TokenVerifier::new(vec![TRUSTED.key.clone()], &strict_config());
    assert_eq!(file_keys.jwks_ready().await, Ok(()));
}

static PASETO: LazyLock<PasetoSigner> = LazyLock::new(|| {
    PasetoSigner::from_secret_bytes(&PasetoSigner::generate_secret().unwrap()).unwrap()
});
static PASETO_STRANGER: LazyLock<PasetoSigner> = LazyLock::new(|| {
    PasetoSigner::from_secret_bytes(&PasetoSigner::generate_secret().unwrap()).unwrap()
});

/// Orders during a migration: RS256 JWTs and PASETO v4.public both accepted.
fn migrating_app() -> Router {
    app(
        TokenVerifier::new(vec![TRUSTED.key.clone()], &strict_config())
            .with_paseto_keys(vec![PASETO.public_key().clone()]),
    )
}

/// `v4.public.<body>.<footer>` with the footer replaced.
fn with_footer(token: &str, footer: &[u8]) -> String {
    let body: Vec<&str> = token.split('.').take(3).collect();
    format!("{}.{}", body.join("."), URL_SAFE_NO_PAD.encode(footer))
}

#[tokio::test]
async fn paseto_and_jwt_tokens_are_both_accepted_during_a_migration() {
    let app = migrating_app();
    let paseto = PASETO.sign(&claims()).unwrap();
    assert!(paseto.starts_with("v4.public."), "{paseto}");
    assert_eq!(call(&app, &paseto).await, (200, "7:user".to_string()));
    assert_eq!(
        call(&app, &sign(&claims())).await,
        (200, "7:user".to_string())
    );
    // A verifier without PASETO keys refuses them.
    assert_refused(&orders_app(), &paseto, "no PASETO key configured").await;
}

#[tokio::test]
async fn a_paseto_token_with_a_bad_footer_is_refused() {
    let app = migrating_app();
    let token = PASETO.sign(&claims()).unwrap();
    let kid = &PASETO.public_key().kid;
    let cases: [(&str, String); 5] = [
        // Same kid, different bytes: the footer is covered by the signature.
        (
            "footer with an extra field",
            with_footer(&token, json!({"kid": kid, "x": 1}).to_string().as_bytes()),
        ),
        (
            "footer naming another kid",
            with_footer(&token, json!({"kid": "nope"}).to_string().as_bytes()),
        ),
        ("footer that is not JSON", with_footer(&token, b"garbage")),
        (
            "footer removed",
            token.split('.').take(3).collect::<Vec<_>>().join("."),
        ),
        (
            "footer naming the trusted kid on a stranger's token",
            PASETO_STRANGER
                .sign(&claims())
                .map(|t| with_footer(&t, json!({"kid": kid}).to_string().as_bytes()))
                .unwrap(),
        ),
    ];
    for (what, forged) in cases {
        assert_refused(&app, &forged, what).await;
    }
}

#[tokio::test]
async fn paseto_tokens_get_the_same_claim_checks_as_jwts() {
    let app = migrating_app();
    let mut expired = claims();
    expired.exp = now() - 60;
    let mut early = claims();
    early.nbf = Some(now() + 600);
    let mut wrong_aud = claims();
    wrong_aud.aud = Some("billing".into());
    let mut no_iss = claims();
    no_iss.iss = None;
    for (what, c) in [
        ("expired", expired),
        ("not yet valid", early),
        ("wrong audience", wrong_aud),
        ("missing issuer", no_iss),
    ] {
        assert_refused(&app, &PASETO.sign(&c).unwrap(), what).await;
    }
    let token = PASETO.sign(&claims()).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut body = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    body[10] ^= 1;
    parts[2] = URL_SAFE_NO_PAD.encode(body);
    assert_refused(&app, &parts.join("."), "tampered payload").await;
}

#[tokio::test]
async fn a_jwks_verifier_takes_the_ed25519_key_for_paseto_tokens() {
    let set = json!({"keys": [TRUSTED.key.jwk, PASETO.public_key().jwk]});
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let set = set.clone();
            async move { axum::Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let verifier = TokenVerifier::from_jwks_url(
        &format!("http://{addr}/jwks"),
        &strict_config(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        verifier.kids().len(),
        2,
        "the RSA and the Ed25519 key: {:?}",
        verifier.kids()
    );
    let app = self::app(verifier);
    let paseto = PASETO.sign(&claims()).unwrap();
    assert_eq!(call(&app, &paseto).await, (200, "7:user".to_string()));
    assert_eq!(
        call(&app, &sign(&claims())).await,
        (200, "7:user".to_string())
    );
}
