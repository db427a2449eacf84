//! Whether this node can do its work: what `/healthz` reports.
//!
//! One node on its own is always healthy while it runs. In cluster mode the
//! node depends on Redis for every room change, so the cluster's heartbeat
//! marks it unhealthy while Redis does not answer, and a load balancer polling
//! `/healthz` (503 then) sends new clients elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared flag: healthy unless something marked it otherwise.
#[derive(Debug, Clone)]
pub struct Health(Arc<AtomicBool>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Health {
    /// Whether `/healthz` answers 200.
    pub fn is_ok(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets what `/healthz` answers (only cluster mode does so far).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn set_ok(&self, ok: bool) {
        self.0.store(ok, Ordering::Relaxed);
    }
}
