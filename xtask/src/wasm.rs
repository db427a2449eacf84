//! The browser library: building the npm package `signalroom-client`, the demo's copy
//! of it, and running its browser tests.
//!
//! The pipeline is `cargo build` for wasm32, then wasm-bindgen linked into this binary
//! (so its version is locked with the `wasm-bindgen` crate in Cargo.lock), then
//! `wasm-opt` from the npm package `binaryen` (Debian's is too old). Nothing here
//! downloads: the npm packages come from `tests/package-lock.json`.

use crate::setup::{self, root, run};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const TARGET: &str = "wasm32-unknown-unknown";
const OUT_NAME: &str = "signalroom_client";
/// The size budget of wasm plus JS glue, gzipped.
const BUDGET: usize = 60 * 1024;

/// Builds `web-client/pkg` (the npm package) and the demo's `www/vendor/`.
pub fn build() -> Result<()> {
    setup::wasm_target()?;
    setup::npm_packages()?;
    let root = root();
    // Fat LTO for this build only: the workspace profile is shared with the server.
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "signalroom-client",
            "--target",
            TARGET,
        ])
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .current_dir(&root)
        .status()
        .context("cannot start cargo")?;
    if !status.success() {
        bail!("building signalroom-client for {TARGET} failed");
    }
    let wasm = root
        .join("target")
        .join(TARGET)
        .join("release/signalroom_client.wasm");
    let pkg = root.join("web-client/pkg");
    if pkg.exists() {
        fs::remove_dir_all(&pkg)?;
    }
    bindgen(&wasm, &pkg, &["--target", "web"])?;
    optimise(&pkg.join(format!("{OUT_NAME}_bg.wasm")))?;
    package(&pkg)?;

    let vendor = root.join("www/vendor");
    fs::create_dir_all(&vendor)?;
    copy_dir(&pkg, &vendor.join("signalroom-client"))?;
    fs::copy(socket_io_esm(), vendor.join("socket.io.esm.min.js"))?;

    let glue = fs::read(pkg.join(format!("{OUT_NAME}.js")))?;
    let bin = fs::read(pkg.join(format!("{OUT_NAME}_bg.wasm")))?;
    let (g, w) = (gzip(&glue)?, gzip(&bin)?);
    println!(
        "signalroom-client: {} bytes gzipped (wasm {} + JS glue {}; raw {} + {}), budget {}",
        g + w,
        w,
        g,
        bin.len(),
        glue.len(),
        BUDGET
    );
    if g + w > BUDGET {
        bail!("signalroom-client is over its size budget");
    }
    Ok(())
}

/// wasm-bindgen, as the CLI would run it (its defaults keep the module path that
/// `init()` needs to find the `.wasm`).
fn bindgen(wasm: &Path, out: &Path, extra: &[&str]) -> Result<()> {
    let mut args: Vec<OsString> = vec!["wasm-bindgen".into()];
    args.extend(extra.iter().map(OsString::from));
    args.extend([
        "--out-dir".into(),
        out.into(),
        "--out-name".into(),
        OUT_NAME.into(),
    ]);
    args.push(wasm.into());
    wasm_bindgen_cli::wasm_bindgen::run_cli_with_args(args).context("wasm-bindgen failed")
}

fn optimise(wasm: &Path) -> Result<()> {
    let wasm_opt = root().join("tests/node_modules/.bin/wasm-opt");
    let path = wasm.to_str().context("path is not UTF-8")?;
    run(
        &root(),
        wasm_opt.to_str().context("path is not UTF-8")?,
        &[
            "-Oz",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-reference-types",
            "--enable-multivalue",
            "--enable-mutable-globals",
            "--strip-debug",
            "--strip-producers",
            path,
            "-o",
            path,
        ],
    )
}

/// Writes `package.json` and the README next to wasm-bindgen's output.
fn package(pkg: &Path) -> Result<()> {
    let manifest = serde_json::json!({
        "name": "signalroom-client",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Browser client for the signalroom WebRTC signaling server: rooms, peer lists and a WebRTC mesh, in WebAssembly.",
        "license": "MIT OR Apache-2.0",
        "type": "module",
        "main": format!("{OUT_NAME}.js"),
        "module": format!("{OUT_NAME}.js"),
        "types": format!("{OUT_NAME}.d.ts"),
        "exports": {
            ".": {
                "types": format!("./{OUT_NAME}.d.ts"),
                "default": format!("./{OUT_NAME}.js")
            },
            "./signalroom_client_bg.wasm": format!("./{OUT_NAME}_bg.wasm")
        },
        "files": [
            format!("{OUT_NAME}.js"),
            format!("{OUT_NAME}.d.ts"),
            format!("{OUT_NAME}_bg.wasm"),
            format!("{OUT_NAME}_bg.wasm.d.ts"),
            "README.md"
        ],
        "sideEffects": false,
        "dependencies": { "socket.io-client": "^4.8.1" },
        "keywords": ["webrtc", "signaling", "socket.io", "wasm"]
    });
    fs::write(
        pkg.join("package.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    fs::copy(root().join("web-client/README.md"), pkg.join("README.md"))?;
    let _ = fs::remove_file(pkg.join(".gitignore"));
    Ok(())
}

fn socket_io_esm() -> PathBuf {
    root().join("tests/node_modules/socket.io-client/dist/socket.io.esm.min.js")
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        fs::remove_dir_all(to)?;
    }
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

fn gzip(bytes: &[u8]) -> Result<usize> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?.len())
}

/// `cargo xtask wasm-bindgen-test-runner <file.wasm> ...`: cargo's runner for wasm32
/// tests (set by [`test_wasm`]).
pub fn test_runner(args: Vec<OsString>) -> Result<()> {
    wasm_bindgen_cli::wasm_bindgen_test_runner::run_cli_with_args(args)
}

/// The bindings' wasm-bindgen tests, in headless Chromium, against a real server.
pub fn test_wasm() -> Result<()> {
    setup::wasm_target()?;
    setup::npm_packages()?;
    setup::chromium()?;
    let root = root();
    let vendor = root.join("web-client/tests/vendor");
    fs::create_dir_all(&vendor)?;
    fs::copy(socket_io_esm(), vendor.join("socket.io.esm.min.js"))?;
    let (mut server, url) = start_server(&root.join("www"))?;
    let me = std::env::current_exe()?;
    let runner = format!("{} wasm-bindgen-test-runner", me.display());
    eprintln!("$ cargo test -p signalroom-client --target {TARGET} (server {url})");
    let status = Command::new("cargo")
        .args([
            "test",
            "-p",
            "signalroom-client",
            "--target",
            TARGET,
            "--features",
            "vendored-socket-io",
        ])
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", runner)
        .env("CHROMEDRIVER", "/usr/bin/chromedriver")
        .env(
            "WASM_BINDGEN_TEST_WEBDRIVER_JSON",
            root.join("web-client/webdriver.json"),
        )
        .env("WASM_BINDGEN_TEST_TIMEOUT", "60")
        .env("SIGNALROOM_TEST_URL", &url)
        .current_dir(&root)
        .status();
    let _ = server.kill();
    let _ = server.wait();
    if !status.context("cannot start cargo")?.success() {
        bail!("the wasm-bindgen tests failed");
    }
    Ok(())
}

/// The Playwright suite in `tests/browser/`, in a loopback-only network namespace
/// (builds the package first if `cargo xtask build` has not).
pub fn test_browser() -> Result<()> {
    setup::npm_packages()?;
    setup::chromium()?;
    setup::coturn()?;
    if !root().join("web-client/pkg/package.json").exists() {
        build()?;
    }
    run(
        &root(),
        "unshare",
        &[
            "-n",
            "sh",
            "-c",
            "ip link set lo up && node --test --test-concurrency=1 tests/browser/",
        ],
    )
}

/// Starts the release server on a free loopback port; returns it and its URL.
fn start_server(www: &Path) -> Result<(Child, String)> {
    let bin = std::env::var_os("SIGNALROOM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/signalroom"));
    if !bin.exists() {
        run(
            &root(),
            "cargo",
            &["build", "--release", "-p", "signalroom-server"],
        )?;
    }
    let mut child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", "0", "--www-dir"])
        .arg(www)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next().transpose()? {
        if let Some(url) = line.strip_prefix("signalroom listening on ") {
            let url = url.trim().to_owned();
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((child, url));
        }
    }
    let _ = child.kill();
    bail!("{} exited before listening", bin.display())
}
