//! The node's connection to Redis, with the limits cluster mode relies on.
//!
//! One `ConnectionManager` (redis-rs): multiplexed, cheap to clone, and it
//! reconnects by itself after Redis restarts. Every call has a deadline, so a
//! Redis that hangs (a network outage, a frozen process) turns into an error
//! within [`CALL_TIMEOUT`] rather than a request that waits forever: the
//! protocol wants `unavailable` within 2 s. Each call's round trip and each
//! failure are counted for `/metrics`.

use std::time::{Duration, Instant};

use anyhow::Context;
use metrics::{counter, gauge};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue};

/// The longest any one Redis call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A shared handle on Redis.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
}

impl Redis {
    /// A handle on the server at `url`. It connects lazily, so a node can
    /// start while Redis is down (and report itself unhealthy until it is up).
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let client = Client::open(url).with_context(|| format!("bad --redis-url {url:?}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("cannot set up the Redis connection")?;
        counter!("signalroom_redis_errors_total").absolute(0);
        Ok(Self { conn })
    }

    /// Runs one command (or pipeline) within [`CALL_TIMEOUT`]. Records its
    /// round trip in `signalroom_redis_rtt_seconds`, or counts the failure.
    pub async fn call<T: FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisDown> {
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let result = tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<T>(&mut conn)).await;
        timed(what, started, result)
    }

    /// Runs one Lua script (`EVALSHA`, loading it when Redis lacks it) within
    /// [`CALL_TIMEOUT`], counted like [`Redis::call`].
    pub async fn invoke<T: FromRedisValue>(
        &self,
        what: &'static str,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisDown> {
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let result = tokio::time::timeout(CALL_TIMEOUT, script.invoke_async::<T>(&mut conn)).await;
        timed(what, started, result)
    }
}

/// A call's result within its deadline: its round trip recorded, or the failure counted.
fn timed<T>(
    what: &'static str,
    started: Instant,
    result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
) -> Result<T, RedisDown> {
    match result {
        Ok(Ok(value)) => {
            gauge!("signalroom_redis_rtt_seconds").set(started.elapsed().as_secs_f64());
            Ok(value)
        }
        Ok(Err(e)) => Err(RedisDown::failed(what, e.to_string())),
        Err(_) => Err(RedisDown::failed(what, "timed out".to_owned())),
    }
}

/// A Redis call that failed or took too long.
#[derive(Debug, thiserror::Error)]
#[error("redis {what}: {detail}")]
pub struct RedisDown {
    what: &'static str,
    detail: String,
}

impl RedisDown {
    fn failed(what: &'static str, detail: String) -> Self {
        counter!("signalroom_redis_errors_total").increment(1);
        Self { what, detail }
    }
}
