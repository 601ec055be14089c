//! The console's handlers: its pages, the overview's JSON, the actions.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use orderly_bus::schema::events;
use orderly_bus::schema::jobs::{PROCESS_ORDER, ProcessOrder, process_order_job_id};
use orderly_bus::{DeadJob, DeadLetter, QueueStats};

use crate::ConsoleParts;
use crate::html::{self, Nav, action_form, age_text, esc, time_text};
use crate::session::{self, Access, Session, Sessions, SignInError};
use crate::view::{Minute, OrderRow, OutboxLag};

/// How long one source (query, port, check) may take before the page shows
/// it as unavailable instead of waiting.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);
/// The minutes the overview's chart spans.
const CHART_MINUTES: usize = 15;
/// Rows a table shows at most.
const TABLE_ROWS: usize = 100;
/// Dead letters counted at most (the overview says "N+" beyond).
const COUNT_CAP: usize = 1_000;
/// Dead jobs or letters one "all" action handles (click again for more).
const ALL_AT_ONCE: usize = 10_000;

const CONSOLE_JS: &str = include_str!("../assets/console.js");
const CONSOLE_CSS: &str = include_str!("../assets/console.css");

struct Console {
    parts: ConsoleParts,
    sessions: Sessions,
}

type App = State<Arc<Console>>;

pub(crate) fn router(parts: ConsoleParts) -> Router {
    let sessions = match parts.access {
        Access::Admin(_) => Sessions::named(session::ADMIN_COOKIE_NAME),
        _ => Sessions::named(session::COOKIE_NAME),
    };
    let state = Arc::new(Console { parts, sessions });
    Router::new()
        .route("/console", get(overview))
        .route("/console/", get(|| async { see_other("/console") }))
        .route("/console/api/overview", get(overview_json))
        .route("/console/stuck", get(stuck))
        .route("/console/orders", get(search))
        .route("/console/orders/{id}", get(order_page))
        .route("/console/confirm", get(confirm))
        .route("/console/action", axum::routing::post(action))
        .route("/console/login", get(login_page).post(login))
        .route(
            "/console/assets/console.js",
            get(|| asset("text/javascript", CONSOLE_JS)),
        )
        .route(
            "/console/assets/console.css",
            get(|| asset("text/css", CONSOLE_CSS)),
        )
        .with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

fn html_page(status: StatusCode, body: String) -> Response {
    (status, [(CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text));
    html_page(status, html::page(title, Nav::None, None, &body))
}

/// The session a request acts in, and the cookie that goes out with the
/// response when it was just opened.
struct Visitor {
    session: Session,
    new_cookie: Option<String>,
}

impl Visitor {
    /// `body` in the page layout, as this visitor sees it.
    fn page(self, status: StatusCode, title: &str, nav: Nav, body: &str) -> Response {
        let page = html::page(title, nav, Some(&self.session.user), body);
        self.respond(html_page(status, page))
    }

    fn respond(self, response: Response) -> Response {
        let mut response = response;
        if let Some(cookie) = &self.new_cookie
            && let Ok(v) = HeaderValue::from_str(cookie)
        {
            response.headers_mut().insert(SET_COOKIE, v);
        }
        response
    }
}

impl Console {
    /// The visitor of a page, or the response that turns it away: refused
    /// outright off loopback without a token, sent to sign in with one.
    fn visitor(&self, headers: &HeaderMap) -> Result<Visitor, Box<Response>> {
        if let Access::Refused = self.parts.access {
            return Err(Box::new(refused()));
        }
        if let Some(session) = self.sessions.find(headers) {
            return Ok(Visitor {
                session,
                new_cookie: None,
            });
        }
        match self.parts.access {
            Access::Loopback => Ok(self.new_visitor(self.sessions.open("loopback"))),
            _ => Err(Box::new(see_other("/console/login"))),
        }
    }

    fn new_visitor(&self, session: Session) -> Visitor {
        Visitor {
            new_cookie: Some(self.sessions.set_cookie(&session)),
            session,
        }
    }

    /// The session of a POST: an existing one only, from this site only,
    /// with its CSRF token in the form.
    fn poster(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<Session, Box<Response>> {
        if let Access::Refused = self.parts.access {
            return Err(Box::new(refused()));
        }
        if let Some(why) = session::cross_site(headers) {
            tracing::warn!(%why, "console: cross-site POST refused");
            return Err(Box::new(message_page(
                StatusCode::FORBIDDEN,
                "Refused",
                &format!("This request did not come from the console's own pages ({why})."),
            )));
        }
        let Some(session) = self.sessions.find(headers) else {
            return Err(Box::new(message_page(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Open the console again and retry.",
            )));
        };
        let sent = form.get("csrf").map(String::as_str).unwrap_or("");
        if !session::same_secret(sent, &session.csrf) {
            tracing::warn!(user = %session.user, "console: POST without its CSRF token refused");
            return Err(Box::new(message_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form's token is missing or stale: reload the page and retry.",
            )));
        }
        Ok(session)
    }
}

fn refused() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Console not served here",
        "This ops listener is not on a loopback address and ORDERLY_CONSOLE_TOKEN is not set: \
         the console is only served with a token there (see docs/console.md).",
    )
}

/// `f`'s outcome, or why it failed or did not answer in time.
async fn bounded<T, E: std::fmt::Display>(
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(SOURCE_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", SOURCE_TIMEOUT.as_secs())),
    }
}

// --- Overview ----------------------------------------------------------------

/// Everything the overview shows, read at once.
struct Snapshot {
    at: OffsetDateTime,
    counts: Result<Vec<(String, i64)>, String>,
    minutes: Result<Vec<Minute>, String>,
    stuck_pending: Result<i64, String>,
    outbox: Result<OutboxLag, String>,
    queue: Result<QueueStats, String>,
    bus_dead: Result<usize, String>,
    health: Vec<(&'static str, bool, Result<(), String>)>,
}

impl Console {
    fn pending_before(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.parts.pending_after
    }

    async fn snapshot(&self) -> Snapshot {
        let p = &self.parts;
        let at = OffsetDateTime::now_utc();
        let since = at - time::Duration::minutes(CHART_MINUTES as i64 - 1);
        let since = since
            .replace_second(0)
            .unwrap_or(since)
            .replace_nanosecond(0)
            .unwrap_or(since);
        let stream = events::stream();
        let health = futures_join_all(p.checks.iter().map(|c| {
            let c = c.clone();
            async move { (c.name(), c.critical(), bounded(c.check()).await) }
        }));
        let (counts, minutes, pending, outbox, queue, bus_dead, health) = tokio::join!(
            bounded(p.orders.counts_by_status()),
            bounded(p.orders.minutes(since)),
            bounded(p.orders.pending_since(self.pending_before(at), 0)),
            bounded(p.orders.outbox_lag(at)),
            bounded(p.jobs.stats(PROCESS_ORDER)),
            bounded(async {
                p.bus
                    .dead_letters(&stream, COUNT_CAP + 1)
                    .await
                    .map(|d| d.len())
            }),
            health,
        );
        Snapshot {
            at,
            counts,
            minutes,
            stuck_pending: pending.map(|(n, _)| n),
            outbox,
            queue,
            bus_dead,
            health,
        }
    }
}

/// Runs the futures concurrently; their outputs in order.
async fn futures_join_all<F: Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// One figure of the overview: its element's key, its text, whether it
/// calls for attention.
struct Field {
    key: String,
    text: String,
    bad: bool,
}

fn field(key: impl Into<String>, text: impl Into<String>, bad: bool) -> Field {
    Field {
        key: key.into(),
        text: text.into(),
        bad,
    }
}

fn unavailable(key: &str, why: &str) -> Field {
    field(key, format!("unavailable: {why}"), true)
}

impl Snapshot {
    /// The figures, as the page first shows them and as the poll updates them.
    fn fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        match &self.counts {
            Ok(counts) => {
                for (status, n) in counts {
                    out.push(field(format!("status_{status}"), n.to_string(), false));
                }
            }
            Err(e) => {
                for status in crate::view::STATUSES {
                    out.push(unavailable(&format!("status_{status}"), e));
                }
            }
        }
        out.push(match &self.stuck_pending {
            Ok(n) => field("stuck_pending", n.to_string(), *n > 0),
            Err(e) => unavailable("stuck_pending", e),
        });
        match &self.queue {
            Ok(s) => {
                out.push(field("queue_waiting", s.waiting.to_string(), false));
                out.push(field("queue_running", s.running.to_string(), false));
                out.push(field(
                    "queue_retrying",
                    s.retrying.to_string(),
                    s.retrying > 0,
                ));
                out.push(field("queue_dead", s.dead.to_string(), s.dead > 0));
            }
            Err(e) => {
                for k in [
                    "queue_waiting",
                    "queue_running",
                    "queue_retrying",
                    "queue_dead",
                ] {
                    out.push(unavailable(k, e));
                }
            }
        }
        out.push(match &self.bus_dead {
            Ok(n) if *n > COUNT_CAP => field("bus_dead", format!("{COUNT_CAP}+"), true),
            Ok(n) => field("bus_dead", n.to_string(), *n > 0),
            Err(e) => unavailable("bus_dead", e),
        });
        match &self.outbox {
            Ok(o) => {
                out.push(field("outbox_unsent", o.unsent.to_string(), false));
                out.push(field(
                    "outbox_lag",
                    age_text(o.oldest_age_seconds),
                    o.oldest_age_seconds > 60.0,
                ));
            }
            Err(e) => {
                out.push(unavailable("outbox_unsent", e));
                out.push(unavailable("outbox_lag", e));
            }
        }
        let recent = self.minutes.as_ref().ok().and_then(|m| {
            let latest = m.iter().rev().find(|m| m.paid_latency_ms.is_some())?;
            latest.paid_latency_ms
        });
        out.push(field(
            "paid_latency",
            recent.map_or("–".to_string(), |ms| format!("{ms} ms")),
            false,
        ));
        for (name, critical, outcome) in &self.health {
            out.push(match outcome {
                Ok(()) => field(format!("health_{name}"), "ok", false),
                Err(e) if !critical => {
                    field(format!("health_{name}"), format!("degraded: {e}"), true)
                }
                Err(e) => field(format!("health_{name}"), format!("down: {e}"), true),
            });
        }
        out
    }

    fn chart(&self) -> String {
        match &self.minutes {
            Ok(m) => html::chart_svg(m, self.at, CHART_MINUTES),
            Err(e) => format!("<p class=\"bad\">unavailable: {}</p>", esc(e)),
        }
    }

    fn json(&self) -> Value {
        let fields: serde_json::Map<String, Value> = self
            .fields()
            .into_iter()
            .map(|f| (f.key, json!({"text": f.text, "bad": f.bad})))
            .collect();
        json!({
            "generated_at": time_text(self.at),
            "fields": fields,
            "minutes": self.minutes.as_ref().ok(),
            "chart_svg": self.chart(),
        })
    }
}

/// A figure as a tile, linking to where it can be acted on.
fn tile(fields: &[Field], key: &str, label: &str, href: Option<&str>) -> String {
    let f = fields.iter().find(|f| f.key == key);
    let (text, bad) = f.map_or(("–", false), |f| (f.text.as_str(), f.bad));
    let class = if bad { "n bad" } else { "n" };
    let inner = format!(
        "<span class=\"{class}\" data-field=\"{}\">{}</span><span class=\"label\">{}</span>",
        esc(key),
        esc(text),
        esc(label)
    );
    match href {
        Some(href) => format!("<a class=\"tile\" href=\"{}\">{inner}</a>", esc(href)),
        None => format!("<div class=\"tile\">{inner}</div>"),
    }
}

async fn overview(State(c): App, headers: HeaderMap) -> Response {
    let visitor = match c.visitor(&headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let snap = c.snapshot().await;
    let f = snap.fields();
    let threshold = age_text(c.parts.pending_after.as_secs_f64());
    let mut body = String::new();
    let _ = write!(
        body,
        "<div data-live=\"/console/api/overview\"><h1>Overview</h1>\
         <p class=\"muted\" id=\"updated\">as of {}, refreshed every 2 s</p>",
        esc(&time_text(snap.at))
    );
    body.push_str("<section><h2>Needs attention</h2><div class=\"tiles\">");
    body.push_str(&tile(
        &f,
        "queue_dead",
        "dead jobs",
        Some("/console/stuck#jobs"),
    ));
    body.push_str(&tile(
        &f,
        "bus_dead",
        "bus dead letters",
        Some("/console/stuck#events"),
    ));
    body.push_str(&tile(
        &f,
        "stuck_pending",
        &format!("PENDING longer than {threshold}"),
        Some("/console/stuck#pending"),
    ));
    body.push_str(&tile(&f, "queue_retrying", "jobs waiting to retry", None));
    body.push_str("</div></section><section><h2>Orders</h2><div class=\"tiles\">");
    for status in crate::view::STATUSES {
        body.push_str(&tile(&f, &format!("status_{status}"), status, None));
    }
    body.push_str(&tile(
        &f,
        "paid_latency",
        "created → PAID (latest minute)",
        None,
    ));
    let _ = write!(
        body,
        "</div><figure><div id=\"chart\">{}</div><figcaption>Per minute, last {CHART_MINUTES} minutes: \
         <span class=\"key created\">created</span> <span class=\"key paid\">PAID</span> \
         <span class=\"key lat\">mean created → PAID latency (right scale)</span></figcaption></figure></section>",
        snap.chart()
    );
    body.push_str("<section><h2>Pipeline</h2><div class=\"tiles\">");
    body.push_str(&tile(&f, "queue_waiting", "jobs waiting", None));
    body.push_str(&tile(&f, "queue_running", "jobs running", None));
    body.push_str(&tile(&f, "outbox_unsent", "outbox events unsent", None));
    body.push_str(&tile(&f, "outbox_lag", "oldest unsent event waits", None));
    body.push_str("</div></section><section><h2>Dependencies</h2><div class=\"tiles\">");
    for (name, _, _) in &snap.health {
        body.push_str(&tile(&f, &format!("health_{name}"), name, None));
    }
    body.push_str(
        "</div><p class=\"muted\">Raw figures: <a href=\"/metrics\">/metrics</a>, \
                   <a href=\"/ready\">/ready</a>.</p></section></div>",
    );
    visitor.page(StatusCode::OK, "Overview", Nav::Overview, &body)
}

async fn overview_json(State(c): App, headers: HeaderMap) -> Response {
    if let Access::Refused = c.parts.access {
        return refused();
    }
    let visitor = match c.visitor(&headers) {
        Ok(v) => v,
        Err(_) => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"detail": "sign in"})),
            )
                .into_response();
        }
    };
    let snap = c.snapshot().await;
    visitor.respond(([(CACHE_CONTROL, "no-store")], axum::Json(snap.json())).into_response())
}

// --- Stuck work --------------------------------------------------------------

/// The order a dead job is about (its payload).
fn job_order(job: &DeadJob) -> Option<Uuid> {
    serde_json::from_slice::<ProcessOrder>(&job.payload)
        .ok()
        .map(|p| p.order_id)
}

/// The order a dead letter is about: its key, else the payload's `order_id`.
fn letter_order(d: &DeadLetter) -> Option<Uuid> {
    let key = d
        .message
        .key
        .as_deref()
        .and_then(|k| Uuid::parse_str(k).ok());
    key.or_else(|| {
        let v: Value = serde_json::from_slice(&d.message.payload).ok()?;
        Uuid::parse_str(v.get("order_id")?.as_str()?).ok()
    })
}

fn order_link(id: Option<Uuid>) -> String {
    match id {
        Some(id) => format!("<a href=\"/console/orders/{id}\">{id}</a>"),
        None => "<span class=\"muted\">unknown</span>".into(),
    }
}

fn flash(c: &Console, session: &Session) -> String {
    c.sessions
        .take_flash(&session.id)
        .map(|m| format!("<p class=\"flash\" role=\"status\">{}</p>", esc(&m)))
        .unwrap_or_default()
}

fn dead_jobs_table(jobs: &[DeadJob], csrf: &str, back: Option<Uuid>) -> String {
    if jobs.is_empty() {
        return "<p class=\"ok\">No dead jobs.</p>".into();
    }
    let back = back.map(|b| b.to_string()).unwrap_or_default();
    let mut t = String::from(
        "<table><thead><tr><th>Job</th><th>Order</th><th>Attempts</th><th>Last error</th><th></th></tr></thead><tbody>",
    );
    for j in jobs.iter().take(TABLE_ROWS) {
        let last = j.errors.last().map(String::as_str).unwrap_or("");
        let _ = write!(
            t,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&j.id),
            order_link(job_order(j)),
            j.attempts,
            esc(last),
            action_form(
                "/console/action",
                csrf,
                &[
                    ("action", "jobs-requeue"),
                    ("id", j.id.as_str()),
                    ("back", back.as_str())
                ],
                "Requeue"
            ),
        );
    }
    t.push_str("</tbody></table>");
    t
}

fn dead_letters_table(letters: &[DeadLetter], csrf: &str, back: Option<Uuid>) -> String {
    if letters.is_empty() {
        return "<p class=\"ok\">No dead letters.</p>".into();
    }
    let back = back.map(|b| b.to_string()).unwrap_or_default();
    let mut t = String::from(
        "<table><thead><tr><th>Dead letter</th><th>Group</th><th>Subject</th><th>Order</th>\
         <th>Reason</th><th>Deliveries</th><th>Dead since</th><th></th></tr></thead><tbody>",
    );
    for d in letters.iter().take(TABLE_ROWS) {
        let at = d
            .dead_at
            .map(|t| time_text(OffsetDateTime::from(t)))
            .unwrap_or_default();
        let _ = write!(
            t,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(&d.id),
            esc(&d.group),
            esc(&d.message.subject),
            order_link(letter_order(d)),
            esc(&d.reason),
            d.deliveries,
            esc(&at),
            action_form(
                "/console/action",
                csrf,
                &[
                    ("action", "events-replay"),
                    ("id", d.id.as_str()),
                    ("back", back.as_str())
                ],
                "Replay"
            ),
            action_form(
                "/console/action",
                csrf,
                &[
                    ("action", "events-purge"),
                    ("id", d.id.as_str()),
                    ("back", back.as_str())
                ],
                "Purge"
            ),
        );
    }
    t.push_str("</tbody></table>");
    t
}

fn orders_table(rows: &[OrderRow], now: OffsetDateTime) -> String {
    let mut t = String::from(
        "<table><thead><tr><th>Order</th><th>User</th><th>Status</th><th>Total</th><th>Created</th><th>Age</th></tr></thead><tbody>",
    );
    for o in rows {
        let _ = write!(
            t,
            "<tr><td>{}</td><td><a href=\"/console/orders?q={}\">{}</a></td><td>{}</td><td>{}.{:02}</td><td>{}</td><td>{}</td></tr>",
            order_link(Some(o.id)),
            o.user_id,
            o.user_id,
            esc(&o.status),
            o.total_cents / 100,
            o.total_cents % 100,
            esc(&time_text(o.created_at)),
            age_text((now - o.created_at).as_seconds_f64()),
        );
    }
    t.push_str("</tbody></table>");
    t
}

fn error_line(what: &str, why: &str) -> String {
    format!(
        "<p class=\"bad\">{} unavailable: {}</p>",
        esc(what),
        esc(why)
    )
}

async fn stuck(State(c): App, headers: HeaderMap) -> Response {
    let visitor = match c.visitor(&headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let csrf = visitor.session.csrf.clone();
    let now = OffsetDateTime::now_utc();
    let p = &c.parts;
    let stream = events::stream();
    let (jobs, letters, pending) = tokio::join!(
        bounded(p.jobs.dead_letters(PROCESS_ORDER, TABLE_ROWS)),
        bounded(p.bus.dead_letters(&stream, TABLE_ROWS)),
        bounded(
            p.orders
                .pending_since(c.pending_before(now), TABLE_ROWS as i64)
        ),
    );
    let mut body = String::from("<h1>Stuck work</h1>");
    body.push_str(&flash(&c, &visitor.session));
    body.push_str(
        "<section id=\"jobs\"><h2>Dead jobs</h2><p class=\"muted\">Jobs that failed every attempt. \
                   Requeue runs one again with a fresh attempt count.</p>",
    );
    match &jobs {
        Ok(jobs) => {
            if !jobs.is_empty() {
                body.push_str("<p class=\"bulk\"><a class=\"button\" href=\"/console/confirm?action=jobs-requeue-all\">Requeue all…</a> \
                               <a class=\"button danger\" href=\"/console/confirm?action=jobs-purge-all\">Purge all…</a></p>");
            }
            body.push_str(&dead_jobs_table(jobs, &csrf, None));
        }
        Err(e) => body.push_str(&error_line("The job queue", e)),
    }
    body.push_str("</section><section id=\"events\"><h2>Bus dead letters</h2><p class=\"muted\">Events a consumer group \
                   gave up on. Replay gives one back to its group; purge deletes it.</p>");
    match &letters {
        Ok(letters) => {
            if !letters.is_empty() {
                body.push_str("<p class=\"bulk\"><a class=\"button\" href=\"/console/confirm?action=events-replay-all\">Replay all…</a> \
                               <a class=\"button danger\" href=\"/console/confirm?action=events-purge-all\">Purge all…</a></p>");
            }
            body.push_str(&dead_letters_table(letters, &csrf, None));
        }
        Err(e) => body.push_str(&error_line("The bus", e)),
    }
    let _ = write!(
        body,
        "</section><section id=\"pending\"><h2>PENDING longer than {}</h2><p class=\"muted\">\
         The reconciler (RECONCILE_AFTER_SECONDS) enqueues their jobs again; an order here for long \
         usually has a dead job.</p>",
        esc(&age_text(p.pending_after.as_secs_f64()))
    );
    match &pending {
        Ok((0, _)) => body.push_str("<p class=\"ok\">None.</p>"),
        Ok((n, rows)) => {
            let _ = write!(
                body,
                "<p>{n} orders, oldest first{}:</p>",
                if *n as usize > rows.len() {
                    format!(" (the first {})", rows.len())
                } else {
                    String::new()
                }
            );
            body.push_str(&orders_table(rows, now));
        }
        Err(e) => body.push_str(&error_line("The orders database", e)),
    }
    body.push_str("</section>");
    visitor.page(StatusCode::OK, "Stuck work", Nav::Stuck, &body)
}

// --- An order's story --------------------------------------------------------

#[derive(serde::Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(State(c): App, headers: HeaderMap, Query(q): Query<SearchQuery>) -> Response {
    let visitor = match c.visitor(&headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let q = q.q.trim();
    if let Ok(id) = Uuid::parse_str(q) {
        return visitor.respond(see_other(&format!("/console/orders/{id}")));
    }
    let mut body = String::from("<h1>Orders</h1>");
    if q.is_empty() {
        body.push_str(
            "<p>Type an order id (a UUID) or a user id (a number) in the search box above.</p>",
        );
    } else if let Ok(user) = q.parse::<i64>() {
        let _ = write!(body, "<h2>Orders of user {user}</h2>");
        match bounded(c.parts.orders.orders_of_user(user, TABLE_ROWS as i64)).await {
            Ok(rows) if rows.is_empty() => body.push_str("<p>No orders.</p>"),
            Ok(rows) => {
                let _ = write!(
                    body,
                    "<p class=\"muted\">Newest first (at most {TABLE_ROWS}).</p>"
                );
                body.push_str(&orders_table(&rows, OffsetDateTime::now_utc()));
            }
            Err(e) => body.push_str(&error_line("The orders database", &e)),
        }
    } else {
        let _ = write!(
            body,
            "<p class=\"bad\">{} is neither an order id (a UUID) nor a user id (a number).</p>",
            esc(q)
        );
    }
    visitor.page(StatusCode::OK, "Orders", Nav::Orders, &body)
}

async fn order_page(State(c): App, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let visitor = match c.visitor(&headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return visitor.page(
            StatusCode::NOT_FOUND,
            "Order",
            Nav::Orders,
            "<h1>Not an order id</h1>",
        );
    };
    let p = &c.parts;
    let stream = events::stream();
    let (story, jobs, letters) = tokio::join!(
        bounded(p.orders.order(id)),
        bounded(p.jobs.dead_letters(PROCESS_ORDER, COUNT_CAP)),
        bounded(p.bus.dead_letters(&stream, COUNT_CAP)),
    );
    let story = match story {
        Ok(Some(s)) => s,
        Ok(None) => {
            let body = format!("<h1>Order {id}</h1><p>No such order.</p>");
            return visitor.page(StatusCode::NOT_FOUND, "Order", Nav::Orders, &body);
        }
        Err(e) => {
            let body = format!(
                "<h1>Order {id}</h1>{}",
                error_line("The orders database", &e)
            );
            return visitor.page(StatusCode::SERVICE_UNAVAILABLE, "Order", Nav::Orders, &body);
        }
    };
    let o = &story.order;
    let csrf = visitor.session.csrf.clone();
    let mut body = format!(
        "<h1>Order <code>{id}</code> <span class=\"status s-{s}\" id=\"status\">{s}</span></h1>",
        s = esc(&o.status)
    );
    body.push_str(&flash(&c, &visitor.session));
    let trace = story
        .trace_id()
        .map(|t| format!("<code>{}</code> <span class=\"muted\">(every log line of the order carries it: grep the logs for it)</span>", esc(t)))
        .unwrap_or_else(|| "<span class=\"muted\">none recorded (its events are gone or carried none)</span>".into());
    let _ = write!(
        body,
        "<dl><dt>User</dt><dd><a href=\"/console/orders?q={u}\">{u}</a></dd>\
         <dt>Total</dt><dd>{}.{:02}</dd><dt>Created</dt><dd>{}</dd><dt>Items</dt><dd><code>{}</code></dd>\
         <dt>Trace id</dt><dd>{trace}</dd></dl>",
        o.total_cents / 100,
        o.total_cents % 100,
        esc(&time_text(o.created_at)),
        esc(&story.items.to_string()),
        u = o.user_id,
    );
    let job_id = process_order_job_id(id, story.new_order_event());
    let _ = write!(
        body,
        "<section id=\"job\"><h2>Job</h2><p><code>{}</code> ",
        esc(&job_id)
    );
    match &jobs {
        Ok(jobs) => {
            let mine: Vec<DeadJob> = jobs
                .iter()
                .filter(|j| j.id == job_id || job_order(j) == Some(id))
                .cloned()
                .collect();
            if mine.is_empty() {
                body.push_str("is not among the dead jobs.</p>");
            } else {
                body.push_str("is <strong class=\"bad\">dead</strong>:</p>");
                body.push_str(&dead_jobs_table(&mine, &csrf, Some(id)));
                if let Some(j) = mine.first() {
                    body.push_str("<ol class=\"errors\">");
                    for e in &j.errors {
                        let _ = write!(body, "<li>{}</li>", esc(e));
                    }
                    body.push_str("</ol>");
                }
            }
        }
        Err(e) => body.push_str(&error_line("The job queue", e)),
    }
    body.push_str("</section>");
    if let Ok(letters) = &letters {
        let mine: Vec<DeadLetter> = letters
            .iter()
            .filter(|d| letter_order(d) == Some(id))
            .cloned()
            .collect();
        if !mine.is_empty() {
            body.push_str("<section><h2>Bus dead letters</h2>");
            body.push_str(&dead_letters_table(&mine, &csrf, Some(id)));
            body.push_str("</section>");
        }
    }
    body.push_str("<section><h2>Status history</h2><table><thead><tr><th>From</th><th>To</th><th>At</th></tr></thead><tbody>");
    for h in &story.history {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(h.from.as_deref().unwrap_or("–")),
            esc(&h.to),
            esc(&time_text(h.at))
        );
    }
    body.push_str("</tbody></table></section><section><h2>Events</h2>");
    if story.events.is_empty() {
        body.push_str("<p class=\"muted\">None kept (sent events are deleted after ORDERS_OUTBOX_RETENTION_SECONDS).</p>");
    } else {
        body.push_str("<table><thead><tr><th>Subject</th><th>Event id</th><th>Written</th><th>Sent</th><th>Payload</th></tr></thead><tbody>");
        for e in &story.events {
            let sent = e.sent_at.map(time_text).unwrap_or_else(|| "not yet".into());
            let _ = write!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&e.subject),
                esc(&e.event_id),
                esc(&time_text(e.created_at)),
                esc(&sent),
                esc(&e.payload)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");
    visitor.page(StatusCode::OK, "Order", Nav::Orders, &body)
}

// --- Actions -----------------------------------------------------------------

/// The actions on every dead job or letter, which ask for a confirmation.
fn bulk_action(action: &str) -> Option<&'static str> {
    Some(match action {
        "jobs-requeue-all" => "Requeue every dead job",
        "jobs-purge-all" => "Delete every dead job for good",
        "events-replay-all" => "Replay every bus dead letter to its consumer group",
        "events-purge-all" => "Delete every bus dead letter for good",
        _ => return None,
    })
}

#[derive(serde::Deserialize)]
struct ConfirmQuery {
    #[serde(default)]
    action: String,
}

async fn confirm(State(c): App, headers: HeaderMap, Query(q): Query<ConfirmQuery>) -> Response {
    let visitor = match c.visitor(&headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(what) = bulk_action(&q.action) else {
        return visitor.respond(see_other("/console/stuck"));
    };
    let p = &c.parts;
    let count = if q.action.starts_with("jobs-") {
        bounded(p.jobs.stats(PROCESS_ORDER))
            .await
            .map(|s| s.dead.to_string())
    } else {
        bounded(p.bus.dead_letters(&events::stream(), COUNT_CAP + 1))
            .await
            .map(|d| {
                if d.len() > COUNT_CAP {
                    format!("{COUNT_CAP}+")
                } else {
                    d.len().to_string()
                }
            })
    };
    let count = count.unwrap_or_else(|e| format!("an unknown number of (unavailable: {e})"));
    let body = format!(
        "<h1>Confirm</h1><p class=\"confirm\">{}: {} of them. This cannot be undone.</p>\
         <form method=\"post\" action=\"/console/action\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"action\" value=\"{}\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button class=\"danger\">Yes, {}</button> <a href=\"/console/stuck\">Cancel</a></form>",
        esc(what),
        esc(&count),
        esc(&visitor.session.csrf),
        esc(&q.action),
        esc(&what.to_lowercase()),
    );
    visitor.page(StatusCode::OK, "Confirm", Nav::Stuck, &body)
}

async fn action(
    State(c): App,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session = match c.poster(&headers, &form) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let action = form.get("action").map(String::as_str).unwrap_or("");
    let id = form.get("id").map(String::as_str).unwrap_or("").trim();
    let back = form
        .get("back")
        .and_then(|b| Uuid::parse_str(b).ok())
        .map_or("/console/stuck".to_string(), |o| {
            format!("/console/orders/{o}")
        });
    if bulk_action(action).is_some() && form.get("confirm").map(String::as_str) != Some("yes") {
        return see_other(&format!("/console/confirm?action={action}"));
    }
    let outcome = run_action(&c, action, id).await;
    let message = match &outcome {
        Ok(m) => {
            tracing::info!(user = %session.user, action, id, outcome = %m, "console action");
            m.clone()
        }
        Err(e) => {
            tracing::warn!(user = %session.user, action, id, error = %e, "console action failed");
            format!("Failed: {e}")
        }
    };
    c.sessions.set_flash(&session.id, message);
    see_other(&back)
}

async fn run_action(c: &Console, action: &str, id: &str) -> Result<String, String> {
    let p = &c.parts;
    let stream = events::stream();
    let q = PROCESS_ORDER;
    let needs_id = matches!(action, "jobs-requeue" | "events-replay" | "events-purge");
    if needs_id && id.is_empty() {
        return Err("no id given".into());
    }
    match action {
        "jobs-requeue" => match bounded(p.jobs.requeue_dead(q, id)).await? {
            true => Ok(format!("Requeued job {id}.")),
            false => Err(format!("no dead job {id} (requeued or purged meanwhile?)")),
        },
        "jobs-requeue-all" => {
            let dead = bounded(p.jobs.dead_letters(q, ALL_AT_ONCE)).await?;
            let mut n = 0;
            for d in &dead {
                if bounded(p.jobs.requeue_dead(q, &d.id)).await? {
                    n += 1;
                }
            }
            Ok(format!("Requeued {n} dead jobs."))
        }
        "jobs-purge-all" => {
            let n = bounded(p.jobs.purge_dead(q)).await?;
            Ok(format!("Purged {n} dead jobs."))
        }
        "events-replay" => match bounded(p.bus.replay_dead(&stream, id)).await? {
            true => Ok(format!("Replayed dead letter {id}.")),
            false => Err(format!(
                "no dead letter {id} (replayed or purged meanwhile?)"
            )),
        },
        "events-purge" => match bounded(p.bus.purge_dead(&stream, id)).await? {
            true => Ok(format!("Purged dead letter {id}.")),
            false => Err(format!(
                "no dead letter {id} (replayed or purged meanwhile?)"
            )),
        },
        "events-replay-all" | "events-purge-all" => {
            let replay = action == "events-replay-all";
            let dead = bounded(p.bus.dead_letters(&stream, ALL_AT_ONCE)).await?;
            let mut n = 0;
            for d in &dead {
                let done = if replay {
                    bounded(p.bus.replay_dead(&stream, &d.id)).await?
                } else {
                    bounded(p.bus.purge_dead(&stream, &d.id)).await?
                };
                // Gone meanwhile (another operator): nothing left to do.
                if done {
                    n += 1;
                }
            }
            let verb = if replay { "Replayed" } else { "Purged" };
            Ok(format!("{verb} {n} dead letters."))
        }
        other => Err(format!("unknown action {other:?}")),
    }
}

// --- Sign-in (off loopback, or under the orders API) -------------------------

/// How long auth may take to check a password (Argon2id) before the sign-in
/// page says it is unavailable.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10);

async fn login_page(State(c): App) -> Response {
    match c.parts.access {
        Access::Refused => refused(),
        Access::Loopback => see_other("/console"),
        Access::Token(_) => message_form(StatusCode::OK, ""),
        Access::Admin(_) => admin_form(StatusCode::OK, "", ""),
    }
}

fn message_form(status: StatusCode, note: &str) -> Response {
    let body = format!(
        "<h1>Sign in</h1>{note}<form method=\"post\" action=\"/console/login\">\
         <label>Console token (ORDERLY_CONSOLE_TOKEN) <input type=\"password\" name=\"token\" autofocus></label> \
         <button>Sign in</button></form>"
    );
    html_page(status, html::page("Sign in", Nav::None, None, &body))
}

/// The admin sign-in form; `note` says why it is shown again, `email` is
/// what was typed.
fn admin_form(status: StatusCode, note: &str, email: &str) -> Response {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("<p class=\"bad\" role=\"alert\">{}</p>", esc(note))
    };
    let body = format!(
        "<h1>Sign in</h1><p class=\"muted\">With an account that has the admin role.</p>{note}\
         <form method=\"post\" action=\"/console/login\">\
         <label>E-mail <input type=\"email\" name=\"email\" value=\"{}\" autocomplete=\"username\" required autofocus></label> \
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label> \
         <button>Sign in</button></form>",
        esc(email)
    );
    html_page(status, html::page("Sign in", Nav::None, None, &body))
}

async fn login(
    State(c): App,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if matches!(c.parts.access, Access::Refused | Access::Loopback) {
        return login_page(State(c)).await;
    }
    if let Some(why) = session::cross_site(&headers) {
        tracing::warn!(%why, "console: cross-site sign-in refused");
        return message_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "Sign in from the console's own page.",
        );
    }
    let session = match &c.parts.access {
        Access::Token(token) => {
            let sent = form.get("token").map(String::as_str).unwrap_or("");
            if !session::same_secret(sent, token) {
                tracing::warn!("console: sign-in with a wrong token");
                return message_form(
                    StatusCode::UNAUTHORIZED,
                    "<p class=\"bad\">That is not the console's token.</p>",
                );
            }
            c.sessions.open("token")
        }
        Access::Admin(auth) => {
            let email = form.get("email").map(|e| e.trim()).unwrap_or("");
            let password = form.get("password").map(String::as_str).unwrap_or("");
            let outcome = tokio::time::timeout(SIGN_IN_TIMEOUT, auth.sign_in(email, password))
                .await
                .unwrap_or_else(|_| {
                    Err(SignInError::Unavailable(format!(
                        "no answer within {} s",
                        SIGN_IN_TIMEOUT.as_secs()
                    )))
                });
            match outcome {
                Ok(admin) => c.sessions.open_until(&admin.user, Some(admin.expires_at)),
                Err(e) => {
                    tracing::warn!(email, error = %e, "console: admin sign-in refused");
                    let status = match e {
                        SignInError::Credentials => StatusCode::UNAUTHORIZED,
                        SignInError::NotAdmin => StatusCode::FORBIDDEN,
                        SignInError::Throttled => StatusCode::TOO_MANY_REQUESTS,
                        SignInError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    let note = match e {
                        SignInError::Credentials => "Incorrect e-mail or password.".into(),
                        SignInError::NotAdmin => "This account is not an admin.".into(),
                        SignInError::Throttled => {
                            "Too many failed sign-ins; try again later.".into()
                        }
                        SignInError::Unavailable(why) => format!(
                            "The auth service cannot check the account now ({why}); try again later."
                        ),
                    };
                    return admin_form(status, &note, email);
                }
            }
        }
        Access::Refused | Access::Loopback => return login_page(State(c.clone())).await,
    };
    tracing::info!(user = %session.user, "console: signed in");
    c.new_visitor(session).respond(see_other("/console"))
}
