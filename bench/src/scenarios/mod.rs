//! The benchmark scenarios. Each returns one JSON object; every loop is bounded in count
//! and time. This module holds what they share (the target, the resource meter, the
//! room layout and join bookkeeping); each scenario has its own file.

mod churn;
mod idle;
mod rest;
mod signal;
mod storm;

pub use churn::churn;
pub use idle::idle;
pub use rest::rest;
pub use signal::{SignalLoad, signal};
pub use storm::storm;
use storm::{storm_phase, storm_report};

use crate::http::Http;
use crate::procfs::{self, Sample};
use crate::sio::{Conn, Packet, json_str, num_field, parse};
use crate::stats::{Summary, ms, summarize};
use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// How members receive list changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Updates {
    /// `peer_list_updated` with the whole list (the usage guide's clients).
    Full,
    /// `peer_joined` / `peer_left` (signalroom's extension).
    Delta,
}

impl Updates {
    /// The name used in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Updates::Full => "full",
            Updates::Delta => "delta",
        }
    }
}

/// Where the server is and how to reach it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's loopback address (the first node's, for a cluster).
    pub addr: SocketAddr,
    /// Every node's address: one, unless the target is a cluster.
    pub addrs: Vec<SocketAddr>,
    /// The server's process id, for `/proc` figures.
    pub pid: Option<u32>,
    /// How many WebSocket handshakes to run at once.
    pub connect_concurrency: usize,
    /// WebSocket read buffer per connection.
    pub read_buffer: usize,
    /// Whether every client parses each message it receives (`--clients parse`).
    pub parse: bool,
}

/// Server and generator resource use over one scenario.
struct Meter {
    pid: Option<u32>,
    start: Option<Sample>,
    peak_reset: bool,
    self_cpu: f64,
    t0: Instant,
}

impl Meter {
    /// Waits for the server to go quiet (the last scenario's disconnects), then starts.
    async fn start(pid: Option<u32>) -> Meter {
        if let Some(pid) = pid {
            wait_quiet(pid, Duration::from_secs(20)).await;
        }
        let peak_reset = pid.is_some_and(procfs::reset_peak);
        Meter {
            pid,
            start: pid.and_then(procfs::sample),
            peak_reset,
            self_cpu: procfs::self_cpu_s(),
            t0: Instant::now(),
        }
    }

    fn finish(&self, out: &mut Map<String, Value>) {
        out.insert(
            "wall_s".into(),
            json!(round3(self.t0.elapsed().as_secs_f64())),
        );
        out.insert(
            "bench_cpu_s".into(),
            json!(round3(procfs::self_cpu_s() - self.self_cpu)),
        );
        let now = self.pid.and_then(procfs::sample);
        match (self.start, now) {
            (Some(a), Some(b)) => {
                out.insert("server_cpu_s".into(), json!(round3(b.cpu_s - a.cpu_s)));
                out.insert("server_rss_mb".into(), json!(mb(b.rss_kb)));
                out.insert("server_peak_rss_mb".into(), json!(mb(b.hwm_kb)));
                out.insert(
                    "server_peak_rss_is_scenario_peak".into(),
                    json!(self.peak_reset),
                );
            }
            _ => {
                out.insert("server_cpu_s".into(), Value::Null);
                out.insert("server_peak_rss_mb".into(), Value::Null);
            }
        }
    }
}

fn mb(kb: u64) -> f64 {
    round3(kb as f64 / 1024.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Polls the server's CPU time until it uses under 10 % of a core for 300 ms, or `max`.
async fn wait_quiet(pid: u32, max: Duration) {
    let deadline = Instant::now() + max;
    let mut last = procfs::sample(pid).map(|s| s.cpu_s).unwrap_or(0.0);
    let mut calm = 0;
    while Instant::now() < deadline && calm < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = procfs::sample(pid).map(|s| s.cpu_s).unwrap_or(0.0);
        calm = if now - last <= 0.011 { calm + 1 } else { 0 };
        last = now;
    }
}

/// A name prefix that no earlier run used, so every room starts fresh.
fn run_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("b{:x}", nanos % (1 << 48))
}

/// Opens `n` connections, `concurrency` handshakes at a time. Connection `i` is peer
/// `i / rooms` of its room (see [`Layout`]); with several nodes, peer `p` of every room
/// connects to node `p % nodes`, so that each room spans the nodes.
async fn connect_all(t: &Target, n: usize, rooms: usize) -> Result<(Vec<Conn>, Duration)> {
    let t0 = Instant::now();
    let (read_buffer, parse) = (t.read_buffer, t.parse);
    let node = |i: usize| {
        let nodes = t.addrs.len().max(1);
        t.addrs
            .get(i / rooms.max(1) % nodes)
            .copied()
            .unwrap_or(t.addr)
    };
    let mut conns = Vec::with_capacity(n);
    let mut stream = futures_util::stream::iter(0..n)
        .map(|i| Conn::connect(node(i), read_buffer, parse, Duration::from_secs(20)))
        .buffer_unordered(t.connect_concurrency.max(1));
    while let Some(c) = stream.next().await {
        conns.push(c.with_context(|| format!("after {} of {n} connections", conns.len()))?);
    }
    Ok((conns, t0.elapsed()))
}

fn join_payload(room: &str, peer: &str, updates: Updates) -> String {
    let mode = match updates {
        Updates::Full => "",
        Updates::Delta => r#","updates":"delta""#,
    };
    format!(
        r#"{{"room_name":{},"peer_id":{},"username":{}{mode}}}"#,
        json_str(room),
        json_str(peer),
        json_str(&format!("user {peer}")),
    )
}

/// The room members of a storm: connection `i` joins room `i % rooms` as peer `i / rooms`.
#[derive(Clone)]
struct Layout {
    prefix: String,
    rooms: usize,
    peers: usize,
    updates: Updates,
}

impl Layout {
    fn room(&self, i: usize) -> String {
        format!("{}-r{}", self.prefix, i % self.rooms)
    }
    fn peer(&self, i: usize) -> String {
        format!("p{}", i / self.rooms)
    }
    fn join(&self, i: usize) -> String {
        join_payload(&self.room(i), &self.peer(i), self.updates)
    }
}

/// What one member saw during a storm.
#[derive(Default)]
struct MemberStats {
    join_latency: Option<Duration>,
    converged: Option<Duration>,
    converged_version: Option<Duration>,
    saw_version: bool,
    errors: usize,
    first_error: Option<String>,
    msgs: u64,
    bytes: u64,
}

/// Counts members that are done (converged or failed) and wakes the coordinator at `total`.
struct Progress {
    done: AtomicUsize,
    total: usize,
    notify: Notify,
}

impl Progress {
    fn new(total: usize) -> Arc<Progress> {
        Arc::new(Progress {
            done: AtomicUsize::new(0),
            total,
            notify: Notify::new(),
        })
    }
    fn one_done(&self) {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            self.notify.notify_one();
        }
    }
    async fn wait(&self, timeout: Duration) -> bool {
        if self.done.load(Ordering::Acquire) >= self.total {
            return true;
        }
        tokio::time::timeout(timeout, self.notify.notified())
            .await
            .is_ok()
            || self.done.load(Ordering::Acquire) >= self.total
    }
}

/// The outcome of a storm phase.
struct StormResult {
    members: Vec<MemberStats>,
    conns: Vec<Conn>,
    duration: Duration,
    timed_out: bool,
}

fn base(scenario: &str, label: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("scenario".into(), json!(scenario));
    if !label.is_empty() {
        m.insert("server".into(), json!(label));
    }
    m
}

async fn close_all(conns: Vec<Conn>) {
    // Dropping the sockets closes them; the server sees the disconnects together.
    drop(conns);
    tokio::time::sleep(Duration::from_millis(50)).await;
}
