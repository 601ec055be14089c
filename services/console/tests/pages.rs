//! The console's pages and actions through its router: who may see them,
//! which POSTs are refused, that requeue moves a dead job on, and that bus
//! dead letters are listed and replayed or purged.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use time::OffsetDateTime;
use tower::ServiceExt;

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::schema::events;
use orderly_bus::schema::jobs::{PROCESS_ORDER, ProcessOrder, process_order_job_id};
use orderly_bus::{
    Bus, DeadLetter, GroupOptions, JobQueue, Message, NewJob, RetryOutcome, RetryPolicy,
    Subscription,
};
use orderly_console::html::esc;
use orderly_console::{Access, ConsoleParts, SqlOrdersView};

struct Fixture {
    _guard: support::Guard,
    broker: EmbeddedBroker,
    queue: Arc<EmbeddedQueue>,
    order: uuid::Uuid,
    job_id: String,
    app: Router,
}

/// An order whose job failed its only attempt (dead), and the console on it.
async fn fixture(access: Access) -> Fixture {
    let (guard, store) = support::sqlite().await;
    let order = support::create(
        &store,
        7,
        OffsetDateTime::now_utc(),
        "<script>alert(1)</script>",
    )
    .await;
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    let policy = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let queue = Arc::new(EmbeddedQueue::open(&broker, policy).await.unwrap());
    let job_id = process_order_job_id(order.id, None);
    let payload = serde_json::to_vec(&ProcessOrder {
        order_id: order.id,
        traceparent: None,
    })
    .unwrap();
    assert!(
        queue
            .enqueue(NewJob {
                queue: PROCESS_ORDER.into(),
                id: job_id.clone(),
                payload: payload.into(),
            })
            .await
            .unwrap()
    );
    let job = queue
        .reserve(
            PROCESS_ORDER,
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .expect("the job");
    let outcome = queue.fail(&job, "payment declined <b>").await.unwrap();
    assert!(matches!(outcome, RetryOutcome::Dead), "{outcome:?}");
    let app = orderly_console::router(ConsoleParts {
        orders: Arc::new(SqlOrdersView::new(store.db().clone())),
        jobs: queue.clone(),
        bus: Arc::new(broker.clone()),
        checks: Vec::new(),
        pending_after: Duration::from_secs(300),
        access,
    });
    Fixture {
        _guard: guard,
        broker,
        queue,
        order: order.id,
        job_id,
        app,
    }
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, location) = (res.status(), header("location"));
    let cookie = header("set-cookie").map(|c| c.split(';').next().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        location,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path).header("host", "127.0.0.1:8002");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: &str, form: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post(path)
        .header("host", "127.0.0.1:8002")
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Body::from(form.to_string())).unwrap()
}

/// The CSRF token in a page's forms.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_string()
}

async fn dead(queue: &EmbeddedQueue) -> u64 {
    queue.stats(PROCESS_ORDER).await.unwrap().dead
}

#[tokio::test]
async fn on_loopback_the_overview_leads_to_the_dead_job_and_requeue_takes_it_out() {
    let f = fixture(Access::Loopback).await;
    let overview = send(&f.app, get("/console", None)).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    let cookie = overview.cookie.expect("a session cookie");
    assert!(
        overview.body.contains("href=\"/console/stuck#jobs\""),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("data-field=\"queue_dead\">1<"),
        "{}",
        overview.body
    );
    let json = send(&f.app, get("/console/api/overview", Some(&cookie))).await;
    let json: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(json["fields"]["queue_dead"]["text"], "1", "{json}");
    assert_eq!(json["fields"]["status_PENDING"]["text"], "1", "{json}");

    let stuck = send(&f.app, get("/console/stuck", Some(&cookie))).await;
    assert_eq!(stuck.status, StatusCode::OK);
    assert!(stuck.body.contains(&f.job_id), "{}", stuck.body);
    assert!(stuck.body.contains(&format!("/console/orders/{}", f.order)));
    assert!(
        stuck.body.contains("payment declined &lt;b&gt;"),
        "errors are escaped"
    );
    let token = csrf(&stuck.body);

    let form = format!("csrf={token}&action=jobs-requeue&id={}", f.job_id);
    let same_origin = [
        ("origin", "http://127.0.0.1:8002"),
        ("sec-fetch-site", "same-origin"),
    ];
    let done = send(
        &f.app,
        post("/console/action", &cookie, &form, &same_origin),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/console/stuck"));
    assert_eq!(dead(&f.queue).await, 0, "requeued");
    assert_eq!(f.queue.stats(PROCESS_ORDER).await.unwrap().waiting, 1);
    let after = send(&f.app, get("/console/stuck", Some(&cookie))).await;
    assert!(after.body.contains("Requeued job"), "{}", after.body);
    assert!(after.body.contains("No dead jobs."), "{}", after.body);
}

#[tokio::test]
async fn cross_site_posts_and_posts_without_the_csrf_token_are_refused() {
    let f = fixture(Access::Loopback).await;
    let page = send(&f.app, get("/console/stuck", None)).await;
    let (cookie, token) = (page.cookie.unwrap(), csrf(&page.body));
    let form = format!("csrf={token}&action=jobs-requeue&id={}", f.job_id);
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("origin", "http://evil.example")][..],
        &[("origin", "null")][..],
    ] {
        let r = send(&f.app, post("/console/action", &cookie, &form, headers)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    let without = format!("action=jobs-requeue&id={}", f.job_id);
    let r = send(&f.app, post("/console/action", &cookie, &without, &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let wrong = format!("csrf=0{}&action=jobs-requeue&id={}", &token[1..], f.job_id);
    let r = send(&f.app, post("/console/action", &cookie, &wrong, &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &f.app,
        post("/console/action", "orderly_console=forged", &form, &[]),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(dead(&f.queue).await, 1, "nothing was requeued");
}

#[tokio::test]
async fn all_at_once_asks_for_a_confirmation_first() {
    let f = fixture(Access::Loopback).await;
    let page = send(&f.app, get("/console/stuck", None)).await;
    let (cookie, token) = (page.cookie.unwrap(), csrf(&page.body));
    assert!(
        page.body
            .contains("/console/confirm?action=jobs-requeue-all")
    );
    let r = send(
        &f.app,
        post(
            "/console/action",
            &cookie,
            &format!("csrf={token}&action=jobs-purge-all"),
            &[],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.location.as_deref(),
        Some("/console/confirm?action=jobs-purge-all")
    );
    assert_eq!(
        dead(&f.queue).await,
        1,
        "not purged without the confirmation"
    );
    let confirm = send(
        &f.app,
        get("/console/confirm?action=jobs-purge-all", Some(&cookie)),
    )
    .await;
    assert!(confirm.body.contains("1 of them"), "{}", confirm.body);
    assert!(confirm.body.contains("name=\"confirm\" value=\"yes\""));
    let form = format!("csrf={token}&action=jobs-purge-all&confirm=yes");
    let r = send(&f.app, post("/console/action", &cookie, &form, &[])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(dead(&f.queue).await, 0, "purged");
}

#[tokio::test]
async fn an_orders_story_escapes_what_the_client_sent() {
    let f = fixture(Access::Loopback).await;
    let page = send(&f.app, get(&format!("/console/orders/{}", f.order), None)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        page.body.contains("is <strong class=\"bad\">dead</strong>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(support::TRACEPARENT.split('-').nth(1).unwrap())
    );
    let search = send(&f.app, get(&format!("/console/orders?q={}", f.order), None)).await;
    assert_eq!(
        search.location,
        Some(format!("/console/orders/{}", f.order))
    );
    let user = send(&f.app, get("/console/orders?q=7", None)).await;
    assert!(user.body.contains(&f.order.to_string()), "{}", user.body);
    let junk = send(&f.app, get("/console/orders?q=%3Cimg%3E", None)).await;
    assert!(
        junk.body.contains("&lt;img&gt; is neither"),
        "{}",
        junk.body
    );
}

#[tokio::test]
async fn off_loopback_without_a_token_nothing_is_served() {
    let f = fixture(Access::Refused).await;
    for path in [
        "/console",
        "/console/stuck",
        "/console/api/overview",
        "/console/login",
    ] {
        let r = send(&f.app, get(path, None)).await;
        assert!(
            matches!(r.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
            "{path}: {}",
            r.status
        );
        assert!(!r.body.contains(&f.job_id), "{path}");
    }
}

#[tokio::test]
async fn off_loopback_the_token_signs_in() {
    let f = fixture(Access::Token("s3cret".into())).await;
    let r = send(&f.app, get("/console", None)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/console/login"));
    assert!(r.cookie.is_none());
    let r = send(&f.app, get("/console/api/overview", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let login = |form: &str| {
        Request::post("/console/login")
            .header("host", "10.0.0.1:9090")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap()
    };
    let wrong = send(&f.app, login("token=guess")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie.is_none());
    let right = send(&f.app, login("token=s3cret")).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let cookie = right.cookie.expect("a session");
    let r = send(&f.app, get("/console", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("signed in: token"));
}

/// The group the dead-letter test's consumer reads `new_order` as.
const GROUP: &str = "console-test";

/// The next delivery of `sub`, which must come.
async fn next_delivery(sub: &mut Subscription) -> orderly_bus::Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the subscription is open")
}

/// The dead letters of the events stream, once there are `n` of them.
async fn dead_letters(broker: &EmbeddedBroker, n: usize) -> Vec<DeadLetter> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let letters = broker.dead_letters(&events::stream(), 100).await.unwrap();
        if letters.len() == n {
            return letters;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} dead letters, not {n}: {letters:?}",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stuck page's "Bus dead letters" section.
fn events_section(page: &str) -> &str {
    let start = page
        .find("id=\"events\"")
        .expect("the dead letters' section");
    let end = page[start..]
        .find("id=\"pending\"")
        .map_or(page.len(), |e| start + e);
    &page[start..end]
}

#[tokio::test]
async fn bus_dead_letters_are_listed_and_replay_one_and_purge_all_do_what_they_say() {
    let f = fixture(Access::Loopback).await;
    f.broker.ensure_stream(events::stream()).await.unwrap();
    let options = GroupOptions {
        ack_wait: Duration::from_secs(30),
        max_deliveries: 2,
        max_in_flight: 8,
    };
    let mut sub = f
        .broker
        .subscribe_group(events::NEW_ORDER, GROUP, options)
        .await
        .unwrap();
    // Two new_order events a consumer cannot take: each is nacked until the
    // group gives up on it.
    let other = uuid::Uuid::now_v7();
    for order in [f.order, other] {
        let payload = serde_json::json!({
            "order_id": order, "user_id": 7, "timestamp": "2026-01-01T00:00:00Z"
        });
        let message = Message::new(events::NEW_ORDER, serde_json::to_vec(&payload).unwrap())
            .with_key(order.to_string());
        f.broker.publish(message).await.unwrap();
    }
    for _ in 0..4 {
        next_delivery(&mut sub).await.nack(Duration::ZERO);
    }
    let letters = dead_letters(&f.broker, 2).await;
    let key = f.order.to_string();
    let mine = letters
        .iter()
        .find(|l| l.message.key.as_deref() == Some(key.as_str()))
        .expect("the order's dead letter")
        .clone();
    assert!(!mine.reason.is_empty());

    let overview = send(&f.app, get("/console", None)).await;
    let cookie = overview.cookie.expect("a session cookie");
    assert!(
        overview.body.contains("data-field=\"bus_dead\">2<"),
        "{}",
        overview.body
    );
    let stuck = send(&f.app, get("/console/stuck", Some(&cookie))).await;
    assert_eq!(stuck.status, StatusCode::OK);
    let section = events_section(&stuck.body);
    let row = format!(
        "<td><code>{}</code></td><td>{GROUP}</td><td>new_order</td>\
         <td><a href=\"/console/orders/{key}\">{key}</a></td><td>{}</td><td>2</td>",
        esc(&mine.id),
        esc(&mine.reason)
    );
    assert!(
        section.contains(&row),
        "the dead letter's row (id, group, subject, order, reason, deliveries) is not\n{row}\nin\n{section}"
    );
    assert!(
        section.contains(&format!("/console/orders/{other}")),
        "{section}"
    );
    let token = csrf(&stuck.body);

    // Replay one: it is no longer dead, and the group gets it again.
    let form = format!("csrf={token}&action=events-replay&id={}", mine.id);
    let r = send(&f.app, post("/console/action", &cookie, &form, &[])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let left = dead_letters(&f.broker, 1).await;
    assert!(left.iter().all(|l| l.id != mine.id), "{left:?}");
    let again = next_delivery(&mut sub).await;
    assert_eq!(again.message.key.as_deref(), Some(key.as_str()));
    assert_eq!(
        again.attempt, 1,
        "a replayed letter comes back as a first delivery"
    );
    again.ack();
    let stuck = send(&f.app, get("/console/stuck", Some(&cookie))).await;
    assert!(
        stuck
            .body
            .contains(&format!("Replayed dead letter {}", mine.id)),
        "{}",
        stuck.body
    );
    assert!(!events_section(&stuck.body).contains(&esc(&mine.id)));

    // Purge all: not without the confirmation, then every letter is gone.
    let form = format!("csrf={token}&action=events-purge-all");
    let r = send(&f.app, post("/console/action", &cookie, &form, &[])).await;
    assert_eq!(
        r.location.as_deref(),
        Some("/console/confirm?action=events-purge-all")
    );
    assert_eq!(
        dead_letters(&f.broker, 1).await.len(),
        1,
        "purged unconfirmed"
    );
    let confirm = send(
        &f.app,
        get("/console/confirm?action=events-purge-all", Some(&cookie)),
    )
    .await;
    assert!(confirm.body.contains("1 of them"), "{}", confirm.body);
    let form = format!("csrf={token}&action=events-purge-all&confirm=yes");
    let r = send(&f.app, post("/console/action", &cookie, &form, &[])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    dead_letters(&f.broker, 0).await;
    let stuck = send(&f.app, get("/console/stuck", Some(&cookie))).await;
    assert!(
        stuck.body.contains("Purged 1 dead letters."),
        "{}",
        stuck.body
    );
    assert!(
        events_section(&stuck.body).contains("No dead letters."),
        "{}",
        stuck.body
    );
}

/// Auth as the admin sign-in sees it: one admin, one expired admin, one
/// plain user, and an e-mail whose check finds auth down.
struct FakeAuth;

#[async_trait::async_trait]
impl orderly_console::AdminSignIn for FakeAuth {
    async fn sign_in(
        &self,
        email: &str,
        password: &str,
    ) -> Result<orderly_console::SignedIn, orderly_console::SignInError> {
        use orderly_console::{SignInError, SignedIn};
        use std::time::SystemTime;
        let admin = |expires_at| {
            Ok(SignedIn {
                user: format!("admin:{email}"),
                expires_at,
            })
        };
        match (email, password) {
            ("down@example.com", _) => Err(SignInError::Unavailable("connection refused".into())),
            (_, p) if p != "right" => Err(SignInError::Credentials),
            ("boss@example.com", _) => admin(SystemTime::now() + Duration::from_secs(600)),
            ("gone@example.com", _) => admin(SystemTime::now() - Duration::from_secs(1)),
            _ => Err(SignInError::NotAdmin),
        }
    }
}

#[tokio::test]
async fn under_orders_an_admin_account_signs_in_and_others_get_the_form_again() {
    let f = fixture(Access::Admin(Arc::new(FakeAuth))).await;
    let r = send(&f.app, get("/console", None)).await;
    assert_eq!(r.location.as_deref(), Some("/console/login"));
    let page = send(&f.app, get("/console/login", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"email\"") && page.body.contains("name=\"password\""));
    let login = |form: &str| {
        Request::post("/console/login")
            .header("host", "127.0.0.1:8000")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap()
    };
    for (form, status, says) in [
        (
            "email=boss%40example.com&password=guess",
            StatusCode::UNAUTHORIZED,
            "Incorrect e-mail or password",
        ),
        (
            "email=user%40example.com&password=right",
            StatusCode::FORBIDDEN,
            "This account is not an admin",
        ),
        (
            "email=down%40example.com&password=right",
            StatusCode::SERVICE_UNAVAILABLE,
            "The auth service cannot check the account now",
        ),
    ] {
        let r = send(&f.app, login(form)).await;
        assert_eq!(r.status, status, "{form}: {}", r.body);
        assert!(r.body.contains(says), "{form}: {}", r.body);
        assert!(r.body.contains("name=\"password\""), "the form again");
        assert!(r.cookie.is_none(), "{form} opened a session");
    }
    let right = send(&f.app, login("email=boss%40example.com&password=right")).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER, "{}", right.body);
    let cookie = right.cookie.expect("a session");
    assert!(cookie.starts_with("orderly_console_admin="), "{cookie}");
    let r = send(&f.app, get("/console", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("signed in: admin:boss@example.com"),
        "{}",
        r.body
    );

    // A session never outlives the account's access token.
    let gone = send(&f.app, login("email=gone%40example.com&password=right")).await;
    let cookie = gone.cookie.expect("a session");
    let r = send(&f.app, get("/console", Some(&cookie))).await;
    assert_eq!(
        r.location.as_deref(),
        Some("/console/login"),
        "a session outlived its access token"
    );
}
