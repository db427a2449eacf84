//! `cargo xtask test`: every test of the project, in one command.

use crate::setup::{root, run};
use anyhow::Result;

/// Runs every suite; stops at the first failure.
pub fn all() -> Result<()> {
    let root = root();
    run(&root, "cargo", &["test", "--workspace"])
}
