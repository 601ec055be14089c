//! The production shape: orderly on PostgreSQL (two databases) and
//! Redis (cache in DB 0, limiter in DB 2), bus and queue still embedded. Each
//! test makes fresh databases (dropped afterwards) and unique Redis keys; with
//! CI=true a missing PostgreSQL or Redis fails the test, otherwise it is skipped
//! with a reason on stderr.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orderly_testkit::{PrivateRedis, TestDatabase};
use serde_json::{Value, json};

use crate::e2e::run_old_script;
use crate::helpers::{TestApp, one_item_order, spawn_app_with, start_role};

/// Two fresh databases and the variables pointing orderly at them.
struct Databases {
    auth: TestDatabase,
    orders: TestDatabase,
}

impl Databases {
    async fn create() -> Option<Self> {
        Some(Self {
            auth: TestDatabase::create().await?,
            orders: TestDatabase::create().await?,
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AUTH_DATABASE_URL".into(), self.auth.url.clone()),
            ("ORDERS_DATABASE_URL".into(), self.orders.url.clone()),
        ]
    }
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The sum of a Prometheus counter over all its label sets (0 when absent).
async fn counter(app: &TestApp, orders_url: &str, name: &str) -> f64 {
    let text = app
        .http
        .get(format!("{orders_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_readme_script_prints_paid_on_postgres_and_redis() {
    let Some(dbs) = Databases::create().await else {
        return;
    };
    let Some(_) = orderly_testkit::shared_redis().await else {
        return;
    };
    let redis_url = orderly_testkit::redis_url();
    let prefix = unique_prefix();
    let mut env = dbs.env();
    env.extend([
        ("REDIS_URL".to_string(), redis_url.clone()),
        ("ORDERS_RATE_LIMIT_KEY_PREFIX".into(), prefix.clone()),
        // The real 2 s payment and the real limit: the defaults the script meets.
        ("WORKER_PAYMENT_DELAY_MS".into(), "2000".into()),
        ("ORDERS_RATE_LIMIT".into(), "10/minute".into()),
    ]);
    let app = spawn_app_with(&as_refs(&env)).await;

    let (auth, orders) = (app.auth_url.clone(), app.orders_url.clone());
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth, &orders))
        .await
        .unwrap();
    assert!(
        output.contains(r#"{"msg":"User created","user_id":1}"#),
        "{output}\nlogs:\n{}",
        app.logs()
    );
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}",
        app.logs()
    );
    let order_id = output
        .lines()
        .find_map(|l| l.strip_prefix("Order ID: "))
        .map(str::trim)
        .expect("the script prints the order id")
        .to_string();

    // `redis-cli -n 0 TTL order:<id>`: the worker refreshed the shared entry itself.
    let mut redis = redis_conn(&format!("{redis_url}/0")).await;
    let key = format!("order:{order_id}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=300).contains(&ttl), "TTL {key} = {ttl}");
    let cached: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let cached: Value = serde_json::from_str(&cached).unwrap();
    assert_eq!(cached["status"], "PAID", "{cached}");
    assert_eq!(cached["id"], order_id.as_str());

    // The order lives in the orders database, the user in the auth database.
    let pool = sqlx::PgPool::connect(&dbs.orders.url).await.unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1::uuid")
        .bind(&order_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "PAID");
    pool.close().await;
    let pool = sqlx::PgPool::connect(&dbs.auth.url).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
    pool.close().await;

    let ready = app
        .http
        .get(format!("{}/ready", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    for part in ["database", "cache", "rate_limiter", "bus"] {
        assert_eq!(ready["checks"][part], "ok", "{ready}");
    }

    let mut limiter = redis_conn(&format!("{redis_url}/2")).await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}127.0.0.1"))
        .query_async(&mut limiter)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_orders_processes_share_the_limit_and_see_each_others_writes_at_once() {
    let Some(dbs) = Databases::create().await else {
        return;
    };
    let Some(_) = orderly_testkit::shared_redis().await else {
        return;
    };
    let redis_url = orderly_testkit::redis_url();
    let prefix = unique_prefix();
    let mut env = dbs.env();
    env.extend([
        ("REDIS_URL".to_string(), redis_url.clone()),
        ("ORDERS_RATE_LIMIT_KEY_PREFIX".into(), prefix.clone()),
        ("ORDERS_RATE_LIMIT".into(), "10/minute".into()),
        // Keeps the worker from paying the order while the test changes it.
        ("WORKER_PAYMENT_DELAY_MS".into(), "600000".into()),
    ]);
    let a = spawn_app_with(&as_refs(&env)).await;
    // B: another process with its own data directory (the embedded broker is
    // per directory), sharing PostgreSQL and Redis, verifying A's tokens.
    let b_dir = tempfile::tempdir().unwrap();
    let public_key = a.data_dir.join("keys/public.pem");
    env.push((
        "ORDERS_PUBLIC_KEY_PATH".into(),
        public_key.display().to_string(),
    ));
    let b = start_role("orders", &b_dir.path().join("data"), &as_refs(&env), 0).await;

    let (user_id, token) = a.user("two@example.com").await;
    let mut statuses = Vec::new();
    let created = a.create_order(&token, one_item_order()).await;
    statuses.push(created.status().as_u16());
    let order: Value = created.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_string();

    let seen_by_b = b.get_order(&token, &id).await;
    statuses.push(seen_by_b.status().as_u16());
    assert_eq!(seen_by_b.json::<Value>().await.unwrap(), order);

    let patched = b
        .http
        .patch(format!("{}/orders/{id}/", b.orders_url))
        .bearer_auth(&token)
        .json(&json!({"status": "CANCELED"}))
        .send()
        .await
        .unwrap();
    statuses.push(patched.status().as_u16());
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["status"], "CANCELED", "{patched}");
    let seen_by_a = a.get_order(&token, &id).await;
    statuses.push(seen_by_a.status().as_u16());
    assert_eq!(
        seen_by_a.json::<Value>().await.unwrap(),
        patched,
        "A sees B's change at once"
    );

    // Requests 5..=10 alternate between the processes, all allowed.
    for i in 5..=10 {
        let app = if i % 2 == 0 { &a } else { &b };
        let r = app
            .http
            .get(format!("{}/orders/user/{user_id}/", app.orders_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![200; 10], "the first 10 requests pass");
    for app in [&a, &b] {
        let r = app.get_order(&token, &id).await;
        assert_eq!(r.status(), 429, "the 11th and later are refused on both");
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"detail": "Rate limit exceeded"})
        );
    }

    // Both relays drain one outbox: each event (new_order, order_status_changed)
    // is published by exactly one of them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let published = loop {
        let sum = counter(&a, &a.orders_url, "outbox_published_total").await
            + counter(&b, &b.orders_url, "outbox_published_total").await;
        if sum >= 2.0 || Instant::now() > deadline {
            break sum;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        published,
        2.0,
        "logs A:\n{}\nlogs B:\n{}",
        a.logs(),
        b.logs()
    );
    // Longer than the relays' poll interval, so a double send would have happened.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let published = counter(&a, &a.orders_url, "outbox_published_total").await
        + counter(&b, &b.orders_url, "outbox_published_total").await;
    assert_eq!(published, 2.0);

    let mut limiter = redis_conn(&format!("{redis_url}/2")).await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}127.0.0.1"))
        .query_async(&mut limiter)
        .await
        .unwrap();
    let mut cache = redis_conn(&redis_url).await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("order:{id}"))
        .query_async(&mut cache)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_fails_no_request_and_the_cache_is_used_again_after() {
    let Some(dbs) = Databases::create().await else {
        return;
    };
    let Some(mut redis_server) = PrivateRedis::start() else {
        return;
    };
    let mut env = dbs.env();
    env.push(("REDIS_URL".into(), redis_server.url()));
    let app = spawn_app_with(&as_refs(&env)).await;
    let (user_id, token) = app.user("outage@example.com").await;

    let private_url = redis_server.url();
    let exists = |id: String| {
        let url = private_url.clone();
        async move {
            let mut conn = redis_conn(&url).await;
            redis::cmd("EXISTS")
                .arg(format!("order:{id}"))
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
                == 1
        }
    };
    let first: Value = app
        .create_order(&token, one_item_order())
        .await
        .json()
        .await
        .unwrap();
    let first_id = first["id"].as_str().unwrap().to_string();
    assert!(exists(first_id.clone()).await, "a create fills the cache");

    redis_server.stop();

    // Every kind of request, several times: none may fail.
    let mut during = Vec::new();
    for _ in 0..5 {
        let created = app.create_order(&token, one_item_order()).await;
        assert_eq!(created.status(), 200, "create while Redis is down");
        let order: Value = created.json().await.unwrap();
        let id = order["id"].as_str().unwrap().to_string();
        let got = app.get_order(&token, &id).await;
        assert_eq!(got.status(), 200, "get while Redis is down");
        assert_eq!(got.json::<Value>().await.unwrap(), order);
        assert_eq!(app.get_order(&token, &first_id).await.status(), 200);
        let list = app
            .http
            .get(format!("{}/orders/user/{user_id}/", app.orders_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 200, "list while Redis is down");
        during.push(id);
    }
    let patched = app
        .http
        .patch(format!("{}/orders/{}/", app.orders_url, during[0]))
        .bearer_auth(&token)
        .json(&json!({"status": "CANCELED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "patch while Redis is down");
    let ready = app
        .http
        .get(format!("{}/ready", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert!(
        ready["detail"].as_str().unwrap().contains("cache"),
        "{ready}"
    );
    // The limiter fails open (the default): it degrades the service, it does
    // not make it unready, so the 503 is the cache's alone.
    assert!(
        ready["checks"]["rate_limiter"]
            .as_str()
            .unwrap()
            .starts_with("degraded: "),
        "{ready}"
    );
    assert!(
        !ready["detail"].as_str().unwrap().contains("rate_limiter"),
        "{ready}"
    );
    assert!(counter(&app, &app.orders_url, "order_cache_errors_total").await > 0.0);
    assert!(counter(&app, &app.orders_url, "rate_limiter_errors_total").await > 0.0);

    redis_server.restart().expect("redis-server restarts");

    // Keep using the API until an order shows up in the restarted Redis.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = app.create_order(&token, one_item_order()).await;
        assert_eq!(created.status(), 200, "create after Redis returned");
        let order: Value = created.json().await.unwrap();
        let id = order["id"].as_str().unwrap().to_string();
        assert_eq!(app.get_order(&token, &id).await.status(), 200);
        if exists(id).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache was never used again; logs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = app
        .http
        .get(format!("{}/ready", app.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_migrate_runs_on_empty_databases_all_succeed_and_apply_once() {
    let Some(dbs) = Databases::create().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The contract's parts for auth, a whole URL for orders.
    let (host, port, user, password) = dbs.auth.parts();
    let mut env = vec![
        ("POSTGRES_USER".to_string(), user),
        ("POSTGRES_AUTH_HOST".into(), host),
        ("POSTGRES_AUTH_PORT".into(), port.to_string()),
        ("POSTGRES_AUTH_DB".into(), dbs.auth.name.clone()),
        ("ORDERS_DATABASE_URL".into(), dbs.orders.url.clone()),
    ];
    if let Some(pw) = password {
        env.push(("POSTGRES_AUTH_PASSWORD".into(), pw));
    }
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderly"));
            cmd.arg("migrate")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("ORDERLY_DATA_DIR", tmp.path().join(format!("data-{i}")))
                .current_dir(tmp.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in &env {
                cmd.env(k, v);
            }
            cmd.spawn().expect("run orderly migrate")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "orderly migrate failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (db, table, expected, dir) in [
        (&dbs.auth, "_sqlx_migrations_auth", "users", "auth"),
        (&dbs.orders, "_sqlx_migrations_orders", "outbox", "orders"),
    ] {
        // Every migration file of the service, each applied once.
        let files = std::fs::read_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations/postgres")
                .join(dir),
        )
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
        let all_applied: Vec<(i64, bool)> = (1..=files as i64).map(|v| (v, true)).collect();
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let applied: Vec<(i64, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT version, success FROM {table} ORDER BY version"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(applied, all_applied, "{table}");
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(expected)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(exists, "{expected} exists");
        pool.close().await;
    }
}
