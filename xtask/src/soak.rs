//! `cargo xtask soak`: the soak and leak check, and its short version in `cargo xtask test`.
//!
//! Starts the release `signalroom` with a short heartbeat (so abandoned clients
//! are reclaimed within seconds), runs `signalroom-bench soak` against it
//! (bench/src/soak.rs: cycles of clients that connect over WebSocket or
//! polling, join, signal, leave and go, some abandoned), then judges the
//! per-cycle samples: no client error, every cycle drained (no connection,
//! room or peer left; open fds and live tokio tasks back to the baseline taken
//! before the first cycle) and jemalloc's allocated bytes after the last cycle
//! within a tolerance of cycle 2 (cycle 1 warms caches and pools up). Writes
//! everything to `target/soak/soak-latest.json`. No timing is asserted.

use crate::setup::root;
use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::Value;
use std::fs;
use std::process::{Command, Stdio};

/// The sizes of a soak run.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "soak",
    about = "Soak and leak check against the release signalroom"
)]
pub struct Args {
    /// Cycles to run (at least 3: cycle 2 is the reference, cycle 1 warms up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(3..=1000))]
    cycles: u32,
    /// Clients per cycle.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=9000))]
    clients: u32,
    /// Peers per room.
    #[arg(long, default_value_t = 10)]
    room_size: u32,
    /// Percent of clients on HTTP long-polling.
    #[arg(long, default_value_t = 30)]
    polling_pct: u8,
    /// Percent of clients abandoned after joining.
    #[arg(long, default_value_t = 10)]
    abandoned_pct: u8,
    /// Allowed growth of allocated bytes from cycle 2 to the last cycle, percent.
    #[arg(long, default_value_t = 5.0)]
    tolerance_pct: f64,
    /// Skip the release build (the binaries are already built).
    #[arg(long)]
    no_build: bool,
}

/// The server's heartbeat during a soak, seconds: abandoned clients go within
/// interval + timeout.
const PING_INTERVAL: &str = "2";
const PING_TIMEOUT: &str = "2";

/// `cargo xtask soak [ARGS]`.
pub fn main(raw: &[String]) -> Result<()> {
    let args = Args::try_parse_from(std::iter::once("soak".to_string()).chain(raw.iter().cloned()))
        .unwrap_or_else(|e| e.exit());
    run(&args)
}

/// The short soak of the test suite: 4 cycles of 300 clients.
pub fn short() -> Result<()> {
    let args = Args::try_parse_from(["soak", "--cycles", "4", "--clients", "300"])?;
    run(&args)
}

fn run(args: &Args) -> Result<()> {
    let root = root();
    if !args.no_build {
        crate::bench::build(&root)?;
    }
    let dir = root.join("target/soak");
    fs::create_dir_all(&dir)?;
    let bin = root.join("target/release");
    let args_server: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ping-interval",
        PING_INTERVAL,
        "--ping-timeout",
        PING_TIMEOUT,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cmd = crate::bench::sh_raised(&bin.join("signalroom"), &args_server);
    // Without jemalloc's per-thread caches, its allocated bytes are exactly
    // the program's live bytes: with them, what the caches hold counts too
    // and moves by hundreds of KiB between idle moments.
    cmd.env("RUST_LOG", "warn")
        .env("_RJEM_MALLOC_CONF", "tcache:false");
    let server = crate::bench::start(cmd, &dir.join("server.log"), "signalroom")?;
    let pid = server.child.id();
    let url = format!("http://127.0.0.1:{}", server.port);
    println!(
        "soak: {} cycles of {} clients ({} % polling, {} % abandoned) against pid {pid}",
        args.cycles, args.clients, args.polling_pct, args.abandoned_pct
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#)
        .arg("sh")
        .arg(bin.join("signalroom-bench"))
        .args(["--url", &url, "--pid", &pid.to_string(), "soak"])
        .args(["--cycles", &args.cycles.to_string()])
        .args(["--per-cycle", &args.clients.to_string()])
        .args(["--room-size", &args.room_size.to_string()])
        .args(["--polling-pct", &args.polling_pct.to_string()])
        .args(["--abandoned-pct", &args.abandoned_pct.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run signalroom-bench")?;
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line)
        .with_context(|| format!("signalroom-bench printed no JSON: {text:.500}"))?;
    fs::write(
        dir.join("soak-latest.json"),
        serde_json::to_string_pretty(&v)?,
    )?;
    print_table(&v);
    println!("written to {}", dir.join("soak-latest.json").display());
    if let Some(e) = v.get("error") {
        bail!("soak failed: {e}");
    }
    check(&v, args.tolerance_pct)
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn print_table(v: &Value) {
    let empty = Vec::new();
    let cycles = v["cycles"].as_array().unwrap_or(&empty);
    println!(
        "{:>5} {:>7} {:>6} {:>10} {:>9} {:>14} {:>5} {:>6} {:>8} {:>8}",
        "cycle",
        "clients",
        "errors",
        "active_s",
        "drain_s",
        "allocated_B",
        "fds",
        "tasks",
        "rss_MB",
        "peers"
    );
    let row = |label: &str, c: Option<&Value>, s: &Value| {
        let get = |k: &str| c.map_or(f64::NAN, |c| num(c, k));
        println!(
            "{label:>5} {:>7} {:>6} {:>10.3} {:>9.3} {:>14} {:>5} {:>6} {:>8.1} {:>8}",
            get("clients"),
            get("errors"),
            get("active_s"),
            get("drain_s"),
            num(s, "signalroom_jemalloc_allocated_bytes"),
            num(s, "fds"),
            num(s, "signalroom_tokio_alive_tasks"),
            num(s, "rss_kb") / 1024.0,
            num(s, "signalroom_peers"),
        );
    };
    row("base", None, &v["baseline"]);
    for c in cycles {
        row(&num(c, "cycle").to_string(), Some(c), &c["server"]);
    }
}

/// The leak criteria (see the module comment).
fn check(v: &Value, tolerance_pct: f64) -> Result<()> {
    let cycles = v["cycles"].as_array().context("no cycles")?;
    let base = &v["baseline"];
    let mut failures = Vec::new();
    for c in cycles {
        let n = num(c, "cycle");
        let s = &c["server"];
        if num(c, "errors") != 0.0 {
            failures.push(format!(
                "cycle {n}: {} client errors, first: {}",
                num(c, "errors"),
                c["first_error"]
            ));
        }
        if c["phases_completed"] != Value::Bool(true) {
            failures.push(format!(
                "cycle {n}: not every client got through its phases"
            ));
        }
        for g in [
            "signalroom_connections",
            "signalroom_rooms",
            "signalroom_peers",
        ] {
            if num(s, g) != 0.0 {
                failures.push(format!("cycle {n}: {g} = {} after the drain", num(s, g)));
            }
        }
        for g in ["fds", "signalroom_tokio_alive_tasks"] {
            if num(s, g).is_nan() || num(s, g) > num(base, g) {
                failures.push(format!(
                    "cycle {n}: {g} = {} after the drain, baseline {}",
                    num(s, g),
                    num(base, g)
                ));
            }
        }
    }
    let alloc = |c: &Value| num(&c["server"], "signalroom_jemalloc_allocated_bytes");
    match (cycles.get(1), cycles.last()) {
        (Some(second), Some(last)) => {
            let (a2, an) = (alloc(second), alloc(last));
            let growth = (an - a2) / a2 * 100.0;
            println!("allocated bytes: cycle 2 {a2}, last {an}: {growth:+.2} %");
            if !(a2 > 0.0 && growth <= tolerance_pct) {
                failures.push(format!(
                    "allocated bytes grew {growth:+.2} % from cycle 2 to the last (limit {tolerance_pct} %)"
                ));
            }
        }
        _ => failures.push("fewer than 2 cycles".into()),
    }
    if failures.is_empty() {
        println!("soak: no leak found");
        Ok(())
    } else {
        bail!("soak failed:\n  {}", failures.join("\n  "))
    }
}
