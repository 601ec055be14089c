//! The job queue conformance kit against [`RedisQueue`], twice:
//!
//! - `shared`: the machine's Redis (`TEST_REDIS_URL`, default 127.0.0.1:6379),
//!   each case under its own key prefix, deleted afterwards;
//! - `restarted`: a private `redis-server` per case with an append-only file,
//!   SIGKILLed and started again on the same data where a case restarts.
//!
//! The kit has no way for a factory to skip a case, so without Redis these
//! cases fail (with the address they could not reach), with or without CI.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderly_bus::conformance::{QueueCaps, QueueFactory};
use orderly_bus::{JobQueue, QueueError, RetryPolicy};

use common::Cleanup;
use orderly_testkit::redis_server::DurableRedis;

struct Shared {
    cleanup: Cleanup,
}

impl Shared {
    fn new() -> Self {
        Self {
            cleanup: Cleanup {
                base_url: common::shared_url(),
                prefix: common::unique_prefix(),
            },
        }
    }
}

#[async_trait]
impl QueueFactory for Shared {
    async fn connect(
        &self,
        _queue: &str,
        policy: RetryPolicy,
    ) -> Result<Arc<dyn JobQueue>, QueueError> {
        let config = common::config(&self.cleanup.base_url, &self.cleanup.prefix, policy);
        let url = config.url.clone();
        let q = orderly_redis::RedisQueue::connect(config)
            .await
            .map_err(|e| QueueError::Unavailable(format!("Redis at {url}: {e}")))?;
        Ok(Arc::new(q))
    }
}

struct Restarted {
    server: Mutex<Option<DurableRedis>>,
}

impl Restarted {
    fn new() -> Self {
        Self {
            server: Mutex::new(DurableRedis::start()),
        }
    }

    fn url(&self) -> Result<String, QueueError> {
        self.server
            .lock()
            .expect("server lock")
            .as_ref()
            .map(DurableRedis::url)
            .ok_or_else(|| QueueError::Unavailable("redis-server could not be started".into()))
    }
}

#[async_trait]
impl QueueFactory for Restarted {
    async fn connect(
        &self,
        _queue: &str,
        policy: RetryPolicy,
    ) -> Result<Arc<dyn JobQueue>, QueueError> {
        let config = common::config(&self.url()?, "orderly", policy);
        Ok(Arc::new(orderly_redis::RedisQueue::connect(config).await?))
    }

    async fn restart(&self) -> Result<(), QueueError> {
        let mut server = self.server.lock().expect("server lock");
        let server = server
            .as_mut()
            .ok_or_else(|| QueueError::Unavailable("redis-server could not be started".into()))?;
        server.restart().map_err(QueueError::Unavailable)
    }

    /// The restart is a SIGKILL already.
    async fn crash(&self) -> Result<(), QueueError> {
        self.restart().await
    }
}

mod shared {
    use super::*;

    orderly_bus::queue_conformance!(Shared::new(), QueueCaps::new("redis").durable(true));
}

mod restarted {
    use super::*;

    orderly_bus::queue_conformance!(
        Restarted::new(),
        QueueCaps::new("redis-restarted")
            .durable(true)
            .restart(true)
            .crash(true)
    );
}
