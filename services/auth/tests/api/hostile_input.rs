//! Hostile input on every body, query and cookie the auth routes read: never a
//! 5xx (but the callback's documented 502 when Google refuses a code), only
//! statuses the contract allows, errors always `{"detail": …}`, and every
//! status seen documented for its operation.

use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request};
use orderly_core::config::{GoogleSettings, LoginLimits, RateLimit, Secret};
use orderly_testkit::TestDatabase;
use orderly_testkit::hostile::{
    self, form_of, hostile_string, json_content_type, number_literal, object_of, percent_encode,
    query_string, quote, raw_body,
};
use orderly_testkit::in_process::Answer;
use orderly_testkit::openapi::{Observed, expose_matched_path, undocumented_statuses};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use crate::helpers::{self, TestApp};

/// Cases per property (override with PROPTEST_CASES). Logins cost an Argon2
/// verification each, so that property runs half as many.
const CASES: u32 = 512;

/// The app as `build` makes it, recording which route answered what.
struct Hostile {
    router: Router,
    observed: Mutex<Vec<Observed>>,
    _app: TestApp,
    _db: Option<TestDatabase>,
}

/// A port nothing listens on: Google's token endpoint refuses every code.
fn unreachable_google() -> GoogleSettings {
    let provider = format!("http://127.0.0.1:{}", orderly_testkit::free_port());
    GoogleSettings {
        client_id: "client-1".into(),
        client_secret: Secret::new("shh"),
        redirect_uri: "http://localhost:8001/auth/callback/google".into(),
        auth_url: "https://accounts.example.test/o/oauth2/v2/auth".into(),
        token_url: format!("{provider}/token"),
        jwks_url: format!("{provider}/certs"),
        issuers: vec!["https://accounts.google.com".into()],
    }
}

impl Hostile {
    /// `postgres`: on a fresh PostgreSQL database (`None` when it is missing
    /// outside CI); `generous`: login limits no property run reaches.
    async fn start(postgres: bool, generous: bool) -> Option<Self> {
        let db = if postgres {
            Some(TestDatabase::create().await?)
        } else {
            None
        };
        let url = db.as_ref().map(|db| db.url.clone());
        let app = helpers::spawn_app_with(|s| {
            s.google = Some(unreachable_google());
            if let Some(url) = url {
                s.database_url = Secret::new(url);
            }
            if generous {
                let many = RateLimit {
                    limit: 1_000_000,
                    window: Duration::from_secs(60),
                };
                s.login_limits = LoginLimits {
                    per_account: many,
                    per_ip: many,
                };
            }
        })
        .await;
        let router = app
            .app
            .clone()
            .layer(axum::middleware::from_fn(expose_matched_path));
        Some(Self {
            router,
            observed: Mutex::new(Vec::new()),
            _app: app,
            _db: db,
        })
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        orderly_testkit::in_process::send(&self.router, &self.observed, request).await
    }

    async fn post(&self, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = Request::post(uri);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// Assert every status seen is documented; log what was seen.
    fn finish(&self, what: &str, cases: u32) {
        let observed = self.observed.lock().unwrap();
        let mut counts = std::collections::BTreeMap::<u16, usize>::new();
        for seen in observed.iter() {
            *counts.entry(seen.status).or_default() += 1;
        }
        eprintln!("{what}: {cases} generated cases, statuses seen {counts:?}");
        let undocumented = undocumented_statuses(
            &orderly_auth::route_table(),
            &orderly_auth::openapi(),
            observed.iter(),
        );
        assert!(
            undocumented.is_empty(),
            "statuses missing from the OpenAPI document:\n{}",
            undocumented.join("\n")
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// E-mail addresses: plausible ones (some with SQL or Unicode in them) and junk.
fn email() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z0-9._%+'-]{1,20}@[a-z]{1,10}\\.[a-z]{2,5}",
        2 => select(&[
            "robert');drop_table_users;--@example.com",
            "x'or'1'='1@example.com",
            "ünïcødé.用户@例子.测试",
            "a\u{0}@example.com",
            "a@example.com\u{0}",
            "\u{202e}moc.elpmaxe@a",
            "a@b",
            "@example.com",
            "a@@example.com",
        ][..])
        .prop_map(str::to_string),
        2 => hostile_string(),
    ]
    .boxed()
}

fn run<S: Strategy>(
    cases: u32,
    strategy: &S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    hostile::runner(cases)
        .run(strategy, test)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn registering_from_hostile_bodies(postgres: bool, cases: u32) {
    let rt = runtime();
    let Some(app) = rt.block_on(Hostile::start(postgres, false)) else {
        return;
    };
    let body = object_of(vec![
        ("email", email().prop_map(|s| quote(&s)).boxed()),
        (
            "password",
            prop_oneof![3 => hostile_string().prop_map(|s| quote(&s)), 1 => number_literal()]
                .boxed(),
        ),
    ]);
    let strategy = (
        raw_body(body),
        json_content_type(),
        select(&["/auth/register/", "/auth/register"][..]),
    );
    run(cases, &strategy, |(body, content_type, path)| {
        let answer = rt.block_on(app.post(path, content_type.as_deref(), body));
        answer
            .check(&[200, 400, 413, 422])
            .map_err(TestCaseError::fail)?;
        if answer.status == 200 {
            prop_assert_eq!(&answer.json["msg"], &json!("User created"));
            prop_assert!(answer.json["user_id"].as_i64().is_some_and(|id| id >= 1));
        }
        if answer.status == 400 {
            prop_assert_eq!(&answer.json["detail"], &json!("Email already registered"));
        }
        Ok(())
    });
    app.finish("POST /auth/register/", cases);
}

#[test]
fn registering_from_hostile_bodies_never_fails_the_server() {
    registering_from_hostile_bodies(false, hostile::cases(CASES));
}

#[test]
fn registering_from_hostile_bodies_never_fails_the_server_on_postgres() {
    registering_from_hostile_bodies(true, hostile::cases(CASES / 2));
}

/// Form bodies: mostly shaped like the endpoint's form, else any raw body.
fn form(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => form_of(fields).prop_map(String::into_bytes),
        1 => raw_body(hostile_string().prop_map(|s| quote(&s)).boxed()),
    ]
    .boxed()
}

fn form_content_type() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        6 => Just(Some("application/x-www-form-urlencoded".to_string())),
        1 => json_content_type(),
    ]
    .boxed()
}

fn signing_in_with_hostile_forms(postgres: bool, cases: u32) {
    let rt = runtime();
    let Some(app) = rt.block_on(Hostile::start(postgres, true)) else {
        return;
    };
    let registered = json!({"email": "known@example.com", "password": "right"}).to_string();
    let created = rt.block_on(app.post(
        "/auth/register/",
        Some("application/json"),
        registered.into_bytes(),
    ));
    assert_eq!(created.status, 200, "{}", created.text());
    let username = prop_oneof![
        2 => select(&["known%40example.com", "KNOWN%40Example.COM"][..]).prop_map(str::to_string),
        3 => email().prop_map(|s| percent_encode(&s)),
    ]
    .boxed();
    let password = prop_oneof![
        2 => Just("right".to_string()),
        3 => hostile_string().prop_map(|s| percent_encode(&s)),
    ]
    .boxed();
    let fields = vec![
        ("username", username),
        ("password", password),
        (
            "grant_type",
            select(&["password", "password", "password", "", "refresh_token"][..])
                .prop_map(str::to_string)
                .boxed(),
        ),
        (
            "scope",
            hostile_string().prop_map(|s| percent_encode(&s)).boxed(),
        ),
    ];
    let strategy = (
        form(fields),
        form_content_type(),
        select(&["/auth/token/", "/auth/token"][..]),
    );
    run(cases, &strategy, |(body, content_type, path)| {
        let answer = rt.block_on(app.post(path, content_type.as_deref(), body));
        answer
            .check(&[200, 401, 413, 422, 429])
            .map_err(TestCaseError::fail)?;
        if answer.status == 401 {
            prop_assert_eq!(
                answer
                    .headers
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer")
            );
        }
        Ok(())
    });
    app.finish("POST /auth/token/", cases);
}

#[test]
fn signing_in_with_hostile_forms_never_fails_the_server() {
    signing_in_with_hostile_forms(false, hostile::cases(CASES / 2));
}

#[test]
fn signing_in_with_hostile_forms_never_fails_the_server_on_postgres() {
    signing_in_with_hostile_forms(true, hostile::cases(CASES / 4));
}

#[test]
fn hostile_refresh_and_logout_bodies_never_fail_the_server() {
    let rt = runtime();
    let app = rt.block_on(Hostile::start(false, true)).unwrap();
    let registered = json!({"email": "r@example.com", "password": "pw"}).to_string();
    rt.block_on(app.post(
        "/auth/register/",
        Some("application/json"),
        registered.into_bytes(),
    ));
    let login = rt.block_on(app.post(
        "/auth/token/",
        Some("application/x-www-form-urlencoded"),
        b"username=r%40example.com&password=pw".to_vec(),
    ));
    let real = login.json["refresh_token"].as_str().unwrap().to_string();
    let token = prop_oneof![
        1 => Just(real.clone()),
        4 => hostile_string(),
    ]
    .boxed();
    let json_body = raw_body(object_of(vec![(
        "refresh_token",
        token.clone().prop_map(|s| quote(&s)).boxed(),
    )]));
    let form_body = form(vec![
        (
            "refresh_token",
            token.prop_map(|s| percent_encode(&s)).boxed(),
        ),
        ("grant_type", Just("refresh_token".to_string()).boxed()),
    ]);
    let strategy = (
        prop_oneof![
            (json_body, json_content_type()),
            (
                form_body,
                Just(Some("application/x-www-form-urlencoded".to_string()))
            ),
        ],
        any::<bool>(),
    );
    let cases = hostile::cases(CASES);
    run(cases, &strategy, |((body, content_type), logout)| {
        let (path, allowed): (&str, &[u16]) = if logout {
            ("/auth/logout", &[204, 413, 422])
        } else {
            ("/auth/refresh", &[200, 401, 413, 422])
        };
        let answer = rt.block_on(app.post(path, content_type.as_deref(), body));
        answer.check(allowed).map_err(TestCaseError::fail)
    });
    app.finish("POST /auth/refresh, /auth/logout", cases);
}

/// What the callback's cookies hold.
#[derive(Debug, Clone)]
enum Cookie {
    None,
    /// `oauth_state` carries the query's `state` (the CSRF check passes).
    Matching {
        nonce: String,
        pkce: String,
    },
    Mismatching {
        state: String,
        nonce: String,
        pkce: String,
    },
    Raw(String),
}

/// A value that survives the trip through the state cookie unchanged.
const COOKIE_SAFE: &str = "[A-Za-z0-9_-]{1,20}";

#[test]
fn hostile_queries_and_cookies_on_the_google_callback_never_fail_the_server() {
    let rt = runtime();
    let app = rt.block_on(Hostile::start(false, false)).unwrap();
    let param = || {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(String::new())),
            4 => COOKIE_SAFE.prop_map(Some),
            2 => hostile_string()
                .prop_filter("a URI stays short", |s| s.len() < 2_000)
                .prop_map(Some),
        ]
    };
    let cookie = prop_oneof![
        1 => Just(Cookie::None),
        3 => (COOKIE_SAFE, "[A-Za-z0-9_-]{0,20}")
            .prop_map(|(nonce, pkce)| Cookie::Matching { nonce, pkce }),
        1 => (COOKIE_SAFE, COOKIE_SAFE, COOKIE_SAFE)
            .prop_map(|(state, nonce, pkce)| Cookie::Mismatching { state, nonce, pkce }),
        1 => "[ -~]{0,300}".prop_map(Cookie::Raw),
    ];
    // Junk first: a repeated parameter takes its last value, so the generated
    // `state` and `code` (appended after) are the ones the handler sees.
    let strategy = (
        query_string(&["error", "scope", "prompt", "state", "code"]),
        param(),
        param(),
        cookie,
    );
    let cases = hostile::cases(CASES);
    run(cases, &strategy, |(junk, state, code, cookie)| {
        let mut query = vec![junk.clone()];
        query.extend(state.iter().map(|s| format!("state={}", percent_encode(s))));
        query.extend(code.iter().map(|c| format!("code={}", percent_encode(c))));
        let uri = format!("/auth/callback/google?{}", query.join("&"));
        let mut request = Request::get(&uri);
        let cookie_header = match &cookie {
            Cookie::None => None,
            Cookie::Matching { nonce, pkce } => Some(format!(
                "oauth_state={}.{nonce}; oauth_pkce={pkce}",
                state.clone().unwrap_or_default()
            )),
            Cookie::Mismatching { state, nonce, pkce } => {
                Some(format!("oauth_state=x{state}.{nonce}; oauth_pkce={pkce}"))
            }
            Cookie::Raw(raw) => Some(raw.clone()),
        };
        if let Some(header) = &cookie_header {
            let Ok(value) = HeaderValue::from_str(header) else {
                return Err(TestCaseError::reject("not a header value"));
            };
            request = request.header("cookie", value);
        }
        let Ok(request) = request.body(Body::empty()) else {
            return Err(TestCaseError::reject("not a valid URI"));
        };
        // Which state and code the handler sees: ours when present, else the junk's.
        let last = |name: &str, ours: &Option<String>| {
            ours.clone().or_else(|| {
                url::form_urlencoded::parse(junk.as_bytes())
                    .filter(|(k, _)| k == name)
                    .last()
                    .map(|(_, v)| v.into_owned())
            })
        };
        let (seen_state, seen_code) = (last("state", &state), last("code", &code));
        // The handler reads cookies only from ASCII headers, splitting on `;`
        // and `.` and trimming `"`: a state without those comes back unchanged.
        let cookie_keeps_state = state.as_deref().is_none_or(|s| {
            s.bytes().all(|b| b == b'\t' || (32..127).contains(&b))
                && !s.contains([';', '.'])
                && !s.starts_with('"')
        });
        let state_matches = seen_state.is_some() && seen_state == state;
        // The CSRF check passes, the PKCE cookie is there and a code was sent:
        // only then does the handler call Google (here unreachable): 502.
        let reaches_google = match &cookie {
            Cookie::Matching { pkce, .. } => {
                state_matches
                    && seen_state.as_deref().is_some_and(|s| !s.is_empty())
                    && !pkce.is_empty()
                    && seen_code.as_deref().is_some_and(|c| !c.is_empty())
            }
            _ => false,
        };
        let allowed: &[u16] = match &cookie {
            Cookie::Matching { .. } if !cookie_keeps_state => &[400, 502],
            // Random cookie text could name the state by chance: either answer.
            Cookie::Raw(_) => &[400, 502],
            _ if reaches_google => &[502],
            _ => &[400],
        };
        let answer = rt.block_on(app.send(request));
        answer.check(allowed).map_err(TestCaseError::fail)?;
        if answer.status == 502 {
            prop_assert_eq!(&answer.json["detail"], &json!("Google login failed"));
        }
        if seen_state.as_deref().is_none_or(str::is_empty) {
            prop_assert_eq!(&answer.json["detail"], &json!("Missing state parameter"));
        }
        Ok(())
    });
    app.finish("GET /auth/callback/google", cases);
}

#[test]
fn hostile_queries_on_the_login_and_jwks_routes_never_fail_the_server() {
    let rt = runtime();
    let app = rt.block_on(Hostile::start(false, false)).unwrap();
    let strategy = (
        select(&["/auth/login/google", "/.well-known/jwks.json"][..]),
        query_string(&["state", "code", "redirect_uri", "prompt"]),
        prop::option::of("[ -~]{0,300}"),
    );
    let cases = hostile::cases(CASES);
    run(cases, &strategy, |(path, query, cookie)| {
        let mut request = Request::get(format!("{path}?{query}"));
        if let Some(cookie) = &cookie {
            let Ok(value) = HeaderValue::from_str(cookie) else {
                return Err(TestCaseError::reject("not a header value"));
            };
            request = request.header("cookie", value);
        }
        let Ok(request) = request.body(Body::empty()) else {
            return Err(TestCaseError::reject("not a valid URI"));
        };
        let answer = rt.block_on(app.send(request));
        answer.check(&[200]).map_err(TestCaseError::fail)
    });
    app.finish("GET /auth/login/google, jwks", cases);
}

#[tokio::test(flavor = "multi_thread")]
async fn nesting_invalid_utf8_and_oversize_bodies_are_422_or_413() {
    let app = Hostile::start(false, false).await.unwrap();
    let json = Some("application/json");
    let form = Some("application/x-www-form-urlencoded");
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
        (
            "/auth/register/",
            json,
            hostile::nested(100_000, false).into_bytes(),
            422,
        ),
        (
            "/auth/register/",
            json,
            hostile::nested(40_000, true).into_bytes(),
            422,
        ),
        (
            "/auth/register/",
            json,
            hostile::nested(150_000, false).into_bytes(),
            413,
        ),
        (
            "/auth/register/",
            json,
            b"{\"email\":\"a\xff@b.co\",\"password\":\"x\"}".to_vec(),
            422,
        ),
        (
            "/auth/register/",
            json,
            b"{\"email\":\"a@b.co\",\"pass".to_vec(),
            422,
        ),
        ("/auth/register/", Some("text/plain"), b"{}".to_vec(), 422),
        ("/auth/register/", json, vec![b' '; 300 * 1024], 413),
        ("/auth/token/", form, vec![b'a'; 300 * 1024], 413),
        (
            "/auth/token/",
            form,
            b"username=%FF&password=%FF".to_vec(),
            401,
        ),
        ("/auth/token/", form, b"\xff\xfe=\x00".to_vec(), 422),
        (
            "/auth/refresh",
            json,
            hostile::nested(100_000, true).into_bytes(),
            413,
        ),
        (
            "/auth/refresh",
            json,
            hostile::nested(40_000, true).into_bytes(),
            422,
        ),
        ("/auth/logout", form, vec![b'a'; 300 * 1024], 413),
        ("/auth/logout", json, b"\xc3\x28".to_vec(), 422),
    ];
    for (path, content_type, body, want) in cases {
        let size = body.len();
        let answer = app.post(path, content_type, body).await;
        assert_eq!(
            answer.status,
            want,
            "{path} ({size} bytes): {}",
            answer.text()
        );
        answer.check(&[want]).unwrap();
    }
    app.finish("fixed bodies", 0);
}

async fn emails_round_trip(app: &Hostile) {
    for email in [
        "robert');drop_table_users;--@example.com",
        "x'or'1'='1@example.com",
        "\"quoted\\\\\"@example.com",
        "ünïcødé.用户@例子.测试",
        "💥@example.com",
    ] {
        let body = json!({"email": email, "password": "pw'; DROP TABLE users; --"}).to_string();
        let created = app
            .post(
                "/auth/register/",
                Some("application/json"),
                body.into_bytes(),
            )
            .await;
        assert_eq!(created.status, 200, "{email}: {}", created.text());
        let form = format!(
            "username={}&password={}",
            percent_encode(email),
            percent_encode("pw'; DROP TABLE users; --")
        );
        let login = app
            .post(
                "/auth/token/",
                Some("application/x-www-form-urlencoded"),
                form.into_bytes(),
            )
            .await;
        assert_eq!(login.status, 200, "{email}: {}", login.text());
        let claims = helpers::verify(login.json["access_token"].as_str().unwrap()).await;
        // Stored as given, lowercased (e-mails are case-insensitive).
        assert_eq!(claims.email, email.to_lowercase());
        assert_eq!(claims.sub, created.json["user_id"].to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_and_unicode_emails_are_stored_and_returned_verbatim() {
    let app = Hostile::start(false, false).await.unwrap();
    emails_round_trip(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_and_unicode_emails_are_stored_and_returned_verbatim_on_postgres() {
    let Some(app) = Hostile::start(true, false).await else {
        return;
    };
    emails_round_trip(&app).await;
}
