//! Turning [`OrdersSettings`] into the service's parts: the store the database
//! URL names (SQLite or PostgreSQL), the cache and limiter (in-process or
//! Redis), and what `/ready` checks; and the parts into the HTTP app. The
//! binary's wiring only adds the bus and the token verifier it chose.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use orderly_core::config::{OrdersSettings, TlsFiles};
use orderly_core::readiness::ReadinessCheck;
use orderly_redis::RedisTls;

use crate::OrderService;
use crate::cache::{MemoryCache, OrderCache};
use crate::limiter::{MemoryLimiter, RateLimiter};
use crate::redis_cache::RedisCache;
use crate::redis_limiter::RedisLimiter;
use crate::sql_store::SqlOrderStore;
use crate::store::{OrderStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("orders database: {0}")]
    Store(#[from] StoreError),
    #[error("orders Redis: {0}")]
    Redis(String),
}

/// Entries of the in-process cache (the Redis cache is bounded by its TTL).
const MEMORY_CACHE_ENTRIES: u64 = 100_000;

/// Everything the orders role (and the worker, which changes orders too) needs.
pub struct OrdersParts {
    pub service: Arc<OrderService>,
    /// Wakes the outbox relay after a write in this process.
    pub outbox_written: Arc<Notify>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Database, and the Redis cache and limiter when configured.
    pub checks: Vec<Arc<dyn ReadinessCheck>>,
    /// One cache for all processes (Redis): writers refresh it themselves, so
    /// there is nothing to drop on `order_status_changed`.
    pub shared_cache: bool,
    /// The orders database itself (its pool, shared with the store), for
    /// read-only views beside the service: the operator's console.
    pub db: orderly_db::Db,
}

/// The store on the database the URL names (SQLite or PostgreSQL); opening
/// applies its migrations.
pub async fn open_store(url: &str) -> Result<Arc<dyn OrderStore>, StoreError> {
    Ok(Arc::new(SqlOrderStore::connect(url).await?))
}

/// Apply the orders database's migrations and return (`orderly migrate`).
pub async fn migrate(settings: &OrdersSettings) -> Result<(), StoreError> {
    SqlOrderStore::connect(settings.database_url.expose())
        .await?
        .db()
        .close()
        .await;
    Ok(())
}

/// The Redis adapter's form of the `REDIS_*` TLS files.
fn redis_tls(files: &TlsFiles) -> RedisTls {
    RedisTls {
        ca_file: files.ca_file.clone(),
        client_cert_file: files.cert_file.clone(),
        client_key_file: files.key_file.clone(),
    }
}

pub async fn build(settings: &OrdersSettings) -> Result<OrdersParts, StartupError> {
    let sql = SqlOrderStore::connect(settings.database_url.expose()).await?;
    let db = sql.db().clone();
    let store: Arc<dyn OrderStore> = Arc::new(sql);
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(StoreCheck(store.clone()))];
    let redis_tls = redis_tls(&settings.redis_tls);

    let (cache, shared_cache): (Arc<dyn OrderCache>, bool) = match &settings.redis_cache_url {
        Some(url) => {
            let cache = Arc::new(
                RedisCache::new(url.expose(), &redis_tls, settings.cache_ttl)
                    .map_err(StartupError::Redis)?,
            );
            if let Err(e) = cache.ping().await {
                tracing::warn!(error = %e, "the Redis order cache does not answer yet; reading from the database until it does");
            }
            checks.push(Arc::new(CacheCheck(cache.clone())));
            (cache, true)
        }
        None => (
            Arc::new(MemoryCache::new(settings.cache_ttl, MEMORY_CACHE_ENTRIES)),
            false,
        ),
    };
    let limiter: Arc<dyn RateLimiter> = match &settings.redis_limiter_url {
        Some(url) => {
            let limiter = Arc::new(
                RedisLimiter::new(
                    url.expose(),
                    &redis_tls,
                    settings.rate_limit,
                    &settings.rate_limit_key_prefix,
                    settings.rate_limit_fail_closed,
                )
                .map_err(StartupError::Redis)?,
            );
            checks.push(Arc::new(LimiterCheck {
                limiter: limiter.clone(),
                fail_closed: settings.rate_limit_fail_closed,
            }));
            limiter
        }
        None => Arc::new(MemoryLimiter::new(settings.rate_limit)),
    };

    let outbox_written = Arc::new(Notify::new());
    let service = OrderService::new(store, cache, settings.status_policy, outbox_written.clone());
    Ok(OrdersParts {
        service: Arc::new(service),
        outbox_written,
        limiter,
        checks,
        shared_cache,
        db,
    })
}

/// The whole HTTP service on these parts: the orders routes, and kit's
/// operational routes and layers (`/health`, `/ready`, `/docs`, metrics,
/// 404/405 bodies, the HTTP edge). `/ready` checks the parts' own
/// dependencies, then `more_checks` (what the process adds: bus, queue, JWKS).
/// The binary and the tests both build the app here.
#[cfg(feature = "http")]
pub fn app(
    settings: &OrdersSettings,
    parts: &OrdersParts,
    verifier: Arc<orderly_http::token::TokenVerifier>,
    more_checks: Vec<Arc<dyn ReadinessCheck>>,
    http: &orderly_core::config::HttpSettings,
) -> axum::Router {
    let state = crate::OrdersState {
        service: parts.service.clone(),
        verifier,
        limiter: parts.limiter.clone(),
        trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
    };
    let mut checks = parts.checks.clone();
    checks.extend(more_checks);
    orderly_http::server::finish(
        "orders",
        crate::router(state),
        crate::openapi(),
        checks,
        http,
    )
}

struct StoreCheck(Arc<dyn OrderStore>);

#[async_trait]
impl ReadinessCheck for StoreCheck {
    fn name(&self) -> &'static str {
        "database"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

struct CacheCheck(Arc<RedisCache>);

#[async_trait]
impl ReadinessCheck for CacheCheck {
    fn name(&self) -> &'static str {
        "cache"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await
    }
}

struct LimiterCheck {
    limiter: Arc<RedisLimiter>,
    fail_closed: bool,
}

#[async_trait]
impl ReadinessCheck for LimiterCheck {
    fn name(&self) -> &'static str {
        "rate_limiter"
    }
    async fn check(&self) -> Result<(), String> {
        self.limiter.ping().await
    }
    /// Failing open, requests go through uncounted while Redis is down: the
    /// service still serves (`degraded`); failing closed, it answers 503.
    fn critical(&self) -> bool {
        self.fail_closed
    }
}
