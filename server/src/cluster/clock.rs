//! Redis's clock, as this node estimates it.
//!
//! Deadlines, `joined_at` and HTTP lease expiries are stamped on Redis's
//! clock (`docs/cluster.md`, "Clocks"), so that the commit script can refuse
//! a command past its deadline by Redis's own `TIME`, and a room's times do
//! not jump when it changes owner. The heartbeat measures the offset between
//! this node's wall clock and Redis's `TIME` ([`measure`]); until the first
//! measurement it is 0.

use std::sync::atomic::{AtomicI64, Ordering};

use signalroom_core::Timestamp;

/// Redis's clock minus this node's wall clock, ms.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Now on Redis's clock (ms since the Unix epoch), as estimated.
pub fn now() -> Timestamp {
    let local = crate::hub::now().0;
    let offset = OFFSET_MS.load(Ordering::Relaxed);
    Timestamp(local.saturating_add_signed(offset))
}

/// Asks Redis for its `TIME` and records the offset, taking the middle of
/// the round trip as the instant Redis answered. The offset, ms.
pub async fn measure(redis: &super::redis::Redis) -> Result<i64, super::redis::RedisDown> {
    let before = crate::hub::now().0;
    let (secs, micros): (u64, u64) = redis.call("TIME", &redis::cmd("TIME")).await?;
    let after = crate::hub::now().0;
    let remote = secs.saturating_mul(1000).saturating_add(micros / 1000);
    let local = before + (after.saturating_sub(before)) / 2;
    let offset = i64::try_from(remote).unwrap_or(i64::MAX) - i64::try_from(local).unwrap_or(0);
    OFFSET_MS.store(offset, Ordering::Relaxed);
    Ok(offset)
}
