//! The embedded broker: NATS-style subjects and queue groups in process, plus
//! durable streams with consumer groups, kept in an append-only log under the
//! data directory (or only in memory).
//!
//! - `sublist`: the subscription trie over [`crate::subject`]'s grammar.
//! - `fanout`: plain pub/sub without storage (NATS core).
//! - `stream`: a stream and its durable groups; `store` is its storage port,
//!   with `nullstore` and `filestore` behind it.
//! - `queue`: the job queue on top of a `jobs` stream.

mod dead_letters;
mod fanout;
mod filestore;
mod nullstore;
mod queue;
mod record;
mod store;
pub(crate) mod stream;
mod sublist;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;

use self::fanout::{Fanout, SUB_PENDING};
pub(crate) use self::fanout::{FanoutGuard, Offer, Pending, Sink};
use self::filestore::FileStore;
use self::nullstore::NullStore;
use self::store::StreamStore;
use self::stream::{MemberGuard, Stream, StreamShared};
use crate::subject;
use crate::{
    Bus, BusError, DeadLetter, Features, GroupOptions, Message, StreamConfig, Subscription,
};
use tokio::sync::Notify;

pub use self::queue::EmbeddedQueue;

const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// How often messages past `max_age` are dropped.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `publish` returns after the stream log is fsynced (a group commit:
    /// publishes that arrive while an fsync runs share the next one). Acks and
    /// delivery counts are not waited for: losing one only causes a redelivery.
    Always,
    /// Records are written at once and fsynced in the background at this
    /// interval; a power cut may lose that much, a process crash loses nothing.
    Interval(Duration),
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy::Interval(Duration::from_millis(50))
    }
}

/// How an [`EmbeddedBroker`] keeps its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Where streams are kept (`<data_dir>/broker/`); `None` keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// Largest payload `publish` accepts.
    pub max_payload: usize,
    /// When writes reach the disk.
    pub sync: SyncPolicy,
    /// How long a dedup id (a job id) is remembered after its message was
    /// published, at most the stream's `max_age`; ids of messages still in a
    /// stream are kept regardless.
    pub dedup_window: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            sync: SyncPolicy::default(),
            dedup_window: stream::DEFAULT_DEDUP_WINDOW,
        }
    }
}

/// The in-process broker. Cheap to clone; all clones are one broker.
#[derive(Clone)]
pub struct EmbeddedBroker {
    inner: Arc<Broker>,
}

struct Broker {
    config: BrokerConfig,
    /// `<data_dir>/broker`, if durable.
    dir: Option<PathBuf>,
    fanout: Arc<Fanout>,
    streams: RwLock<Vec<Arc<StreamShared>>>,
    /// Serialises stream creation so two callers cannot create the same file twice.
    create: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Held for the broker's life: one process per data directory.
    lock_file: Mutex<Option<File>>,
    /// Streams ring it when their log is due for a compaction.
    compaction_due: Arc<Notify>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Subscriptions may outlive the broker; they must stop writing before the
        // directory lock (a field, dropped after this) lets another broker in.
        let streams = self
            .streams
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for s in streams {
            s.lock().close();
        }
    }
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn check_queue_name(queue: &str) -> Result<(), BusError> {
    if queue.is_empty() || queue.chars().any(char::is_whitespace) {
        return Err(BusError::Other(format!(
            "invalid queue group name {queue:?}"
        )));
    }
    Ok(())
}

fn lock_data_dir(data_dir: &Path, dir: &Path) -> Result<File, BusError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(BusError::Unavailable(format!(
            "data directory {} is in use by another orderly process",
            data_dir.display()
        ))),
        Err(TryLockError::Error(e)) => Err(BusError::Storage(e)),
    }
}

/// Replays every `<name>.log` in `dir`.
fn load_streams(dir: &Path, config: &BrokerConfig) -> Result<Vec<Stream>, BusError> {
    let mut streams = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    entries.sort();
    for path in entries {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if !StreamConfig::valid_name(name) {
            tracing::warn!(path = %path.display(), "not a stream log name; ignored");
            continue;
        }
        let (store, records) = FileStore::open(&path)?;
        let mut stream = Stream::restore(name.to_string(), None, Box::new(store), records);
        stream.set_dedup_window(config.dedup_window);
        stream.expire(stream::wall_ms());
        // Start every run from a log holding only live state.
        stream.compact()?;
        streams.push(stream);
    }
    Ok(streams)
}

impl EmbeddedBroker {
    /// Opens the broker; with a data directory, locks it and replays its streams.
    pub async fn open(config: BrokerConfig) -> Result<Self, BusError> {
        let mut lock_file = None;
        let mut streams = Vec::new();
        let dir = config.data_dir.as_ref().map(|d| d.join("broker"));
        if let (Some(data_dir), Some(dir)) = (config.data_dir.clone(), dir.clone()) {
            let cfg = config.clone();
            let (file, loaded) = tokio::task::spawn_blocking(move || {
                // Owner-only: the log holds every event, and the data directory
                // is often created here first.
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)?;
                let file = lock_data_dir(&data_dir, &dir)?;
                let loaded = load_streams(&dir, &cfg)?;
                Ok::<_, BusError>((file, loaded))
            })
            .await
            .map_err(|e| BusError::Other(format!("broker open task failed: {e}")))??;
            lock_file = Some(file);
            streams = loaded;
        }
        let compaction_due = Arc::new(Notify::new());
        let streams = streams
            .into_iter()
            .map(|mut s| {
                s.set_compaction_wake(compaction_due.clone());
                StreamShared::new(s)
            })
            .collect();
        let inner = Arc::new(Broker {
            config,
            dir,
            fanout: Arc::new(Fanout::new()),
            streams: RwLock::new(streams),
            create: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            lock_file: Mutex::new(lock_file),
            compaction_due,
        });
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// A plain (not durable) queue group: each message goes to one member of
    /// `queue`, round robin; nothing to ack, nothing replayed.
    pub async fn subscribe_queue(
        &self,
        subject: &str,
        queue: &str,
    ) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        check_queue_name(queue)?;
        self.inner
            .fanout
            .subscribe(subject, Some(queue), SUB_PENDING)
    }

    /// Whether a subscriber (of any kind) matches `subject` right now.
    pub(crate) fn has_interest(&self, subject: &str) -> bool {
        self.inner.fanout.has_interest(subject)
    }

    /// Publishes like [`Bus::publish`]; returns how many plain subscribers and
    /// queue groups took the message.
    pub(crate) async fn publish_counted(&self, message: Message) -> Result<usize, BusError> {
        self.publish_acked(message, &[], None).await.map(|(n, _)| n)
    }

    /// Subscribes a [`Sink`] (the wire listener's connections) to plain
    /// messages on `subject`, in queue group `queue` if given; dropping the
    /// guard unsubscribes it.
    pub(crate) fn subscribe_sink(
        &self,
        subject: &str,
        queue: Option<&str>,
        sink: Arc<dyn Sink>,
    ) -> Result<FanoutGuard, BusError> {
        self.ensure_open()?;
        if let Some(q) = queue {
            check_queue_name(q)?;
        }
        self.inner.fanout.subscribe_sink(subject, queue, sink)
    }

    /// Publishes like [`publish_counted`](Self::publish_counted) and also says
    /// which streams stored the message at which sequence (`None`: a duplicate).
    /// The stored copy goes without the `transient` headers (a wire reply subject
    /// belongs to the publish, not to the message). Sinks that took the message
    /// go into `pending` for the caller to flush, if given.
    pub(crate) async fn publish_acked(
        &self,
        message: Message,
        transient: &[&str],
        pending: Option<&mut Pending>,
    ) -> Result<(usize, Vec<(String, Option<u64>)>), BusError> {
        self.ensure_open()?;
        self.check_message(&message)?;
        let mut stored = Vec::new();
        for (s, name) in self.capturing(&message.subject) {
            let mut copy = message.clone();
            for h in transient {
                copy.headers.remove(*h);
            }
            stored.push((name, self.append_to(&s, copy, true).await?));
        }
        Ok((self.inner.fanout.publish(message, pending), stored))
    }

    /// The streams that keep `subject`, with their names (no allocation when none do).
    fn capturing(&self, subject: &str) -> Vec<(Arc<StreamShared>, String)> {
        self.inner
            .streams
            .read()
            .expect("streams lock poisoned")
            .iter()
            .filter_map(|s| {
                let g = s.lock();
                g.captures(subject)
                    .then(|| (s.clone(), g.name().to_string()))
            })
            .collect()
    }

    /// Messages dropped because a plain subscriber did not keep up.
    pub fn slow_consumer_drops(&self) -> u64 {
        self.inner.fanout.slow_consumer_drops()
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn streams(&self) -> Vec<Arc<StreamShared>> {
        self.inner
            .streams
            .read()
            .expect("streams lock poisoned")
            .clone()
    }

    pub(crate) fn stream_named(&self, name: &str) -> Option<Arc<StreamShared>> {
        self.streams().into_iter().find(|s| s.lock().name() == name)
    }

    fn check_message(&self, message: &Message) -> Result<(), BusError> {
        subject::check_literal(&message.subject)?;
        let max = self.inner.config.max_payload;
        if message.payload.len() > max {
            return Err(BusError::PayloadTooLarge {
                size: message.payload.len(),
                max,
            });
        }
        Ok(())
    }

    /// Appends to one stream and, under [`SyncPolicy::Always`], waits for the fsync.
    /// `Ok(None)`: a duplicate of a remembered dedup id.
    pub(crate) async fn append_to(
        &self,
        stream: &StreamShared,
        message: Message,
        dedup: bool,
    ) -> Result<Option<u64>, BusError> {
        self.ensure_open()?;
        self.check_message(&message)?;
        let (seq, mark) = {
            let mut s = stream.lock();
            if s.is_closed() {
                return Err(BusError::Closed);
            }
            (s.append(message, dedup)?, s.written())
        };
        if self.inner.config.sync == SyncPolicy::Always && seq.is_some() {
            stream.sync_through(mark).await?;
        }
        Ok(seq)
    }

    /// The log to fsync now, under [`SyncPolicy::Always`].
    fn dirty_if_always(&self, stream: &mut stream::Stream) -> Option<Arc<File>> {
        match self.inner.config.sync {
            SyncPolicy::Always => stream.take_dirty(),
            SyncPolicy::Interval(_) => None,
        }
    }

    #[cfg(test)]
    fn stream_for_test(&self, name: &str) -> Arc<StreamShared> {
        self.stream_named(name).expect("stream exists")
    }
}

async fn sync_file(file: Arc<File>) -> Result<(), BusError> {
    tokio::task::spawn_blocking(move || file.sync_data())
        .await
        .map_err(|e| BusError::Other(format!("fsync task failed: {e}")))??;
    Ok(())
}

/// Background fsync (for [`SyncPolicy::Interval`]; acks and delivery counts
/// under [`SyncPolicy::Always`]), `max_age` expiry and compaction.
async fn maintain(broker: Weak<Broker>) {
    let (every, compaction_due) = match broker.upgrade() {
        Some(b) => {
            let every = match b.config.sync {
                SyncPolicy::Interval(d) => d.max(Duration::from_millis(1)),
                SyncPolicy::Always => EXPIRE_EVERY,
            };
            (every, b.compaction_due.clone())
        }
        None => return,
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = tokio::time::Instant::now();
    loop {
        let compact = tokio::select! {
            _ = ticker.tick() => false,
            _ = compaction_due.notified() => true,
        };
        let streams = match broker.upgrade() {
            Some(b) if !b.closed.load(Ordering::Acquire) => {
                b.streams.read().expect("streams lock poisoned").clone()
            }
            _ => return,
        };
        for s in &streams {
            let dirty = s.lock().take_dirty();
            if let Some(file) = dirty
                && let Err(e) = sync_file(file).await
            {
                tracing::warn!(error = %e, "background fsync of a stream log failed");
            }
        }
        if last_expiry.elapsed() >= EXPIRE_EVERY {
            last_expiry = tokio::time::Instant::now();
            let now_ms = stream::wall_ms();
            for s in &streams {
                s.lock().expire(now_ms);
            }
        }
        if compact {
            for s in &streams {
                let due = s.lock().compaction_due();
                if due && let Err(e) = s.compact().await {
                    tracing::warn!(stream = %s.lock().name(), error = %e, "stream log compaction failed");
                }
            }
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBroker {
    fn features(&self) -> Features {
        Features {
            durable: self.inner.config.data_dir.is_some(),
            ordered_per_key: true,
            consumer_groups: true,
            redelivery_delay: true,
            headers: true,
            max_payload: self.inner.config.max_payload,
        }
    }

    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError> {
        self.ensure_open()?;
        config.check()?;
        for s in &config.subjects {
            subject::check_filter(s)?;
        }
        let _creating = self.inner.create.lock().await;
        let existing = self.streams();
        for other in &existing {
            let o = other.lock();
            if o.name() == config.name {
                continue;
            }
            // One subject in two streams would store (and deliver) it twice.
            for mine in &config.subjects {
                if let Some(theirs) = o
                    .config()
                    .subjects
                    .iter()
                    .find(|t| subject::overlap(mine, t))
                {
                    return Err(BusError::Other(format!(
                        "subject {mine:?} of stream {} overlaps {theirs:?} of stream {}",
                        config.name,
                        o.name()
                    )));
                }
            }
        }
        if let Some(s) = existing.iter().find(|s| s.lock().name() == config.name) {
            s.lock().configure(config)?;
            return Ok(());
        }
        let name = config.name.clone();
        let store: Box<dyn StreamStore> = match &self.inner.dir {
            Some(dir) => {
                let path = dir.join(format!("{name}.log"));
                let (store, records) = tokio::task::spawn_blocking(move || FileStore::open(&path))
                    .await
                    .map_err(|e| BusError::Other(format!("stream open task failed: {e}")))??;
                if !records.is_empty() {
                    // Only possible if the file appeared after open; keep it safe.
                    return Err(BusError::Other(format!(
                        "stream log for {name} appeared while the broker was running"
                    )));
                }
                Box::new(store)
            }
            None => Box::new(NullStore),
        };
        let mut stream = Stream::restore(name, None, store, Vec::new());
        stream.set_dedup_window(self.inner.config.dedup_window);
        stream.set_compaction_wake(self.inner.compaction_due.clone());
        stream.configure(config)?;
        self.inner
            .streams
            .write()
            .expect("streams lock poisoned")
            .push(StreamShared::new(stream));
        Ok(())
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.publish_counted(message).await.map(|_| ())
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        self.inner.fanout.subscribe(subject, None, SUB_PENDING)
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
        let stream = self
            .streams()
            .into_iter()
            .find(|s| s.lock().covers(subject))
            .ok_or_else(|| BusError::NoStream(subject.to_string()))?;
        let (gi, member) = {
            let mut s = stream.lock();
            let gi = s.ensure_group(group, subject, &options)?;
            (gi, s.add_member(gi))
        };
        let (tx, rx) = tokio::sync::mpsc::channel(options.max_in_flight.max(1));
        tokio::spawn(stream::pump(stream.clone(), gi, member, options, tx));
        let guard = MemberGuard {
            stream: Arc::downgrade(&stream),
            group: gi,
            member,
        };
        Ok(Subscription::new(rx, Some(Box::new(guard))))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.ensure_open()?;
        if let Some(dir) = &self.inner.dir {
            let meta = fs::metadata(dir)?;
            if !meta.is_dir() {
                return Err(BusError::Unavailable(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    async fn dead_letters(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.list_dead(stream, limit)
    }

    async fn replay_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.replay_dead_letter(stream, id).await
    }

    async fn purge_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.purge_dead_letter(stream, id).await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.fanout.close();
        for s in self.streams() {
            let dirty = s.lock().close();
            if let Some(file) = dirty
                && let Err(e) = sync_file(file).await
            {
                tracing::warn!(error = %e, "final fsync of a stream log failed");
            }
        }
        // Let a new broker (in this process or another) take the directory now.
        drop(
            self.inner
                .lock_file
                .lock()
                .expect("lock file mutex poisoned")
                .take(),
        );
    }
}

#[cfg(test)]
mod tests;
