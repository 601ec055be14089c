//! The HTTP edge `orderly_http::server` puts around both services: CORS, security
//! headers, body/request timeouts (in-process, `oneshot` on a finished router),
//! and `serve` itself (header timeout, peer address, graceful drain) on loopback.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use hyper::body::Frame;
use orderly_core::Shutdown;
use orderly_core::config::{ConfigError, CorsOrigins, Env, HttpSettings, Settings};
use orderly_http::extract;
use orderly_http::headers::{ALWAYS, API_CSP, DOCS_CSP};
use orderly_http::server::{finish, serve};
use orderly_http::timeouts::{BODY_TOO_SLOW, REQUEST_TOO_SLOW};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// Generous bound for anything that should happen "at once".
const SOON: Duration = Duration::from_secs(10);

/// Size of `/large`'s body: far more than loopback's socket buffers hold.
const LARGE: usize = 64 << 20;

/// Told when a `/hold` request reached its handler (one test uses it).
static HOLD_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn routes() -> Router {
    Router::new()
        .route("/things", get(|| async { axum::Json(json!({"ok": true})) }))
        .route(
            "/echo",
            axum::routing::post(
                |extract::Json(v): extract::Json<Value>| async move { axum::Json(v) },
            ),
        )
        .route(
            "/hold",
            axum::routing::post(
                |extract::Json(v): extract::Json<Value>| async move { axum::Json(v) },
            )
            .layer(axum::middleware::from_fn(
                |req: axum::extract::Request, next: axum::middleware::Next| async move {
                    HOLD_STARTED.notify_one();
                    next.run(req).await
                },
            )),
        )
        .route("/large", get(|| async { vec![b'x'; LARGE] }))
        .route(
            "/cached",
            get(|| async { ([(header::CACHE_CONTROL, "public, max-age=60")], "keys") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                "late"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                axum::Json(json!({"peer": peer.to_string()}))
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
}

fn app_with(http: &HttpSettings) -> Router {
    finish(
        "test",
        routes(),
        utoipa::openapi::OpenApiBuilder::new().build(),
        Vec::new(),
        http,
    )
}

fn app() -> Router {
    app_with(&HttpSettings::default())
}

async fn call(app: Router, req: Request<Body>) -> Response {
    tokio::time::timeout(SOON * 3, app.oneshot(req))
        .await
        .expect("answered in time")
        .expect("infallible")
}

async fn body_json(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
}

fn get_from(path: &str, origin: &str) -> Request<Body> {
    Request::get(path)
        .header(header::ORIGIN, origin)
        .body(Body::empty())
        .unwrap()
}

fn preflight(path: &str, origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type,idempotency-key,traceparent",
        )
        .body(Body::empty())
        .unwrap()
}

fn allow_origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .and_then(|v| v.to_str().ok())
}

fn settings_with_cors(cors: &str) -> HttpSettings {
    HttpSettings {
        cors: CorsOrigins::parse(cors).expect("valid origins"),
        ..HttpSettings::default()
    }
}

// ---- CORS ----

#[tokio::test]
async fn by_default_a_localhost_origin_is_allowed_with_credentials() {
    for origin in [
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "http://[::1]:5173",
    ] {
        let response = call(app(), get_from("/things", origin)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(allow_origin(response.headers()), Some(origin));
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
            "true"
        );
        let vary: Vec<_> = response.headers().get_all(header::VARY).iter().collect();
        assert!(
            vary.iter()
                .any(|v| v.to_str().unwrap().to_ascii_lowercase().contains("origin")),
            "{vary:?}"
        );
    }
}

#[tokio::test]
async fn by_default_another_origin_gets_no_allow_origin() {
    for origin in [
        "https://evil.example",
        "http://localhost.evil.example",
        "null",
    ] {
        let response = call(app(), get_from("/things", origin)).await;
        // The request itself is served (CORS is the browser's check) …
        assert_eq!(response.status(), StatusCode::OK);
        // … but the browser is not told it may read it.
        assert_eq!(allow_origin(response.headers()), None, "{origin}");
    }
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_lists_the_headers_clients_send() {
    // /echo only has POST: the preflight must not end as a 405.
    for path in ["/echo", "/things", "/no/such/route"] {
        let response = call(app(), preflight(path, "http://localhost:3000")).await;
        assert!(
            matches!(response.status(), StatusCode::OK | StatusCode::NO_CONTENT),
            "{path}: {}",
            response.status()
        );
        let headers = response.headers();
        assert_eq!(allow_origin(headers), Some("http://localhost:3000"));
        let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for wanted in [
            "authorization",
            "content-type",
            "idempotency-key",
            "traceparent",
        ] {
            assert!(allowed.contains(wanted), "{wanted} not in {allowed}");
        }
        let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .to_string();
        for wanted in ["GET", "POST", "PATCH"] {
            assert!(methods.contains(wanted), "{wanted} not in {methods}");
        }
        assert!(headers.contains_key(header::ACCESS_CONTROL_MAX_AGE));
        // Preflights carry the security headers too.
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}

#[tokio::test]
async fn a_preflight_from_another_origin_is_not_allowed() {
    let response = call(app(), preflight("/echo", "https://evil.example")).await;
    assert_eq!(allow_origin(response.headers()), None);
}

#[tokio::test]
async fn a_configured_list_replaces_the_localhost_default() {
    let app = app_with(&settings_with_cors("https://shop.example.com"));
    let response = call(app.clone(), get_from("/things", "https://shop.example.com")).await;
    assert_eq!(
        allow_origin(response.headers()),
        Some("https://shop.example.com")
    );
    let response = call(app.clone(), preflight("/echo", "https://shop.example.com")).await;
    assert_eq!(
        allow_origin(response.headers()),
        Some("https://shop.example.com")
    );
    for other in ["http://localhost:3000", "http://shop.example.com"] {
        let response = call(app.clone(), get_from("/things", other)).await;
        assert_eq!(allow_origin(response.headers()), None, "{other}");
    }
}

#[tokio::test]
async fn a_star_allows_any_origin_but_no_credentials() {
    let app = app_with(&settings_with_cors("*"));
    let response = call(app.clone(), get_from("/things", "https://anyone.example")).await;
    assert_eq!(allow_origin(response.headers()), Some("*"));
    assert!(
        !response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
    );
    let response = call(app, preflight("/echo", "https://anyone.example")).await;
    assert_eq!(allow_origin(response.headers()), Some("*"));
}

// ---- security headers ----

fn assert_security_headers(response: &Response, csp: &str, what: &str) {
    for (name, value) in &ALWAYS {
        assert_eq!(
            response.headers().get(name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{what}: {name}"
        );
    }
    assert_eq!(
        response.headers()[header::CONTENT_SECURITY_POLICY],
        csp,
        "{what}"
    );
}

#[tokio::test]
async fn json_answers_errors_and_panics_carry_the_security_headers() {
    let cases = [
        (Request::get("/things"), StatusCode::OK),
        (Request::get("/no/such/route"), StatusCode::NOT_FOUND),
        (Request::delete("/things"), StatusCode::METHOD_NOT_ALLOWED),
        (Request::get("/panic"), StatusCode::INTERNAL_SERVER_ERROR),
        (Request::get("/health"), StatusCode::OK),
        (Request::get("/openapi.json"), StatusCode::OK),
    ];
    for (req, status) in cases {
        let req = req.body(Body::empty()).unwrap();
        let what = format!("{} {}", req.method(), req.uri());
        let response = call(app(), req).await;
        assert_eq!(response.status(), status, "{what}");
        assert_security_headers(&response, API_CSP, &what);
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "no-store",
            "{what}"
        );
        if status != StatusCode::OK {
            let body = body_json(response).await;
            assert!(body["detail"].is_string(), "{what}: {body}");
        }
    }
}

#[tokio::test]
async fn a_route_that_chooses_its_caching_keeps_it() {
    let response = call(app(), Request::get("/cached").body(Body::empty()).unwrap()).await;
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, max-age=60"
    );
    assert_security_headers(&response, API_CSP, "/cached");
}

#[tokio::test]
async fn the_swagger_ui_gets_a_policy_that_lets_it_run_from_its_own_files() {
    let response = call(app(), Request::get("/docs/").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(&response, DOCS_CSP, "/docs/");
    let html = String::from_utf8(
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    // What the policy allows is what the page uses: scripts from its own
    // files only (no inline script), so `script-src 'self'` suffices.
    assert!(
        html.contains("<script src=\"./swagger-ui-bundle.js\""),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("<script type"),
        "inline script in {html}"
    );
    assert!(DOCS_CSP.contains("script-src 'self'") && !DOCS_CSP.contains("unsafe-eval"));
    assert!(DOCS_CSP.contains("connect-src 'self'"));

    let response = call(
        app(),
        Request::get("/docs/swagger-initializer.js")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(&response, DOCS_CSP, "initializer");
    let js = body_json(response).await.to_string();
    assert!(js.contains("/openapi.json"), "{js}");
    assert!(js.contains("validatorUrl"), "no validator setting in {js}");
}

// ---- body and request timeouts ----

/// A body that sends its first piece and then nothing, ever.
struct Stalled(Option<Bytes>);

impl HttpBody for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
            None => Poll::Pending,
        }
    }
}

fn short(body: u64, request: u64) -> HttpSettings {
    HttpSettings {
        body_timeout: Duration::from_secs(body),
        request_timeout: Duration::from_secs(request),
        ..HttpSettings::default()
    }
}

fn stalled_post() -> Request<Body> {
    Request::post("/echo")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "1000")
        .body(Body::new(Stalled(Some(Bytes::from_static(b"{\"a\":")))))
        .unwrap()
}

#[tokio::test]
async fn a_body_that_stops_coming_is_answered_408_with_a_detail() {
    let started = Instant::now();
    let response = call(app_with(&short(1, 60)), stalled_post()).await;
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(response.headers()[header::CONNECTION], "close");
    assert_security_headers(&response, API_CSP, "408");
    assert_eq!(body_json(response).await, json!({"detail": BODY_TOO_SLOW}));
    assert!(started.elapsed() < SOON, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_body_still_coming_when_the_request_times_out_is_the_clients_fault() {
    let response = call(app_with(&short(60, 1)), stalled_post()).await;
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(body_json(response).await, json!({"detail": BODY_TOO_SLOW}));
}

#[tokio::test]
async fn a_handler_that_takes_too_long_is_answered_503_with_a_detail() {
    let started = Instant::now();
    let response = call(
        app_with(&short(60, 1)),
        Request::get("/slow").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body_json(response).await,
        json!({"detail": REQUEST_TOO_SLOW})
    );
    assert!(started.elapsed() < SOON, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_complete_body_is_unaffected_by_the_timeouts() {
    let response = call(
        app_with(&short(1, 1)),
        Request::post("/echo")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"a":1}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await, json!({"a": 1}));
    // Malformed bodies keep their 422, not a timeout status.
    let response = call(
        app(),
        Request::post("/echo")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{"))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

// ---- configuration ----

#[test]
fn the_settings_reach_the_edge_and_bad_ones_name_the_variable() {
    let env = Env::from_pairs([
        ("CORS_ALLOWED_ORIGINS", "https://shop.example.com"),
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "2"),
    ]);
    let http = Settings::from_env(&env).unwrap().http;
    assert!(http.cors.allows("https://shop.example.com"));
    assert!(!http.cors.allows("http://localhost:3000"));
    assert_eq!(http.header_read_timeout, Duration::from_secs(2));

    let err = Settings::from_env(&Env::from_pairs([(
        "CORS_ALLOWED_ORIGINS",
        "https://shop.example.com/path",
    )]))
    .unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { ref name, .. } if name == "CORS_ALLOWED_ORIGINS"));
    let line = err.to_string();
    assert!(line.contains("path") && !line.contains('\n'), "{line}");
}

// ---- serve: raw sockets on loopback ----

struct Server {
    addr: SocketAddr,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_server(http: HttpSettings) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let app = app_with(&http);
    let s = shutdown.clone();
    let task = tokio::spawn(async move { serve(listener, app, s, &http).await });
    Server {
        addr,
        shutdown,
        task,
    }
}

/// Read until the peer closes (or `within` passes: `None`).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut all)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&all).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn serve_closes_a_connection_whose_headers_do_not_arrive_in_time() {
    let server = start_server(HttpSettings {
        header_read_timeout: Duration::from_secs(1),
        ..HttpSettings::default()
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /things HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    assert!(read_to_close(&mut slow, SOON).await.is_some(), "still open");
    assert!(
        read_to_close(&mut silent, SOON).await.is_some(),
        "still open"
    );
    assert!(started.elapsed() < SOON);
    server.shutdown.trigger();
    tokio::time::timeout(SOON, server.task)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_abandons_a_response_its_client_stops_reading() {
    let server = start_server(HttpSettings {
        write_timeout: Duration::from_secs(1),
        ..HttpSettings::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Not reading: the socket buffers fill up and the server's write stalls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = read_to_close(&mut stream, SOON)
        .await
        .expect("the connection is still open")
        .len();
    assert!(
        got < LARGE,
        "the whole response arrived ({got} bytes): the stalled write was not abandoned"
    );
    server.shutdown.trigger();
}

#[tokio::test]
async fn serve_tells_handlers_the_peer_address() {
    let server = start_server(HttpSettings::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream, SOON).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&local.to_string()),
        "{local} not in {answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-frame-options: deny")
    );
    server.shutdown.trigger();
}

#[tokio::test]
async fn on_shutdown_serve_finishes_requests_in_flight_and_closes_idle_connections() {
    let server = start_server(HttpSettings {
        header_read_timeout: Duration::from_secs(30),
        ..HttpSettings::default()
    })
    .await;
    // An idle kept-alive connection, after one answered request.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /things HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(SOON, idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // A request in flight whose body is still being sent when shutdown comes.
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(
        b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\"",
    )
    .await
    .unwrap();
    tokio::time::timeout(SOON, HOLD_STARTED.notified())
        .await
        .expect("the request reached its handler");
    server.shutdown.trigger();
    // The idle one is closed at once; new connections are refused.
    assert!(
        read_to_close(&mut idle, SOON).await.is_some(),
        "idle kept open"
    );
    let refused = tokio::time::timeout(SOON, async {
        loop {
            if TcpStream::connect(server.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "still accepting after shutdown");
    // The one in flight still gets its answer.
    busy.write_all(b":1}").await.unwrap();
    let answer = read_to_close(&mut busy, SOON).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"a":1}"#), "{answer}");
    tokio::time::timeout(SOON, server.task)
        .await
        .expect("serve returns once drained")
        .unwrap()
        .unwrap();
}
