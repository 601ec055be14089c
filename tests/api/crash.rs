//! Nothing is lost when the process dies mid-work.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{one_item_order, start};

#[tokio::test(flavor = "multi_thread")]
async fn orders_in_flight_at_a_sigkill_are_all_paid_exactly_once_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A slow payment so the kill lands with most orders unpaid.
    let mut app = start(
        &data,
        &[
            ("WORKER_PAYMENT_DELAY_MS", "3000"),
            ("WORKER_CONCURRENCY", "2"),
        ],
        0,
    )
    .await;
    let (_, token) = app.user("crash@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        let order: Value = app
            .create_order(&token, one_item_order())
            .await
            .json()
            .await
            .unwrap();
        ids.push(order["id"].as_str().unwrap().to_string());
    }
    app.kill();

    let db = format!("sqlite://{}", data.join("orders.db").display());
    let paid_before: i64 = {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert!(
        paid_before < 50,
        "the kill came too late to prove anything ({paid_before} paid)"
    );

    let app = start(
        &data,
        &[
            ("WORKER_PAYMENT_DELAY_MS", "50"),
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_VISIBILITY_TIMEOUT_SECONDS", "2"),
        ],
        1,
    )
    .await;
    for id in &ids {
        app.wait_for_status(&token, id, "PAID", Duration::from_secs(90))
            .await;
    }
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let transitions: Vec<(String, i64)> = sqlx::query_as(
        "SELECT order_id, COUNT(*) FROM order_status_history WHERE from_status = 'PENDING' AND to_status = 'PAID' GROUP BY order_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(transitions.len(), 50);
    assert!(transitions.iter().all(|(_, n)| *n == 1), "{transitions:?}");
    // The last PAID's `order_status_changed` row is relayed just after the
    // order reads PAID, so the outbox is given a moment to drain.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let unsent = loop {
        let unsent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        if unsent == 0 || std::time::Instant::now() > deadline {
            break unsent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(unsent, 0, "every event was published");
    eprintln!(
        "crash test: {paid_before} of 50 paid before the SIGKILL, all 50 paid once after the restart"
    );
}
