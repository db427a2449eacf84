//! Installing what a fresh machine lacks: each step checks first, so a second run costs nothing.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Runs a command in `dir`, echoing it, and fails if it fails.
pub fn run(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    run_env(dir, program, args, &[])
}

/// Runs a command in `dir` with extra environment variables; fails if it fails.
pub fn run_env(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("$ {}{program} {}", vars.concat(), args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("{program} {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// The wasm32 target for rustup (`RUSTUP_AUTO_INSTALL=0` here, so a toolchain file is not enough).
pub fn wasm_target() -> Result<()> {
    run(
        &root(),
        "rustup",
        &["target", "add", "wasm32-unknown-unknown"],
    )
}

/// The npm packages of `tests/` (socket.io-client, playwright-core, binaryen, ...).
/// Installs again whenever `package-lock.json` changed since the last install.
pub fn npm_packages() -> Result<()> {
    let dir = root().join("tests");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(&dir.join("package-lock.json"));
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    if matches!((lock, installed), (Some(l), Some(i)) if i >= l) {
        return Ok(());
    }
    run(&dir, "npm", &["ci", "--no-audit", "--no-fund"])
}

/// The Python venv with python-socketio for the compatibility tests.
pub fn python_venv() -> Result<PathBuf> {
    let dir = root().join("tests");
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(&dir, "python3", &["-m", "venv", ".venv"])?;
    }
    let ok = Command::new(&python)
        .args(["-c", "import socketio, aiohttp, pytest"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        run(
            &dir,
            python.to_str().context("venv path is not UTF-8")?,
            &[
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                "python/requirements.txt",
            ],
        )?;
    }
    Ok(python)
}

/// Debian's Chromium and ChromeDriver for the browser tests.
pub fn chromium() -> Result<()> {
    debian_packages(&[
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
    ])
}

/// Debian's nftables, for the fault tests that drop a client's packets in a
/// private network namespace.
pub fn nftables() -> Result<()> {
    debian_packages(&[("/usr/sbin/nft", "nftables")])
}

/// Installs with apt the packages whose program (the path beside each) is missing.
/// Only installs: services such packages bring are started by the tests themselves,
/// on free ports, never as system services.
pub fn debian_packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = root();
    run(&root, "apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(missing);
    run(&root, "apt-get", &args)
}

/// Debian's coturn (`turnserver`, `turnutils_uclient`) for the TURN credential tests.
pub fn coturn() -> Result<()> {
    debian_packages(&[
        ("/usr/bin/turnserver", "coturn"),
        ("/usr/bin/turnutils_uclient", "coturn"),
    ])
}
