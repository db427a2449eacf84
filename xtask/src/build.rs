//! `cargo xtask build` and `cargo xtask run`.

use crate::setup::{root, run as sh};
use anyhow::Result;

/// Builds the release server, the npm package and the demo's assets.
pub fn all() -> Result<()> {
    sh(
        &root(),
        "cargo",
        &["build", "--release", "-p", "signalroom-server"],
    )?;
    crate::wasm::build()
}

/// Builds everything, then serves on port 3001 (or what `args` say).
pub fn run(args: &[String]) -> Result<()> {
    all()?;
    let root = root();
    let bin = root.join("target/release/signalroom");
    let mut full: Vec<&str> = vec!["--www-dir", "www"];
    full.extend(args.iter().map(String::as_str));
    sh(
        &root,
        bin.to_str().unwrap_or("target/release/signalroom"),
        &full,
    )
}
