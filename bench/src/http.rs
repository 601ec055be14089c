//! The HTTP load generator: N keep-alive HTTP/1.1 connections, each sending its
//! next request as soon as the previous answer's body is read (like wrk),
//! on hyper's connection-level client so the generator costs little CPU.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::report::micros_histogram;

/// Where requests go: a resolved address plus the `Host` header to send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) authority: String,
    pub(crate) base_url: String,
}

impl Target {
    /// `http://host:port` (no TLS: the bench measures servers, not TLS stacks).
    pub(crate) async fn from_url(base_url: &str) -> Result<Self> {
        let url = url::Url::parse(base_url).with_context(|| format!("bad URL {base_url}"))?;
        if url.scheme() != "http" {
            bail!("only http:// URLs can be measured (got {base_url})");
        }
        let host = url
            .host_str()
            .ok_or_else(|| anyhow!("no host in {base_url}"))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
        Ok(Self {
            addr,
            authority: format!("{host}:{port}"),
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    pub(crate) fn from_addr(addr: SocketAddr) -> Self {
        Self {
            addr,
            authority: addr.to_string(),
            base_url: format!("http://{addr}"),
        }
    }
}

/// One keep-alive connection that reconnects when the server closes it.
pub(crate) struct Client {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.target.addr)
                .await
                .with_context(|| format!("connect {}", self.target.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// Sends one request and reads the whole answer.
    pub(crate) async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let sender = self.connect().await?;
        let outcome = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        match outcome {
            Ok(r) => Ok(r),
            Err(e) => {
                self.sender = None;
                Err(e.into())
            }
        }
    }

    /// A request to `path` with the `Host` header set.
    pub(crate) fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.authority.as_str())
    }

    pub(crate) async fn get(
        &mut self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut b = self.request(Method::GET, path);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Full::new(Bytes::new()))?).await
    }

    pub(crate) async fn post_json(
        &mut self,
        path: &str,
        bearer: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<(StatusCode, Bytes)> {
        let mut b = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, "application/json");
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?)
            .await
    }

    pub(crate) async fn post_form(
        &mut self,
        path: &str,
        form: &str,
    ) -> Result<(StatusCode, Bytes)> {
        let b = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(b.body(Full::new(Bytes::from(form.to_string())))?)
            .await
    }
}

/// The request every connection sends over and over.
#[derive(Debug, Clone)]
pub(crate) struct RequestTemplate {
    pub(crate) method: Method,
    /// Rotated through, one per request.
    pub(crate) paths: Vec<String>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    /// The answer that counts as a success.
    pub(crate) expect: StatusCode,
}

impl RequestTemplate {
    pub(crate) fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            paths: vec![path.into()],
            headers: Vec::new(),
            body: Bytes::new(),
            expect: StatusCode::OK,
        }
    }

    pub(crate) fn bearer(mut self, token: &str) -> Result<Self> {
        self.headers.push((
            hyper::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        ));
        Ok(self)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSpec {
    pub(crate) connections: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

#[derive(Debug)]
pub(crate) struct LoadResult {
    pub(crate) count: u64,
    pub(crate) errors: u64,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) seconds: f64,
}

impl LoadResult {
    pub(crate) fn throughput(&self) -> f64 {
        self.count as f64 / self.seconds
    }
}

/// Drives the load; `done` counts finished requests (warm-up included) for the progress line.
pub(crate) async fn run_load(
    target: &Target,
    template: Arc<RequestTemplate>,
    spec: LoadSpec,
    done: Arc<AtomicU64>,
) -> LoadResult {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for conn_no in 0..spec.connections.max(1) {
        let template = template.clone();
        let target = target.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let mut client = Client::new(target);
            let mut hist = micros_histogram();
            let mut count = 0u64;
            let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
            let mut i = conn_no;
            while Instant::now() < end {
                let path = &template.paths[i % template.paths.len()];
                i += 1;
                let mut b = client.request(template.method.clone(), path);
                for (k, v) in &template.headers {
                    b = b.header(k, v);
                }
                let req = match b.body(Full::new(template.body.clone())) {
                    Ok(r) => r,
                    Err(e) => {
                        *kinds.entry(format!("request: {e}")).or_default() += 1;
                        break;
                    }
                };
                let t0 = Instant::now();
                let outcome = client.send(req).await;
                let t1 = Instant::now();
                done.fetch_add(1, Ordering::Relaxed);
                let counted = t0 >= measure_from && t1 <= end;
                match outcome {
                    Ok((status, _)) if status == template.expect => {
                        if counted {
                            count += 1;
                            let us = (t1 - t0).as_micros().max(1) as u64;
                            let high = hist.high();
                            let _ = hist.record(us.min(high));
                        }
                    }
                    Ok((status, _)) => {
                        if counted {
                            *kinds
                                .entry(format!("status {}", status.as_u16()))
                                .or_default() += 1;
                        }
                    }
                    Err(e) => {
                        if counted {
                            *kinds.entry(classify(&e)).or_default() += 1;
                        }
                        // A refused connection would spin; back off a little.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (count, kinds, hist)
        });
    }
    let mut result = LoadResult {
        count: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        latency_us: micros_histogram(),
        seconds: spec.duration.as_secs_f64(),
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((count, kinds, hist)) => {
                result.count += count;
                for (k, v) in kinds {
                    result.errors += v;
                    *result.error_kinds.entry(k).or_default() += v;
                }
                let _ = result.latency_us.add(&hist);
            }
            Err(e) => {
                result.errors += 1;
                *result.error_kinds.entry(format!("task: {e}")).or_default() += 1;
            }
        }
    }
    result
}

fn classify(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if text.starts_with("connect") {
        "connect".into()
    } else if text.contains("closed") || text.contains("reset") {
        "connection closed".into()
    } else {
        "io".into()
    }
}
