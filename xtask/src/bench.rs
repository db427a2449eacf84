//! `cargo xtask bench`: signalroom against the Node reference server, same generator, same
//! sizes, several runs each, medians; a table on stdout and JSON in `target/bench/`.
//!
//! Each run starts a fresh server, runs every scenario against it (one `signalroom-bench`
//! process per scenario, one JSON line each), then stops it. Runs alternate between the
//! servers so that a noisy moment of this shared machine hits both alike.

use crate::setup::{root, run as sh};
use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "cargo xtask bench",
    about = "Benchmark signalroom against the Node reference server"
)]
struct Args {
    /// A tiny size (a few rooms of a few peers, seconds): checks that the generator works.
    #[arg(long)]
    smoke: bool,
    /// Runs per server; the table quotes medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rooms of the join storm (and of the REST scenario).
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Peers per room of the join storm.
    #[arg(long, default_value_t = 100)]
    peers: usize,
    /// Rooms of the big storm (0: skip it).
    #[arg(long, default_value_t = 100)]
    big_rooms: usize,
    /// Peers per room of the big storm.
    #[arg(long, default_value_t = 100)]
    big_peers: usize,
    /// Connections of the idle (memory) scenario.
    #[arg(long, default_value_t = 2000)]
    idle_connections: usize,
    /// Churn: rooms x peers members, `churners` of them leaving and rejoining for `churn_secs`.
    #[arg(long, default_value_t = 10)]
    churn_rooms: usize,
    #[arg(long, default_value_t = 20)]
    churn_peers: usize,
    #[arg(long, default_value_t = 50)]
    churners: usize,
    #[arg(long, default_value_t = 5.0)]
    churn_secs: f64,
    /// Signal relay: pairs, signals in flight per side, seconds.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    #[arg(long, default_value_t = 1)]
    window: usize,
    #[arg(long, default_value_t = 5.0)]
    signal_secs: f64,
    /// Keep-alive HTTP clients polling `GET /api/webrtc/rooms` during the REST storm.
    #[arg(long, default_value_t = 4)]
    http_conns: usize,
    /// Only these servers (`signalroom`, `node`); default both.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these scenarios (ids as in the table, e.g. `storm_full,idle`); default all.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Extra argument for `signalroom` (repeatable), e.g. `--server-arg=--max-peers=200`.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Do not build (use the binaries already in target/release).
    #[arg(long)]
    no_build: bool,
    /// Run the test suite's smoke check instead (`smoke()`: debug build, signalroom alone).
    #[arg(long, hide = true)]
    test_smoke: bool,
}

impl Args {
    fn smoke_sizes(mut self) -> Args {
        self.rooms = 3;
        self.peers = 4;
        self.big_rooms = 4;
        self.big_peers = 5;
        self.idle_connections = 20;
        self.churn_rooms = 2;
        self.churn_peers = 3;
        self.churners = 2;
        self.churn_secs = 0.5;
        self.pairs = 2;
        self.window = 1;
        self.signal_secs = 0.5;
        self.http_conns = 2;
        self.runs = 1;
        self
    }
}

/// One scenario as run for the table.
struct Case {
    id: &'static str,
    /// Also against the Node reference (full lists only: it knows no delta mode).
    node: bool,
    args: Vec<String>,
}

fn cases(a: &Args) -> Vec<Case> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let n = |x: usize| x.to_string();
    let f = |x: f64| x.to_string();
    let mut v = vec![
        Case {
            id: "idle",
            node: true,
            args: [
                s(&["idle", "--connections"]),
                vec![n(a.idle_connections)],
                s(&["--peers"]),
                vec![n(a.peers)],
            ]
            .concat(),
        },
        Case {
            id: "storm_full",
            node: true,
            args: [
                s(&["storm", "--rooms"]),
                vec![n(a.rooms)],
                s(&["--peers"]),
                vec![n(a.peers)],
            ]
            .concat(),
        },
        Case {
            id: "storm_delta",
            node: false,
            args: [
                s(&["storm", "--updates", "delta", "--rooms"]),
                vec![n(a.rooms)],
                s(&["--peers"]),
                vec![n(a.peers)],
            ]
            .concat(),
        },
    ];
    if a.big_rooms > 0 && a.big_peers > 0 {
        v.push(Case {
            id: "storm_big_full",
            node: true,
            args: [
                s(&["storm", "--rooms"]),
                vec![n(a.big_rooms)],
                s(&["--peers"]),
                vec![n(a.big_peers)],
            ]
            .concat(),
        });
        v.push(Case {
            id: "storm_big_delta",
            node: false,
            args: [
                s(&["storm", "--updates", "delta", "--rooms"]),
                vec![n(a.big_rooms)],
                s(&["--peers"]),
                vec![n(a.big_peers)],
            ]
            .concat(),
        });
    }
    v.extend([
        Case {
            id: "churn",
            node: true,
            args: [
                s(&["churn", "--rooms"]),
                vec![n(a.churn_rooms)],
                s(&["--peers"]),
                vec![n(a.churn_peers)],
                s(&["--churners"]),
                vec![n(a.churners)],
                s(&["--secs"]),
                vec![f(a.churn_secs)],
            ]
            .concat(),
        },
        Case {
            id: "signal",
            node: true,
            args: [
                s(&["signal", "--pairs"]),
                vec![n(a.pairs)],
                s(&["--window"]),
                vec![n(a.window)],
                s(&["--secs"]),
                vec![f(a.signal_secs)],
            ]
            .concat(),
        },
        Case {
            id: "rest",
            node: true,
            args: [
                s(&["rest", "--rooms"]),
                vec![n(a.rooms)],
                s(&["--peers"]),
                vec![n(a.peers)],
                s(&["--http-conns"]),
                vec![n(a.http_conns)],
            ]
            .concat(),
        },
    ]);
    if !a.scenarios.is_empty() {
        v.retain(|c| a.scenarios.iter().any(|x| x == c.id));
    }
    v
}

/// The servers under test.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Server {
    Signalroom,
    Node,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Signalroom => "signalroom",
            Server::Node => "node",
        }
    }
}

/// A running server: killed on drop.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` through `sh` with the open-file limit raised to the hard limit
/// (`exec` keeps the pid), and waits for its "listening" line to learn the port.
pub(crate) fn start(mut cmd: Command, log: &Path, what: &str) -> Result<Running> {
    let err = fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    let mut out_log = fs::OpenOptions::new().append(true).open(log)?;
    std::thread::spawn(move || {
        // Keeps draining stdout so that the server never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out_log, "{line}");
            let _ = tx.send(line);
        }
    });
    let mut running = Running { child, port: 0 };
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.port == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(port) = listening_port(&line) {
                    running.port = port;
                }
            }
            Err(_) => bail!(
                "{what} printed no listening line within 30 s (log: {})",
                log.display()
            ),
        }
    }
    Ok(running)
}

/// The port of `... http://127.0.0.1:PORT` (both servers print such a line).
fn listening_port(line: &str) -> Option<u16> {
    let i = line.find("http://127.0.0.1:")? + "http://127.0.0.1:".len();
    let digits: String = line[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether `program` is on PATH.
fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn sh_raised(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#)
        .arg("sh")
        .arg(program)
        .args(args);
    cmd
}

fn start_signalroom(bin: &Path, extra: &[String], log: &Path) -> Result<Running> {
    // A load generator drives one connection far past the per-connection event rate
    // (a well-behaved client's limit); the Node reference has no such limit either.
    let mut args: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--max-events-per-second",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let mut cmd = sh_raised(bin, &args);
    // Like the Node reference, which logs nothing per connection.
    cmd.env(
        "RUST_LOG",
        std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
    );
    start(cmd, log, "signalroom")
}

fn start_node(dir: &Path, log: &Path) -> Result<Running> {
    let mut cmd = sh_raised(Path::new("node"), &["server.js".to_string()]);
    cmd.current_dir(dir)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1");
    start(cmd, log, "the Node reference")
}

/// Copies `../shared/bench/node-reference` (or `$BENCH_NODE_REFERENCE`) to
/// `target/bench/node-reference` and installs its packages there (once; again when its
/// files change). `None` when the folder is absent.
fn node_reference(root: &Path) -> Result<Option<PathBuf>> {
    let src = std::env::var_os("BENCH_NODE_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/bench/node-reference"));
    if !src.join("server.js").exists() {
        eprintln!(
            "bench: {} is absent: running signalroom alone (no comparison)",
            src.display()
        );
        return Ok(None);
    }
    if !has("node") || !has("npm") {
        eprintln!("bench: node or npm is not installed: running signalroom alone (no comparison)");
        return Ok(None);
    }
    let dst = root.join("target/bench/node-reference");
    fs::create_dir_all(&dst)?;
    let mut changed = false;
    for entry in fs::read_dir(&src)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let to = dst.join(entry.file_name());
        let new = fs::read(entry.path())?;
        if fs::read(&to).ok().as_deref() != Some(&new[..]) {
            fs::write(&to, &new)?;
            changed = true;
        }
    }
    if changed || !dst.join("node_modules/socket.io").exists() {
        sh(
            &dst,
            "npm",
            &["install", "--no-audit", "--no-fund", "--loglevel=error"],
        )?;
    }
    Ok(Some(dst))
}

/// Runs one scenario: the generator's JSON line.
fn generate(bench: &Path, server: Server, running: &Running, case: &Case) -> Value {
    let url = format!("http://127.0.0.1:{}", running.port);
    let mut cmd = Command::new(bench);
    cmd.args([
        "--url",
        &url,
        "--pid",
        &running.child.id().to_string(),
        "--label",
        server.name(),
    ])
    .args(&case.args)
    .stdin(Stdio::null())
    .stderr(Stdio::inherit());
    let line = match cmd.output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .map(str::to_owned),
        Err(e) => Some(json!({"error": format!("cannot run the generator: {e}")}).to_string()),
    };
    let mut v: Value = line
        .and_then(|l| serde_json::from_str(&l).ok())
        .unwrap_or_else(|| json!({"error": "the generator printed no JSON line"}));
    if let Some(o) = v.as_object_mut() {
        o.insert("case".into(), json!(case.id));
    }
    v
}

/// All results: server -> case -> one JSON object per run.
type Results = BTreeMap<Server, BTreeMap<&'static str, Vec<Value>>>;

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// The median of every numeric field across runs; booleans are true only if true in all.
fn medians(runs: &[Value]) -> Map<String, Value> {
    let mut keys: Vec<String> = Vec::new();
    for r in runs {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let mut out = Map::new();
    for k in keys {
        let vals: Vec<&Value> = runs.iter().filter_map(|r| r.get(&k)).collect();
        let v = if vals.iter().all(|v| v.is_number()) {
            median(vals.iter().filter_map(|v| v.as_f64()).collect())
                .map(|m| json!((m * 1000.0).round() / 1000.0))
                .unwrap_or(Value::Null)
        } else if vals.iter().all(|v| v.is_boolean()) {
            json!(vals.iter().all(|v| v.as_bool() == Some(true)))
        } else {
            vals.first().map(|v| (*v).clone()).unwrap_or(Value::Null)
        };
        out.insert(k, v);
    }
    out.insert("runs".into(), json!(runs.len()));
    let errors: Vec<&Value> = runs.iter().filter_map(|r| r.get("error")).collect();
    if !errors.is_empty() {
        out.insert("failed_runs".into(), json!(errors.len()));
    }
    out
}

/// The rows of the table: (case, field, what it is).
const ROWS: &[(&str, &str, &str)] = &[
    ("storm_full", "joins_per_s", "join storm: joins/s"),
    ("storm_full", "join_p50_ms", "join storm: join p50 ms"),
    ("storm_full", "join_p99_ms", "join storm: join p99 ms"),
    ("storm_full", "join_max_ms", "join storm: join max ms"),
    ("storm_full", "convergence_ms", "join storm: convergence ms"),
    ("storm_full", "messages", "join storm: messages received"),
    ("storm_full", "bytes", "join storm: bytes received"),
    ("storm_full", "server_cpu_s", "join storm: server CPU s"),
    (
        "storm_full",
        "server_peak_rss_mb",
        "join storm: server peak RSS MB",
    ),
    ("storm_delta", "joins_per_s", "delta storm: joins/s"),
    ("storm_delta", "join_p99_ms", "delta storm: join p99 ms"),
    (
        "storm_delta",
        "convergence_ms",
        "delta storm: convergence ms",
    ),
    ("storm_delta", "bytes", "delta storm: bytes received"),
    ("storm_big_full", "joined", "big storm: joined"),
    ("storm_big_full", "errors", "big storm: errors"),
    ("storm_big_full", "joins_per_s", "big storm: joins/s"),
    ("storm_big_full", "join_p99_ms", "big storm: join p99 ms"),
    (
        "storm_big_full",
        "convergence_ms",
        "big storm: convergence ms",
    ),
    ("storm_big_full", "bytes", "big storm: bytes received"),
    (
        "storm_big_full",
        "kb_per_connection",
        "big storm: server KB per connection",
    ),
    (
        "storm_big_full",
        "server_peak_rss_mb",
        "big storm: server peak RSS MB",
    ),
    ("storm_big_delta", "joins_per_s", "big delta storm: joins/s"),
    (
        "storm_big_delta",
        "convergence_ms",
        "big delta storm: convergence ms",
    ),
    (
        "storm_big_delta",
        "kb_per_connection",
        "big delta storm: server KB per connection",
    ),
    (
        "idle",
        "kb_per_connection",
        "idle: server KB per connection",
    ),
    ("idle", "server_peak_rss_mb", "idle: server peak RSS MB"),
    ("churn", "ops_per_s", "churn: ops/s"),
    ("churn", "op_p50_ms", "churn: op p50 ms"),
    ("churn", "op_p99_ms", "churn: op p99 ms"),
    ("signal", "messages_per_s", "signal relay: messages/s"),
    ("signal", "latency_p50_ms", "signal relay: p50 ms"),
    ("signal", "latency_p99_ms", "signal relay: p99 ms"),
    ("rest", "rest_per_s", "REST during storm: GET rooms/s"),
    ("rest", "rest_p99_ms", "REST during storm: p99 ms"),
    (
        "rest",
        "convergence_ms",
        "REST during storm: convergence ms",
    ),
];

fn cell(m: Option<&Map<String, Value>>, field: &str) -> Value {
    let Some(m) = m else { return Value::Null };
    if m.get("supported") == Some(&json!(false)) {
        return json!("unsupported");
    }
    if let Some(e) = m.get("error")
        && !m.contains_key(field)
    {
        return json!(format!("error: {}", e.as_str().unwrap_or("?")));
    }
    m.get(field).cloned().unwrap_or(Value::Null)
}

fn fmt(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.abs() >= 1e9 {
                format!("{:.2}G", x / 1e9)
            } else if x.abs() >= 1e6 {
                format!("{:.2}M", x / 1e6)
            } else if x.fract() == 0.0 || x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        }
        Value::String(s) => s.chars().take(40).collect(),
        other => other.to_string(),
    }
}

/// Builds the table rows and the targets of issue 4 from the medians.
fn table(
    med: &BTreeMap<Server, BTreeMap<&'static str, Map<String, Value>>>,
) -> (Vec<Value>, Vec<Value>) {
    let get = |s: Server, case: &str| med.get(&s).and_then(|m| m.get(case));
    let mut rows = Vec::new();
    for (case, field, what) in ROWS {
        let a = cell(get(Server::Signalroom, case), field);
        let b = cell(get(Server::Node, case), field);
        if a.is_null() && b.is_null() {
            continue;
        }
        let ratio = match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) if y != 0.0 => json!((x / y * 1000.0).round() / 1000.0),
            _ => Value::Null,
        };
        rows.push(json!({"case": case, "field": field, "what": what, "signalroom": a, "node": b, "ratio": ratio}));
    }
    let num = |s: Server, case: &str, f: &str| {
        get(s, case).and_then(|m| m.get(f)).and_then(Value::as_f64)
    };
    let mut targets = Vec::new();
    let mut target = |name: &str, value: Option<f64>, goal: &str, met: Option<bool>| {
        targets.push(json!({"target": name, "value": value.map(|v| (v * 1000.0).round() / 1000.0), "goal": goal,
            "met": met}));
    };
    let ratio = |case: &str, f: &str| match (
        num(Server::Signalroom, case, f),
        num(Server::Node, case, f),
    ) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    };
    let r = ratio("storm_full", "joins_per_s");
    target(
        "storm 20x100 full: throughput vs Node",
        r,
        ">= 5x",
        r.map(|r| r >= 5.0),
    );
    let r = ratio("storm_full", "join_p99_ms");
    target(
        "storm 20x100 full: p99 join latency vs Node",
        r,
        "<= 0.2x",
        r.map(|r| r <= 0.2),
    );
    let r = ratio("storm_full", "convergence_ms");
    target(
        "storm 20x100 full: convergence vs Node",
        r,
        "<= 0.2x",
        r.map(|r| r <= 0.2),
    );
    let r = ratio("idle", "server_peak_rss_mb");
    target(
        "peak memory, idle connections (rooms filled in turn) vs Node",
        r,
        "<= 0.333x",
        r.map(|r| r <= 1.0 / 3.0),
    );
    let r = ratio("storm_full", "server_peak_rss_mb");
    target(
        "peak memory, join storm 20x100 vs Node",
        r,
        "<= 0.333x",
        r.map(|r| r <= 1.0 / 3.0),
    );
    let big = get(Server::Signalroom, "storm_big_full");
    let big_ok = big.map(|m| {
        m.get("converged") == Some(&json!(true))
            && m.get("errors").and_then(Value::as_f64) == Some(0.0)
            && m.get("joined") == m.get("connections")
    });
    target(
        "big storm: all joined and converged, no errors (KB/connection as value)",
        big.and_then(|m| m.get("kb_per_connection"))
            .and_then(Value::as_f64),
        "all converged",
        big_ok,
    );
    let mps = num(Server::Signalroom, "signal", "messages_per_s");
    target(
        "signal relay messages/s",
        mps,
        ">= 50000",
        mps.map(|v| v >= 50_000.0),
    );
    let p99 = num(Server::Signalroom, "signal", "latency_p99_ms");
    target("signal relay p99 ms", p99, "< 10", p99.map(|v| v < 10.0));
    let cut = match (
        num(Server::Signalroom, "storm_full", "bytes"),
        num(Server::Signalroom, "storm_delta", "bytes"),
    ) {
        (Some(f), Some(d)) if d > 0.0 => Some(f / d),
        _ => None,
    };
    target(
        "delta vs full bytes of the storm (x fewer)",
        cut,
        ">= 20x",
        cut.map(|c| c >= 20.0),
    );
    (rows, targets)
}

fn print_table(rows: &[Value], targets: &[Value]) {
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>9}",
        "figure (median)", "signalroom", "node", "ratio"
    );
    println!("{}", "-".repeat(80));
    for r in rows {
        println!(
            "{:<44} {:>12} {:>12} {:>9}",
            r["what"].as_str().unwrap_or(""),
            fmt(&r["signalroom"]),
            fmt(&r["node"]),
            fmt(&r["ratio"])
        );
    }
    println!();
    for t in targets {
        let met = match t["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        println!(
            "target {:<70} {:>10} (goal {}) {met}",
            t["target"].as_str().unwrap_or(""),
            fmt(&t["value"]),
            t["goal"].as_str().unwrap_or("")
        );
    }
}

/// The table and targets as Markdown, for the README.
fn markdown(doc: &Value, rows: &[Value], targets: &[Value]) -> String {
    let mut md = format!(
        "{} on this machine ({} cores, load average at the end {}), `{}`, median of {} runs.\n\n",
        doc["date"].as_str().unwrap_or(""),
        doc["machine"]["cores"],
        doc["machine"]["loadavg_at_end"].as_str().unwrap_or(""),
        doc["command"].as_str().unwrap_or(""),
        doc["runs"],
    );
    md.push_str("| figure | signalroom | Node reference | ratio |\n|---|---:|---:|---:|\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r["what"].as_str().unwrap_or(""),
            fmt(&r["signalroom"]),
            fmt(&r["node"]),
            fmt(&r["ratio"])
        ));
    }
    md.push_str("\n| target | value | goal | |\n|---|---:|---|---|\n");
    for t in targets {
        let met = match t["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "n/a",
        };
        md.push_str(&format!(
            "| {} | {} | {} | {met} |\n",
            t["target"].as_str().unwrap_or(""),
            fmt(&t["value"]),
            t["goal"].as_str().unwrap_or("")
        ));
    }
    md
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Builds the release binaries (`signalroom`, `signalroom-bench`).
pub(crate) fn build(root: &Path) -> Result<()> {
    sh(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "signalroom-server",
            "-p",
            "signalroom-bench",
        ],
    )
}

/// `cargo xtask bench [ARGS]`.
pub fn main(raw: &[String]) -> Result<()> {
    let mut args =
        Args::try_parse_from(std::iter::once("bench".to_string()).chain(raw.iter().cloned()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.test_smoke {
        return smoke();
    }
    if args.smoke {
        args = args.smoke_sizes();
    }
    let root = root();
    if !args.no_build {
        build(&root)?;
    }
    let bin = root.join("target/release");
    let want = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let node_dir = if want("node") {
        node_reference(&root)?
    } else {
        None
    };
    let mut servers = Vec::new();
    if want("signalroom") {
        servers.push(Server::Signalroom);
    }
    if node_dir.is_some() {
        servers.push(Server::Node);
    }
    if servers.is_empty() {
        bail!("no server to benchmark");
    }
    let results = run_all(&root, &bin, &args, &servers, node_dir.as_deref())?;
    report(&root, &args, raw, &results)?;
    if args.smoke {
        check_sane(&results)?;
    }
    Ok(())
}

fn run_all(
    root: &Path,
    bin: &Path,
    args: &Args,
    servers: &[Server],
    node_dir: Option<&Path>,
) -> Result<Results> {
    let cases = cases(args);
    let logs = root.join("target/bench/logs");
    fs::create_dir_all(&logs)?;
    let bench = bin.join("signalroom-bench");
    let mut results: Results = BTreeMap::new();
    // A fresh server for every scenario: each one's memory and CPU figures are its own,
    // and no scenario inherits another's rooms, queues or heap.
    for run in 1..=args.runs.max(1) {
        eprintln!("bench: run {run}/{}", args.runs.max(1));
        for case in &cases {
            for &server in servers {
                if server == Server::Node && !case.node {
                    continue;
                }
                let log = logs.join(format!("{}-{}-run{run}.log", server.name(), case.id));
                let started = match (server, node_dir) {
                    (Server::Signalroom, _) => {
                        start_signalroom(&bin.join("signalroom"), &args.server_arg, &log)
                    }
                    (Server::Node, Some(dir)) => start_node(dir, &log),
                    (Server::Node, None) => continue,
                };
                let v = match started {
                    Ok(running) => generate(&bench, server, &running, case),
                    Err(e) => {
                        json!({"case": case.id, "error": format!("server did not start: {e:#}")})
                    }
                };
                eprintln!(
                    "  {:<16} {:<10} {}",
                    case.id,
                    server.name(),
                    summary_line(&v)
                );
                results
                    .entry(server)
                    .or_default()
                    .entry(case.id)
                    .or_default()
                    .push(v);
            }
        }
    }
    Ok(results)
}

fn summary_line(v: &Value) -> String {
    if let Some(e) = v.get("error") {
        return format!("ERROR {e}");
    }
    if v.get("supported") == Some(&json!(false)) {
        return "unsupported".into();
    }
    let keys = [
        "joins_per_s",
        "join_p99_ms",
        "convergence_ms",
        "ops_per_s",
        "op_p99_ms",
        "messages_per_s",
        "latency_p99_ms",
        "rest_per_s",
        "kb_per_connection",
        "server_peak_rss_mb",
        "errors",
    ];
    keys.iter()
        .filter_map(|k| v.get(*k).map(|x| format!("{k}={}", fmt(x))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(root: &Path, args: &Args, raw: &[String], results: &Results) -> Result<()> {
    let mut med: BTreeMap<Server, BTreeMap<&'static str, Map<String, Value>>> = BTreeMap::new();
    for (server, cases) in results {
        for (case, runs) in cases {
            med.entry(*server).or_default().insert(case, medians(runs));
        }
    }
    let (rows, targets) = table(&med);
    print_table(&rows, &targets);
    let date = utc_now();
    let to_json = |m: &BTreeMap<Server, BTreeMap<&'static str, Map<String, Value>>>| {
        let mut o = Map::new();
        for (s, cases) in m {
            let c: Map<String, Value> = cases
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Object(v.clone())))
                .collect();
            o.insert(s.name().into(), Value::Object(c));
        }
        Value::Object(o)
    };
    let mut raw_runs = Map::new();
    for (s, cases) in results {
        let c: Map<String, Value> = cases
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        raw_runs.insert(s.name().into(), Value::Object(c));
    }
    let doc = json!({
        "date": date,
        "command": format!("cargo xtask bench {}", raw.join(" ")).trim_end(),
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_at_end": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        },
        "runs": args.runs,
        "smoke": args.smoke,
        "table": rows,
        "targets": targets,
        "medians": to_json(&med),
        "raw": raw_runs,
    });
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir)?;
    let stem = if args.smoke { "smoke" } else { "bench" };
    let stamp = date.replace(':', "");
    let file = dir.join(format!("{stem}-{stamp}.json"));
    let text = serde_json::to_string_pretty(&doc)?;
    fs::write(&file, &text)?;
    fs::write(dir.join(format!("{stem}-latest.json")), &text)?;
    fs::write(
        dir.join(format!("{stem}-latest.md")),
        markdown(&doc, &rows, &targets),
    )?;
    println!("\nwrote {}", file.display());
    Ok(())
}

/// The smoke checks: every scenario ran, answered, converged, counted something; no timing.
fn check_sane(results: &Results) -> Result<()> {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (server, cases) in results {
        for (case, runs) in cases {
            for v in runs {
                checked += 1;
                let mut bad =
                    |why: String| problems.push(format!("{} {case}: {why}: {v}", server.name()));
                if let Some(e) = v.get("error") {
                    bad(format!("error {e}"));
                    continue;
                }
                if v.get("supported") == Some(&json!(false)) {
                    if *server == Server::Signalroom {
                        bad("signal relay unsupported".into());
                    }
                    continue;
                }
                let n = |k: &str| v.get(k).and_then(Value::as_f64);
                if n("errors") != Some(0.0) {
                    bad("errors".into());
                }
                if v.get("converged").is_some_and(|c| c != &json!(true)) {
                    bad("not converged".into());
                }
                if v.get("joined").is_some() && v.get("joined") != v.get("connections") {
                    bad("not all joined".into());
                }
                let positive: &[&str] = match *case {
                    "storm_full" | "storm_delta" | "storm_big_full" | "storm_big_delta" => &[
                        "joins_per_s",
                        "messages",
                        "bytes",
                        "convergence_ms",
                        "join_p50_ms",
                    ],
                    "churn" => &["ops", "messages"],
                    "signal" => &["messages", "messages_per_s"],
                    "rest" => &["rest_requests", "joins_per_s"],
                    "idle" => &["connections"],
                    _ => &[],
                };
                for k in positive {
                    if !n(k).is_some_and(|x| x > 0.0 && x.is_finite()) {
                        bad(format!("{k} is not a positive number"));
                    }
                }
                if *case == "idle" && n("kb_per_connection").is_none() {
                    bad("no memory per connection".into());
                }
                if n("server_cpu_s").is_none() {
                    bad("no server CPU figure".into());
                }
                if *server == Server::Signalroom
                    && case.starts_with("storm")
                    && v.get("convergence_version_ms").is_none_or(Value::is_null)
                {
                    bad("no version-based convergence (versions missing?)".into());
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "bench smoke found {} problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    eprintln!("bench smoke: {checked} scenario runs sane");
    Ok(())
}

/// The test suite's smoke run: the release `signalroom` and generator (the test suite builds
/// the release server anyway), every scenario at a tiny size against signalroom alone;
/// fails when the generator does not work or reports numbers that make no sense (errors,
/// no convergence, zero counts, missing versions or /proc figures). No timing assertions.
pub fn smoke() -> Result<()> {
    let root = root();
    build(&root)?;
    let bin = root.join("target/release");
    let args = Args::try_parse_from(["bench", "--smoke", "--no-build", "--only", "signalroom"])
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .smoke_sizes();
    let results = run_all(&root, &bin, &args, &[Server::Signalroom], None)?;
    check_sane(&results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_lines() {
        assert_eq!(
            listening_port("signalroom listening on http://127.0.0.1:41234"),
            Some(41234)
        );
        assert_eq!(
            listening_port("WebRTC Socket.IO server on http://127.0.0.1:3101"),
            Some(3101)
        );
        assert_eq!(listening_port("hello"), None);
    }

    #[test]
    fn medians_of_runs() {
        let m = medians(&[
            json!({"a": 1, "b": true}),
            json!({"a": 5, "b": true}),
            json!({"a": 3, "b": false}),
        ]);
        assert_eq!(m["a"], json!(3.0));
        assert_eq!(m["b"], json!(false));
        assert_eq!(median(vec![1.0, 2.0, 3.0, 4.0]), Some(2.5));
    }
}
