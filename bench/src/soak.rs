//! The soak and leak check (`soak` subcommand, run by `cargo xtask soak`).
//!
//! Each cycle, N clients connect (a mix of WebSocket and polling), join rooms,
//! each sends one `signal` to a room mate, then leaves and disconnects (a clean
//! close or a dropped TCP connection). A share of the clients are abandoned
//! right after joining: silent, still holding their connection, for the
//! server's heartbeat to reclaim. The cycle ends when the server reports no
//! connection, room or peer left; then, once its fds and tasks settle, the
//! cycle's sample is taken: RSS and open fds from `/proc`, jemalloc's
//! allocated bytes, live tokio tasks and registry sizes from `/metrics`.
//! Judging the samples is the caller's job (xtask/src/soak.rs).

use crate::scenarios::Target;
use crate::soak_client::{Abandoned, Client, HttpConn, Transport};
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify, Semaphore, watch};

/// The soak's sizes.
#[derive(Clone, Debug)]
pub struct Soak {
    /// How many cycles.
    pub cycles: usize,
    /// Clients per cycle.
    pub clients: usize,
    /// Peers per room.
    pub room_size: usize,
    /// Percent of clients on HTTP long-polling (the rest on WebSocket).
    pub polling_pct: usize,
    /// Percent of clients abandoned after joining.
    pub abandoned_pct: usize,
    /// Most seconds to wait for the server to reclaim everything after a cycle.
    pub drain_s: f64,
}

/// One sample of the server.
#[derive(Clone, Debug, Default)]
struct Sample {
    rss_kb: u64,
    fds: usize,
    metrics: Map<String, Value>,
}

impl Sample {
    fn gauge(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).and_then(Value::as_f64)
    }

    fn json(&self) -> Value {
        let mut m = self.metrics.clone();
        m.insert("rss_kb".into(), json!(self.rss_kb));
        m.insert("fds".into(), json!(self.fds));
        Value::Object(m)
    }
}

const GAUGES: [&str; 6] = [
    "signalroom_connections",
    "signalroom_rooms",
    "signalroom_peers",
    "signalroom_jemalloc_allocated_bytes",
    "signalroom_jemalloc_resident_bytes",
    "signalroom_tokio_alive_tasks",
];

/// Scrapes `/metrics` (one short-lived connection) for the gauges the soak needs.
async fn scrape(t: &Target) -> Result<Map<String, Value>> {
    let mut http = HttpConn::connect(t.addr).await?;
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(10), http.request("GET", "/metrics", ""))
            .await
            .context("/metrics timed out")??;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let mut out = Map::new();
    for line in body.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        if GAUGES.contains(&name)
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_owned(), json!(v));
        }
    }
    Ok(out)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

async fn sample(t: &Target, pid: u32) -> Result<Sample> {
    let metrics = scrape(t).await?;
    // Let the scrape's own connection close before counting fds.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Sample {
        rss_kb: crate::procfs::sample(pid).map_or(0, |s| s.rss_kb),
        fds: fd_count(pid),
        metrics,
    })
}

/// Counts clients through a phase and wakes the coordinator when all are through.
struct Phase {
    done: AtomicUsize,
    total: usize,
    notify: Notify,
}

impl Phase {
    fn new(total: usize) -> Arc<Phase> {
        Arc::new(Phase {
            done: AtomicUsize::new(0),
            total,
            notify: Notify::new(),
        })
    }

    fn arrive(&self) {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 >= self.total {
            self.notify.notify_one();
        }
    }

    async fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.done.load(Ordering::Acquire) < self.total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(200)), self.notify.notified())
                    .await;
        }
        true
    }
}

/// What one cycle's clients reported.
#[derive(Default)]
struct Tally {
    errors: usize,
    first_error: Option<String>,
    signals_acked: usize,
}

impl Tally {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{e:.300}"));
    }
}

const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// An active client's life: connect, join, (all) signal, (all) leave, disconnect.
#[allow(clippy::too_many_arguments)]
async fn active(
    t: Target,
    transport: Transport,
    join: String,
    signal: String,
    clean_close: bool,
    gate: Arc<Semaphore>,
    phases: [Arc<Phase>; 3],
    mut go: watch::Receiver<u8>,
    tally: Arc<Mutex<Tally>>,
) {
    let fail = |e: anyhow::Error,
                from: usize,
                tally: Arc<Mutex<Tally>>,
                phases: [Arc<Phase>; 3]| async move {
        tally.lock().await.error(format!("{e:#}"));
        for p in &phases[from..] {
            p.arrive();
        }
    };
    let permit = gate.acquire().await;
    let c = Client::connect(t.addr, transport, Duration::from_secs(30)).await;
    drop(permit);
    let mut c = match c {
        Ok(c) => c,
        Err(e) => return fail(e, 0, tally, phases).await,
    };
    c.send(format!("421[\"join_room\",{join}]"));
    match c.ack(1, ACK_TIMEOUT).await {
        Ok(a) if !a.contains("\"error\"") => {}
        Ok(a) => return fail(anyhow::anyhow!("join: {a}"), 0, tally, phases).await,
        Err(e) => return fail(e, 0, tally, phases).await,
    }
    phases[0].arrive();
    if go.wait_for(|g| *g >= 1).await.is_err() {
        return;
    }
    c.send(format!("422[\"signal\",{signal}]"));
    match c.ack(2, ACK_TIMEOUT).await {
        Ok(a) if !a.contains("\"error\"") => tally.lock().await.signals_acked += 1,
        Ok(a) => tally.lock().await.error(format!("signal: {a}")),
        Err(e) => return fail(e, 1, tally, phases).await,
    }
    phases[1].arrive();
    if go.wait_for(|g| *g >= 2).await.is_err() {
        return;
    }
    c.send("423[\"leave_room\"]");
    match c.ack(3, ACK_TIMEOUT).await {
        Ok(a) if !a.contains("\"error\"") => {}
        Ok(a) => tally.lock().await.error(format!("leave: {a}")),
        Err(e) => return fail(e, 2, tally, phases).await,
    }
    if clean_close {
        c.close().await;
    } else {
        c.drop_tcp();
    }
    phases[2].arrive();
}

/// An abandoned client: connects, joins, then goes silent with its connection open.
async fn abandoned(
    t: Target,
    transport: Transport,
    join: String,
    gate: Arc<Semaphore>,
    tally: Arc<Mutex<Tally>>,
) -> Option<Abandoned> {
    let permit = gate.acquire().await;
    let c = Client::connect(t.addr, transport, Duration::from_secs(30)).await;
    drop(permit);
    let mut c = match c {
        Ok(c) => c,
        Err(e) => {
            tally.lock().await.error(format!("{e:#}"));
            return None;
        }
    };
    c.send(format!("421[\"join_room\",{join}]"));
    if let Err(e) = c.ack(1, ACK_TIMEOUT).await {
        tally.lock().await.error(format!("{e:#}"));
    }
    Some(c.abandon())
}

fn join_payload(room: &str, peer: &str) -> String {
    json!({"room_name": room, "peer_id": peer, "username": format!("soak {peer}")}).to_string()
}

/// Polls the server until `done` holds for a sample or `max` passes; returns
/// the last sample, the seconds waited and whether `done` held.
async fn wait_until(
    t: &Target,
    pid: u32,
    max: Duration,
    done: impl Fn(&Sample) -> bool,
) -> Result<(Sample, f64, bool)> {
    let t0 = Instant::now();
    loop {
        let s = sample(t, pid).await?;
        if done(&s) || t0.elapsed() >= max {
            let ok = done(&s);
            return Ok((s, t0.elapsed().as_secs_f64(), ok));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// No connection, room or peer left on the server.
fn empty(s: &Sample) -> bool {
    [
        "signalroom_connections",
        "signalroom_rooms",
        "signalroom_peers",
    ]
    .iter()
    .all(|g| s.gauge(g) == Some(0.0))
}

/// Open fds and live tasks back to `base`.
fn settled(s: &Sample, base: &Sample) -> bool {
    let tasks = "signalroom_tokio_alive_tasks";
    s.fds <= base.fds && s.gauge(tasks).is_some() && s.gauge(tasks) <= base.gauge(tasks)
}

/// Runs the soak; one JSON object with the baseline and a sample per cycle.
pub async fn run(t: &Target, s: &Soak) -> Result<Value> {
    let pid = t.pid.context("the soak needs --pid (it reads /proc/PID)")?;
    let drain_max = Duration::from_secs_f64(s.drain_s.clamp(1.0, 600.0));
    let base = sample(t, pid).await?;
    let prefix = format!("soak{}", std::process::id());
    let mut cycles = Vec::with_capacity(s.cycles);
    for cycle in 1..=s.cycles {
        let t0 = Instant::now();
        let n = s.clients;
        let abandoned_n = n * s.abandoned_pct.min(100) / 100;
        let active_n = n - abandoned_n;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let gate = Arc::new(Semaphore::new(t.connect_concurrency.max(1)));
        let phases = [
            Phase::new(active_n),
            Phase::new(active_n),
            Phase::new(active_n),
        ];
        let (go_tx, go_rx) = watch::channel(0u8);
        // Spread the polling clients over the rooms.
        let transport = |i: usize| {
            if (i * 37 + 11) % 100 < s.polling_pct {
                Transport::Polling
            } else {
                Transport::WebSocket
            }
        };
        let room_size = s.room_size.max(1);
        let mut polling = 0;
        let mut tasks = Vec::with_capacity(active_n);
        for j in 0..active_n {
            let room = j / room_size;
            let first = room * room_size;
            let size = room_size.min(active_n - first);
            let to = first + (j - first + 1) % size;
            let tr = transport(j);
            polling += usize::from(tr == Transport::Polling);
            let room_name = format!("{prefix}-c{cycle}-r{room}");
            let signal =
                json!({"to": format!("p{to}"), "data": {"candidate": "soak", "n": j}}).to_string();
            tasks.push(tokio::spawn(active(
                t.clone(),
                tr,
                join_payload(&room_name, &format!("p{j}")),
                signal,
                j % 2 == 0,
                gate.clone(),
                phases.clone(),
                go_rx.clone(),
                tally.clone(),
            )));
        }
        let mut lost = Vec::with_capacity(abandoned_n);
        for k in 0..abandoned_n {
            let tr = transport(k + 50);
            polling += usize::from(tr == Transport::Polling);
            let room_name = format!("{prefix}-c{cycle}-a{}", k / room_size);
            lost.push(tokio::spawn(abandoned(
                t.clone(),
                tr,
                join_payload(&room_name, &format!("a{k}")),
                gate.clone(),
                tally.clone(),
            )));
        }
        let phase_max = Duration::from_secs(120);
        let joined = phases[0].wait(phase_max).await;
        let _ = go_tx.send(1);
        let signalled = phases[1].wait(phase_max).await;
        let _ = go_tx.send(2);
        let left = phases[2].wait(phase_max).await;
        let mut held = Vec::new();
        for l in lost {
            if let Ok(Some(a)) = l.await {
                held.push(a);
            }
        }
        for task in tasks {
            task.abort();
        }
        let active_s = t0.elapsed().as_secs_f64();
        // The abandoned clients still hold their connections: the server
        // must reclaim their sessions by its heartbeat alone.
        let (_, reclaim_s, reclaimed) = wait_until(t, pid, drain_max, empty).await?;
        // Then they go, and what they held (idle keep-alive HTTP connections
        // of abandoned polling clients) must be released too.
        drop(held);
        let (after, settle_s, drained) =
            wait_until(t, pid, drain_max, |s| empty(s) && settled(s, &base)).await?;
        let drained = drained && reclaimed;
        let drain_s = reclaim_s + settle_s;
        let tally = tally.lock().await;
        let mut c = Map::new();
        c.insert("cycle".into(), json!(cycle));
        c.insert("clients".into(), json!(n));
        c.insert("polling".into(), json!(polling));
        c.insert("abandoned".into(), json!(abandoned_n));
        c.insert("errors".into(), json!(tally.errors));
        if let Some(e) = &tally.first_error {
            c.insert("first_error".into(), json!(e));
        }
        c.insert("signals_acked".into(), json!(tally.signals_acked));
        c.insert(
            "phases_completed".into(),
            json!(joined && signalled && left),
        );
        c.insert(
            "active_s".into(),
            json!((active_s * 1000.0).round() / 1000.0),
        );
        c.insert("drain_s".into(), json!((drain_s * 1000.0).round() / 1000.0));
        c.insert(
            "reclaim_s".into(),
            json!((reclaim_s * 1000.0).round() / 1000.0),
        );
        c.insert("drained".into(), json!(drained));
        c.insert("server".into(), after.json());
        cycles.push(Value::Object(c));
    }
    Ok(json!({
        "scenario": "soak",
        "clients": s.clients,
        "room_size": s.room_size,
        "polling_pct": s.polling_pct,
        "abandoned_pct": s.abandoned_pct,
        "baseline": base.json(),
        "cycles": cycles,
    }))
}
