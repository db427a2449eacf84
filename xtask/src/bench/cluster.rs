//! `cargo xtask bench --cluster N`: the same scenarios against N cluster nodes sharing one
//! private Redis. For every scenario a fresh Redis and fresh nodes (the cluster build of
//! the server, `--port 0`) are started, the generator gets every node's URL and connects
//! each room's members to the nodes in turn (peer 0 to node 1, peer 1 to node 2, ...), so
//! every room spans the nodes; then everything is stopped. Only the scenarios that say
//! something about a cluster run (join storms, churn, signal relay): the memory and REST
//! scenarios measure one process. The generator reads no server CPU or memory here (there
//! are N processes); its table sets the cluster's figures beside the single node's.

use super::args::Case;
use super::servers::{Running, Server, generate, start_signalroom};
use super::table::{cell, fmt};
use crate::cluster_run::Redis;
use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The scenarios a cluster runs.
pub(super) const CASES: [&str; 8] = [
    "storm_full",
    "storm_parse",
    "storm_delta",
    "storm_big_full",
    "storm_big_delta",
    "churn",
    "signal",
    "signal_paced",
];

/// The figures of the cluster table: (scenario, field, what).
const ROWS: [(&str, &str, &str); 16] = [
    ("storm_full", "joins_per_s", "storm full: joins/s"),
    ("storm_full", "join_p99_ms", "storm full: p99 join ms"),
    ("storm_full", "convergence_ms", "storm full: convergence ms"),
    (
        "storm_parse",
        "joins_per_s",
        "storm full, parsing clients: joins/s",
    ),
    ("storm_delta", "joins_per_s", "storm delta: joins/s"),
    (
        "storm_delta",
        "convergence_ms",
        "storm delta: convergence ms",
    ),
    ("storm_big_full", "joins_per_s", "big storm full: joins/s"),
    ("storm_big_delta", "joins_per_s", "big storm delta: joins/s"),
    ("churn", "ops_per_s", "churn: leave+join ops/s"),
    ("churn", "op_p99_ms", "churn: p99 op ms"),
    ("churn", "join_p50_ms", "churn: p50 join ms"),
    ("churn", "join_p99_ms", "churn: p99 join ms"),
    ("signal", "messages_per_s", "signal relay: messages/s"),
    ("signal", "latency_p99_ms", "signal relay: p99 latency ms"),
    ("signal_paced", "messages_per_s", "paced signal: messages/s"),
    (
        "signal_paced",
        "latency_p99_ms",
        "paced signal: p99 latency ms",
    ),
];

/// A running cluster: its nodes (killed on drop) and its Redis.
pub(super) struct Cluster {
    runtime: tokio::runtime::Runtime,
    redis: Option<Redis>,
    nodes: Vec<Running>,
}

impl Cluster {
    /// Starts a private Redis and `n` nodes of `bin` with `extra` arguments; each node's
    /// log goes to `log` with `-nodeI` before its extension.
    pub(super) fn start(
        bin: &Path,
        redis_bin: &Path,
        n: u8,
        extra: &[String],
        log: &Path,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let redis = runtime.block_on(Redis::start(redis_bin))?;
        let mut cluster = Cluster {
            runtime,
            redis: None,
            nodes: Vec::new(),
        };
        let url = redis.url();
        cluster.redis = Some(redis);
        for i in 1..=n {
            let mut args = extra.to_vec();
            args.extend([
                "--redis-url".to_string(),
                url.clone(),
                "--node-id".to_string(),
                format!("node{i}"),
            ]);
            let node_log = log.with_extension(format!("node{i}.log"));
            cluster.nodes.push(start_signalroom(bin, &args, &node_log)?);
        }
        Ok(cluster)
    }

    /// Runs one scenario with the generator against every node.
    pub(super) fn generate(&self, bench: &Path, case: &Case) -> Value {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.port))
            .collect();
        generate(bench, Server::Cluster.name(), &urls.join(","), None, case)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The nodes first (their `Running` kills them), then Redis.
        self.nodes.clear();
        if let Some(redis) = self.redis.take() {
            self.runtime.block_on(redis.stop());
        }
    }
}

/// The cluster's medians beside the single node's, one row a figure.
pub(super) fn table(
    med: &BTreeMap<Server, BTreeMap<&'static str, Map<String, Value>>>,
) -> Vec<Value> {
    let get = |s: Server, case: &str| med.get(&s).and_then(|m| m.get(case));
    let mut rows = Vec::new();
    for (case, field, what) in ROWS {
        let one = cell(get(Server::Signalroom, case), field);
        let many = cell(get(Server::Cluster, case), field);
        if many.is_null() {
            continue;
        }
        let ratio = match (many.as_f64(), one.as_f64()) {
            (Some(x), Some(y)) if y != 0.0 => json!((x / y * 1000.0).round() / 1000.0),
            _ => Value::Null,
        };
        rows.push(json!({"case": case, "field": field, "what": what, "one_node": one, "cluster": many, "ratio": ratio}));
    }
    rows
}

/// Prints the cluster table.
pub(super) fn print(rows: &[Value], nodes: u8) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>9}",
        "figure (median)",
        "1 node",
        format!("{nodes} nodes"),
        "ratio"
    );
    println!("{}", "-".repeat(80));
    for r in rows {
        println!(
            "{:<44} {:>12} {:>12} {:>9}",
            r["what"].as_str().unwrap_or(""),
            fmt(&r["one_node"]),
            fmt(&r["cluster"]),
            fmt(&r["ratio"])
        );
    }
    println!(
        "(cluster: every room's members spread over the nodes, one private Redis, all on this machine)"
    );
}
