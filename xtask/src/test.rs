//! `cargo xtask test`: every test of the project, in one command.

use crate::setup::{npm_packages, python_venv, root, run};
use anyhow::{Context, Result};

/// Runs every suite; stops at the first failure.
pub fn all() -> Result<()> {
    let root = root();
    run(&root, "cargo", &["test", "--workspace"])?;
    integration()
}

/// The server's integration tests with real clients: Node socket.io-client (`tests/node/`)
/// and the guide's Python client (`tests/python/`), against `target/release/signalroom`
/// (or `SIGNALROOM_BIN`).
pub fn integration() -> Result<()> {
    let root = root();
    if std::env::var_os("SIGNALROOM_BIN").is_none() {
        run(
            &root,
            "cargo",
            &["build", "--release", "-p", "signalroom-server"],
        )?;
    }
    npm_packages()?;
    run(&root, "node", &["--test", "tests/node/"])?;
    let python = python_venv()?;
    run(
        &root,
        python.to_str().context("venv path is not UTF-8")?,
        &["-m", "pytest", "-q", "-c", "tests/python/pytest.ini", "tests/python"],
    )
}
