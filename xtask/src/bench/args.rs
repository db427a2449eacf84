//! The command line of `cargo xtask bench` and the scenarios it runs: which generator
//! arguments make each row of the table, at full size or at the smoke size.

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "cargo xtask bench",
    about = "Benchmark signalroom against the Node reference server"
)]
pub(super) struct Args {
    /// A tiny size (a few rooms of a few peers, seconds): checks that the generator works.
    #[arg(long)]
    pub(super) smoke: bool,
    /// Runs per server; the table quotes medians.
    #[arg(long, default_value_t = 3)]
    pub(super) runs: usize,
    /// Rooms of the join storm (and of the REST scenario).
    #[arg(long, default_value_t = 20)]
    pub(super) rooms: usize,
    /// Peers per room of the join storm.
    #[arg(long, default_value_t = 100)]
    pub(super) peers: usize,
    /// Rooms of the big storm (0: skip it).
    #[arg(long, default_value_t = 100)]
    pub(super) big_rooms: usize,
    /// Peers per room of the big storm.
    #[arg(long, default_value_t = 100)]
    pub(super) big_peers: usize,
    /// Connections of the idle (memory) scenario.
    #[arg(long, default_value_t = 2000)]
    pub(super) idle_connections: usize,
    /// Churn: rooms x peers members, `churners` of them leaving and rejoining for `churn_secs`.
    #[arg(long, default_value_t = 10)]
    pub(super) churn_rooms: usize,
    #[arg(long, default_value_t = 20)]
    pub(super) churn_peers: usize,
    #[arg(long, default_value_t = 50)]
    pub(super) churners: usize,
    #[arg(long, default_value_t = 5.0)]
    pub(super) churn_secs: f64,
    /// Signal relay: pairs, signals in flight per side, seconds.
    #[arg(long, default_value_t = 100)]
    pub(super) pairs: usize,
    #[arg(long, default_value_t = 1)]
    pub(super) window: usize,
    #[arg(long, default_value_t = 5.0)]
    pub(super) signal_secs: f64,
    /// Paced signal relay (`signal_paced`): messages/s offered by the `pairs` pairs
    /// together, each side on a fixed schedule, for `signal_secs`.
    #[arg(long, default_value_t = 20_000.0)]
    pub(super) signal_rate: f64,
    /// Keep-alive HTTP clients polling `GET /api/webrtc/rooms` during the REST storm.
    #[arg(long, default_value_t = 4)]
    pub(super) http_conns: usize,
    /// Only these servers (`signalroom`, `node`); default both.
    #[arg(long, value_delimiter = ',')]
    pub(super) only: Vec<String>,
    /// Only these scenarios (ids as in the table, e.g. `storm_full,idle`); default all.
    #[arg(long, value_delimiter = ',')]
    pub(super) scenarios: Vec<String>,
    /// Extra argument for `signalroom` (repeatable), e.g. `--server-arg=--max-peers=200`.
    #[arg(long, allow_hyphen_values = true)]
    pub(super) server_arg: Vec<String>,
    /// Also run the storm, churn and signal scenarios against this many cluster nodes
    /// (2-9) sharing a private Redis, each room's members spread over them.
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=9))]
    pub(super) cluster: Option<u8>,
    /// Do not build (use the binaries already in target/release).
    #[arg(long)]
    pub(super) no_build: bool,
    /// Run the test suite's smoke check instead (`smoke()`: debug build, signalroom alone).
    #[arg(long, hide = true)]
    pub(super) test_smoke: bool,
}

impl Args {
    pub(super) fn smoke_sizes(mut self) -> Args {
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
        self.signal_rate = 200.0;
        self.http_conns = 2;
        self.runs = 1;
        self
    }
}

/// One scenario as run for the table.
pub(super) struct Case {
    pub(super) id: &'static str,
    /// Also against the Node reference (full lists only: it knows no delta mode).
    pub(super) node: bool,
    pub(super) args: Vec<String>,
}

pub(super) fn cases(a: &Args) -> Vec<Case> {
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
        // The same storm read by clients that parse every message, as real clients do:
        // slower readers (issue 10).
        Case {
            id: "storm_parse",
            node: true,
            args: [
                s(&["--clients", "parse", "storm", "--rooms"]),
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
            id: "signal_paced",
            node: false,
            args: [
                s(&["signal", "--pairs"]),
                vec![n(a.pairs)],
                s(&["--rate"]),
                vec![f(a.signal_rate)],
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
