//! `signalroom-bench`: signalroom's load generator.
//!
//! Speaks Socket.IO v5 over raw engine.io WebSocket frames, so one process drives
//! thousands of connections. Each scenario prints one JSON line on stdout. Only loopback
//! targets are accepted.

mod http;
mod procfs;
mod scenarios;
mod sio;
mod soak;
mod soak_client;
mod stats;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use scenarios::{Target, Updates};
use sio::Clients;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

#[derive(Parser)]
#[command(
    about = "Load generator for signalroom (and the Node reference): one JSON line per scenario"
)]
struct Cli {
    /// The server: `http://127.0.0.1:PORT`, `ws://...` or `HOST:PORT`. Loopback only.
    /// Several, comma-separated (the nodes of one cluster): each room's members are
    /// connected to them in turn (peer 0 to the first, peer 1 to the second, ...).
    #[arg(long, default_value = "http://127.0.0.1:3001", global = true)]
    url: String,
    /// The server's process id, to report its CPU seconds and peak memory from /proc.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// A name for the server, copied into the JSON line (`"server"`).
    #[arg(long, default_value = "", global = true)]
    label: String,
    /// Worker threads of the generator (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// WebSocket handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 128, global = true)]
    connect_concurrency: usize,
    /// WebSocket read buffer per connection, bytes.
    #[arg(long, default_value_t = 16 * 1024, global = true)]
    read_buffer: usize,
    /// How the clients read: `fast` scans each frame in place for the few fields it
    /// needs; `parse` also parses every message into a JSON value, as socket.io-client
    /// and python-socketio do, so the clients read more slowly.
    #[arg(long, value_enum, default_value_t = Clients::Fast, global = true)]
    clients: Clients,
    /// Give up on a storm (join and converge) after this many seconds.
    #[arg(long, default_value_t = 120.0, global = true)]
    timeout_s: f64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Join storm: rooms x peers connections join at once.
    Storm {
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        #[arg(long, default_value_t = 100)]
        peers: usize,
        #[arg(long, value_enum, default_value_t = Updates::Full)]
        updates: Updates,
    },
    /// Churn: rooms x peers join, then `churners` of them leave and rejoin for `secs`.
    Churn {
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 20)]
        peers: usize,
        #[arg(long, default_value_t = 50)]
        churners: usize,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, value_enum, default_value_t = Updates::Full)]
        updates: Updates,
    },
    /// Signal relay: pairs exchange `signal` messages, `window` in flight per side.
    Signal {
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 1)]
        window: usize,
        /// Bytes of padding in each signal's data (an ICE candidate is about 200).
        #[arg(long, default_value_t = 100)]
        pad: usize,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Offered load in messages/s for all senders together, each on a fixed
        /// schedule whatever the answers (open loop; latency counts from the scheduled
        /// time); 0: closed loop, `window` in flight per side.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// Idle: connections joined in rooms of `peers`, held: server memory per connection.
    Idle {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        peers: usize,
        #[arg(long, default_value_t = 3.0)]
        hold_s: f64,
        #[arg(long, value_enum, default_value_t = Updates::Full)]
        updates: Updates,
    },
    /// REST under load: GET /api/webrtc/rooms in a loop while a join storm runs.
    Rest {
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        #[arg(long, default_value_t = 100)]
        peers: usize,
        #[arg(long, default_value_t = 4)]
        http_conns: usize,
        #[arg(long, value_enum, default_value_t = Updates::Full)]
        updates: Updates,
    },
    /// Soak and leak check: cycles of clients that join, signal, leave and go
    /// (some abandoned); the server's RSS, allocated bytes, fds, tasks and
    /// registry sizes after each cycle (needs --pid). See bench/src/soak.rs.
    Soak {
        #[arg(long, default_value_t = 10)]
        cycles: usize,
        /// Clients per cycle (the global `--clients` says how clients read).
        #[arg(long, default_value_t = 5000)]
        per_cycle: usize,
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        /// Percent of clients on HTTP long-polling.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=100))]
        polling_pct: u8,
        /// Percent of clients abandoned after joining (reclaimed by the heartbeat).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
        abandoned_pct: u8,
        /// Most seconds to wait after a cycle for the server to reclaim everything.
        #[arg(long, default_value_t = 60.0)]
        drain_s: f64,
    },
}

/// Resolves `url` to a socket address and refuses anything that is not loopback.
fn loopback_target(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .unwrap_or(url);
    if url.contains("://") && !url.starts_with("http://") && !url.starts_with("ws://") {
        bail!("only http:// or ws:// targets: {url}");
    }
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hostport}"))?
        .collect();
    if addrs.is_empty() {
        bail!("{hostport} resolves to nothing");
    }
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing non-loopback target {bad} (from {url}): this generator only loads 127.0.0.0/8 or ::1"
        );
    }
    Ok(addrs[0])
}

/// Raises the open-file limit to the hard limit (10,000 connections need 10,000 sockets).
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

fn main() {
    let cli = Cli::parse();
    let name = scenario_name(&cli.scenario);
    match run(cli) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"scenario": name, "error": format!("{e:#}")})
            );
            std::process::exit(1);
        }
    }
}

fn scenario_name(s: &Scenario) -> &'static str {
    match s {
        Scenario::Storm { .. } => "storm",
        Scenario::Churn { .. } => "churn",
        Scenario::Signal { .. } => "signal",
        Scenario::Idle { .. } => "idle",
        Scenario::Rest { .. } => "rest",
        Scenario::Soak { .. } => "soak",
    }
}

fn run(cli: Cli) -> Result<serde_json::Value> {
    let addrs = cli
        .url
        .split(',')
        .map(|u| loopback_target(u.trim()))
        .collect::<Result<Vec<_>>>()?;
    let addr = *addrs.first().context("--url names no server")?;
    let nofile = raise_nofile();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    let t = Target {
        addr,
        addrs,
        pid: cli.pid,
        connect_concurrency: cli.connect_concurrency,
        read_buffer: cli.read_buffer.clamp(1024, 1 << 22),
        parse: cli.clients == Clients::Parse,
    };
    let timeout = Duration::from_secs_f64(cli.timeout_s.clamp(1.0, 3600.0));
    let label = cli.label.as_str();
    let clients = cli.clients;
    // A hard bound on the whole run, whatever happens inside: twice every phase's limit.
    let run_secs = match &cli.scenario {
        Scenario::Churn { secs, .. } | Scenario::Signal { secs, .. } => *secs,
        Scenario::Idle { hold_s, .. } => *hold_s,
        Scenario::Soak {
            cycles, drain_s, ..
        } => *cycles as f64 * (drain_s + 240.0),
        _ => 0.0,
    };
    let watchdog = Duration::from_secs_f64(
        2.0 * (timeout.as_secs_f64() + run_secs.clamp(0.0, 3600.0)) + 120.0,
    );
    let scenario_name = scenario_name(&cli.scenario);
    std::thread::spawn(move || {
        std::thread::sleep(watchdog);
        println!(
            "{}",
            serde_json::json!({"scenario": scenario_name, "error": format!("watchdog: no result after {watchdog:?}")})
        );
        std::process::exit(2);
    });
    let need = match &cli.scenario {
        Scenario::Storm { rooms, peers, .. } | Scenario::Rest { rooms, peers, .. } => rooms * peers,
        Scenario::Churn { rooms, peers, .. } => rooms * peers,
        Scenario::Signal { pairs, .. } => pairs * 2,
        Scenario::Idle { connections, .. } => *connections,
        // A polling client holds two connections.
        Scenario::Soak { per_cycle, .. } => per_cycle * 2,
    };
    if need as u64 + 64 > nofile {
        bail!("{need} connections need more open files than the limit ({nofile})");
    }
    if need == 0 {
        bail!("nothing to do: zero connections");
    }
    let mut v = rt.block_on(async {
        match cli.scenario {
            Scenario::Storm {
                rooms,
                peers,
                updates,
            } => scenarios::storm(&t, label, rooms, peers, updates, timeout).await,
            Scenario::Churn {
                rooms,
                peers,
                churners,
                secs,
                updates,
            } => {
                scenarios::churn(
                    &t,
                    label,
                    rooms,
                    peers,
                    churners,
                    secs.clamp(0.1, 3600.0),
                    updates,
                    timeout,
                )
                .await
            }
            Scenario::Signal {
                pairs,
                window,
                pad,
                secs,
                rate,
            } => {
                scenarios::signal(
                    &t,
                    label,
                    scenarios::SignalLoad {
                        pairs,
                        window: window.clamp(1, 1000),
                        pad,
                        secs: secs.clamp(0.1, 3600.0),
                        rate: if rate.is_finite() {
                            rate.clamp(0.0, 1e7)
                        } else {
                            0.0
                        },
                    },
                    timeout,
                )
                .await
            }
            Scenario::Idle {
                connections,
                peers,
                hold_s,
                updates,
            } => {
                let hold = Duration::from_secs_f64(hold_s.clamp(0.0, 3600.0));
                scenarios::idle(&t, label, connections, peers, hold, updates, timeout).await
            }
            Scenario::Rest {
                rooms,
                peers,
                http_conns,
                updates,
            } => scenarios::rest(&t, label, rooms, peers, http_conns, updates, timeout).await,
            Scenario::Soak {
                cycles,
                per_cycle,
                room_size,
                polling_pct,
                abandoned_pct,
                drain_s,
            } => {
                let s = soak::Soak {
                    cycles: cycles.clamp(1, 1000),
                    clients: per_cycle,
                    room_size,
                    polling_pct: usize::from(polling_pct),
                    abandoned_pct: usize::from(abandoned_pct),
                    drain_s,
                };
                soak::run(&t, &s).await
            }
        }
    })?;
    if let Some(o) = v.as_object_mut() {
        o.insert("target".into(), serde_json::json!(addr.to_string()));
        o.insert("clients".into(), serde_json::json!(clients.name()));
    }
    rt.shutdown_timeout(Duration::from_millis(500));
    Ok(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        // clap checks its definition only when parsing: two arguments sharing an id
        // (a global and a subcommand's) would panic at run time, not at build time.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
        super::Cli::try_parse_from(["bench", "--clients", "parse", "soak", "--per-cycle", "3"])
            .map(|_| ())
            .expect("the soak and the client mode parse together");
    }

    use super::*;

    #[test]
    fn only_loopback() {
        assert!(loopback_target("http://127.0.0.1:3001").is_ok());
        assert!(loopback_target("127.0.0.2:80").is_ok());
        assert!(loopback_target("ws://[::1]:3001/socket.io/").is_ok());
        assert!(loopback_target("http://localhost:3001").is_ok());
        assert!(loopback_target("http://10.0.0.1:3001").is_err());
        assert!(loopback_target("http://192.168.1.1:3001").is_err());
        assert!(loopback_target("http://8.8.8.8:53").is_err());
        assert!(loopback_target("https://127.0.0.1:3001").is_err());
    }
}
