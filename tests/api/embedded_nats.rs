//! `orderly broker` and `orderly auth|orders|consumer|worker`
//! as separate processes, the services on `BUS=nats` through the broker's
//! listener (core NATS and the JetStream subset), pass the old E2E script.
//! The job queue is Redis (the embedded queue cannot be shared between
//! processes) under a prefix of this run; every process is killed by PID.

use crate::e2e::run_old_script;
use crate::faults::{RedisKeys, start_orderly_broker};
use crate::helpers::{TestApp, start_role, try_start_role};

#[tokio::test(flavor = "multi_thread")]
async fn separate_processes_through_orderly_broker_pass_the_old_script() {
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_broker, nats_url) = start_orderly_broker(&tmp.path().join("broker"), "127.0.0.1:0");
    let db = format!("sqlite://{}", tmp.path().join("orders.db").display());
    // Deleted on drop, after the processes (declared later, dropped first).
    let keys = RedisKeys::new();
    let (prefix, redis) = (keys.prefix.clone(), keys.queue_url());
    let common: Vec<(&str, &str)> = vec![
        ("BUS", "nats"),
        ("NATS_URL", nats_url.as_str()),
        ("JOB_QUEUE", "redis"),
        ("REDIS_URL", redis.as_str()),
        ("JOB_QUEUE_PREFIX", prefix.as_str()),
        ("ORDERS_DATABASE_URL", db.as_str()),
        ("WORKER_PAYMENT_DELAY_MS", "2000"),
        ("ORDERS_RATE_LIMIT", "10/minute"),
    ];
    let auth = start_role("auth", &tmp.path().join("auth"), &common, 0).await;
    // Orders trusts auth's keys through its JWKS (no shared key file).
    let jwks = format!("{}/.well-known/jwks.json", auth.auth_url);
    let mut orders_env = common.clone();
    orders_env.push(("ORDERS_JWKS_URL", jwks.as_str()));
    orders_env.push(("ORDERS_PUBLIC_KEY_PATH", "/nonexistent/public.pem"));
    let orders = start_role("orders", &tmp.path().join("orders"), &orders_env, 0).await;
    let consumer = start_role("consumer", &tmp.path().join("consumer"), &common, 0).await;
    let worker = start_role("worker", &tmp.path().join("worker"), &common, 0).await;
    let (auth_url, orders_url) = (auth.auth_url.clone(), orders.orders_url.clone());
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth_url, &orders_url))
        .await
        .unwrap();
    let logs = |apps: &[&TestApp]| {
        apps.iter()
            .map(|a| a.logs())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}",
        logs(&[&auth, &orders, &consumer, &worker])
    );
    // The events went through JetStream: the broker keeps a stream log for them.
    let streams: Vec<String> = std::fs::read_dir(tmp.path().join("broker").join("broker"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !streams.is_empty(),
        "no stream log in the broker's data dir"
    );
    // The TestApps and the broker guard kill their processes on drop.
    drop((auth, orders, consumer, worker));
}

/// The README's commands on one fresh directory: `orderly broker`, then the
/// roles with auth last, so orders starts before the public key it verifies
/// tokens with exists (started at once, auth usually wins that race). Orders
/// waits for the key, and the old script reaches PAID.
#[tokio::test(flavor = "multi_thread")]
async fn any_order_roles_started_on_one_directory_auth_last_pass_the_old_script() {
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_broker, nats_url) = start_orderly_broker(&tmp.path().join("broker"), "127.0.0.1:0");
    let keys = RedisKeys::new();
    let (prefix, redis) = (keys.prefix.clone(), keys.queue_url());
    let env: Vec<(&str, &str)> = vec![
        ("BUS", "nats"),
        ("NATS_URL", nats_url.as_str()),
        ("JOB_QUEUE", "redis"),
        ("REDIS_URL", redis.as_str()),
        ("JOB_QUEUE_PREFIX", prefix.as_str()),
        ("WORKER_PAYMENT_DELAY_MS", "2000"),
        ("ORDERS_RATE_LIMIT", "10/minute"),
    ];
    // One data directory for all four; the generation only names each log file.
    let dir = tmp.path().join("data");
    let (orders, consumer, worker) = tokio::join!(
        try_start_role("orders", &dir, &env, 1),
        try_start_role("consumer", &dir, &env, 2),
        try_start_role("worker", &dir, &env, 3),
    );
    let started = |app: Result<TestApp, String>| app.unwrap_or_else(|why| panic!("{why}"));
    let (orders, consumer, worker) = (started(orders), started(consumer), started(worker));
    let auth = start_role("auth", &dir, &env, 0).await;
    let (auth_url, orders_url) = (auth.auth_url.clone(), orders.orders_url.clone());
    let ready = format!("{orders_url}/ready");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while orders
        .http
        .get(&ready)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "orders never became ready; log:\n{}",
            orders.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth_url, &orders_url))
        .await
        .unwrap();
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}",
        [&auth, &orders, &consumer, &worker]
            .iter()
            .map(|a| a.logs())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    drop((auth, orders, consumer, worker));
}

/// Orders alone on a fresh directory: alive, not ready (naming the key it
/// waits for), and ready once auth has started there and written the key.
#[tokio::test(flavor = "multi_thread")]
async fn any_order_orders_without_the_key_file_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let orders = start_role("orders", &dir, &[], 0).await;
    let health = orders
        .http
        .get(format!("{}/health", orders.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = format!("{}/ready", orders.orders_url);
    let waiting = orders.http.get(&ready).send().await.unwrap();
    assert_eq!(waiting.status().as_u16(), 503);
    let body = waiting.text().await.unwrap();
    assert!(
        body.contains("public_key") && body.contains("public.pem"),
        "{body}"
    );
    let auth = start_role("auth", &dir, &[], 1).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = orders
            .http
            .get(&ready)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orders never took the key; log:\n{}",
            orders.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop((auth, orders));
}
