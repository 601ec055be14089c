//! The orders REST API.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa::OpenApi;
use uuid::Uuid;

use orderly_core::config::TrustedProxies;
use orderly_core::trace_context::{self, TraceContext};
use orderly_http::error::header_pair;
use orderly_http::extract::{Json, Path, Query};
use orderly_http::routes::{BearerAuth, RouteTable, Routes};
use orderly_http::token::{CurrentUser, TokenVerifier};
use orderly_http::{ApiError, FieldError};

use crate::domain::{Order, OrderCreate, OrderStatusUpdate};
use crate::limiter::RateLimiter;
use crate::service::{Caller, CreateOutcome, OrderService, OrdersError};
use crate::store::StoreError;
use orderly_http::client_ip::client_ip;

#[derive(Clone)]
pub struct OrdersState {
    pub service: Arc<OrderService>,
    pub verifier: Arc<TokenVerifier>,
    pub limiter: Arc<dyn RateLimiter>,
    pub trusted_proxies: Arc<TrustedProxies>,
}

impl FromRef<OrdersState> for Arc<TokenVerifier> {
    fn from_ref(state: &OrdersState) -> Self {
        state.verifier.clone()
    }
}

/// The orders routes; the old service answered both spellings of each path,
/// so the one without the trailing slash is an alias of the documented one.
fn routes() -> Routes<OrdersState> {
    Routes::new()
        .post("/orders/", create_order)
        .alias("/orders", "/orders/")
        .get("/orders/{order_id}/", get_order)
        .patch("/orders/{order_id}/", update_status)
        .alias("/orders/{order_id}", "/orders/{order_id}/")
        .get("/orders/user/{user_id}/", list_user_orders)
        .alias("/orders/user/{user_id}", "/orders/user/{user_id}/")
}

/// Everything the served orders app routes: [`router`] plus the HTTP edge's operational
/// routes (checked against [`openapi`] by the tests).
pub fn route_table() -> RouteTable {
    routes().table().merge(orderly_http::routes::ops_table())
}

/// `/orders/*`: every route authenticated, then rate limited (the compat order:
/// a request without a valid token is refused before it is counted).
pub fn router(state: OrdersState) -> Router {
    let orders = routes()
        .into_router()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            authenticate_and_limit,
        ));
    orders.with_state(state)
}

async fn authenticate_and_limit(
    State(state): State<OrdersState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(peer, req.headers(), &state.trusted_proxies);
    let decision = match state.limiter.hit(&ip.to_string()).await {
        Ok(decision) => decision,
        Err(unavailable) => return ApiError::Unavailable(unavailable.to_string()).into_response(),
    };
    let headers = [
        header_pair("x-ratelimit-limit", decision.limit),
        header_pair("x-ratelimit-remaining", decision.remaining),
        header_pair("x-ratelimit-reset", decision.reset_after),
    ];
    if !decision.allowed {
        metrics::counter!("rate_limited_total").increment(1);
        let mut h: HeaderMap = headers.into_iter().collect();
        let (name, value) = header_pair("retry-after", decision.reset_after);
        h.insert(name, value);
        return ApiError::TooManyRequests {
            detail: "Rate limit exceeded".into(),
            headers: h,
        }
        .into_response();
    }
    req.extensions_mut().insert(user);
    let mut response = next.run(req).await;
    response.headers_mut().extend(headers);
    response
}

/// The `traceparent` the events of this request carry: the context orderly-http's
/// middleware gave the request (continued from the client's header or new).
/// A router served without that middleware continues or starts one here, so
/// every event still has a valid one.
fn traceparent(trace: Option<Extension<TraceContext>>, headers: &HeaderMap) -> String {
    let context = match trace {
        Some(Extension(context)) => context,
        None => TraceContext::continue_or_start(
            headers
                .get(trace_context::TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    context.traceparent()
}

fn parse_order_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::Validation(vec![FieldError::new(
            vec![json!("path"), json!("order_id")],
            "Input should be a valid UUID",
            "uuid_parsing",
        )])
    })
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Create an order; `user_id` comes from the token.
#[utoipa::path(post, path = "/orders/", tag = "orders",
    request_body = OrderCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key + same body returns the same order")),
    responses(
        (status = 200, description = "The created order (or the earlier one for a repeated Idempotency-Key)", body = Order),
        (status = 401, description = "Not authenticated / Could not validate credentials"),
        (status = 413, description = "Request body larger than 256 KiB"),
        (status = 422, description = "Invalid body: not JSON, wrong types, empty items, non-positive price or quantity, amounts too large, total mismatch, reused key"),
        (status = 429, description = "Rate limit exceeded"),
        (status = 503, description = "Rate limiter unavailable (Redis down and ORDERS_RATE_LIMIT_FAIL_CLOSED=true)"),
    ),
    security(("bearer" = [])))]
async fn create_order(
    State(state): State<OrdersState>,
    Extension(user): Extension<CurrentUser>,
    trace: Option<Extension<TraceContext>>,
    headers: HeaderMap,
    Json(body): Json<OrderCreate>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.to_string()),
            _ => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    vec![json!("header"), json!("Idempotency-Key")],
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    "string_length",
                )]));
            }
        },
    };
    let outcome = state
        .service
        .create(&user, body, key, Some(&traceparent(trace, &headers)))
        .await?;
    Ok(match outcome {
        CreateOutcome::New(order) => axum::Json(order).into_response(),
        CreateOutcome::Replayed(order) => {
            let mut r = axum::Json(order).into_response();
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
    })
}

/// One order (from the cache when present).
#[utoipa::path(get, path = "/orders/{order_id}/", tag = "orders",
    params(("order_id" = String, Path, description = "Order UUID")),
    responses(
        (status = 200, body = Order),
        (status = 401, description = "Not authenticated / Could not validate credentials"),
        (status = 403, description = "Not authorized (another user's order)"),
        (status = 404, description = "Order not found"),
        (status = 422, description = "order_id is not a UUID"),
        (status = 429, description = "Rate limit exceeded"),
        (status = 503, description = "Rate limiter unavailable (Redis down and ORDERS_RATE_LIMIT_FAIL_CLOSED=true)"),
    ),
    security(("bearer" = [])))]
async fn get_order(
    State(state): State<OrdersState>,
    Extension(user): Extension<CurrentUser>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Order>, ApiError> {
    let id = parse_order_id(&order_id)?;
    Ok(axum::Json(state.service.get(&user, id).await?))
}

/// Change the status (legal transitions only). By default an owner may only
/// cancel; PAID and SHIPPED need the `admin` role (`ORDERS_STATUS_POLICY=owner`,
/// legacy: the owner may make any legal transition).
#[utoipa::path(patch, path = "/orders/{order_id}/", tag = "orders",
    params(("order_id" = String, Path, description = "Order UUID")),
    request_body = OrderStatusUpdate,
    responses(
        (status = 200, body = Order),
        (status = 401, description = "Not authenticated / Could not validate credentials"),
        (status = 403, description = "Not authorized: another user's order, or a status the policy leaves to admins"),
        (status = 404, description = "Order not found"),
        (status = 409, description = "Illegal status transition"),
        (status = 413, description = "Request body larger than 256 KiB"),
        (status = 422, description = "order_id is not a UUID, or the body is not a valid status"),
        (status = 429, description = "Rate limit exceeded"),
        (status = 503, description = "Rate limiter unavailable (Redis down and ORDERS_RATE_LIMIT_FAIL_CLOSED=true)"),
    ),
    security(("bearer" = [])))]
async fn update_status(
    State(state): State<OrdersState>,
    Extension(user): Extension<CurrentUser>,
    Path(order_id): Path<String>,
    trace: Option<Extension<TraceContext>>,
    headers: HeaderMap,
    Json(body): Json<OrderStatusUpdate>,
) -> Result<axum::Json<Order>, ApiError> {
    let id = parse_order_id(&order_id)?;
    let order = state
        .service
        .set_status(&user, id, body.status, Some(&traceparent(trace, &headers)))
        .await?;
    Ok(axum::Json(order))
}

#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<String>,
    offset: Option<String>,
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

fn query_int(
    name: &str,
    raw: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, FieldError> {
    let Some(raw) = raw else { return Ok(default) };
    let value: i64 = raw.trim().parse().map_err(|_| {
        FieldError::new(
            vec![json!("query"), json!(name)],
            "Input should be a valid integer",
            "int_parsing",
        )
    })?;
    if !(min..=max).contains(&value) {
        return Err(FieldError::new(
            vec![json!("query"), json!(name)],
            format!("Input should be between {min} and {max}"),
            "less_than_equal",
        ));
    }
    Ok(value)
}

/// A user's orders, newest first.
#[utoipa::path(get, path = "/orders/user/{user_id}/", tag = "orders",
    params(
        ("user_id" = i64, Path),
        ("limit" = Option<i64>, Query, description = "1..=1000, default 100"),
        ("offset" = Option<i64>, Query, description = ">= 0, default 0"),
    ),
    responses(
        (status = 200, body = [Order]),
        (status = 401, description = "Not authenticated / Could not validate credentials"),
        (status = 403, description = "Not authorized (another user's id)"),
        (status = 422, description = "Invalid user_id, limit or offset"),
        (status = 429, description = "Rate limit exceeded"),
        (status = 503, description = "Rate limiter unavailable (Redis down and ORDERS_RATE_LIMIT_FAIL_CLOSED=true)"),
    ),
    security(("bearer" = [])))]
async fn list_user_orders(
    State(state): State<OrdersState>,
    Extension(user): Extension<CurrentUser>,
    Path(user_id): Path<String>,
    Query(page): Query<Page>,
) -> Result<axum::Json<Vec<Order>>, ApiError> {
    let user_id: i64 = user_id.parse().map_err(|_| {
        ApiError::Validation(vec![FieldError::new(
            vec![json!("path"), json!("user_id")],
            "Input should be a valid integer",
            "int_parsing",
        )])
    })?;
    let mut errors = Vec::new();
    let limit = query_int("limit", page.limit.as_deref(), DEFAULT_LIMIT, 1, MAX_LIMIT)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let offset = query_int("offset", page.offset.as_deref(), 0, 0, i64::MAX)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(axum::Json(
        state.service.list(&user, user_id, limit, offset).await?,
    ))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "orderly orders", description = "Orders REST API (compatible with the FastAPI order service)"),
    paths(create_order, get_order, update_status, list_user_orders),
    components(schemas(Order, OrderCreate, OrderStatusUpdate, crate::domain::OrderItem, crate::domain::OrderStatus)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The document served at `/openapi.json`: the orders API and the operational routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    orderly_http::routes::document_ops(ApiDoc::openapi())
}

/// The only place orders' errors become HTTP.
impl From<OrdersError> for ApiError {
    fn from(e: OrdersError) -> Self {
        match e {
            OrdersError::NotFound => ApiError::NotFound(e.to_string()),
            OrdersError::NotAuthorized => ApiError::Forbidden(e.to_string()),
            OrdersError::Invalid(errors) => ApiError::Validation(errors),
            OrdersError::IllegalTransition { .. } => ApiError::Conflict(e.to_string()),
            OrdersError::IdempotencyKeyReused => ApiError::Unprocessable(e.to_string()),
            // Not the request's fault: the client may send it again.
            OrdersError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "the orders database is unavailable; answering 503");
                ApiError::Unavailable("Database unavailable".into())
            }
            OrdersError::Store(inner) => ApiError::internal(inner),
        }
    }
}

impl Caller for CurrentUser {
    fn user_id(&self) -> i64 {
        self.id
    }
    fn is_admin(&self) -> bool {
        CurrentUser::is_admin(self)
    }
}
