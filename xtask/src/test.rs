//! `cargo xtask test`: every test of the project, in one command.
//!
//! Order: the fast native suites first (core unit and property tests), then
//! the release build the integration suites run against, then the suites
//! that drive the real server with real clients (Node socket.io-client,
//! python-socketio, headless Chromium).

use crate::setup::{self, root, run, run_env};
use anyhow::{Context, Result};

/// Runs every suite; stops at the first failure.
pub fn all() -> Result<()> {
    let root = root();
    setup::wasm_target()?;
    setup::npm_packages()?;
    let python = setup::python_venv()?;
    setup::chromium()?;
    setup::coturn()?;
    setup::nftables()?;
    let redis = setup::redis()?;

    // Cluster mode's own tests (server/tests/cluster.rs) start private Redis
    // instances of this redis-server.
    let redis_bin = redis.to_str().context("redis path is not UTF-8")?;
    run_env(
        &root,
        "cargo",
        &["test", "--workspace"],
        &[("SIGNALROOM_REDIS_BIN", redis_bin)],
    )?;
    // The one-node build without Redis (`--no-default-features`) still builds
    // and refuses `--redis-url` (server/tests/process.rs).
    run(
        &root,
        "cargo",
        &[
            "test",
            "-p",
            "signalroom-server",
            "--no-default-features",
            "--test",
            "process",
        ],
    )?;
    // The core must stay sans-I/O: prove it builds for the browser.
    run(
        &root,
        "cargo",
        &[
            "build",
            "-p",
            "signalroom-core",
            "--target",
            "wasm32-unknown-unknown",
        ],
    )?;
    crate::build::all()?;
    // Memory per connection within its budget (release: the budgets are for it).
    run(
        &root,
        "cargo",
        &[
            "test",
            "--release",
            "-p",
            "signalroom-server",
            "--test",
            "memory",
        ],
    )?;
    // The load generator still works and reports sane numbers (no timing asserted).
    crate::bench::smoke()?;
    // Leaks: a short soak (the release binaries are built by now), then every
    // fuzz target briefly; a crash fails the suite.
    crate::soak::short()?;
    crate::fuzz::ci()?;

    let bin = root.join("target/release/signalroom");
    let bin = bin.to_str().context("repo path is not UTF-8")?;
    // The cluster tests (tests/node/cluster_*, tests/python/test_cluster.py) run
    // nodes of the same binary.
    let env = [
        ("SIGNALROOM_BIN", bin),
        ("SIGNALROOM_REDIS_BIN", redis_bin),
        ("SIGNALROOM_CLUSTER_BIN", bin),
    ];
    run_env(&root, "node", &["--test", "tests/node/"], &env)?;
    // Cluster mode must pass what one node passes (issue 7): the protocol suite
    // again, each server a private Redis and three nodes of the server binary,
    // every client on node 1 (tests/lib/cluster.mjs).
    let files = cluster_suite(&root)?;
    let mut args = vec!["--test"];
    args.extend(files.iter().map(String::as_str));
    let mut cluster_env = env.to_vec();
    cluster_env.push(("SIGNALROOM_TEST_CLUSTER", "3"));
    run_env(&root, "node", &args, &cluster_env)?;
    let python = python.to_str().context("venv path is not UTF-8")?;
    run_env(&root, python, &["-m", "pytest", "-q", "tests/python"], &env)?;
    // The guide's Python client (and the REST refusals) on node 1 of three too
    // (tests/python/conftest.py); test_cluster starts its own nodes.
    let py_cluster = [
        "-m",
        "pytest",
        "-q",
        "tests/python/test_guide_client.py",
        "tests/python/test_refusal_drain.py",
        "tests/python/test_access.py",
    ];
    run_env(&root, python, &py_cluster, &cluster_env)?;
    // The browser library: its bindings in headless Chromium, then the Playwright suite.
    crate::wasm::test_wasm()?;
    crate::wasm::test_browser()?;
    Ok(())
}

/// Node test files that the cluster-mode run leaves out: the cluster tests
/// (they start their own nodes, and ran already) and the Redis harness's own
/// test (no signalroom server).
const NOT_IN_CLUSTER_RUN: &[&str] = &[
    "cluster_access.test.mjs",
    "cluster_failures.test.mjs",
    "cluster_recreate.test.mjs",
    "cluster_rooms.test.mjs",
    "redis_harness.test.mjs",
];

/// The `tests/node/*.test.mjs` files the cluster-mode run takes, sorted.
fn cluster_suite(root: &std::path::Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("tests/node")).context("cannot list tests/node")? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".test.mjs") && !NOT_IN_CLUSTER_RUN.contains(&name) {
            files.push(format!("tests/node/{name}"));
        }
    }
    files.sort();
    Ok(files)
}
