//! `cargo xtask fuzz [TARGET] [--seconds N]`: the coverage-guided fuzz targets
//! of `fuzz/` (cargo-fuzz with libFuzzer, on the stable toolchain: no
//! sanitizer, `-s none`), and their short run in `cargo xtask test`.
//!
//! Installs cargo-fuzz from crates.io when it is missing. Each target starts
//! from its committed seed corpus (`fuzz/corpus/<target>/`, read only) and
//! grows a working corpus under `fuzz/target/corpus/<target>/`. A crash, a
//! panic or a hang (over 10 s for one input) fails the run; libFuzzer leaves
//! the input under `fuzz/artifacts/<target>/`. Each run's figures (executions,
//! coverage, corpus) are printed and written to `target/fuzz/fuzz-latest.json`.

use crate::setup::root;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Every fuzz target (fuzz/fuzz_targets/*.rs).
pub const TARGETS: [&str; 3] = ["registry_ops", "parse_payloads", "socket_packets"];

/// `cargo xtask fuzz [TARGET] [--seconds N]`.
pub fn main(raw: &[String]) -> Result<()> {
    let mut target = None;
    let mut seconds = 60u64;
    let mut it = raw.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .with_context(|| format!("--seconds: {v} is not 1..=86400"))?;
            }
            "-h" | "--help" => {
                println!(
                    "cargo xtask fuzz [TARGET] [--seconds N]\n\nRuns one fuzz target, or each in turn, for N seconds (default 60).\nTargets: {}",
                    TARGETS.join(", ")
                );
                return Ok(());
            }
            t if TARGETS.contains(&t) && target.is_none() => target = Some(t.to_owned()),
            other => bail!(
                "unknown argument {other:?}: expected a target ({}) or --seconds N",
                TARGETS.join(", ")
            ),
        }
    }
    let targets: Vec<&str> = match &target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    run(&targets, seconds)
}

/// The test suite's run: every target for 30 s; fails on any crash.
pub fn ci() -> Result<()> {
    run(&TARGETS, 30)
}

fn ensure_cargo_fuzz(root: &Path) -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        println!("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        crate::setup::run(root, "cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

fn run(targets: &[&str], seconds: u64) -> Result<()> {
    let root = root();
    ensure_cargo_fuzz(&root)?;
    crate::setup::run(&root, "cargo", &["fuzz", "build", "-s", "none"])?;
    let dir = root.join("target/fuzz");
    fs::create_dir_all(&dir)?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for t in targets {
        let r = run_one(&root, &dir, t, seconds)?;
        println!(
            "fuzz {t}: {} s, {} execs ({} /s), cov {}, ft {}, corpus {} ({} new){}",
            r["seconds"],
            r["execs"],
            r["execs_per_s"],
            r["cov"],
            r["ft"],
            r["corpus"],
            r["new_units"],
            if r["ok"] == Value::Bool(true) {
                String::new()
            } else {
                format!(": FAILED, see {}", r["log"])
            }
        );
        if r["ok"] != Value::Bool(true) {
            failed.push(t.to_string());
        }
        results.push(r);
    }
    fs::write(
        dir.join("fuzz-latest.json"),
        serde_json::to_string_pretty(&json!({"runs": results}))?,
    )?;
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs one target; returns its figures (`ok` false on a crash).
fn run_one(root: &Path, dir: &Path, target: &str, seconds: u64) -> Result<Value> {
    let seeds = root.join("fuzz/corpus").join(target);
    let work = root.join("fuzz/target/corpus").join(target);
    fs::create_dir_all(&work)?;
    let log_path = dir.join(format!("{target}.log"));
    let mut log = fs::File::create(&log_path)?;
    let mut child = Command::new("cargo")
        .current_dir(root)
        .args(["fuzz", "run", "-s", "none", target])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-timeout=10", "-print_final_stats=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run cargo fuzz")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut last_status = String::new();
    let mut stats = serde_json::Map::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        writeln!(log, "{line}")?;
        if line.starts_with('#') && line.contains("cov:") {
            last_status = line.clone();
        }
        if let Some(rest) = line.strip_prefix("stat::")
            && let Some((k, v)) = rest.split_once(':')
            && let Ok(n) = v.trim().parse::<u64>()
        {
            stats.insert(k.trim().to_owned(), json!(n));
        }
    }
    let status = child.wait()?;
    let field = |name: &str| -> Value {
        let mut words = last_status.split_whitespace();
        while let Some(w) = words.next() {
            if w == format!("{name}:") {
                // `corp: 12/3Kb` counts units before the slash.
                return words
                    .next()
                    .and_then(|v| v.split('/').next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(Value::Null, |n| json!(n));
            }
        }
        Value::Null
    };
    Ok(json!({
        "target": target,
        "seconds": seconds,
        "ok": status.success(),
        "execs": stats.get("number_of_executed_units").cloned().unwrap_or(Value::Null),
        "execs_per_s": stats.get("average_exec_per_sec").cloned().unwrap_or(Value::Null),
        "new_units": stats.get("new_units_added").cloned().unwrap_or(Value::Null),
        "peak_rss_mb": stats.get("peak_rss_mb").cloned().unwrap_or(Value::Null),
        "cov": field("cov"),
        "ft": field("ft"),
        "corpus": field("corp"),
        "last_status": last_status,
        "log": log_path.display().to_string(),
    }))
}
