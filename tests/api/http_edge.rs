//! Hostile clients at the HTTP edge of the real binary: slow headers
//! (slowloris), stalled bodies, cross-origin browsers, and the security
//! headers every answer carries. Raw sockets on loopback; every wait bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app_with;

/// Anything expected "at once" must happen within this.
const SOON: Duration = Duration::from_secs(10);
/// Slack on top of a configured timeout before a test calls it broken (the
/// machine may be busy with other builds).
const MARGIN: Duration = Duration::from_secs(8);

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("http://IP:PORT")
}

/// A client that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(SOON)
        .build()
        .unwrap()
}

/// Send `prefix` one byte at a time (every `every`), never finishing the
/// headers; returns how long after connecting the server closed the connection.
/// `ready` is told once the first bytes are out.
async fn slowloris(
    addr: SocketAddr,
    every: Duration,
    give_up: Duration,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let prefix = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ";
    let mut sent = 0usize;
    let mut buf = [0u8; 512];
    let mut ticker = tokio::time::interval(every);
    loop {
        if started.elapsed() > give_up {
            return None;
        }
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                // The server may say something (e.g. 408) before closing.
                Ok(n) if n > 0 => continue,
                _ => return Some(started.elapsed()),
            },
            _ = ticker.tick() => {
                let byte = prefix.get(sent).copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).await.is_err() {
                    return Some(started.elapsed());
                }
                sent += 1;
                if sent == 3 {
                    let _ = ready.send(()).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_closed_while_normal_requests_are_answered() {
    const SLOW: usize = 100;
    let header_timeout = Duration::from_secs(2);
    let app = spawn_app_with(&[("HTTP_HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    let orders = addr_of(&app.orders_url);

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(SLOW);
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..SLOW {
        let ready = ready_tx.clone();
        slow.spawn(slowloris(
            orders,
            Duration::from_millis(100),
            header_timeout + MARGIN + SOON,
            ready,
        ));
    }
    drop(ready_tx);
    // Every slow connection is open and trickling …
    let all_started = tokio::time::timeout(SOON, async {
        for _ in 0..SLOW {
            ready_rx.recv().await.expect("a slow client gave up early");
        }
    })
    .await;
    assert!(
        all_started.is_ok(),
        "the slow clients could not all connect"
    );

    // … and new connections are still served, on both services.
    let client = fresh_client();
    for url in [&app.orders_url, &app.auth_url, &app.orders_url] {
        let started = Instant::now();
        let response = client
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}/health while slowloris: {e}"));
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() < SOON, "{:?}", started.elapsed());
    }

    // The server, not the clients, ends every slow connection.
    let bound = header_timeout + MARGIN;
    let mut closed = Vec::new();
    while let Some(outcome) = slow.join_next().await {
        let after = outcome
            .expect("slow client task")
            .expect("a slow connection was never closed by the server");
        closed.push(after);
    }
    closed.sort();
    let slowest = *closed.last().unwrap();
    eprintln!(
        "{SLOW} slow connections closed by the server after {:?} to {slowest:?}",
        closed[0]
    );
    assert!(
        slowest <= bound,
        "slowest close after {slowest:?} (header timeout {header_timeout:?}); all: {closed:?}"
    );
    // And it still serves afterwards.
    let response = client
        .get(format!("{}/health", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Everything the server sends until it closes, or `None` if it does not
/// close within `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut all = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&all).into_owned()),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_stalled_body_gets_408_with_a_detail_and_the_server_keeps_serving() {
    let body_timeout = Duration::from_secs(2);
    let app = spawn_app_with(&[("HTTP_BODY_TIMEOUT_SECONDS", "2")]).await;
    let auth = addr_of(&app.auth_url);

    let mut stalled = TcpStream::connect(auth).await.unwrap();
    stalled
        .write_all(
            b"POST /auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut stalled, body_timeout + MARGIN)
        .await
        .expect("the server neither answered nor closed the stalled connection");
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "expected a 408 after {:?}, got: {answer:?}",
        started.elapsed()
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let detail: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert!(detail["detail"].is_string(), "{detail}");

    // Unaffected: a normal request on a new connection.
    let response = app.register("after-stall@example.com", "pw-123456").await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn allow_origin(client: &reqwest::Client, url: &str, origin: &str) -> Option<String> {
    let response = client
        .get(format!("{url}/health"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn preflight_allow_origin(
    client: &reqwest::Client,
    url: &str,
    origin: &str,
) -> (u16, Option<String>) {
    let response = client
        .request(reqwest::Method::OPTIONS, format!("{url}/orders/"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let origin = response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string());
    (status, origin)
}

#[tokio::test]
async fn cors_allows_localhost_by_default_and_the_configured_origins_otherwise() {
    let client = fresh_client();
    let local = "http://localhost:3000";
    let evil = "https://evil.example";

    let app = spawn_app_with(&[]).await;
    for url in [&app.auth_url, &app.orders_url] {
        assert_eq!(
            allow_origin(&client, url, local).await.as_deref(),
            Some(local)
        );
        assert_eq!(allow_origin(&client, url, evil).await, None);
    }
    let (status, origin) = preflight_allow_origin(&client, &app.orders_url, local).await;
    assert!(matches!(status, 200 | 204), "{status}");
    assert_eq!(origin.as_deref(), Some(local));
    let (_, origin) = preflight_allow_origin(&client, &app.orders_url, evil).await;
    assert_eq!(origin, None);
    drop(app);

    let shop = "https://shop.example.com";
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", shop)]).await;
    for url in [&app.auth_url, &app.orders_url] {
        assert_eq!(
            allow_origin(&client, url, shop).await.as_deref(),
            Some(shop)
        );
        assert_eq!(allow_origin(&client, url, local).await, None);
        assert_eq!(allow_origin(&client, url, evil).await, None);
    }
    let (status, origin) = preflight_allow_origin(&client, &app.orders_url, shop).await;
    assert!(matches!(status, 200 | 204), "{status}");
    assert_eq!(origin.as_deref(), Some(shop));
    let (_, origin) = preflight_allow_origin(&client, &app.orders_url, local).await;
    assert_eq!(origin, None);
}

#[test]
fn a_cors_entry_that_is_not_an_origin_stops_startup_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("all")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", tmp.path().join("data"))
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("ORDERS_BIND", "127.0.0.1:0")
        .env("CORS_ALLOWED_ORIGINS", "https://shop.example.com/app")
        .current_dir(tmp.path())
        .output()
        .expect("run orderly");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("CORS_ALLOWED_ORIGINS") && errors[0].contains("path"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app_with(&[]).await;
    let client = fresh_client();
    let token = app.token_response("nobody@example.com", "wrong").await;
    let cases = [
        client.get(format!("{}/health", app.orders_url)),
        client.get(format!("{}/orders/some-id/", app.orders_url)),
        client.get(format!("{}/no/such/route", app.auth_url)),
    ];
    let mut responses = vec![token];
    for case in cases {
        responses.push(case.send().await.unwrap());
    }
    for response in &responses {
        let what = format!("{} {}", response.url(), response.status());
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{what}: {csp}"
        );
        assert_eq!(h["cache-control"], "no-store", "{what}");
    }

    // A successful token response is not cached either.
    let email = "edge-headers@example.com";
    assert!(app.register(email, "pw-123456").await.status().is_success());
    let response = app.token_response(email, "pw-123456").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");

    // The Swagger UI gets a policy that lets its own files run.
    let response = client
        .get(format!("{}/docs/", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
}
