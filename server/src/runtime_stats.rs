//! Process gauges for leak checks (`cargo xtask soak`): the bytes the
//! allocator (jemalloc, the binary's global allocator) holds for the program
//! and the tokio tasks alive. Read when `/metrics` is scraped, never cached,
//! so a soak run sees what is live after each cycle. Without jemalloc as the
//! global allocator (library tests) the allocator figures stay near zero.

use metrics::gauge;

/// Sets `signalroom_jemalloc_allocated_bytes`, `signalroom_jemalloc_resident_bytes`,
/// `signalroom_tokio_alive_tasks` and `signalroom_tokio_workers` to their current values.
pub fn record() {
    // jemalloc's statistics are a snapshot refreshed by advancing its epoch.
    if tikv_jemalloc_ctl::epoch::advance().is_ok() {
        if let Ok(bytes) = tikv_jemalloc_ctl::stats::allocated::read() {
            gauge!("signalroom_jemalloc_allocated_bytes").set(bytes as f64);
        }
        if let Ok(bytes) = tikv_jemalloc_ctl::stats::resident::read() {
            gauge!("signalroom_jemalloc_resident_bytes").set(bytes as f64);
        }
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let metrics = handle.metrics();
        gauge!("signalroom_tokio_alive_tasks").set(metrics.num_alive_tasks() as f64);
        gauge!("signalroom_tokio_workers").set(metrics.num_workers() as f64);
    }
}
