//! The operator's console on `orderly all`: in headless Chromium, an order
//! stranded on purpose (its payment fails until the test lets it pass, and
//! one attempt is all a job gets) is found from the overview and requeued
//! until it is PAID; over plain HTTP, cross-site POSTs and a non-loopback
//! listener without credentials are refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::helpers::{TestApp, one_item_order, spawn_app_with};

/// Makes `user`'s PENDING → PAID changes fail, as a payment provider that
/// declines them would.
fn decline_payments_of(user: i64) -> String {
    format!(
        "CREATE TRIGGER decline_payments BEFORE UPDATE OF status ON orders \
         WHEN NEW.status = 'PAID' AND NEW.user_id = {user} \
         BEGIN SELECT RAISE(ABORT, 'payment declined (test)'); END"
    )
}

async fn orders_db(app: &TestApp, sql: &str) {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", app.data_dir.join("orders.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("orders.db");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    db.close().await.ok();
}

/// A session cookie of the console (loopback: the first page opens one).
async fn console_session(app: &TestApp) -> String {
    let r = app
        .http
        .get(format!("{}/console", app.ops_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the console on loopback needs no sign-in");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn overview(app: &TestApp, cookie: &str) -> Value {
    app.http
        .get(format!("{}/console/api/overview", app.ops_url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the overview's JSON until `field`'s text is `text`.
async fn wait_for_field(app: &TestApp, cookie: &str, field: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = overview(app, cookie).await;
        if o["fields"][field]["text"] == text {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{field} never became {text}: {o}\nlogs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `orderly all` with one order whose only job attempt failed: the job is dead.
async fn app_with_a_dead_job() -> (TestApp, String, String, String) {
    let app = spawn_app_with(&[
        ("JOB_MAX_RETRIES", "0"),
        // The reconciler would enqueue nothing new (the job exists), but it
        // keeps out of the way.
        ("RECONCILE_AFTER_SECONDS", "3600"),
        ("WORKER_PAYMENT_DELAY_MS", "50"),
    ])
    .await;
    assert!(!app.ops_url.is_empty(), "orderly all announces its ops URL");
    let (user, token) = app.user("console-operator@example.com").await;
    orders_db(&app, &decline_payments_of(user)).await;
    let created = app.create_order(&token, one_item_order()).await;
    assert_eq!(created.status(), 200);
    let order: Value = created.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_string();
    let cookie = console_session(&app).await;
    wait_for_field(&app, &cookie, "queue_dead", "1").await;
    // Another customer's order goes through. Its write also ends the failed
    // payment's SQLite transaction, which holds the write lock until the
    // database's next write (orderly-db's writer rolls an abandoned
    // transaction back when it is next used).
    let (_, other) = app.user("console-customer@example.com").await;
    let paid = app.create_order(&other, one_item_order()).await;
    let paid: Value = paid.json().await.unwrap();
    let paid = paid["id"].as_str().unwrap();
    app.wait_for_status(&other, paid, "PAID", Duration::from_secs(30))
        .await;
    // The payment provider is back; the dead job stays dead until someone acts.
    orders_db(&app, "DROP TRIGGER decline_payments").await;
    (app, token, id, cookie)
}

#[tokio::test]
async fn a_cross_site_post_and_a_post_without_the_form_token_are_refused() {
    let (app, _token, _id, cookie) = app_with_a_dead_job().await;
    let job = dead_job_id(&app, &cookie).await;
    let stuck = app
        .http
        .get(format!("{}/console/stuck", app.ops_url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = stuck.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = stuck[at..].split('"').next().unwrap();
    let post = |form: String, origin: &'static str| {
        app.http
            .post(format!("{}/console/action", app.ops_url))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let form = format!("csrf={csrf}&action=jobs-requeue&id={job}");
    let r = post(form.clone(), "http://attacker.example").await.unwrap();
    assert_eq!(r.status(), 403, "another site's form");
    let r = post(format!("action=jobs-requeue&id={job}"), "null")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let ops_origin: &'static str = app.ops_url.clone().leak();
    let r = post(format!("action=jobs-requeue&id={job}"), ops_origin)
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token");
    wait_for_field(&app, &cookie, "queue_dead", "1").await;
    // The same POST from the console's own origin with its token goes through.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .post(format!("{}/console/action", app.ops_url))
        .header("cookie", &cookie)
        .header("origin", &app.ops_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    wait_for_field(&app, &cookie, "queue_dead", "0").await;
    let logs = super::helpers::logs_when(|| app.logs(), |l| l.contains("console action")).await;
    assert!(
        logs.lines()
            .any(|l| l.contains("console action") && l.contains("loopback") && l.contains(&job)),
        "the action is logged with who did it:\n{logs}"
    );
}

async fn dead_job_id(app: &TestApp, cookie: &str) -> String {
    let stuck = app
        .http
        .get(format!("{}/console/stuck", app.ops_url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = stuck.find("name=\"id\" value=\"").expect("a dead job row") + 17;
    stuck[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn off_loopback_the_console_needs_its_token_and_without_one_is_not_served() {
    let app = spawn_app_with(&[("ORDERLY_OPS_BIND", "0.0.0.0:0")]).await;
    let console = format!("{}/console", app.ops_url);
    let r = app.http.get(&console).send().await.unwrap();
    assert_eq!(r.status(), 403, "no token configured: refused");
    let r = app
        .http
        .get(format!("{}/console/api/overview", app.ops_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let health = app
        .http
        .get(format!("{}/health", app.ops_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health stays served");

    let app = spawn_app_with(&[
        ("ORDERLY_OPS_BIND", "0.0.0.0:0"),
        ("ORDERLY_CONSOLE_TOKEN", "console-test-token"),
    ])
    .await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(format!("{}/console", app.ops_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/login");
    let login = |token: &str| {
        no_redirect
            .post(format!("{}/console/login", app.ops_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
    };
    assert_eq!(login("wrong").await.unwrap().status(), 401);
    let r = login("console-test-token").await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap();
    let o = overview(&app, cookie).await;
    assert!(o["fields"]["status_PENDING"].is_object(), "{o}");
}

// --- In a browser --------------------------------------------------------------

/// chromedriver, started on a free port for one test and killed by its PID.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    /// A session still open (the test failed midway) is ended first, so
    /// chromedriver stops the browser it started; then chromedriver itself.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            use std::io::{Read as _, Write as _};
            let addr = self.url.trim_start_matches("http://").to_string();
            if let Ok(mut conn) = std::net::TcpStream::connect(&addr) {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    conn,
                    "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Debian binaries (packages `chromium` and `chromium-driver`).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        names.iter().find_map(|n| {
            std::env::split_paths(&path)
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
    };
    let chromium = find(&["chromium", "chromium-browser"])?;
    let driver = find(&["chromedriver"])?;
    Some((chromium, driver))
}

impl Driver {
    async fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = orderly_testkit::free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            session: None,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         format!("--user-data-dir={}", driver._profile.path().display())]
            }
        }}});
        let v = driver.call("POST", "/session", caps).await;
        driver.session = Some(v["sessionId"].as_str().expect("a session").to_string());
        driver
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = match &self.session {
            Some(s) => format!("{}/session/{s}{path}", self.url),
            None => format!("{}{path}", self.url),
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(v["value"]["error"].is_null(), "{method} {path}: {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url})).await;
    }

    /// The element `css` selects, waited for up to 10 s.
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = format!(
                "{}/session/{}/element",
                self.url,
                self.session.as_ref().unwrap()
            );
            let v: Value = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = v["value"]["element-6066-11e4-a52e-4f735466cecf"].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element {css}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call("POST", &format!("/element/{el}/click"), json!({}))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        let v = self
            .call("GET", &format!("/element/{el}/text"), Value::Null)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn current_url(&self) -> String {
        let v = self.call("GET", "/url", Value::Null).await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn screenshot(&self, to: &Path) {
        let v = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::write(to, png).unwrap();
    }

    async fn quit(&mut self) {
        if self.session.is_some() {
            self.call("DELETE", "", Value::Null).await;
            self.session = None;
        }
    }
}

#[tokio::test]
async fn in_a_browser_the_overview_leads_to_a_dead_job_whose_requeue_gets_the_order_paid() {
    let Some((chromium, chromedriver)) = browser() else {
        orderly_testkit::missing::<()>(
            "headless Chromium (Debian packages chromium and chromium-driver)",
            "chromium or chromedriver is not in PATH; scripts/test installs them",
        );
        return;
    };
    let (app, token, id, _cookie) = app_with_a_dead_job().await;
    // Where the screenshots go: a temp dir, or where ORDERLY_CONSOLE_SCREENSHOTS says
    // (docs/console holds the ones the docs show).
    let shots_tmp = tempfile::tempdir().unwrap();
    let shots = std::env::var_os("ORDERLY_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| shots_tmp.path().to_path_buf());
    std::fs::create_dir_all(&shots).unwrap();
    let mut b = Driver::start(&chromium, &chromedriver).await;

    // The overview says a job is dead and links to it.
    b.goto(&format!("{}/console", app.ops_url)).await;
    assert_eq!(b.text("[data-field=queue_dead]").await, "1");
    // The figures are refreshed in place: the page's time changes by itself.
    let first = b.text("#updated").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.text("#updated").await == first {
        assert!(
            Instant::now() < deadline,
            "the overview never refreshed itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.screenshot(&shots.join("overview.png")).await;

    // Click 1: the dead jobs tile. Click 2: the order of the dead job.
    b.click("a[href='/console/stuck#jobs']").await;
    let job_row = b.text("#jobs table tbody tr").await;
    assert!(
        job_row.contains(&id) && job_row.contains("payment declined (test)"),
        "{job_row}"
    );
    b.screenshot(&shots.join("stuck.png")).await;
    b.click(&format!("#jobs a[href='/console/orders/{id}']"))
        .await;
    assert_eq!(b.text("#status").await, "PENDING");
    assert!(
        b.current_url()
            .await
            .ends_with(&format!("/console/orders/{id}"))
    );

    // Click 3: requeue. The order gets PAID.
    b.click("#job button").await;
    assert!(b.text(".flash").await.contains("Requeued job"));
    app.wait_for_status(&token, &id, "PAID", Duration::from_secs(30))
        .await;
    b.goto(&format!("{}/console/orders/{id}", app.ops_url))
        .await;
    assert_eq!(b.text("#status").await, "PAID");
    assert!(b.text("#job").await.contains("is not among the dead jobs"));
    b.screenshot(&shots.join("order.png")).await;
    b.quit().await;
    eprintln!("screenshots in {}", shots.display());
}
