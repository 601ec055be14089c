//! `orderly broker` and `orderly auth|orders|consumer|worker`
//! as separate processes, the services on `BUS=nats` through the broker's
//! listener (core NATS and the JetStream subset), pass the old E2E script.
//! The job queue is Redis (the embedded queue cannot be shared between
//! processes) under a prefix of this run; every process is killed by PID.

use crate::e2e::run_old_script;
use crate::faults::{RedisKeys, start_orderly_broker};
use crate::helpers::{TestApp, start_role};

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
