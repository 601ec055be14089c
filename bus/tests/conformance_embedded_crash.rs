//! The job queue conformance kit against the embedded queue in a process of
//! its own, so that a restart can be a crash.
//!
//! The broker and its queue run in a child process (this test binary again,
//! running only [`queue_child`]) on a temp directory, with the broker's
//! default sync (`interval:50`: records reach the operating system at once
//! and are fsynced every 50 ms). The clients in the test process reach it by
//! a line-per-call JSON protocol of this file's own over TCP, one connection
//! per client. The factory's `restart` stops the child gracefully (the broker
//! is closed, as on SIGTERM); its `crash` kills it with SIGKILL, so nothing is
//! closed or synced, and starts a new child on the same directory and port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orderly_bus::conformance::{QueueCaps, QueueFactory};
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue, SyncPolicy};
use orderly_bus::{
    Bus, DeadJob, Job, JobQueue, NewJob, QueueError, QueueStats, RetryOutcome, RetryPolicy,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Set in a child's environment: the data directory it serves.
const CHILD_DIR_ENV: &str = "ORDERLY_TEST_QUEUE_CHILD_DIR";
/// Set in a child's environment: the address it listens on.
const CHILD_LISTEN_ENV: &str = "ORDERLY_TEST_QUEUE_CHILD_LISTEN";

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn duration(v: &Value) -> Duration {
    Duration::from_micros(v.as_u64().unwrap_or(0))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn payload_of(v: &Value) -> bytes::Bytes {
    let raw: Vec<u8> = serde_json::from_value(v.clone()).unwrap_or_default();
    raw.into()
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn job_json(j: &Job) -> Value {
    json!({
        "queue": j.queue, "id": j.id, "payload": j.payload.to_vec(),
        "attempt": j.attempt, "errors": j.errors, "receipt": j.receipt,
    })
}

fn job_of(v: &Value) -> Job {
    Job {
        queue: text(&v["queue"]),
        id: text(&v["id"]),
        payload: payload_of(&v["payload"]),
        attempt: u32::try_from(v["attempt"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX),
        errors: strings(&v["errors"]),
        receipt: text(&v["receipt"]),
    }
}

fn dead_json(d: &DeadJob) -> Value {
    json!({
        "queue": d.queue, "id": d.id, "payload": d.payload.to_vec(),
        "attempts": d.attempts, "errors": d.errors,
    })
}

fn dead_of(v: &Value) -> DeadJob {
    DeadJob {
        queue: text(&v["queue"]),
        id: text(&v["id"]),
        payload: payload_of(&v["payload"]),
        attempts: u32::try_from(v["attempts"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX),
        errors: strings(&v["errors"]),
    }
}

fn error_json(e: &QueueError) -> Value {
    let kind = match e {
        QueueError::Closed => "closed",
        QueueError::Unavailable(_) => "unavailable",
        QueueError::UnknownJob(_) => "unknown_job",
        _ => "other",
    };
    json!({ "kind": kind, "message": e.to_string() })
}

fn error_of(v: &Value) -> QueueError {
    let message = text(&v["message"]);
    match v["kind"].as_str() {
        Some("closed") => QueueError::Closed,
        Some("unavailable") => QueueError::Unavailable(message),
        Some("unknown_job") => QueueError::UnknownJob(message),
        _ => QueueError::Other(message),
    }
}

/// One call of a client, run on the child's queue.
async fn serve_call(q: &EmbeddedQueue, r: &Value) -> Result<Value, QueueError> {
    let job = || job_of(&r["job"]);
    Ok(match r["op"].as_str().unwrap_or_default() {
        "enqueue" => json!(
            q.enqueue(NewJob {
                queue: text(&r["queue"]),
                id: text(&r["id"]),
                payload: payload_of(&r["payload"]),
            })
            .await?
        ),
        "reserve" => q
            .reserve(
                &text(&r["queue"]),
                duration(&r["visibility"]),
                duration(&r["wait"]),
            )
            .await?
            .as_ref()
            .map_or(Value::Null, job_json),
        "reserve_many" => {
            let max = usize::try_from(r["max"].as_u64().unwrap_or(1)).unwrap_or(1);
            let jobs = q
                .reserve_many(
                    &text(&r["queue"]),
                    max,
                    duration(&r["visibility"]),
                    duration(&r["wait"]),
                )
                .await?;
            Value::Array(jobs.iter().map(job_json).collect())
        }
        "ack" => {
            q.ack(&job()).await?;
            Value::Null
        }
        "fail" => match q.fail(&job(), &text(&r["error"])).await? {
            RetryOutcome::Retry(after) => json!({ "retry": micros(after) }),
            RetryOutcome::Dead => json!("dead"),
        },
        "extend" => {
            q.extend(&job(), duration(&r["visibility"])).await?;
            Value::Null
        }
        "release" => {
            q.release(&job(), duration(&r["after"])).await?;
            Value::Null
        }
        "stats" => {
            let s = q.stats(&text(&r["queue"])).await?;
            json!({ "waiting": s.waiting, "running": s.running, "retrying": s.retrying, "dead": s.dead })
        }
        "dead_letters" => {
            let limit = usize::try_from(r["limit"].as_u64().unwrap_or(0)).unwrap_or(0);
            let dead = q.dead_letters(&text(&r["queue"]), limit).await?;
            Value::Array(dead.iter().map(dead_json).collect())
        }
        "requeue_dead" => json!(q.requeue_dead(&text(&r["queue"]), &text(&r["id"])).await?),
        "purge_dead" => json!(q.purge_dead(&text(&r["queue"])).await?),
        "check" => {
            q.check().await?;
            Value::Null
        }
        other => return Err(QueueError::Other(format!("unknown call {other:?}"))),
    })
}

/// A client's connection: its first line is its retry policy, every later
/// line one call, answered by one line.
async fn serve_client(broker: EmbeddedBroker, stream: tokio::net::TcpStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(first)) = lines.next_line().await else {
        return;
    };
    let p: Value = serde_json::from_str(&first).unwrap_or_default();
    let policy = RetryPolicy {
        base: duration(&p["base"]),
        factor: p["factor"].as_f64().unwrap_or(2.0),
        cap: duration(&p["cap"]),
        max_retries: u32::try_from(p["max_retries"].as_u64().unwrap_or(0)).unwrap_or(0),
    };
    let q = match EmbeddedQueue::open(&broker, policy).await {
        Ok(q) => q,
        Err(e) => {
            let _ = write
                .write_all(format!("{}\n", json!({ "err": error_json(&e) })).as_bytes())
                .await;
            return;
        }
    };
    if write.write_all(b"{\"ok\":null}\n").await.is_err() {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let call: Value = serde_json::from_str(&line).unwrap_or_default();
        if call["op"] == "stop" {
            // A graceful stop: the broker closes (flushes and syncs), then
            // the process ends.
            broker.close().await;
            let _ = write.write_all(b"{\"ok\":null}\n").await;
            std::process::exit(0);
        }
        let answer = match serve_call(&q, &call).await {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "err": error_json(&e) }),
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The queue process of a factory: the broker on its directory and the
/// queue's listener, until it is stopped or killed. In an ordinary test run
/// (no child environment) it has nothing to do and returns at once.
#[test]
fn queue_child() {
    let (Ok(dir), Ok(listen)) = (
        std::env::var(CHILD_DIR_ENV),
        std::env::var(CHILD_LISTEN_ENV),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let broker = EmbeddedBroker::open(BrokerConfig {
            data_dir: Some(dir.into()),
            // What docs/durability.md promises a process crash does not lose.
            sync: SyncPolicy::Interval(Duration::from_millis(50)),
            ..BrokerConfig::default()
        })
        .await
        .expect("open the broker");
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .expect("listen");
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::spawn(serve_client(broker.clone(), stream));
        }
    });
}

/// A client of the child's queue.
struct RemoteQueue {
    conn: tokio::sync::Mutex<(tokio::io::Lines<BufReader<OwnedReadHalf>>, OwnedWriteHalf)>,
}

impl RemoteQueue {
    async fn connect(addr: SocketAddr, policy: RetryPolicy) -> Result<Self, QueueError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| QueueError::Unavailable(format!("queue child at {addr}: {e}")))?;
        let (read, write) = stream.into_split();
        let q = Self {
            conn: tokio::sync::Mutex::new((BufReader::new(read).lines(), write)),
        };
        q.send(json!({
            "base": micros(policy.base), "factor": policy.factor,
            "cap": micros(policy.cap), "max_retries": policy.max_retries,
        }))
        .await?;
        Ok(q)
    }

    async fn send(&self, line: Value) -> Result<Value, QueueError> {
        let gone = |e: std::io::Error| QueueError::Unavailable(format!("queue child: {e}"));
        let mut conn = self.conn.lock().await;
        let (lines, write) = &mut *conn;
        write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(gone)?;
        let answer = lines
            .next_line()
            .await
            .map_err(gone)?
            .ok_or_else(|| QueueError::Unavailable("the queue child hung up".into()))?;
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|e| QueueError::Other(format!("queue child's answer: {e}")))?;
        match answer.get("err") {
            Some(e) => Err(error_of(e)),
            None => Ok(answer["ok"].clone()),
        }
    }
}

#[async_trait]
impl JobQueue for RemoteQueue {
    async fn enqueue(&self, job: NewJob) -> Result<bool, QueueError> {
        let v = self
            .send(json!({ "op": "enqueue", "queue": job.queue, "id": job.id, "payload": job.payload.to_vec() }))
            .await?;
        Ok(v.as_bool().unwrap_or(false))
    }

    async fn reserve(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Option<Job>, QueueError> {
        let v = self
            .send(json!({ "op": "reserve", "queue": queue, "visibility": micros(visibility), "wait": micros(wait) }))
            .await?;
        Ok((!v.is_null()).then(|| job_of(&v)))
    }

    async fn reserve_many(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let v = self
            .send(json!({ "op": "reserve_many", "queue": queue, "max": max, "visibility": micros(visibility), "wait": micros(wait) }))
            .await?;
        Ok(v.as_array().into_iter().flatten().map(job_of).collect())
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        self.send(json!({ "op": "ack", "job": job_json(job) }))
            .await
            .map(drop)
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<RetryOutcome, QueueError> {
        let v = self
            .send(json!({ "op": "fail", "job": job_json(job), "error": error }))
            .await?;
        Ok(match v.get("retry") {
            Some(after) => RetryOutcome::Retry(duration(after)),
            None => RetryOutcome::Dead,
        })
    }

    async fn extend(&self, job: &Job, visibility: Duration) -> Result<(), QueueError> {
        self.send(json!({ "op": "extend", "job": job_json(job), "visibility": micros(visibility) }))
            .await
            .map(drop)
    }

    async fn release(&self, job: &Job, after: Duration) -> Result<(), QueueError> {
        self.send(json!({ "op": "release", "job": job_json(job), "after": micros(after) }))
            .await
            .map(drop)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let v = self.send(json!({ "op": "stats", "queue": queue })).await?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(QueueStats {
            waiting: n("waiting"),
            running: n("running"),
            retrying: n("retrying"),
            dead: n("dead"),
        })
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let v = self
            .send(json!({ "op": "dead_letters", "queue": queue, "limit": limit }))
            .await?;
        Ok(v.as_array().into_iter().flatten().map(dead_of).collect())
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        let v = self
            .send(json!({ "op": "requeue_dead", "queue": queue, "id": id }))
            .await?;
        Ok(v.as_bool().unwrap_or(false))
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        let v = self
            .send(json!({ "op": "purge_dead", "queue": queue }))
            .await?;
        Ok(v.as_u64().unwrap_or(0))
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.send(json!({ "op": "check" })).await.map(drop)
    }
}

fn spawn_child(dir: &Path, addr: SocketAddr) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["queue_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_LISTEN_ENV, addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Starts a child and waits until it accepts connections (a predecessor's
/// port and directory lock may take a moment to free).
fn start_child(dir: &Path, addr: SocketAddr) -> Result<Child, QueueError> {
    let failed = |e: std::io::Error| QueueError::Other(format!("queue child: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = spawn_child(dir, addr).map_err(failed)?;
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait().map_err(failed)? {
            if Instant::now() >= deadline {
                return Err(QueueError::Other(format!(
                    "the queue child exited with {status}"
                )));
            }
            child = spawn_child(dir, addr).map_err(failed)?;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(QueueError::Other(format!(
                "the queue child did not listen on {addr}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One case's queue process.
struct Crashing {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Mutex<Option<Child>>,
}

impl Crashing {
    fn new() -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            addr,
            child: Mutex::new(None),
        }
    }

    fn ensure_child(&self) -> Result<(), QueueError> {
        let mut child = self.child.lock().expect("child lock");
        if child.is_none() {
            *child = Some(start_child(self.dir.path(), self.addr)?);
        }
        Ok(())
    }

    async fn start_again(&self) -> Result<(), QueueError> {
        let (dir, addr) = (self.dir.path().to_path_buf(), self.addr);
        let child = tokio::task::spawn_blocking(move || start_child(&dir, addr))
            .await
            .map_err(|e| QueueError::Other(format!("restart task failed: {e}")))??;
        *self.child.lock().expect("child lock") = Some(child);
        Ok(())
    }
}

impl Drop for Crashing {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[async_trait]
impl QueueFactory for Crashing {
    async fn connect(
        &self,
        _queue: &str,
        policy: RetryPolicy,
    ) -> Result<Arc<dyn JobQueue>, QueueError> {
        self.ensure_child()?;
        Ok(Arc::new(RemoteQueue::connect(self.addr, policy).await?))
    }

    async fn restart(&self) -> Result<(), QueueError> {
        let old = self.child.lock().expect("child lock").take();
        if let Some(mut old) = old {
            let client = RemoteQueue::connect(self.addr, RetryPolicy::default()).await?;
            // The child exits before it answers, or just after.
            let _ = client.send(json!({ "op": "stop" })).await;
            tokio::task::spawn_blocking(move || old.wait())
                .await
                .map_err(|e| QueueError::Other(format!("stop task failed: {e}")))??;
        }
        self.start_again().await
    }

    async fn crash(&self) -> Result<(), QueueError> {
        let old = self.child.lock().expect("child lock").take();
        if let Some(mut old) = old {
            // SIGKILL: no close, no final sync.
            old.kill()?;
            old.wait()?;
        }
        self.start_again().await
    }
}

orderly_bus::queue_conformance!(
    Crashing::new(),
    QueueCaps::new("embedded-process")
        .durable(true)
        .restart(true)
        .crash(true)
);
