//! The `signalroom` process as an operator runs it: start-up line, `--help`,
//! bad flags, and a graceful shutdown that disconnects clients and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// The server process, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start(args: &[&str]) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalroom"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("a start-up line");
    let port = line
        .trim()
        .strip_prefix("signalroom listening on http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"));
    (child, port)
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn help_lists_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalroom"))
        .arg("--help")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port",
        "--max-peers",
        "--http-peer-ttl",
        "--max-message-bytes",
        "--max-signal-bytes",
        "--max-body-bytes",
        "--cors-origin",
        "--www-dir",
        "--ice-servers",
        "--ping-interval",
        "--ping-timeout",
        "--max-queued-packets",
        "--shutdown-timeout",
        "--worker-threads",
        "--handshake-timeout",
        "--max-events-per-second",
        "--event-burst",
        "--max-connections",
        "--max-connections-per-ip",
        "--webhook-url",
        "--webhook-secret",
        "--rest-rate-per-ip",
        "--trusted-proxy",
        "SIGNALROOM_MAX_PEERS",
        "--auth-secret",
        "--auth-secret-file",
        "SIGNALROOM_AUTH_SECRET",
        "--turn-secret",
        "--turn-urls",
        "--turn-ttl",
        "token",
        "SIGNALROOM_HANDSHAKE_TIMEOUT",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_bad_flag_is_refused_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalroom"))
        .args(["--ice-servers", "not json"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ice-servers"));
}

#[test]
fn bad_limit_values_exit_2_with_one_line() {
    for (flag, value) in [
        ("--handshake-timeout", "-1"),
        ("--handshake-timeout", "nan"),
        ("--max-events-per-second", "x"),
        ("--event-burst", "-5"),
        ("--max-connections", "1e9"),
        ("--max-connections-per-ip", "-1"),
        ("--rest-rate-per-ip", "2000000"),
        ("--trusted-proxy", "10.0.0.0/40"),
        ("--trusted-proxy", "proxy.example"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_signalroom"))
            .arg(format!("{flag}={value}"))
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().next().is_some_and(|l| l.contains(flag)),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn out_of_range_flag_values_exit_2_with_one_line_instead_of_panicking() {
    for args in [
        ["--ping-interval", "1e30"],
        ["--ping-timeout", "1e20"],
        ["--shutdown-timeout", "1e30"],
        ["--max-queued-packets", "0"],
        ["--worker-threads", "0"],
        ["--worker-threads", "5000"],
        ["--webhook-url", "ftp://example.org/hook"],
        ["--webhook-url", "not a url"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_signalroom"))
            .args(args)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value"),
            "{args:?}: {first}"
        );
    }
}

#[test]
fn port_env_is_honoured() {
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_signalroom"))
            .args(["--host", "127.0.0.1"])
            .env("PORT", "0")
            .env_remove("SIGNALROOM_PORT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    // PORT=0 means a random port, not the default 3001.
    assert!(line.starts_with("signalroom listening on http://127.0.0.1:"));
    assert!(!line.trim().ends_with(":3001"), "{line}");
}

/// `--worker-threads N` (and its variable) sizes the runtime: `/metrics`
/// reports the workers it really has.
#[test]
fn worker_threads_sizes_the_runtime() {
    for (args, env, want) in [
        (vec!["--worker-threads", "3"], None, 3.0),
        (vec![], Some("1"), 1.0),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalroom"));
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(n) = env {
            cmd.env("SIGNALROOM_WORKER_THREADS", n);
        }
        let mut server = Server(cmd.spawn().expect("starts"));
        let mut line = String::new();
        BufReader::new(server.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("line");
        let addr = line
            .trim()
            .strip_prefix("signalroom listening on http://")
            .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"))
            .to_owned();
        let mut stream = std::net::TcpStream::connect(&addr).expect("connects");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("sends");
        let mut page = String::new();
        stream.read_to_string(&mut page).expect("reads");
        let workers = page
            .lines()
            .find_map(|l| l.strip_prefix("signalroom_tokio_workers "))
            .unwrap_or_else(|| panic!("no signalroom_tokio_workers in {page}"));
        assert_eq!(
            workers.trim().parse::<f64>().ok(),
            Some(want),
            "{args:?} {env:?}"
        );
    }
}

#[tokio::test]
async fn sigterm_disconnects_clients_and_exits_zero() {
    let (child, port) = start(&[]);
    let mut server = Server(child);
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    let open = ws.next().await.expect("open packet").expect("ok");
    assert!(open.to_text().expect("text").starts_with('0'));
    ws.send(Message::text("40")).await.expect("connect sent");
    // Engine.IO pings (`2`) may come first at any time.
    let connected = loop {
        let msg = ws.next().await.expect("connect reply").expect("ok");
        if msg.to_text().is_ok_and(|t| t != "2") {
            break msg;
        }
    };
    assert!(connected.to_text().expect("text").starts_with("40{\"sid\""));

    terminate(&server.0);
    // The server closes the transport with a WebSocket close frame (not a
    // reset), and not with a namespace disconnect: clients reconnect to the
    // restarted server on their own.
    let mut closed_cleanly = false;
    while let Ok(next) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        let Some(Ok(msg)) = next else { break };
        if msg.is_close() {
            closed_cleanly = true;
            break;
        }
    }
    assert!(closed_cleanly, "no close frame before the connection ended");
    let status = tokio::task::spawn_blocking(move || server.0.wait())
        .await
        .expect("joined")
        .expect("waits");
    assert!(status.success(), "exit status {status}");
}

/// A build without the `cluster` feature refuses `--redis-url` (and its
/// variable) with a one-line reason, exit 2, and never starts serving.
#[cfg(not(feature = "cluster"))]
#[test]
fn redis_url_is_refused_without_the_cluster_feature() {
    for (args, env) in [
        (vec!["--redis-url", "redis://127.0.0.1:6379"], None),
        (vec![], Some("redis://127.0.0.1:6379")),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalroom"));
        cmd.args(["--host", "127.0.0.1", "--port", "0"]).args(&args);
        if let Some(url) = env {
            cmd.env("SIGNALROOM_REDIS_URL", url);
        }
        let out = cmd.output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "it served: {:?}", out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("this build has no cluster mode"), "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_signalroom"))
        .args(["--redis-url", "http://nowhere"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis-url"));
}
