//! The console's queries on both kinds of database.

mod support;

use std::time::Duration;

use orderly_console::{OrdersView, SqlOrdersView};
use time::OffsetDateTime;

use support::{TRACEPARENT, create, pay};

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_guard, store) = super::support::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((_guard, store)) = super::support::postgres().await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

on_both!(
    counts_rates_and_latency_come_from_the_orders_and_their_history,
    pending_orders_past_the_threshold_come_oldest_first,
    an_orders_story_has_its_history_events_and_trace_id,
);

type Store = std::sync::Arc<orderly_orders::sql_store::SqlOrderStore>;

fn view(store: &Store) -> SqlOrdersView {
    SqlOrdersView::new(store.db().clone())
}

/// `t` at the start of its minute plus `s` seconds.
fn in_minute(t: OffsetDateTime, s: u8) -> OffsetDateTime {
    t.replace_second(s).unwrap().replace_nanosecond(0).unwrap()
}

async fn counts_rates_and_latency_come_from_the_orders_and_their_history(store: Store) {
    let now = OffsetDateTime::now_utc();
    let minute_ago = in_minute(now - time::Duration::minutes(1), 10);
    let a = create(&store, 1, minute_ago, "a").await;
    let b = create(&store, 1, minute_ago, "b").await;
    create(&store, 2, minute_ago, "c").await;
    // Paid 2 s and 4 s after creation: a mean of 3000 ms in that minute.
    pay(&store, &a, minute_ago + time::Duration::seconds(2)).await;
    pay(&store, &b, minute_ago + time::Duration::seconds(4)).await;
    // Outside the window: counted by status, not in the minutes.
    create(&store, 3, now - time::Duration::hours(2), "old").await;

    let v = view(&store);
    let counts = v.counts_by_status().await.unwrap();
    assert_eq!(
        counts,
        vec![
            ("PENDING".to_string(), 2),
            ("PAID".to_string(), 2),
            ("SHIPPED".to_string(), 0),
            ("CANCELED".to_string(), 0)
        ]
    );
    let minutes = v.minutes(now - time::Duration::minutes(15)).await.unwrap();
    assert_eq!(minutes.len(), 1, "{minutes:?}");
    let m = &minutes[0];
    let expected = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        minute_ago.year(),
        u8::from(minute_ago.month()),
        minute_ago.day(),
        minute_ago.hour(),
        minute_ago.minute()
    );
    assert_eq!(m.minute, expected);
    assert_eq!((m.created, m.paid), (3, 2));
    assert_eq!(m.paid_latency_ms, Some(3000));
    let lag = v.outbox_lag(now).await.unwrap();
    assert_eq!(
        lag.unsent, 6,
        "three new_order, two status changes and the old one"
    );
    assert!(lag.oldest_age_seconds >= 7100.0, "{lag:?}");
}

async fn pending_orders_past_the_threshold_come_oldest_first(store: Store) {
    let now = OffsetDateTime::now_utc();
    let older = create(&store, 1, now - time::Duration::minutes(30), "older").await;
    let old = create(&store, 1, now - time::Duration::minutes(10), "old").await;
    create(&store, 1, now, "fresh").await;
    let paid = create(&store, 1, now - time::Duration::minutes(20), "paid").await;
    pay(&store, &paid, now).await;

    let before = now - Duration::from_secs(300);
    let (n, rows) = view(&store).pending_since(before, 1).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [older.id]);
    let (_, rows) = view(&store).pending_since(before, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        [older.id, old.id]
    );
}

async fn an_orders_story_has_its_history_events_and_trace_id(store: Store) {
    let now = OffsetDateTime::now_utc();
    let order = create(&store, 42, now - time::Duration::seconds(5), "<b>item</b>").await;
    create(&store, 42, now, "other").await;
    pay(&store, &order, now).await;

    let v = view(&store);
    let story = v.order(order.id).await.unwrap().expect("the order");
    assert_eq!(story.order.status, "PAID");
    assert_eq!(story.order.user_id, 42);
    assert_eq!(
        story
            .history
            .iter()
            .map(|h| (h.from.as_deref(), h.to.as_str()))
            .collect::<Vec<_>>(),
        [(None, "PENDING"), (Some("PENDING"), "PAID")]
    );
    assert_eq!(
        story
            .events
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
        ["new_order", "order_status_changed"]
    );
    assert_eq!(story.trace_id(), TRACEPARENT.split('-').nth(1));
    assert!(story.new_order_event().is_some());
    assert_eq!(story.items[0]["name"], "<b>item</b>");
    assert!(v.order(uuid::Uuid::now_v7()).await.unwrap().is_none());
    let mine = v.orders_of_user(42, 10).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[1].id, order.id, "newest first");
}
