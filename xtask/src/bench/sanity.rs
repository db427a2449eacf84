//! The smoke checks of the test suite: every scenario ran, answered, converged and
//! counted something. No timing is asserted.

use super::servers::Server;
use super::table::Results;
use anyhow::{Result, bail};
use serde_json::{Value, json};

/// The smoke checks: every scenario ran, answered, converged, counted something; no timing.
pub(super) fn check_sane(results: &Results) -> Result<()> {
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
                    if *server != Server::Node {
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
                    "storm_full" | "storm_parse" | "storm_delta" | "storm_big_full"
                    | "storm_big_delta" => &[
                        "joins_per_s",
                        "messages",
                        "bytes",
                        "convergence_ms",
                        "join_p50_ms",
                    ],
                    "churn" => &["ops", "messages"],
                    "signal" | "signal_paced" => &["messages", "messages_per_s"],
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
                // A cluster is several processes: the generator reads none of them.
                if *server != Server::Cluster && n("server_cpu_s").is_none() {
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
