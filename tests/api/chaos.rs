//! 2,000 orders while the orders (API + outbox relay),
//! consumer and worker processes are SIGKILLed and restarted at random and the
//! broker is stopped for 10 s and started again. Every order ends PAID with
//! exactly one PENDING -> PAID change, the outbox is empty, the job queue holds
//! nothing, and an independent reader finds a `new_order` event for every
//! order (duplicates are allowed, loss is not).
//!
//! One scenario, two brokers the test starts itself on its own port and data:
//! - embedded: `orderly broker` (the NATS protocol), services on `BUS=nats`;
//! - kafka: tansu with its SQLite storage (`sqlite://`, kept across the stop),
//!   services on `BUS=kafka` under a topic prefix of their own.
//!
//! Around the broker: auth (never killed), two `orders` processes on fixed
//! ports behind a client that spreads requests and retries with the same
//! `Idempotency-Key`, one `consumer`, two `worker`s; the orders database is a
//! fresh PostgreSQL database, the job queue Redis under a prefix of the run.
//! A killed process is started again at once (a supervisor's restart); one
//! that cannot start (its broker is down) or exits is started again every
//! half second. `ORDERLY_CHAOS_SEED` replays the kill schedule. Without
//! PostgreSQL, Redis or (for kafka) tansu: a failure with CI=true, a loud skip
//! otherwise.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderly_bus::{Bus, GroupOptions, JobQueue};
use orderly_kafka::{KafkaBus, KafkaConfig};
use orderly_nats::{NatsBus, NatsConfig};
use orderly_redis::{RedisQueue, RedisQueueConfig};
use orderly_testkit::TestDatabase;
use serde_json::Value;

use crate::faults::{Killed, RedisKeys, Rng, as_refs, paid, start_orderly_broker, tail};
use crate::helpers::{TestApp, logs_in, one_item_order, start_role, try_start_role};

const ORDERS: usize = 2_000;
const USERS: usize = 4;
const CLIENTS: usize = 8;
/// The orders are released evenly over this span, so the kills meet the load
/// (and the relays, consumer and workers behind it) all along.
const LOAD_SPAN: Duration = Duration::from_secs(30);
/// Kills go on a little after the last order is released.
const CHAOS_SPAN: Duration = Duration::from_secs(34);
const BROKER_DOWN: Duration = Duration::from_secs(10);
/// One order's retries give up after this long (a failure).
const ORDER_DEADLINE: Duration = Duration::from_secs(90);
/// After the chaos: every order PAID, the outbox and the queue empty, within this.
const SETTLE: Duration = Duration::from_secs(90);
const ORDERS_PROCESSES: usize = 2;
const WORKERS: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Embedded,
    Kafka,
}

impl Flavour {
    fn name(self) -> &'static str {
        match self {
            Flavour::Embedded => "embedded",
            Flavour::Kafka => "kafka",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_broker_2000_orders_survive_kills_and_a_broker_stop() {
    chaos(Flavour::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_2000_orders_survive_kills_and_a_broker_stop() {
    chaos(Flavour::Kafka).await;
}

/// The broker the test owns: stopped with SIGKILL and started again on the same
/// port and data.
struct Broker {
    flavour: Flavour,
    dir: PathBuf,
    port: u16,
    tansu: Option<PathBuf>,
    child: Option<Killed>,
}

impl Broker {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        self.child = Some(match self.flavour {
            Flavour::Embedded => start_orderly_broker(&self.dir, &self.address()).0,
            Flavour::Kafka => {
                let bin = self.tansu.as_deref().expect("tansu binary");
                start_tansu(bin, &self.dir, self.port).unwrap_or_else(|why| panic!("{why}"))
            }
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// What the services need to reach it.
    fn service_env(&self, topic_prefix: &str) -> Vec<(String, String)> {
        match self.flavour {
            Flavour::Embedded => vec![
                ("BUS".into(), "nats".into()),
                ("NATS_URL".into(), format!("nats://{}", self.address())),
            ],
            Flavour::Kafka => vec![
                ("BUS".into(), "kafka".into()),
                ("KAFKA_BOOTSTRAP_SERVERS".into(), self.address()),
                ("KAFKA_TOPIC_PREFIX".into(), topic_prefix.into()),
            ],
        }
    }

    /// A client of our own for reading the events independently.
    async fn reader(&self, topic_prefix: &str) -> Arc<dyn Bus> {
        match self.flavour {
            Flavour::Embedded => {
                let mut config = NatsConfig::new(format!("nats://{}", self.address()));
                config.client_name = "chaos-audit".into();
                Arc::new(NatsBus::connect(config).await.expect("audit NATS client"))
            }
            Flavour::Kafka => {
                let mut config = KafkaConfig::new(self.address());
                config.topic_prefix = topic_prefix.into();
                Arc::new(KafkaBus::new(config).expect("audit Kafka client"))
            }
        }
    }
}

/// The tansu binary: on PATH, else in ~/.cargo/bin (where scripts/with-tansu puts it).
fn tansu_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
}

/// tansu on `port` with its SQLite storage in `dir` (kept across restarts).
fn start_tansu(bin: &Path, dir: &Path, port: u16) -> Result<Killed, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let log_path = dir.join("tansu.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| e.to_string())?;
    let listener = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .arg("broker")
        .args(["--cluster-id", "orderly-chaos"])
        .args(["--listener-url", &listener])
        .args(["--advertised-listener-url", &listener])
        // Relative to the working directory: `dir`/tansu.db.
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        let log = || tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 20);
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("tansu exited at start ({status}); log:\n{}", log()));
        }
        if Instant::now() > deadline {
            child.kill();
            return Err(format!("tansu never listened on {port}; log:\n{}", log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether this tansu build has the SQLite storage (cargo feature `libsql`).
fn tansu_has_sqlite(bin: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = orderly_testkit::free_port();
    start_tansu(bin, tmp.path(), port).map(drop)
}

/// One service process and how to start it again.
struct Service {
    name: String,
    role: &'static str,
    dir: PathBuf,
    env: Vec<(String, String)>,
    generation: u32,
    app: Option<TestApp>,
    /// Not before this instant (after a start that failed).
    retry_at: Instant,
}

impl Service {
    fn new(name: String, role: &'static str, dir: PathBuf, env: Vec<(String, String)>) -> Self {
        Self {
            name,
            role,
            dir,
            env,
            generation: 0,
            app: None,
            retry_at: Instant::now(),
        }
    }

    async fn start(&mut self) -> Result<(), String> {
        let started = try_start_role(self.role, &self.dir, &as_refs(&self.env), self.generation);
        self.generation += 1;
        let started = started.await;
        match started {
            Ok(app) => {
                self.app = Some(app);
                Ok(())
            }
            Err(why) => {
                self.retry_at = Instant::now() + Duration::from_millis(500);
                Err(why)
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut app) = self.app.take() {
            app.kill();
        }
    }

    /// Running: started, not killed, not exited.
    fn running(&mut self) -> bool {
        match &mut self.app {
            None => false,
            Some(app) => match app.exited() {
                None => true,
                Some(_) => {
                    self.app = None;
                    self.retry_at = Instant::now() + Duration::from_millis(500);
                    false
                }
            },
        }
    }

    fn logs(&self) -> String {
        logs_in(&self.dir)
    }
}

/// What the supervisor saw.
#[derive(Default)]
struct Restarts {
    /// Starts that failed (the process exited or did not come up).
    failed: usize,
    /// Processes that exited by themselves (not killed by us).
    exited: usize,
    last_failure: Option<String>,
}

/// Start every service that is not running (and may be tried again now).
async fn supervise(services: &mut [Service], restarts: &mut Restarts) {
    for s in services.iter_mut() {
        let was_up = s.app.is_some();
        if s.running() || Instant::now() < s.retry_at {
            continue;
        }
        if was_up {
            restarts.exited += 1;
        }
        if let Err(why) = s.start().await {
            restarts.failed += 1;
            restarts.last_failure = Some(format!("{}: {}", s.name, tail(&why, 5)));
        }
    }
}

/// The load: each order is one POST with its own `Idempotency-Key`, retried
/// with the same key and body on the other orders process after a connection
/// error, a timeout or a 5xx.
struct Load {
    http: reqwest::Client,
    urls: Vec<String>,
    tokens: Vec<String>,
    retries: AtomicUsize,
    server_errors: AtomicUsize,
}

impl Load {
    async fn create(&self, n: usize) -> Result<String, String> {
        let token = &self.tokens[n % self.tokens.len()];
        let key = format!("chaos-{n}");
        let deadline = Instant::now() + ORDER_DEADLINE;
        let mut attempt = 0usize;
        loop {
            let url = &self.urls[(n + attempt) % self.urls.len()];
            let why = match self
                .http
                .post(format!("{url}/orders/"))
                .bearer_auth(token)
                .header("Idempotency-Key", &key)
                .json(&one_item_order())
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => {
                    let body: Value = match r.json().await {
                        Ok(b) => b,
                        // The process died while sending the body.
                        Err(e) => Value::String(format!("unreadable body: {e}")),
                    };
                    match body["id"].as_str() {
                        Some(id) => return Ok(id.to_string()),
                        None => format!("200 without an id: {body}"),
                    }
                }
                Ok(r) if r.status().is_server_error() => {
                    self.server_errors.fetch_add(1, Ordering::Relaxed);
                    format!("{} {}", r.status(), r.text().await.unwrap_or_default())
                }
                Ok(r) => {
                    let status = r.status();
                    return Err(format!(
                        "order {n} (key {key}): {status} {}",
                        r.text().await.unwrap_or_default()
                    ));
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "order {n} (key {key}) not created within {ORDER_DEADLINE:?}: {why}"
                ));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50 * attempt.min(10) as u64)).await;
        }
    }
}

async fn chaos(flavour: Flavour) {
    let label = flavour.name();
    let tansu = match flavour {
        Flavour::Embedded => None,
        Flavour::Kafka => {
            let Some(bin) = tansu_binary() else {
                let _: Option<()> = orderly_testkit::missing(
                    "tansu",
                    "not on PATH nor in ~/.cargo/bin; scripts/with-tansu installs it",
                );
                return;
            };
            if let Err(why) = tansu_has_sqlite(&bin) {
                let _: Option<()> = orderly_testkit::missing(
                    "tansu with SQLite storage",
                    format!(
                        "{} cannot keep data across a restart ({why}); \
                         cargo install tansu --locked --features dynostore,libsql",
                        bin.display()
                    ),
                );
                return;
            }
            Some(bin)
        }
    };
    let Some(orders_db) = TestDatabase::create().await else {
        return;
    };
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    let keys = RedisKeys::new();
    let (mut rng, seed) = Rng::from_env("ORDERLY_CHAOS_SEED", &format!("chaos[{label}]"));
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();

    let mut broker = Broker {
        flavour,
        dir: tmp.path().join("broker"),
        port: orderly_testkit::free_port(),
        tansu,
        child: None,
    };
    broker.start();
    let topic_prefix = format!("t{}-", uuid::Uuid::new_v4().simple());

    let auth = start_role(
        "auth",
        &tmp.path().join("auth"),
        &[("RUST_LOG", "info,sqlx=warn,access=warn")],
        0,
    )
    .await;
    let mut common: Vec<(String, String)> = vec![
        ("JOB_QUEUE".into(), "redis".into()),
        // The compat alias rather than REDIS_URL: only the queue on Redis.
        ("CELERY_BROKER_URL".into(), keys.queue_url()),
        ("JOB_QUEUE_PREFIX".into(), keys.prefix.clone()),
        ("ORDERS_DATABASE_URL".into(), orders_db.url.clone()),
        (
            "ORDERS_PUBLIC_KEY_PATH".into(),
            auth.data_dir.join("keys/public.pem").display().to_string(),
        ),
        ("WORKER_PAYMENT_DELAY_MS".into(), "5".into()),
        ("WORKER_VISIBILITY_TIMEOUT_SECONDS".into(), "5".into()),
        ("JOB_RETRY_BASE_MS".into(), "100".into()),
        ("ORDERS_RATE_LIMIT".into(), "1000000/minute".into()),
        ("RUST_LOG".into(), "info,sqlx=warn,access=warn".into()),
    ];
    common.extend(broker.service_env(&topic_prefix));

    let mut services = Vec::new();
    let mut urls = Vec::new();
    for i in 0..ORDERS_PROCESSES {
        // A fixed port, as behind a load balancer: the restart listens there again.
        let port = orderly_testkit::free_port();
        let mut env = common.clone();
        env.push(("ORDERS_BIND".into(), format!("127.0.0.1:{port}")));
        urls.push(format!("http://127.0.0.1:{port}"));
        services.push(Service::new(
            format!("orders-{i}"),
            "orders",
            tmp.path().join(format!("orders-{i}")),
            env,
        ));
    }
    let mut consumer_env = common.clone();
    // Started again under the same id, it takes over its partitions at once
    // (otherwise a Kafka group waits for the dead member's session to end).
    consumer_env.push(("KAFKA_GROUP_INSTANCE_ID".into(), "chaos-consumer-0".into()));
    services.push(Service::new(
        "consumer".into(),
        "consumer",
        tmp.path().join("consumer"),
        consumer_env,
    ));
    for i in 0..WORKERS {
        services.push(Service::new(
            format!("worker-{i}"),
            "worker",
            tmp.path().join(format!("worker-{i}")),
            common.clone(),
        ));
    }
    // The first orders process migrates the database before the others start.
    for s in services.iter_mut() {
        s.start()
            .await
            .unwrap_or_else(|why| panic!("{} did not start: {why}", s.name));
    }

    let audit = Audit::start(broker.reader(&topic_prefix).await).await;
    let mut tokens = Vec::new();
    for u in 0..USERS {
        tokens.push(auth.user(&format!("chaos-{u}@example.com")).await.1);
    }
    let load = Arc::new(Load {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        urls,
        tokens,
        retries: AtomicUsize::new(0),
        server_errors: AtomicUsize::new(0),
    });
    let created: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (load, created, next) = (load.clone(), created.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= ORDERS {
                        return Ok::<(), String>(());
                    }
                    let release = started + LOAD_SPAN.mul_f64(n as f64 / ORDERS as f64);
                    tokio::time::sleep_until(release.into()).await;
                    let id = load.create(n).await?;
                    created.lock().unwrap().insert(n, id);
                }
            })
        })
        .collect();

    // The chaos: a kill every 1-3 s, the broker down once for BROKER_DOWN.
    let victims = services.len() as u64;
    let broker_stop_at = started + rng.between(Duration::from_secs(3), LOAD_SPAN / 2);
    let mut broker_stopped_at: Option<Instant> = None;
    let mut broker_stops = 0;
    let mut broker_back = false;
    let mut next_kill = started + rng.between(Duration::from_secs(1), Duration::from_secs(3));
    let mut kills: Vec<String> = Vec::new();
    let mut restarts = Restarts::default();
    loop {
        let now = Instant::now();
        if broker_stopped_at.is_none() && now >= broker_stop_at {
            broker.stop();
            broker_stops += 1;
            broker_stopped_at = Some(now);
            kills.push(format!("broker@{:.1}s", (now - started).as_secs_f64()));
        }
        if !broker_back && broker_stopped_at.is_some_and(|at| now - at >= BROKER_DOWN) {
            broker.start();
            broker_back = true;
        }
        if now >= next_kill && now < started + CHAOS_SPAN {
            let victim = &mut services[rng.below(victims) as usize];
            victim.kill();
            kills.push(format!(
                "{}@{:.1}s",
                victim.name,
                (now - started).as_secs_f64()
            ));
            next_kill = now + rng.between(Duration::from_secs(1), Duration::from_secs(3));
        }
        supervise(&mut services, &mut restarts).await;
        if broker_back && now >= started + CHAOS_SPAN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let service_kills = kills.len() - broker_stops;
    println!("chaos[{label}] schedule (seed {seed}): {}", kills.join(" "));

    let dump = |services: &[Service], broker: &Broker| {
        let mut out = String::new();
        for s in services {
            out.push_str(&format!("=== {}\n{}\n", s.name, tail(&s.logs(), 40)));
        }
        let broker_log = match broker.flavour {
            Flavour::Embedded => "broker.log",
            Flavour::Kafka => "tansu.log",
        };
        out.push_str(&format!(
            "=== broker\n{}\n",
            tail(
                &std::fs::read_to_string(broker.dir.join(broker_log)).unwrap_or_default(),
                40
            )
        ));
        out
    };

    // Every order is created (the clients retry through the chaos).
    for client in clients {
        let outcome = tokio::time::timeout(ORDER_DEADLINE, client)
            .await
            .expect("the clients finish")
            .expect("a client panicked");
        if let Err(why) = outcome {
            panic!(
                "chaos[{label}] (seed {seed}): {why}\n{}",
                dump(&services, &broker)
            );
        }
    }
    let created = created.lock().unwrap().clone();
    let ids: HashSet<String> = created.values().cloned().collect();
    assert_eq!(created.len(), ORDERS, "every order got a response");
    assert_eq!(
        ids.len(),
        ORDERS,
        "chaos[{label}] (seed {seed}): a retried key answered with another order"
    );

    // Everything settles: every order PAID, the outbox sent, the queue empty.
    let pool = sqlx::PgPool::connect(&orders_db.url).await.unwrap();
    let mut config = RedisQueueConfig::new(keys.queue_url());
    config.prefix = keys.prefix.clone();
    let queue = RedisQueue::connect(config).await.expect("the run's queue");
    let deadline = Instant::now() + SETTLE;
    let mut progress_at = Instant::now();
    loop {
        supervise(&mut services, &mut restarts).await;
        let n = paid(&pool).await;
        let unsent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        let stats = queue.stats("process_order").await.unwrap();
        let queue_busy = stats.waiting + stats.running + stats.retrying;
        if n == ORDERS as i64 && unsent == 0 && queue_busy == 0 {
            break;
        }
        if progress_at.elapsed() >= Duration::from_secs(10) {
            progress_at = Instant::now();
            println!(
                "chaos[{label}] settling at {:.0}s: {n} PAID, {unsent} events unsent, queue {stats:?}",
                started.elapsed().as_secs_f64()
            );
        }
        if Instant::now() > deadline {
            // Did the unpaid orders' events reach the broker (the audit group)?
            let unpaid: Vec<String> =
                sqlx::query_scalar("SELECT id::text FROM orders WHERE status <> 'PAID'")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let audited = {
                let seen = audit.seen.lock().unwrap();
                unpaid.iter().filter(|id| seen.contains_key(*id)).count()
            };
            let dump = dump(&services, &broker);
            services.iter_mut().for_each(Service::kill);
            broker.stop();
            panic!(
                "chaos[{label}] (seed {seed}): after {SETTLE:?} {n} of {ORDERS} PAID \
                 ({audited} of the {} unpaid have their new_order event in the audit group), \
                 {unsent} events unsent, queue {stats:?}; restarts failed {} (last: {:?}); \
                 data kept in {}\n{dump}",
                unpaid.len(),
                restarts.failed,
                restarts.last_failure,
                tmp.keep().display(),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled = started.elapsed();

    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, ORDERS as i64, "orders in the database");
    let in_db: HashSet<String> = sqlx::query_scalar("SELECT id::text FROM orders")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(in_db, ids, "the database holds exactly the orders created");
    let not_once: Vec<(String, i64)> = sqlx::query_as(
        "SELECT o.id::text, COUNT(h.order_id) FROM orders o \
         LEFT JOIN order_status_history h \
           ON h.order_id = o.id AND h.from_status = 'PENDING' AND h.to_status = 'PAID' \
         GROUP BY o.id HAVING COUNT(h.order_id) <> 1 LIMIT 10",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        not_once.is_empty(),
        "chaos[{label}] (seed {seed}): orders without exactly one PENDING -> PAID: {not_once:?}"
    );
    let pending_to_paid: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_status_history WHERE from_status = 'PENDING' AND to_status = 'PAID'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending_to_paid, ORDERS as i64);
    let dead = queue.stats("process_order").await.unwrap().dead;
    assert_eq!(dead, 0, "dead process_order jobs");
    pool.close().await;

    // Every order's new_order event reached the independent group.
    let (events, unreadable) = audit.finish(&ids).await;
    let missing: Vec<&String> = ids.iter().filter(|id| !events.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "chaos[{label}] (seed {seed}): {} orders have no new_order event, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let unknown: Vec<&String> = events.keys().filter(|id| !ids.contains(*id)).collect();
    assert!(
        unknown.is_empty() && unreadable == 0,
        "new_order events for orders that do not exist: {unknown:?}, unreadable: {unreadable}"
    );
    let dups: usize = events.values().map(|n| n - 1).sum();

    println!(
        "chaos[{label}]: orders={orders} paid={} pending_to_paid={pending_to_paid} events={} (dup {dups}) \
         kills={service_kills} retries={} 5xx={} broker_stops={broker_stops} \
         failed_starts={} self_exits={} all_paid_after={:.1}s total={:.1}s seed={seed}",
        ORDERS,
        events.len(),
        load.retries.load(Ordering::Relaxed),
        load.server_errors.load(Ordering::Relaxed),
        restarts.failed,
        restarts.exited,
        settled.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
    );
    for s in services.iter_mut() {
        s.kill();
    }
    broker.stop();
    drop(auth);
}

/// An independent reader of `new_order`: a consumer group of its own, created
/// before the first order (the embedded broker drops a message once every
/// group that existed settled it), reading through the whole run, broker
/// stop included.
struct Audit {
    bus: Arc<dyn Bus>,
    /// order id -> `new_order` events received.
    seen: Arc<Mutex<HashMap<String, usize>>>,
    unreadable: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Audit {
    async fn start(bus: Arc<dyn Bus>) -> Self {
        let group = format!("chaos-audit-{}", uuid::Uuid::new_v4().simple());
        let options = GroupOptions {
            ack_wait: Duration::from_secs(30),
            max_deliveries: 100,
            max_in_flight: 256,
        };
        let mut subscription = bus
            .subscribe_group("new_order", &group, options)
            .await
            .expect("audit subscription on new_order");
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let unreadable = Arc::new(AtomicUsize::new(0));
        let (s, u) = (seen.clone(), unreadable.clone());
        let task = tokio::spawn(async move {
            while let Some(delivery) = subscription.next().await {
                let event: Value =
                    serde_json::from_slice(&delivery.message.payload).unwrap_or_default();
                match event["order_id"].as_str() {
                    Some(id) => *s.lock().unwrap().entry(id.to_string()).or_default() += 1,
                    None => {
                        u.fetch_add(1, Ordering::Relaxed);
                    }
                }
                delivery.ack();
            }
        });
        Self {
            bus,
            seen,
            unreadable,
            task,
        }
    }

    /// Waits (bounded) until every id in `expected` was seen; returns the
    /// counts per order id and how many events could not be read.
    async fn finish(self, expected: &HashSet<String>) -> (HashMap<String, usize>, usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let complete = {
                let seen = self.seen.lock().unwrap();
                expected.iter().all(|id| seen.contains_key(id))
            };
            if complete {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.task.abort();
        self.bus.close().await;
        let seen = self.seen.lock().unwrap().clone();
        (seen, self.unreadable.load(Ordering::Relaxed))
    }
}
