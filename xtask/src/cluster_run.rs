//! `cargo xtask run --nodes N`: a cluster of N signalroom nodes on this machine, for a
//! person to try cluster mode by hand. It builds everything `cargo xtask run` builds
//! (the release server has cluster mode); starts a
//! private `redis-server` (127.0.0.1, a free port, no persistence, its own temporary
//! directory: never the system service); then nodes `node1`..`nodeN` on ports 3001.. with
//! the demo page, each line of their output prefixed with the node's name. A node that
//! exits (`kill <pid>`, to watch the others carry on) leaves the rest running; the command
//! ends when every node is gone, or on Ctrl-C / SIGTERM, which stop the nodes (SIGTERM,
//! SIGKILL after [`GRACE`] or on a second Ctrl-C) and then Redis. Every child runs in its
//! own process group, so a terminal's Ctrl-C reaches only this command, which stops them
//! in order; and every child is killed when its handle is dropped, so an error or a panic
//! leaves no process behind.

use crate::setup::{self, root};
use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The release server, relative to the workspace: every node runs it.
pub const SERVER_BIN: &str = "target/release/signalroom";
/// The first node's port; node `i` (from 1) listens on `FIRST_PORT + i - 1`.
const FIRST_PORT: u16 = 3001;
/// How long a node may take to stop on SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// How long Redis or a node may take to accept connections after it started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `cargo xtask run --nodes N [-- ARGS]`: builds, then serves N nodes until stopped.
pub fn main(nodes: u8, args: &[String]) -> Result<()> {
    let root = root();
    crate::build::all()?;
    let bin = root.join(SERVER_BIN);
    let redis_bin = setup::redis()?;
    for port in ports(nodes) {
        TcpListener::bind(("0.0.0.0", port)).with_context(|| {
            format!("port {port} is taken: stop what listens there, or run fewer nodes")
        })?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Leaving `block_on` drops the runtime and every task in it, so a child still
    // running then (after an error) is killed by its `kill_on_drop`.
    runtime.block_on(serve(&root, &bin, &redis_bin, nodes, args))
}

/// The nodes' ports.
fn ports(nodes: u8) -> impl Iterator<Item = u16> {
    (0..u16::from(nodes)).map(|i| FIRST_PORT + i)
}

/// Starts Redis and the nodes, then waits for a signal or for every node to exit.
async fn serve(
    root: &Path,
    bin: &Path,
    redis_bin: &Path,
    nodes: u8,
    args: &[String],
) -> Result<()> {
    // Installed before any child exists, so a signal from now on is ours to handle.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut redis = Redis::start(redis_bin).await?;
    let url = redis.url();

    let (stop, stopped) = watch::channel(Stop::Running);
    let (mut running, table) = match start_nodes(root, bin, &url, nodes, args, &stopped).await {
        Ok(started) => started,
        Err(e) => {
            // The nodes started so far were killed with their tasks; Redis goes too.
            redis.stop().await;
            return Err(e);
        }
    };
    println!(
        "\n{nodes} signalroom node(s), sharing rooms through a private Redis at {url} (pid {}):",
        redis.pid
    );
    for line in &table {
        println!("{line}");
    }
    println!(
        "Open the demo on two of them and join one room from each. Stop one node with \
         `kill <pid>` (or `kill -9 <pid>`): the others keep running. Cluster mode is \
         unfinished: a stopped node's peers stay listed in their rooms for now (README, \
         \"Running several nodes\"). Ctrl-C stops every node, then Redis.\n"
    );

    let mut redis_alive = true;
    loop {
        tokio::select! {
            joined = running.join_next() => match joined {
                None => {
                    println!("run: every node has exited");
                    break;
                }
                Some(Ok((name, pid, status))) => {
                    let left = running.len();
                    println!("run: {name} (pid {pid}) exited: {status}; {left} node(s) still running");
                }
                Some(Err(e)) => eprintln!("run: a node's supervisor failed: {e}"),
            },
            _ = interrupt.recv() => escalate(&stop),
            _ = terminate.recv() => escalate(&stop),
            status = redis.child.wait(), if redis_alive => {
                redis_alive = false;
                println!(
                    "run: redis-server exited ({}); the nodes keep running without it (unhealthy)",
                    describe(status)
                );
            }
        }
    }
    redis.stop().await;
    Ok(())
}

/// Starts the nodes one after the other, each supervised once it listens. Returns the
/// supervisors and one line a node for the table.
async fn start_nodes(
    root: &Path,
    bin: &Path,
    url: &str,
    nodes: u8,
    args: &[String],
    stopped: &watch::Receiver<Stop>,
) -> Result<(JoinSet<(String, u32, String)>, Vec<String>)> {
    let mut running = JoinSet::new();
    let mut table = Vec::new();
    for (i, port) in ports(nodes).enumerate() {
        let name = format!("node{}", i + 1);
        let mut cmd = Command::new(bin);
        cmd.current_dir(root)
            .args(["--redis-url", url, "--node-id", &name, "--www-dir", "www"])
            .args(["--port", &port.to_string()])
            .args(args);
        let mut child = spawn(cmd, true).with_context(|| format!("cannot start {name}"))?;
        let pid = child.id().context("a node exited as it started")?;
        prefix_output(&name, &mut child);
        wait_listening(&name, &mut child, port).await?;
        table.push(format!("  {name}  http://127.0.0.1:{port}  pid {pid}"));
        running.spawn(supervise(name, pid, child, stopped.clone()));
    }
    Ok((running, table))
}

/// What a signal asks of the nodes: the first to stop, the next to die now.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    Running,
    Terminate,
    Kill,
}

/// The first Ctrl-C / SIGTERM stops the nodes; another one kills them.
fn escalate(stop: &watch::Sender<Stop>) {
    let next = match *stop.borrow() {
        Stop::Running => {
            println!("run: stopping the nodes (SIGTERM), then Redis; Ctrl-C again to kill them");
            Stop::Terminate
        }
        _ => {
            println!("run: killing the nodes");
            Stop::Kill
        }
    };
    stop.send_replace(next);
}

/// Waits for a node to exit, or stops it when told to. Returns its name, pid and fate.
async fn supervise(
    name: String,
    pid: u32,
    mut child: Child,
    mut stop: watch::Receiver<Stop>,
) -> (String, u32, String) {
    let exited = tokio::select! {
        status = child.wait() => Some(status),
        () = until(&mut stop, Stop::Terminate) => None,
    };
    let status = match exited {
        Some(status) => status,
        None => {
            send_sigterm(pid);
            tokio::select! {
                status = child.wait() => status,
                _ = tokio::time::sleep(GRACE) => {
                    eprintln!("run: {name} did not stop within {} s: killing it", GRACE.as_secs());
                    kill(&mut child).await
                }
                () = until(&mut stop, Stop::Kill) => kill(&mut child).await,
            }
        }
    };
    (name, pid, describe(status))
}

/// Resolves once `stop` asks for `level` or more (or its sender is gone).
async fn until(stop: &mut watch::Receiver<Stop>, level: Stop) {
    // The `Ref` it returns is dropped here: it must not live across an await.
    let _ = stop.wait_for(|s| *s >= level).await;
}

/// SIGKILL, then the exit status.
async fn kill(child: &mut Child) -> std::io::Result<ExitStatus> {
    child.start_kill()?;
    child.wait().await
}

/// Asks a process to stop (SIGTERM) with the `kill` command: this crate has no
/// unsafe code, hence no `libc::kill`.
fn send_sigterm(pid: u32) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !sent.is_ok_and(|s| s.success()) {
        eprintln!("run: cannot send SIGTERM to pid {pid} (it may have exited already)");
    }
}

/// An exit status in words.
fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Spawns `cmd` in a process group of its own, killed when its handle is dropped;
/// its output piped when `piped`, else discarded.
fn spawn(mut cmd: Command, piped: bool) -> std::io::Result<Child> {
    let out = || {
        if piped { Stdio::piped() } else { Stdio::null() }
    };
    cmd.stdin(Stdio::null())
        .stdout(out())
        .stderr(out())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

/// Copies a node's stdout and stderr to ours, each line prefixed with `[name] `.
fn prefix_output(name: &str, child: &mut Child) {
    fn copy(name: String, from: impl AsyncRead + Unpin + Send + 'static, to_stderr: bool) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(from).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if to_stderr {
                    eprintln!("[{name}] {line}");
                } else {
                    println!("[{name}] {line}");
                }
            }
        });
    }
    if let Some(out) = child.stdout.take() {
        copy(name.to_owned(), out, false);
    }
    if let Some(err) = child.stderr.take() {
        copy(name.to_owned(), err, true);
    }
}

/// Waits until a node accepts connections on `port`; fails if it exits first.
async fn wait_listening(name: &str, child: &mut Child, port: u16) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait().context("cannot check a node")? {
            bail!("{name} exited as it started ({status}); its output is above");
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not listen on port {port} within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private Redis: its process, port and temporary directory. Killed when dropped
/// (its directory is then left behind: [`Redis::stop`] removes it).
pub(crate) struct Redis {
    child: Child,
    pid: u32,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts `redis-server` on a free port of 127.0.0.1 (a few tries: the port can be
    /// taken between the check and the bind) and waits until it answers PING.
    pub(crate) async fn start(bin: &Path) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "signalroom-run-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log = dir.join("redis.log");
        for _ in 0..5 {
            let port = free_port()?;
            let mut cmd = Command::new(bin);
            cmd.current_dir(&dir)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(&log);
            let mut child =
                spawn(cmd, false).with_context(|| format!("cannot start {}", bin.display()))?;
            let pid = child.id().context("redis-server exited as it started")?;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if ping(port).await {
                    return Ok(Self {
                        child,
                        pid,
                        port,
                        dir,
                    });
                }
                if child
                    .try_wait()
                    .context("cannot check redis-server")?
                    .is_some()
                {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "redis-server did not answer within {} s (log: {})",
                        START_TIMEOUT.as_secs(),
                        log.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !text.contains("Address already in use") {
                bail!("redis-server did not start:\n{text}");
            }
        }
        bail!("redis-server found no free port in 5 tries")
    }

    /// Its URL, what `--redis-url` takes.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then SIGKILL if it lingers; removes its directory.
    pub(crate) async fn stop(mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            send_sigterm(self.pid);
            if tokio::time::timeout(GRACE, self.child.wait())
                .await
                .is_err()
            {
                let _ = kill(&mut self.child).await;
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("run: cannot remove {}: {e}", self.dir.display());
        }
        eprintln!("run: Redis stopped");
    }
}

/// A port of 127.0.0.1 that was free a moment ago (the kernel's pick for port 0).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener
        .local_addr()
        .context("cannot find a free port")?
        .port())
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        std::io::Result::Ok(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn ports_start_at_3001() {
        assert_eq!(ports(3).collect::<Vec<_>>(), [3001, 3002, 3003]);
        assert_eq!(ports(9).last(), Some(3009));
    }

    /// A private Redis answers PING, and is gone with its directory after `stop`.
    /// Skipped where Debian's redis-server is not installed (`cargo xtask test` installs it).
    #[test]
    fn a_private_redis_starts_and_stops_without_a_trace() {
        let bin = Path::new("/usr/bin/redis-server");
        if !bin.exists() {
            eprintln!("skipped: no {}", bin.display());
            return;
        }
        runtime().block_on(async {
            let redis = Redis::start(bin).await.expect("redis starts");
            assert!(ping(redis.port).await);
            let (port, pid, dir) = (redis.port, redis.pid, redis.dir.clone());
            assert!(dir.exists());
            redis.stop().await;
            assert!(!ping(port).await);
            assert!(!Path::new(&format!("/proc/{pid}")).exists());
            assert!(!dir.exists());
        });
    }

    /// A supervised child stops on the first request (SIGTERM), and one that ignores
    /// SIGTERM is killed on the second.
    #[test]
    fn supervised_children_stop_then_die() {
        runtime().block_on(async {
            let (stop, stopped) = watch::channel(Stop::Running);
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            let child = spawn(cmd, false).expect("sleep starts");
            let pid = child.id().expect("a pid");
            let task = tokio::spawn(supervise("a".into(), pid, child, stopped.clone()));
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "trap '' TERM; while :; do sleep 0.1; done"]);
            let child = spawn(cmd, false).expect("sh starts");
            let stubborn_pid = child.id().expect("a pid");
            let stubborn = tokio::spawn(supervise("b".into(), stubborn_pid, child, stopped));
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.send_replace(Stop::Terminate);
            let (_, _, status) = task.await.expect("supervisor");
            assert!(status.contains("SIGTERM"), "{status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!stubborn.is_finished(), "it ignores SIGTERM");
            stop.send_replace(Stop::Kill);
            let (_, _, status) = stubborn.await.expect("supervisor");
            assert!(status.contains("SIGKILL"), "{status}");
        });
    }
}
