//! The servers under test: starting signalroom or the Node reference on a free port with
//! the open-file limit raised, preparing the Node reference, and running the generator
//! against a running server for one scenario.

use super::args::Case;
use crate::setup::run as sh;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The servers under test.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Server {
    Signalroom,
    Node,
    /// `--cluster N`: N signalroom nodes sharing one Redis.
    Cluster,
}

impl Server {
    pub(super) fn name(self) -> &'static str {
        match self {
            Server::Signalroom => "signalroom",
            Server::Node => "node",
            Server::Cluster => "cluster",
        }
    }
}

/// A running server: killed on drop.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` through `sh` with the open-file limit raised to the hard limit
/// (`exec` keeps the pid), and waits for its "listening" line to learn the port.
pub(crate) fn start(mut cmd: Command, log: &Path, what: &str) -> Result<Running> {
    let err = fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    let mut out_log = fs::OpenOptions::new().append(true).open(log)?;
    std::thread::spawn(move || {
        // Keeps draining stdout so that the server never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out_log, "{line}");
            let _ = tx.send(line);
        }
    });
    let mut running = Running { child, port: 0 };
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.port == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(port) = listening_port(&line) {
                    running.port = port;
                }
            }
            Err(_) => bail!(
                "{what} printed no listening line within 30 s (log: {})",
                log.display()
            ),
        }
    }
    Ok(running)
}

/// The port of `... http://127.0.0.1:PORT` (both servers print such a line).
pub(super) fn listening_port(line: &str) -> Option<u16> {
    let i = line.find("http://127.0.0.1:")? + "http://127.0.0.1:".len();
    let digits: String = line[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether `program` is on PATH.
pub(super) fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn sh_raised(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#)
        .arg("sh")
        .arg(program)
        .args(args);
    cmd
}

pub(super) fn start_signalroom(bin: &Path, extra: &[String], log: &Path) -> Result<Running> {
    // A load generator drives one connection far past the per-connection event rate
    // (a well-behaved client's limit); the Node reference has no such limit either.
    let mut args: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--max-events-per-second",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let mut cmd = sh_raised(bin, &args);
    // Like the Node reference, which logs nothing per connection.
    cmd.env(
        "RUST_LOG",
        std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
    );
    start(cmd, log, "signalroom")
}

pub(super) fn start_node(dir: &Path, log: &Path) -> Result<Running> {
    let mut cmd = sh_raised(Path::new("node"), &["server.js".to_string()]);
    cmd.current_dir(dir)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1");
    start(cmd, log, "the Node reference")
}

/// Copies `../shared/bench/node-reference` (or `$BENCH_NODE_REFERENCE`) to
/// `target/bench/node-reference` and installs its packages there (once; again when its
/// files change). `None` when the folder is absent.
pub(super) fn node_reference(root: &Path) -> Result<Option<PathBuf>> {
    let src = std::env::var_os("BENCH_NODE_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/bench/node-reference"));
    if !src.join("server.js").exists() {
        eprintln!(
            "bench: {} is absent: running signalroom alone (no comparison)",
            src.display()
        );
        return Ok(None);
    }
    if !has("node") || !has("npm") {
        eprintln!("bench: node or npm is not installed: running signalroom alone (no comparison)");
        return Ok(None);
    }
    let dst = root.join("target/bench/node-reference");
    fs::create_dir_all(&dst)?;
    let mut changed = false;
    for entry in fs::read_dir(&src)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let to = dst.join(entry.file_name());
        let new = fs::read(entry.path())?;
        if fs::read(&to).ok().as_deref() != Some(&new[..]) {
            fs::write(&to, &new)?;
            changed = true;
        }
    }
    if changed || !dst.join("node_modules/socket.io").exists() {
        sh(
            &dst,
            "npm",
            &["install", "--no-audit", "--no-fund", "--loglevel=error"],
        )?;
    }
    Ok(Some(dst))
}

/// Runs one scenario against `url` (comma-separated for a cluster's nodes), whose process
/// is `pid` if one: the generator's JSON line.
pub(super) fn generate(
    bench: &Path,
    label: &str,
    url: &str,
    pid: Option<u32>,
    case: &Case,
) -> Value {
    let mut cmd = Command::new(bench);
    cmd.args(["--url", url, "--label", label]);
    if let Some(pid) = pid {
        cmd.args(["--pid", &pid.to_string()]);
    }
    cmd.args(&case.args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let line = match cmd.output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .map(str::to_owned),
        Err(e) => Some(json!({"error": format!("cannot run the generator: {e}")}).to_string()),
    };
    let mut v: Value = line
        .and_then(|l| serde_json::from_str(&l).ok())
        .unwrap_or_else(|| json!({"error": "the generator printed no JSON line"}));
    if let Some(o) = v.as_object_mut() {
        o.insert("case".into(), json!(case.id));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_lines() {
        assert_eq!(
            listening_port("signalroom listening on http://127.0.0.1:41234"),
            Some(41234)
        );
        assert_eq!(
            listening_port("WebRTC Socket.IO server on http://127.0.0.1:3101"),
            Some(3101)
        );
        assert_eq!(listening_port("hello"), None);
    }
}
