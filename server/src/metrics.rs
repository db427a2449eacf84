//! Prometheus metrics: counters bumped where things happen, gauges read from
//! the hub when `/metrics` is scraped (so they can never drift).

use std::sync::OnceLock;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use signalroom_core::{ChangeKind, ErrorCode, RoomChange};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        for code in ErrorCode::ALL {
            counter!("signalroom_errors_total", "code" => code.as_str()).absolute(0);
        }
        counter!("signalroom_joins_total").absolute(0);
        counter!("signalroom_leaves_total").absolute(0);
        counter!("signalroom_signals_relayed_total").absolute(0);
        counter!("signalroom_queue_full_total").absolute(0);
        counter!("signalroom_origin_refused_total").absolute(0);
        counter!("signalroom_webhooks_delivered_total").absolute(0);
        counter!("signalroom_webhooks_retried_total").absolute(0);
        for reason in ["retries", "rejected", "queue_full"] {
            counter!("signalroom_webhooks_dropped_total", "reason" => reason).absolute(0);
        }
        handle
    })
}

/// A successful join (socket or REST).
pub fn joined() {
    counter!("signalroom_joins_total").increment(1);
}

/// A peer left its room (leave, disconnect, DELETE, expiry).
pub fn left() {
    counter!("signalroom_leaves_total").increment(1);
}

/// An error answered to a client.
pub fn error(code: ErrorCode) {
    counter!("signalroom_errors_total", "code" => code.as_str()).increment(1);
}

/// A `signal` queued for its target.
pub fn signal_relayed() {
    counter!("signalroom_signals_relayed_total").increment(1);
}

/// A webhook answered 2xx.
pub fn webhook_delivered() {
    counter!("signalroom_webhooks_delivered_total").increment(1);
}

/// A webhook attempt that failed and will be tried again.
pub fn webhook_retried() {
    counter!("signalroom_webhooks_retried_total").increment(1);
}

/// A webhook given up: `retries` (failed every try), `rejected` (a status
/// that is not retried) or `queue_full` (the oldest queued, dropped for a newer one).
pub fn webhook_dropped(reason: &'static str) {
    counter!("signalroom_webhooks_dropped_total", "reason" => reason).increment(1);
}

/// A Socket.IO request refused for its `Origin` (`--cors-origin`).
pub fn origin_refused() {
    counter!("signalroom_origin_refused_total").increment(1);
}

/// Connections dropped because their queue was full.
pub fn dropped(count: usize) {
    counter!("signalroom_queue_full_total").increment(count as u64);
}

/// Counts what a room's changes did: joins and leaves that really happened,
/// never a renewal, an identical rejoin or a rename.
pub fn changes(changes: &[RoomChange]) {
    for change in changes {
        match change.kind {
            ChangeKind::PeerJoined(_) => joined(),
            ChangeKind::PeerLeft { .. } => left(),
            ChangeKind::RoomStarted | ChangeKind::PeerUpdated(_) | ChangeKind::RoomFinished => {}
        }
    }
}

/// The Prometheus text, with the gauges set to the hub's current counts.
pub fn render(connections: usize, rooms: usize, peers: usize) -> String {
    gauge!("signalroom_connections").set(connections as f64);
    gauge!("signalroom_rooms").set(rooms as f64);
    gauge!("signalroom_peers").set(peers as f64);
    crate::runtime_stats::record();
    install().render()
}
