//! orderly's [`Bus`] on NATS, through async-nats.
//!
//! - Plain subscriptions are core NATS subscriptions: fan-out, nothing stored.
//! - Streams are JetStream streams (file storage, `max_age`), and a durable
//!   group is a durable pull consumer named after the group, filtered on the
//!   group's subject: explicit acks, `ack_wait`, `max_deliver`, and
//!   `max_ack_pending` = `max_in_flight`.
//! - `publish` goes through JetStream (and waits for the stream's ack) when a
//!   stream captures the subject, through core NATS otherwise. A JetStream
//!   publish is a core publish with a reply inbox, so plain subscribers get
//!   those messages too.
//! - The key travels as the [`KEY_HEADER`] header; other headers as NATS headers.
//! - Credentials (token, user and password, also as `user:pass@` in the URL)
//!   and TLS (`tls://`, a CA file on top of the system's trust store, a client
//!   certificate) come from [`NatsConfig`]; see `connect`.

#![warn(missing_docs, unreachable_pub)]

mod connect;
mod dead_letters;
mod group;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::header::{HeaderMap, HeaderName, HeaderValue};
use async_nats::jetstream::{self, context::GetStreamByNameErrorKind, context::PublishErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use orderly_bus::{
    Bus, BusError, DeadLetter, Delivery, Features, GroupOptions, Message, StreamConfig,
    Subscription, subject,
};
use tokio::sync::{mpsc, watch};

pub use dead_letters::capture_stream as dead_letter_stream;

/// The header that carries [`Message::key`].
pub const KEY_HEADER: &str = "Orderly-Key";
/// `NATS_URL` when unset.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// Plain subscriptions: messages waiting for the reader before async-nats
/// starts dropping them as a slow consumer.
const SUB_PENDING: usize = 8192;
/// How long a "subject is (not) in a stream" answer is trusted. Positive answers
/// are stable (streams are rarely dropped); negative ones expire quickly so a
/// stream created by another process is picked up.
const CAPTURED_TTL: Duration = Duration::from_secs(300);
const NOT_CAPTURED_TTL: Duration = Duration::from_secs(1);
const CAPTURE_CACHE_MAX: usize = 4096;

/// How the adapter connects.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://host:port` or `tls://host:port` (several comma-separated for a
    /// cluster); `user:password@` in it is used when [`Self::user`] is unset.
    pub url: String,
    /// Shown by the server (`connz`), to tell the roles apart.
    pub client_name: String,
    /// Bound on establishing the connection.
    pub connect_timeout: Duration,
    /// JetStream API requests and publish acks.
    pub request_timeout: Duration,
    /// A shared token (nats-server's `--auth`).
    pub token: Option<String>,
    /// A user and its password.
    pub user: Option<(String, String)>,
    /// Trust this CA (PEM) too, besides the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &connect::redact(&self.url))
            .field("client_name", &self.client_name)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

impl NatsConfig {
    /// Settings for `url` with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client_name: "orderly".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            token: None,
            user: None,
            ca_file: None,
            client_cert: None,
        }
    }
}

/// A bus on one NATS connection. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) js: jetstream::Context,
    /// What the server announced, from its first INFO on.
    server: OnceLock<ServerFacts>,
    /// Goes `true` on each connection, `false` on each loss of it.
    connected: watch::Receiver<bool>,
    /// The URL without its password, for messages.
    url: String,
    /// How long set-up calls wait for a connection before they fail as
    /// unavailable (and their caller retries).
    connect_timeout: Duration,
    closed: AtomicBool,
    /// Flips to `true` on close; every subscription task watches it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// subject → (captured by a stream, when learnt).
    captured: Mutex<HashMap<String, (bool, Instant)>>,
}

/// The parts of the server's INFO the adapter works with.
#[derive(Debug, Clone, Copy)]
struct ServerFacts {
    max_payload: usize,
    /// Without JetStream only plain subjects work.
    jetstream: bool,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("url", &self.inner.url)
            .field("server", &self.inner.server.get())
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connects (failing if the server is unreachable or refuses the
    /// credentials); later disconnects are retried by async-nats in the
    /// background.
    pub async fn connect(config: NatsConfig) -> Result<Self, BusError> {
        let bus = Self::open(config, false).await?;
        if bus.server().is_none() {
            return Err(BusError::Unavailable(format!(
                "the NATS server at {} announced no max_payload",
                bus.inner.url
            )));
        }
        Ok(bus)
    }

    /// Returns at once and connects in the background, retrying with backoff
    /// (and a log line per failed attempt) until the server answers: a
    /// process started before its broker waits for it instead of exiting.
    /// Until then publishes fail as unavailable, and stream and group set-up
    /// wait for the connection up to `connect_timeout`, then fail as
    /// unavailable (their callers retry).
    pub async fn connect_in_background(config: NatsConfig) -> Result<Self, BusError> {
        Self::open(config, true).await
    }

    async fn open(config: NatsConfig, background: bool) -> Result<Self, BusError> {
        let url = connect::redact(&config.url);
        let (connected_tx, connected) = watch::channel(false);
        let options = connect::options(&config, connected_tx, background)?;
        let client = options
            .connect(config.url.as_str())
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let (shutdown, _) = watch::channel(false);
        let bus = Self {
            inner: Arc::new(Inner {
                client,
                js,
                server: OnceLock::new(),
                connected,
                url,
                connect_timeout: config.connect_timeout,
                closed: AtomicBool::new(false),
                shutdown,
                captured: Mutex::new(HashMap::new()),
            }),
        };
        let _ = bus.server();
        Ok(bus)
    }

    /// The server's limits, once it has said them (`None` before the first
    /// connection).
    fn server(&self) -> Option<ServerFacts> {
        if let Some(facts) = self.inner.server.get() {
            return Some(*facts);
        }
        let info = self.inner.client.server_info();
        if info.max_payload == 0 {
            return None;
        }
        Some(*self.inner.server.get_or_init(|| ServerFacts {
            max_payload: info.max_payload,
            jetstream: info.jetstream,
        }))
    }

    /// The server's limits once connected, waiting up to `connect_timeout`
    /// for the first connection.
    async fn connected(&self) -> Result<ServerFacts, BusError> {
        let deadline = tokio::time::Instant::now() + self.inner.connect_timeout;
        loop {
            self.ensure_open()?;
            if let Some(facts) = self.server() {
                return Ok(facts);
            }
            let mut connected = self.inner.connected.clone();
            let mut shutdown = self.inner.shutdown.subscribe();
            tokio::select! {
                _ = connected.wait_for(|c| *c) => {}
                _ = closed(&mut shutdown) => return Err(BusError::Closed),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BusError::Unavailable(format!(
                        "not connected to NATS at {} yet",
                        self.inner.url
                    )));
                }
            }
            // The INFO lands just after the connected event.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The underlying client (for tests and tools).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    /// Durable streams and groups need JetStream.
    async fn ensure_jetstream(&self) -> Result<(), BusError> {
        if self.connected().await?.jetstream {
            Ok(())
        } else {
            Err(BusError::Unavailable(
                "the NATS server has no JetStream: only plain subjects work (start nats-server with -js)".into(),
            ))
        }
    }

    /// Whether a stream captures `subject`; cached (see [`CAPTURED_TTL`]).
    async fn captured(&self, subject: &str, jetstream: bool) -> Result<bool, BusError> {
        if !jetstream {
            return Ok(false);
        }
        if let Some((yes, at)) = self.capture_cache().get(subject).copied() {
            let ttl = if yes { CAPTURED_TTL } else { NOT_CAPTURED_TTL };
            if at.elapsed() < ttl {
                return Ok(yes);
            }
        }
        let yes = match self.inner.js.stream_by_subject(subject).await {
            Ok(_) => true,
            Err(e) if matches!(e.kind(), GetStreamByNameErrorKind::NotFound) => false,
            Err(e) => return Err(BusError::Unavailable(format!("stream lookup: {e}"))),
        };
        let mut cache = self.capture_cache();
        if cache.len() >= CAPTURE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(subject.to_string(), (yes, Instant::now()));
        Ok(yes)
    }

    fn capture_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bool, Instant)>> {
        // The map holds no invariant a panicking holder could break.
        self.inner
            .captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Bytes the headers add on the wire (`NATS/1.0\r\n`, `name: value\r\n`…, `\r\n`),
/// which count against `max_payload` together with the payload.
fn header_len(message: &Message) -> usize {
    let mut n = "NATS/1.0\r\n\r\n".len();
    let key = message.key.iter().map(|k| (KEY_HEADER, k.as_str()));
    for (name, value) in message
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(key)
    {
        n += name.len() + 2 + value.len() + 2;
    }
    n
}

fn to_header_map(message: &Message) -> Result<HeaderMap, BusError> {
    let mut map = HeaderMap::new();
    let key = message.key.iter().map(|k| (KEY_HEADER, k.as_str()));
    for (name, value) in message
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(key)
    {
        // async-nats panics on invalid names/values; check them first.
        let name = HeaderName::from_str(name)
            .map_err(|e| BusError::Other(format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| BusError::Other(format!("header {name} value {value:?}: {e}")))?;
        map.insert(name, value);
    }
    Ok(map)
}

pub(crate) fn from_nats(m: &async_nats::Message) -> Message {
    from_parts(m.subject.as_str(), m.headers.as_ref(), m.payload.clone())
}

/// A message from its NATS subject, headers and payload.
pub(crate) fn from_parts(subject: &str, headers: Option<&HeaderMap>, payload: Bytes) -> Message {
    let mut out = Message::new(subject.to_string(), payload);
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            let Some(value) = values.first() else {
                continue;
            };
            if AsRef::<str>::as_ref(name) == KEY_HEADER {
                out.key = Some(value.as_str().to_string());
            } else {
                out.headers
                    .insert(name.to_string(), value.as_str().to_string());
            }
        }
    }
    out
}

/// Aborts the subscription's task when the [`Subscription`] is dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves once the bus closes (or is dropped).
pub(crate) async fn closed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|closed| *closed).await;
}

#[async_trait]
impl Bus for NatsBus {
    fn features(&self) -> Features {
        // Before the first connection: nothing is known, nothing is promised.
        let (jetstream, max_payload) = self
            .server()
            .map_or((false, 0), |s| (s.jetstream, s.max_payload));
        Features {
            // JetStream file storage.
            durable: jetstream,
            // Several pull members and redeliveries interleave a key's messages.
            ordered_per_key: false,
            consumer_groups: jetstream,
            redelivery_delay: jetstream,
            // NATS can, but the Bus port has no request call to offer it through.
            headers: true,
            max_payload,
        }
    }

    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError> {
        self.ensure_open()?;
        self.ensure_jetstream().await?;
        config.check()?;
        for s in &config.subjects {
            subject::check_filter(s)?;
        }
        let wanted = jetstream::stream::Config {
            name: config.name.clone(),
            subjects: config.subjects.clone(),
            max_age: config.max_age,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let mut stream = self
            .inner
            .js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| BusError::Unavailable(format!("stream {}: {e}", config.name)))?;
        let info = stream
            .info()
            .await
            .map_err(|e| BusError::Unavailable(format!("stream {} info: {e}", config.name)))?;
        let mut have = info.config.subjects.clone();
        have.sort();
        let mut want = config.subjects.clone();
        want.sort();
        if have != want || info.config.max_age != config.max_age {
            // Existing messages are kept; only subjects and age limit change.
            let mut updated = info.config.clone();
            updated.subjects = config.subjects.clone();
            updated.max_age = config.max_age;
            self.inner
                .js
                .update_stream(updated)
                .await
                .map_err(|e| BusError::Other(format!("stream {} update: {e}", config.name)))?;
        }
        dead_letters::ensure_capture(&self.inner, &config).await;
        let mut cache = self.capture_cache();
        cache.retain(|_, (yes, _)| *yes);
        Ok(())
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.ensure_open()?;
        subject::check_literal(&message.subject)?;
        let Some(server) = self.server() else {
            return Err(BusError::Unavailable(format!(
                "not connected to NATS at {} yet",
                self.inner.url
            )));
        };
        let size = message.payload.len() + header_len(&message);
        let max = server.max_payload;
        if message.payload.len() > max || size > max {
            return Err(BusError::PayloadTooLarge {
                size: size.max(message.payload.len() + 1),
                max,
            });
        }
        let headers = to_header_map(&message)?;
        if self.captured(&message.subject, server.jetstream).await? {
            let ack = self
                .inner
                .js
                .publish_with_headers(message.subject.clone(), headers, message.payload)
                .await
                .map_err(|e| map_publish(e.kind(), &e))?;
            ack.await.map_err(|e| map_publish(e.kind(), &e))?;
            return Ok(());
        }
        self.inner
            .client
            .publish_with_headers(message.subject, headers, message.payload)
            .await
            .map_err(|e| BusError::Unavailable(format!("publish: {e}")))?;
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| BusError::Unavailable(format!("flush: {e}")))?;
        Ok(())
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        subject::check_filter(subject)?;
        let mut sub = self
            .inner
            .client
            .subscribe(subject.to_string())
            .await
            .map_err(|e| BusError::Unavailable(format!("subscribe {subject}: {e}")))?;
        let (tx, rx) = mpsc::channel(SUB_PENDING);
        let mut shutdown = self.inner.shutdown.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = closed(&mut shutdown) => break,
                    next = sub.next() => next,
                };
                let Some(m) = next else { break };
                if tx.send(Delivery::unacked(from_nats(&m))).await.is_err() {
                    break;
                }
            }
            let _ = sub.unsubscribe().await;
        });
        Ok(Subscription::new(rx, Some(Box::new(AbortOnDrop(task)))))
    }

    async fn subscribe_group(
        &self,
        subject: &str,
        group: &str,
        options: GroupOptions,
    ) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        subject::check_filter(subject)?;
        GroupOptions::check_name(group)?;
        self.ensure_jetstream().await?;
        group::subscribe(&self.inner, subject, group, options).await
    }

    async fn check(&self) -> Result<(), BusError> {
        self.ensure_open()?;
        if self.inner.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BusError::Unavailable(format!(
                "not connected to NATS at {}",
                self.inner.url
            )));
        }
        if !self.server().is_some_and(|s| s.jetstream) {
            return Ok(());
        }
        // The account info request: answered only when JetStream is up. Read as
        // text because its fields differ between server versions.
        let reply = self
            .inner
            .client
            .request("$JS.API.INFO", Bytes::new())
            .await
            .map_err(|e| BusError::Unavailable(format!("JetStream: {e}")))?;
        let body = String::from_utf8_lossy(&reply.payload);
        if body.contains("\"error\"") {
            return Err(BusError::Unavailable(format!("JetStream: {body}")));
        }
        Ok(())
    }

    async fn dead_letters(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.ensure_open()?;
        self.ensure_jetstream().await?;
        dead_letters::list(&self.inner, stream, limit).await
    }

    async fn replay_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.ensure_open()?;
        self.ensure_jetstream().await?;
        dead_letters::replay(self, stream, id).await
    }

    async fn purge_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.ensure_open()?;
        self.ensure_jetstream().await?;
        dead_letters::purge(&self.inner, stream, id).await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.shutdown.send_replace(true);
        // Bounded: a dead server must not hold up shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.client.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.client.drain()).await;
    }
}

fn map_publish(kind: PublishErrorKind, e: &dyn std::fmt::Display) -> BusError {
    match kind {
        PublishErrorKind::StreamNotFound => {
            BusError::Unavailable(format!("no stream answered the publish: {e}"))
        }
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            BusError::Unavailable(format!("publish: {e}"))
        }
        _ => BusError::Other(format!("publish: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_travels_as_a_header_and_counts_against_the_limit() {
        let m = Message::new("s", "p").with_key("k1").with_header("a", "b");
        let map = to_header_map(&m).unwrap();
        assert_eq!(map.get(KEY_HEADER).map(|v| v.as_str()), Some("k1"));
        assert_eq!(
            header_len(&m),
            "NATS/1.0\r\nOrderly-Key: k1\r\na: b\r\n\r\n".len()
        );
        let bad = Message::new("s", "p").with_header("a", "line\r\nbreak");
        assert!(to_header_map(&bad).is_err());
    }
}
