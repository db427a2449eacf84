//! From runs to the table: medians of every figure across runs, the rows signalroom vs
//! Node with their ratios, the targets of issues 4 and 10, and the table printed or
//! written as Markdown.

use super::servers::Server;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// All results: server -> case -> one JSON object per run.
pub(super) type Results = BTreeMap<Server, BTreeMap<&'static str, Vec<Value>>>;

pub(super) fn median(mut xs: Vec<f64>) -> Option<f64> {
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
pub(super) fn medians(runs: &[Value]) -> Map<String, Value> {
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
pub(super) const ROWS: &[(&str, &str, &str)] = &[
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
    (
        "storm_full",
        "kb_per_connection",
        "join storm: server KB per connection",
    ),
    (
        "storm_parse",
        "convergence_ms",
        "storm, parsing clients: convergence ms",
    ),
    (
        "storm_parse",
        "server_cpu_s",
        "storm, parsing clients: server CPU s",
    ),
    (
        "storm_parse",
        "server_peak_rss_mb",
        "storm, parsing clients: server peak RSS MB",
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
        "kb_per_connection_before_join",
        "idle: server KB per connection, before joining",
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
    ("signal_paced", "messages_per_s", "paced signal: messages/s"),
    ("signal_paced", "latency_p99_ms", "paced signal: p99 ms"),
    ("rest", "rest_per_s", "REST during storm: GET rooms/s"),
    ("rest", "rest_p99_ms", "REST during storm: p99 ms"),
    (
        "rest",
        "convergence_ms",
        "REST during storm: convergence ms",
    ),
];

pub(super) fn cell(m: Option<&Map<String, Value>>, field: &str) -> Value {
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

pub(super) fn fmt(v: &Value) -> String {
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

/// Builds the table rows and the targets of issues 4 and 10 from the medians.
pub(super) fn table(
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
    // Issue 10: every memory figure at or below Node's; the storm's server CPU at most
    // a third of Node's, read by fast clients and by parsing ones.
    for (case, field, what) in [
        (
            "idle",
            "kb_per_connection_before_join",
            "idle, before joining: KB/connection",
        ),
        (
            "idle",
            "kb_per_connection",
            "idle in rooms of 100: KB/connection",
        ),
        (
            "idle",
            "server_peak_rss_mb",
            "idle in rooms of 100: peak RSS",
        ),
        (
            "storm_full",
            "server_peak_rss_mb",
            "storm 20x100 full: peak RSS",
        ),
        (
            "storm_big_full",
            "kb_per_connection",
            "big storm full: KB/connection",
        ),
    ] {
        let r = ratio(case, field);
        target(&format!("{what} vs Node"), r, "<= 1x", r.map(|r| r <= 1.0));
    }
    let kb = num(Server::Signalroom, "storm_big_full", "kb_per_connection");
    target(
        "big storm full: KB/connection (ambition)",
        kb,
        "<= 12",
        kb.map(|v| v <= 12.0),
    );
    for (case, what) in [("storm_full", "fast"), ("storm_parse", "parsing")] {
        let r = ratio(case, "server_cpu_s");
        target(
            &format!("storm 20x100 server CPU vs Node, {what} clients"),
            r,
            "<= 0.333x",
            r.map(|r| r <= 1.0 / 3.0),
        );
    }
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

pub(super) fn print_table(rows: &[Value], targets: &[Value]) {
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
pub(super) fn markdown(doc: &Value, rows: &[Value], targets: &[Value]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
