//! The benchmark scenarios. Each returns one JSON object; every loop is bounded in count
//! and time.

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
    /// The server's loopback address.
    pub addr: SocketAddr,
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

/// Opens `n` connections, `concurrency` handshakes at a time.
async fn connect_all(t: &Target, n: usize) -> Result<(Vec<Conn>, Duration)> {
    let t0 = Instant::now();
    let (addr, read_buffer, parse) = (t.addr, t.read_buffer, t.parse);
    let mut conns = Vec::with_capacity(n);
    let mut stream = futures_util::stream::iter(0..n)
        .map(|_| Conn::connect(addr, read_buffer, parse, Duration::from_secs(20)))
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

/// Every connection joins its room at once; returns when every member has seen its room
/// complete (`total_peers == peers`), every join failed, or `timeout`.
async fn storm_phase(conns: Vec<Conn>, layout: &Layout, timeout: Duration) -> Result<StormResult> {
    let n = conns.len();
    if n != layout.rooms * layout.peers {
        bail!("{n} connections for {} x {}", layout.rooms, layout.peers);
    }
    let progress = Progress::new(n);
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let peers = layout.peers as u64;
    let mut tasks = Vec::with_capacity(n);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let payload = layout.join(i);
        let progress = progress.clone();
        let mut go_rx = go_rx.clone();
        let mut stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = MemberStats::default();
            let (m0, b0) = (conn.msgs, conn.bytes);
            let t0 = match go_rx.wait_for(Option::is_some).await {
                Ok(t) => t.unwrap_or_else(Instant::now),
                Err(_) => return (st, conn),
            };
            let sent = Instant::now();
            let mut done = false;
            if let Err(e) = conn.emit("join_room", &payload).await {
                st.errors += 1;
                st.first_error = Some(format!("{e:#}"));
                progress.one_done();
                return (st, conn);
            }
            loop {
                let frame = tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    f = conn.next_frame() => f,
                };
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) | Err(_) => {
                        st.errors += 1;
                        st.first_error
                            .get_or_insert_with(|| "connection closed".into());
                        if !done {
                            progress.one_done();
                        }
                        break;
                    }
                };
                let Packet::Event { name, body } = parse(&frame) else {
                    continue;
                };
                match name {
                    "join_room_success" => {
                        st.join_latency.get_or_insert_with(|| sent.elapsed());
                    }
                    "peer_list_updated" | "peer_joined" | "peer_left" => {}
                    "join_room_error" => {
                        st.errors += 1;
                        st.first_error
                            .get_or_insert_with(|| body.chars().take(200).collect());
                        if !done {
                            done = true;
                            progress.one_done();
                        }
                        continue;
                    }
                    _ => continue,
                }
                let now = Instant::now();
                if let Some(v) = num_field(body, "version") {
                    st.saw_version = true;
                    if v >= peers && st.converged_version.is_none() {
                        st.converged_version = Some(now - t0);
                    }
                }
                if num_field(body, "total_peers") == Some(peers) && st.converged.is_none() {
                    st.converged = Some(now - t0);
                    if !done {
                        done = true;
                        progress.one_done();
                    }
                }
            }
            st.msgs = conn.msgs - m0;
            st.bytes = conn.bytes - b0;
            (st, conn)
        }));
    }
    // Let every task reach its start line before the gun.
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let _ = go_tx.send(Some(t0));
    let all = progress.wait(timeout).await;
    let duration = t0.elapsed();
    let _ = stop_tx.send(true);
    let mut members = Vec::with_capacity(n);
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        let (st, c) = t.await.context("member task panicked")?;
        members.push(st);
        conns.push(c);
    }
    Ok(StormResult {
        members,
        conns,
        duration,
        timed_out: !all,
    })
}

/// Adds a storm's figures to `out`.
fn storm_report(r: &StormResult, layout: &Layout, out: &mut Map<String, Value>) {
    let n = r.members.len();
    let mut lat: Vec<Duration> = r.members.iter().filter_map(|m| m.join_latency).collect();
    let joined = lat.len();
    let s = summarize(&mut lat);
    let converged = r.members.iter().filter(|m| m.converged.is_some()).count();
    let conv = r.members.iter().filter_map(|m| m.converged).max();
    let saw_version = r.members.iter().any(|m| m.saw_version);
    let conv_ver = r.members.iter().filter_map(|m| m.converged_version).max();
    let conv_ver_all = r.members.iter().all(|m| m.converged_version.is_some());
    let errors: usize = r.members.iter().map(|m| m.errors).sum();
    let first_error = r.members.iter().find_map(|m| m.first_error.clone());
    let msgs: u64 = r.members.iter().map(|m| m.msgs).sum();
    let bytes: u64 = r.members.iter().map(|m| m.bytes).sum();
    out.insert("rooms".into(), json!(layout.rooms));
    out.insert("peers".into(), json!(layout.peers));
    out.insert("updates".into(), json!(layout.updates.name()));
    out.insert("connections".into(), json!(n));
    out.insert("joined".into(), json!(joined));
    out.insert("errors".into(), json!(errors));
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    out.insert("converged".into(), json!(converged == n && !r.timed_out));
    out.insert("converged_members".into(), json!(converged));
    out.insert("join_p50_ms".into(), json!(s.p50_ms));
    out.insert("join_p99_ms".into(), json!(s.p99_ms));
    out.insert("join_max_ms".into(), json!(s.max_ms));
    // The storm starts for everyone at once, so the last answer closes the window.
    let joins_per_s = if s.max_ms > 0.0 {
        joined as f64 / (s.max_ms / 1e3)
    } else {
        0.0
    };
    out.insert("joins_per_s".into(), json!(joins_per_s.round()));
    out.insert("convergence_ms".into(), json!(conv.map(ms)));
    out.insert(
        "convergence_version_ms".into(),
        if saw_version && conv_ver_all {
            json!(conv_ver.map(ms))
        } else {
            Value::Null
        },
    );
    out.insert("storm_ms".into(), json!(ms(r.duration)));
    out.insert("messages".into(), json!(msgs));
    out.insert("bytes".into(), json!(bytes));
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

/// Scenario 1: join storm.
pub async fn storm(
    t: &Target,
    label: &str,
    rooms: usize,
    peers: usize,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("storm", label);
    let meter = Meter::start(t.pid).await;
    let before = t.pid.and_then(procfs::sample);
    let (conns, connect) = connect_all(t, rooms * peers).await?;
    out.insert("connect_ms".into(), json!(ms(connect)));
    let layout = Layout {
        prefix: run_prefix(),
        rooms,
        peers,
        updates,
    };
    let r = storm_phase(conns, &layout, timeout).await?;
    let after = t.pid.and_then(procfs::sample);
    storm_report(&r, &layout, &mut out);
    if let (Some(b), Some(a)) = (before, after) {
        let n = (rooms * peers).max(1) as f64;
        out.insert("server_rss_before_mb".into(), json!(mb(b.rss_kb)));
        out.insert("server_rss_converged_mb".into(), json!(mb(a.rss_kb)));
        out.insert(
            "kb_per_connection".into(),
            json!(round3((a.rss_kb as f64 - b.rss_kb as f64) / n)),
        );
    }
    meter.finish(&mut out);
    close_all(r.conns).await;
    Ok(Value::Object(out))
}

/// Scenario 2: churn. `rooms x peers` members join; then `churners` of them leave and
/// rejoin as fast as answers come, for `secs`.
#[allow(clippy::too_many_arguments)]
pub async fn churn(
    t: &Target,
    label: &str,
    rooms: usize,
    peers: usize,
    churners: usize,
    secs: f64,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("churn", label);
    let churners = churners.min(rooms * peers);
    let (conns, _) = connect_all(t, rooms * peers).await?;
    let layout = Layout {
        prefix: run_prefix(),
        rooms,
        peers,
        updates,
    };
    let setup = storm_phase(conns, &layout, timeout).await?;
    if setup.timed_out || setup.members.iter().any(|m| m.errors > 0) {
        let mut o = Map::new();
        storm_report(&setup, &layout, &mut o);
        bail!("churn set-up did not converge: {}", Value::Object(o));
    }
    let meter = Meter::start(t.pid).await;
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let run_for = Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for (i, mut conn) in setup.conns.into_iter().enumerate() {
        let churner = i < churners;
        let join = layout.join(i);
        let mut go_rx = go_rx.clone();
        let mut stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            #[derive(PartialEq)]
            enum S {
                Leaving,
                Joining,
            }
            let (m0, b0) = (conn.msgs, conn.bytes);
            let mut joins = Vec::new();
            let mut leaves = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            if go_rx.wait_for(|g| *g).await.is_err() {
                return (joins, leaves, errors, first_error, 0, 0, conn);
            }
            let mut state = S::Leaving;
            let mut sent = Instant::now();
            if churner && conn.emit("leave_room", "{}").await.is_err() {
                errors += 1;
            }
            // Bounded by time (stop) and by count.
            for _ in 0..10_000_000u64 {
                let frame = tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    f = conn.next_frame() => f,
                };
                let Ok(Some(frame)) = frame else {
                    errors += 1;
                    first_error.get_or_insert_with(|| "connection closed".to_string());
                    break;
                };
                if !churner {
                    continue;
                }
                let Packet::Event { name, body } = parse(&frame) else {
                    continue;
                };
                match (name, &state) {
                    ("leave_room_success", S::Leaving) => {
                        leaves.push(sent.elapsed());
                        sent = Instant::now();
                        state = S::Joining;
                        if conn.emit("join_room", &join).await.is_err() {
                            errors += 1;
                            break;
                        }
                    }
                    ("join_room_success", S::Joining) => {
                        joins.push(sent.elapsed());
                        sent = Instant::now();
                        state = S::Leaving;
                        if conn.emit("leave_room", "{}").await.is_err() {
                            errors += 1;
                            break;
                        }
                    }
                    ("join_room_error" | "leave_room_error", _) => {
                        errors += 1;
                        first_error
                            .get_or_insert_with(|| body.chars().take(200).collect::<String>());
                        break;
                    }
                    _ => {}
                }
            }
            let (m, b) = (conn.msgs - m0, conn.bytes - b0);
            (joins, leaves, errors, first_error, m, b, conn)
        }));
    }
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let _ = go_tx.send(true);
    tokio::time::sleep(run_for).await;
    let _ = stop_tx.send(true);
    let elapsed = t0.elapsed();
    let (mut all_joins, mut all_leaves, mut errors, mut msgs, mut bytes) =
        (vec![], vec![], 0, 0u64, 0u64);
    let mut first_error = None;
    let mut conns = Vec::new();
    for task in tasks {
        let (j, l, e, fe, m, b, c) = task.await.context("churn task panicked")?;
        all_joins.extend(j);
        all_leaves.extend(l);
        errors += e;
        first_error = first_error.or(fe);
        msgs += m;
        bytes += b;
        conns.push(c);
    }
    let ops = all_joins.len() + all_leaves.len();
    let mut all: Vec<Duration> = all_joins.iter().chain(all_leaves.iter()).copied().collect();
    let s_all = summarize(&mut all);
    let s_join = summarize(&mut all_joins);
    let s_leave = summarize(&mut all_leaves);
    out.insert("rooms".into(), json!(rooms));
    out.insert("peers".into(), json!(peers));
    out.insert("updates".into(), json!(updates.name()));
    out.insert("churners".into(), json!(churners));
    out.insert("secs".into(), json!(round3(elapsed.as_secs_f64())));
    out.insert("ops".into(), json!(ops));
    out.insert(
        "ops_per_s".into(),
        json!((ops as f64 / elapsed.as_secs_f64()).round()),
    );
    out.insert("op_p50_ms".into(), json!(s_all.p50_ms));
    out.insert("op_p99_ms".into(), json!(s_all.p99_ms));
    out.insert("join_p50_ms".into(), json!(s_join.p50_ms));
    out.insert("join_p99_ms".into(), json!(s_join.p99_ms));
    out.insert("leave_p50_ms".into(), json!(s_leave.p50_ms));
    out.insert("leave_p99_ms".into(), json!(s_leave.p99_ms));
    out.insert("errors".into(), json!(errors));
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    out.insert("messages".into(), json!(msgs));
    out.insert("bytes".into(), json!(bytes));
    meter.finish(&mut out);
    close_all(conns).await;
    Ok(Value::Object(out))
}

/// Scenario 3: signal relay between `pairs` pairs (one room each), each side keeping
/// `window` signals in flight, for `secs`.
pub async fn signal(
    t: &Target,
    label: &str,
    pairs: usize,
    window: usize,
    pad: usize,
    secs: f64,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("signal", label);
    out.insert("pairs".into(), json!(pairs));
    out.insert("window".into(), json!(window));
    out.insert("pad_bytes".into(), json!(pad));
    let (conns, _) = connect_all(t, pairs * 2).await?;
    let layout = Layout {
        prefix: run_prefix(),
        rooms: pairs,
        peers: 2,
        updates: Updates::Delta,
    };
    let setup = storm_phase(conns, &layout, timeout).await?;
    if setup.timed_out || setup.members.iter().any(|m| m.errors > 0) {
        bail!("signal set-up: the pairs did not all join");
    }
    let mut conns = setup.conns;
    // Probe: does the server relay at all?
    let probe = probe_signal(&mut conns, pairs).await;
    if let Err(reason) = probe {
        out.insert("supported".into(), json!(false));
        out.insert("reason".into(), json!(reason));
        close_all(conns).await;
        return Ok(Value::Object(out));
    }
    out.insert("supported".into(), json!(true));
    let meter = Meter::start(t.pid).await;
    let clock = Instant::now();
    let padding = "x".repeat(pad);
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let to = if i < pairs { "p1" } else { "p0" };
        let frame_head = format!(r#"42["signal",{{"to":"{to}","data":{{"pad":"{padding}","t":"#);
        let mut go_rx = go_rx.clone();
        let mut stop_rx = stop_rx.clone();
        let stopping = stopping.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut first_error: Option<String> = None;
            if go_rx.wait_for(|g| *g).await.is_err() {
                return (lat, errors, first_error, conn);
            }
            let make = |clock: Instant| format!("{frame_head}{}}}}}]", clock.elapsed().as_micros());
            for _ in 0..window {
                if conn.send_raw(make(clock)).await.is_err() {
                    errors += 1;
                }
            }
            for _ in 0..100_000_000u64 {
                let frame = tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    f = conn.next_frame() => f,
                };
                let Ok(Some(frame)) = frame else {
                    errors += 1;
                    break;
                };
                let Packet::Event { name, body } = parse(&frame) else {
                    continue;
                };
                match name {
                    "signal" => {
                        if stopping.load(Ordering::Relaxed) {
                            continue;
                        }
                        if let Some(sent) = num_field(body, "t") {
                            let now = clock.elapsed().as_micros() as u64;
                            lat.push(Duration::from_micros(now.saturating_sub(sent)));
                        }
                        if conn.send_raw(make(clock)).await.is_err() {
                            errors += 1;
                            break;
                        }
                    }
                    "signal_error" => {
                        errors += 1;
                        first_error.get_or_insert_with(|| body.chars().take(200).collect());
                    }
                    _ => {}
                }
            }
            (lat, errors, first_error, conn)
        }));
    }
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stopping.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    // Give in-flight signals a moment to drain, so the server is not cut off mid-write.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_tx.send(true);
    let (mut lat, mut errors, mut first_error, mut conns) = (Vec::new(), 0, None, Vec::new());
    for task in tasks {
        let (l, e, fe, c) = task.await.context("signal task panicked")?;
        lat.extend(l);
        errors += e;
        first_error = first_error.or(fe);
        conns.push(c);
    }
    let s: Summary = summarize(&mut lat);
    out.insert("secs".into(), json!(round3(elapsed.as_secs_f64())));
    out.insert("messages".into(), json!(s.count));
    out.insert(
        "messages_per_s".into(),
        json!((s.count as f64 / elapsed.as_secs_f64()).round()),
    );
    out.insert("latency_p50_ms".into(), json!(s.p50_ms));
    out.insert("latency_p99_ms".into(), json!(s.p99_ms));
    out.insert("latency_max_ms".into(), json!(s.max_ms));
    out.insert("errors".into(), json!(errors));
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    meter.finish(&mut out);
    close_all(conns).await;
    Ok(Value::Object(out))
}

/// Sends one acked signal from pair 0's first peer to its second; `Err(reason)` when the
/// server does not relay.
async fn probe_signal(conns: &mut [Conn], pairs: usize) -> Result<(), String> {
    let (a, rest) = conns.split_at_mut(pairs);
    let (a, b) = (&mut a[0], &mut rest[0]);
    a.emit_ack(1, "signal", r#"{"to":"p1","data":{"probe":true}}"#)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let r = tokio::time::timeout(left, async {
            tokio::select! {
                f = a.next_frame() => (true, f),
                f = b.next_frame() => (false, f),
            }
        })
        .await;
        let Ok((from_a, Ok(Some(frame)))) = r else {
            break;
        };
        match parse(&frame) {
            Packet::Ack { id: 1, body } if from_a => {
                if body.contains("\"error\"") {
                    return Err(format!(
                        "signal refused: {}",
                        body.chars().take(200).collect::<String>()
                    ));
                }
                acked = true;
            }
            Packet::Event { name: "signal", .. } if !from_a => delivered = true,
            Packet::Event {
                name: "signal_error",
                body,
            } => {
                return Err(format!(
                    "signal refused: {}",
                    body.chars().take(200).collect::<String>()
                ));
            }
            _ => {}
        }
    }
    if delivered {
        Ok(())
    } else {
        Err("no signal relay: nothing delivered within 2 s".into())
    }
}

/// Reads on every connection for `hold` (answering pings), then hands them back.
async fn hold_phase(conns: Vec<Conn>, hold: Duration) -> Result<Vec<Conn>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let mut stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..1_000_000u32 {
                tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    f = conn.next_frame() => if !matches!(f, Ok(Some(_))) { break },
                }
            }
            conn
        }));
    }
    tokio::time::sleep(hold).await;
    let _ = stop_tx.send(true);
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.context("hold task panicked")?);
    }
    Ok(out)
}

/// Scenario 4: `connections` connections joined in rooms of `peers` (one room after
/// another), held idle: the server's memory per connection.
pub async fn idle(
    t: &Target,
    label: &str,
    connections: usize,
    peers: usize,
    hold: Duration,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("idle", label);
    let peers = peers.clamp(1, connections.max(1));
    let rooms = connections.div_ceil(peers);
    let n = rooms * peers;
    let meter = Meter::start(t.pid).await;
    let before = t.pid.and_then(procfs::sample);
    let (conns, connect) = connect_all(t, n).await?;
    out.insert("connect_ms".into(), json!(ms(connect)));
    let conns = hold_phase(conns, Duration::from_millis(500)).await?;
    let connected = t.pid.and_then(procfs::sample);
    // Rooms fill one after another, so that the figure is the memory of connections held
    // in rooms, not of a storm's queues (the storm scenarios report those peaks).
    let prefix = run_prefix();
    let deadline = Instant::now() + timeout;
    let (mut converged, mut errors) = (true, 0usize);
    let mut rest = conns;
    let mut joined = Vec::with_capacity(n);
    for r in 0..rooms {
        let chunk: Vec<Conn> = rest.drain(..peers).collect();
        let layout = Layout {
            prefix: format!("{prefix}-{r}"),
            rooms: 1,
            peers,
            updates,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let res = storm_phase(chunk, &layout, left.max(Duration::from_millis(100))).await?;
        converged &= !res.timed_out && res.members.iter().all(|m| m.converged.is_some());
        errors += res.members.iter().map(|m| m.errors).sum::<usize>();
        joined.extend(res.conns);
    }
    let conns = hold_phase(joined, hold).await?;
    let held = t.pid.and_then(procfs::sample);
    out.insert("connections".into(), json!(n));
    out.insert("rooms".into(), json!(rooms));
    out.insert("peers".into(), json!(peers));
    out.insert("updates".into(), json!(updates.name()));
    out.insert("converged".into(), json!(converged));
    out.insert("errors".into(), json!(errors));
    if let (Some(b), Some(c), Some(h)) = (before, connected, held) {
        let per = |after: u64| round3((after as f64 - b.rss_kb as f64) / n as f64);
        out.insert("server_rss_before_mb".into(), json!(mb(b.rss_kb)));
        out.insert("server_rss_connected_mb".into(), json!(mb(c.rss_kb)));
        out.insert("server_rss_held_mb".into(), json!(mb(h.rss_kb)));
        out.insert("kb_per_connection".into(), json!(per(h.rss_kb)));
        out.insert("kb_per_connection_before_join".into(), json!(per(c.rss_kb)));
    }
    meter.finish(&mut out);
    close_all(conns).await;
    Ok(Value::Object(out))
}

/// Scenario 5: `GET /api/webrtc/rooms` from `http_conns` keep-alive clients while a join
/// storm runs.
#[allow(clippy::too_many_arguments)]
pub async fn rest(
    t: &Target,
    label: &str,
    rooms: usize,
    peers: usize,
    http_conns: usize,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("rest", label);
    let meter = Meter::start(t.pid).await;
    let (conns, _) = connect_all(t, rooms * peers).await?;
    let mut clients = Vec::new();
    for _ in 0..http_conns.max(1) {
        clients.push(Http::connect(t.addr, "/api/webrtc/rooms").await?);
    }
    let layout = Layout {
        prefix: run_prefix(),
        rooms,
        peers,
        updates,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (go_tx, go_rx) = watch::channel(false);
    let mut http_tasks = Vec::new();
    for mut c in clients {
        let stop = stop.clone();
        let mut go_rx = go_rx.clone();
        http_tasks.push(tokio::spawn(async move {
            if go_rx.wait_for(|g| *g).await.is_err() {
                return (Vec::new(), 0, 0);
            }
            let (mut lat, mut errors, mut bytes) = (Vec::new(), 0usize, 0u64);
            let deadline = Instant::now() + Duration::from_secs(600);
            for _ in 0..10_000_000u64 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(30), c.get()).await {
                    Ok(Ok((200, len))) => {
                        lat.push(t.elapsed());
                        bytes += len as u64;
                    }
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors, bytes)
        }));
    }
    let storm = {
        let layout = layout.clone();
        tokio::spawn(async move { storm_phase(conns, &layout, timeout).await })
    };
    let t0 = Instant::now();
    let _ = go_tx.send(true);
    let r = storm.await.context("storm task panicked")??;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let (mut lat, mut errors, mut bytes) = (Vec::new(), 0, 0u64);
    for h in http_tasks {
        let (l, e, b) = h.await.context("HTTP task panicked")?;
        lat.extend(l);
        errors += e;
        bytes += b;
    }
    let s = summarize(&mut lat);
    storm_report(&r, &layout, &mut out);
    out.insert("http_conns".into(), json!(http_conns.max(1)));
    out.insert("rest_requests".into(), json!(s.count));
    out.insert(
        "rest_per_s".into(),
        json!((s.count as f64 / elapsed.as_secs_f64()).round()),
    );
    out.insert("rest_p50_ms".into(), json!(s.p50_ms));
    out.insert("rest_p99_ms".into(), json!(s.p99_ms));
    out.insert("rest_errors".into(), json!(errors));
    out.insert("rest_bytes".into(), json!(bytes));
    meter.finish(&mut out);
    close_all(r.conns).await;
    Ok(Value::Object(out))
}
