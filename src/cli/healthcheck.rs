//! `orderly healthcheck`: the container health check, from the binary itself
//! so the runtime image needs no curl. An `http://` target must answer 200 to a
//! GET, a `tcp://` target must accept a connection.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the image's default role (`all`) serves.
pub const DEFAULT_TARGETS: &[&str] = &[
    "http://127.0.0.1:8001/health",
    "http://127.0.0.1:8000/health",
];

/// Checks each target in turn; the first that fails is the error.
pub async fn run(targets: &[String], timeout: Duration) -> Result<()> {
    let defaults: Vec<String> = DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect();
    let targets = if targets.is_empty() {
        &defaults
    } else {
        targets
    };
    for target in targets {
        tokio::time::timeout(timeout, check(target))
            .await
            .map_err(|_| anyhow!("{target}: no answer within {timeout:?}"))?
            .with_context(|| target.clone())?;
        println!("{target}: ok");
    }
    Ok(())
}

async fn check(target: &str) -> Result<()> {
    if let Some(addr) = target.strip_prefix("tcp://") {
        TcpStream::connect(addr).await?;
        return Ok(());
    }
    let Some(rest) = target.strip_prefix("http://") else {
        bail!("expected http://HOST:PORT/PATH or tcp://HOST:PORT");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: orderly-healthcheck\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // The status line is all that matters; a short read limit keeps a
    // misbehaving peer from feeding us forever.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("answered {code}"),
        None => bail!("not an HTTP answer: {status_line:?}"),
    }
}
