//! `cargo xtask bench`: signalroom against the Node reference server, same generator, same
//! sizes, several runs each, medians; a table on stdout and JSON in `target/bench/`.
//!
//! Each run starts a fresh server, runs every scenario against it (one `signalroom-bench`
//! process per scenario, one JSON line each), then stops it. Runs alternate between the
//! servers so that a noisy moment of this shared machine hits both alike. With
//! `--cluster N`, a cluster of N nodes is a third server for the storm, churn and signal
//! scenarios (`cluster.rs`), and a second table sets its figures beside the single node's.

mod args;
mod cluster;
mod sanity;
mod servers;
mod table;

use crate::setup::{root, run as sh};
use anyhow::{Result, bail};
use args::{Args, cases};
use clap::Parser;
use sanity::check_sane;
use serde_json::{Map, Value, json};
use servers::{Server, generate, node_reference, start_node, start_signalroom};
pub(crate) use servers::{sh_raised, start};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use table::{Results, fmt, markdown, medians, print_table, table};

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
    let cluster_bins = match args.cluster {
        Some(_) => {
            // The release server built above has cluster mode.
            let bin = root.join(crate::cluster_run::SERVER_BIN);
            servers.push(Server::Cluster);
            Some((bin, crate::setup::redis()?))
        }
        None => None,
    };
    if servers.is_empty() {
        bail!("no server to benchmark");
    }
    let cluster = cluster_bins
        .as_ref()
        .zip(args.cluster)
        .map(|((bin, redis), n)| (bin.as_path(), redis.as_path(), n));
    let results = run_all(&root, &bin, &args, &servers, node_dir.as_deref(), cluster)?;
    report(&root, &args, raw, &results)?;
    if args.smoke {
        check_sane(&results)?;
    }
    Ok(())
}

/// A cluster to run: its server binary, redis-server and number of nodes.
type ClusterBins<'a> = Option<(&'a Path, &'a Path, u8)>;

fn run_all(
    root: &Path,
    bin: &Path,
    args: &Args,
    servers: &[Server],
    node_dir: Option<&Path>,
    cluster_bins: ClusterBins<'_>,
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
                if server == Server::Node && !case.node
                    || server == Server::Cluster && !cluster::CASES.contains(&case.id)
                {
                    continue;
                }
                let log = logs.join(format!("{}-{}-run{run}.log", server.name(), case.id));
                let v = match (server, node_dir, cluster_bins) {
                    (Server::Signalroom, _, _) => {
                        let started =
                            start_signalroom(&bin.join("signalroom"), &args.server_arg, &log);
                        generate_single(&bench, server, started, case)
                    }
                    (Server::Node, Some(dir), _) => {
                        generate_single(&bench, server, start_node(dir, &log), case)
                    }
                    (Server::Cluster, _, Some((cluster_bin, redis_bin, n))) => {
                        let extra = &args.server_arg;
                        match cluster::Cluster::start(cluster_bin, redis_bin, n, extra, &log) {
                            Ok(running) => running.generate(&bench, case),
                            Err(e) => json!({"case": case.id,
                                "error": format!("cluster did not start: {e:#}")}),
                        }
                    }
                    _ => continue,
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

/// Runs one scenario against one server process, if it started.
fn generate_single(
    bench: &Path,
    server: Server,
    started: Result<servers::Running>,
    case: &args::Case,
) -> Value {
    match started {
        Ok(running) => {
            let url = format!("http://127.0.0.1:{}", running.port);
            let pid = running.child.id();
            generate(bench, server.name(), &url, Some(pid), case)
        }
        Err(e) => json!({"case": case.id, "error": format!("server did not start: {e:#}")}),
    }
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
    let cluster_rows = cluster::table(&med);
    cluster::print(&cluster_rows, args.cluster.unwrap_or(0));
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
        "cluster_nodes": args.cluster,
        "cluster_table": cluster_rows,
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
    let results = run_all(&root, &bin, &args, &[Server::Signalroom], None, None)?;
    check_sane(&results)
}
