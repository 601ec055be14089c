//! Start the built `orderly` binary on a fresh data directory and talk to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct TestApp {
    pub auth_url: String,
    pub orders_url: String,
    /// The ops listener (`ORDERLY_OPS_BIND`, a free port unless the test says
    /// otherwise): `/health`, `/ready`, `/metrics` and, with the orders
    /// database, the console.
    pub ops_url: String,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

/// Settings for a test run: fast payment, generous rate limit unless a test
/// is about the limit, ports chosen by the OS.
pub fn default_env() -> Vec<(String, String)> {
    [
        ("AUTH_BIND", "127.0.0.1:0"),
        ("ORDERS_BIND", "127.0.0.1:0"),
        ("WORKER_PAYMENT_DELAY_MS", "200"),
        ("ORDERS_RATE_LIMIT", "10000/minute"),
        ("AUTH_REGISTER_RATE_LIMIT", "10000/minute"),
        ("JOB_RETRY_BASE_MS", "100"),
        // Each process its own ops listener (and console) on a free port,
        // rather than `orderly all`'s fixed default.
        ("ORDERLY_OPS_BIND", "127.0.0.1:0"),
        ("RUST_LOG", "info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let mut app = start(&data_dir, overrides, 0).await;
    app._tmp = Some(tmp);
    app
}

/// Start on an existing data directory (restart tests); `generation` names the log file.
pub fn start(
    data_dir: &Path,
    overrides: &[(&str, &str)],
    generation: u32,
) -> impl Future<Output = TestApp> + use<> {
    start_role("all", data_dir, overrides, generation)
}

/// Like [`start`], for one role (`all`, `auth` or `orders`); waits for the URLs
/// that role announces (the others stay empty).
pub fn start_role(
    role: &'static str,
    data_dir: &Path,
    overrides: &[(&str, &str)],
    generation: u32,
) -> impl Future<Output = TestApp> + use<> {
    let started = try_start_role(role, data_dir, overrides, generation);
    async move { started.await.unwrap_or_else(|why| panic!("{why}")) }
}

/// [`start_role`] that returns why the process did not come up (it exited, or
/// announced nothing within 60 s) instead of panicking: for supervisors that
/// start a process again, e.g. while its broker is down.
pub fn try_start_role(
    role: &'static str,
    data_dir: &Path,
    overrides: &[(&str, &str)],
    generation: u32,
) -> impl Future<Output = Result<TestApp, String>> + use<> {
    let wants_auth = matches!(role, "all" | "auth");
    let wants_orders = matches!(role, "all" | "orders");
    let data_dir = data_dir.to_path_buf();
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Every role with the bus announces its ops listener when it has one.
    let ops_bind = overrides
        .iter()
        .rev()
        .chain(default_env().iter())
        .find(|(k, _)| k == "ORDERLY_OPS_BIND")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let wants_ops =
        matches!(role, "all" | "orders" | "consumer" | "worker") && !ops_bind.is_empty();
    async move {
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let log_path = data_dir.join(format!("orderly-{generation}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderly"));
        cmd.arg(role)
            .current_dir(data_dir.parent().unwrap_or(&data_dir))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ORDERLY_DATA_DIR", &data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in default_env() {
            cmd.env(k, v);
        }
        // Tests that set REDIS_URL get the Redis job queue: keep their queues
        // apart (the same data dir, e.g. after a restart, keeps its queue).
        cmd.env("JOB_QUEUE_PREFIX", job_queue_prefix(&data_dir));
        for (k, v) in &overrides {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start orderly");
        let stdout = child.stdout.take().expect("stdout");
        // The binary prints "  auth: http://127.0.0.1:PORT  (docs: …)" per service.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut auth_url = None;
        let mut orders_url = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ops_url = None;
        while (wants_auth && auth_url.is_none())
            || (wants_orders && orders_url.is_none())
            || (wants_ops && ops_url.is_none())
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    return Err(format!(
                        "orderly {role} did not announce its URLs; log:\n{log}"
                    ));
                }
            };
            let url = line.split_whitespace().nth(1).map(str::to_string);
            if line.trim_start().starts_with("auth:") {
                auth_url = url;
            } else if line.trim_start().starts_with("orders:") {
                orders_url = url;
            } else if line.trim_start().starts_with("ops:") {
                ops_url = url;
            }
        }
        Ok(TestApp {
            auth_url: auth_url.unwrap_or_default(),
            orders_url: orders_url.unwrap_or_default(),
            ops_url: ops_url.unwrap_or_default(),
            data_dir,
            http: reqwest::Client::new(),
            child: Some(child),
            _tmp: None,
        })
    }
}

impl TestApp {
    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status once the process has ended by itself (`None` while it
    /// runs, and after [`TestApp::kill`]).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        logs_in(&self.data_dir)
    }

    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/auth/register/", self.auth_url))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("register request")
    }

    pub async fn token_response(&self, email: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/auth/token/", self.auth_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "username={}&password={}",
                urlencode(email),
                urlencode(password)
            ))
            .send()
            .await
            .expect("token request")
    }

    /// Register a fresh user and return (user id, access token).
    pub async fn user(&self, email: &str) -> (i64, String) {
        let r = self.register(email, "secret-password").await;
        assert_eq!(r.status(), 200, "register {email}");
        let id = r.json::<Value>().await.unwrap()["user_id"]
            .as_i64()
            .unwrap();
        let t = self.token_response(email, "secret-password").await;
        assert_eq!(t.status(), 200);
        let token = t.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        (id, token)
    }

    pub async fn create_order(&self, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/orders/", self.orders_url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("create order")
    }

    pub async fn get_order(&self, token: &str, id: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/orders/{id}/", self.orders_url))
            .bearer_auth(token)
            .send()
            .await
            .expect("get order")
    }

    /// `GET /orders/user/{user_id}/{query}` (query: "" or "?limit=…").
    pub async fn list_orders(&self, token: &str, user_id: i64, query: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/orders/user/{user_id}/{query}", self.orders_url))
            .bearer_auth(token)
            .send()
            .await
            .expect("list orders")
    }

    /// Poll until the order has `status` (or panic after `within`).
    pub async fn wait_for_status(
        &self,
        token: &str,
        id: &str,
        status: &str,
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let body: Value = self.get_order(token, id).await.json().await.unwrap();
            if body["status"] == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} never became {status}: {body}\nlogs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The logs once `ready` holds for them, or after 5 s whatever they are then.
/// A process writes its info lines in batches (up to
/// `orderly_core::telemetry::FLUSH_EVERY` late), so a line about something that
/// just happened may not be in the file yet.
pub async fn logs_when(logs: impl Fn() -> String, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = logs();
        if ready(&text) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every generation's log of the process on `data_dir` (`orderly-<n>.log`), in order.
pub fn logs_in(data_dir: &Path) -> String {
    let mut all = String::new();
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "log")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("orderly-"))
            })
            .collect();
        // orderly-2.log before orderly-10.log.
        paths.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
        for p in paths {
            all.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
    }
    all
}

/// `orderly-test-<temp dir name>`: unique per test, stable across restarts.
pub fn job_queue_prefix(data_dir: &Path) -> String {
    let unique = data_dir
        .parent()
        .and_then(Path::file_name)
        .map(|n| {
            n.to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        })
        .unwrap_or_default();
    format!("orderly-test-{unique}")
}

pub fn one_item_order() -> Value {
    json!({"items": [{"name": "Test Item", "price": 100.0, "quantity": 1}], "total_price": 100.0})
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
    }
}
