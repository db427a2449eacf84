//! Cluster mode's foundation (the `cluster` feature, on by default): a node
//! registers in a private Redis with a short TTL, keeps the registration
//! alive, turns `/healthz` 503 while Redis hangs or is gone and 200 when it is
//! back (even empty), reports Redis in `/metrics`, and removes its
//! registration when it stops. Rooms are not shared between nodes yet.
//!
//! Redis is `SIGNALROOM_REDIS_BIN` (`cargo xtask test` installs Debian's
//! `redis-server` and sets it) or `redis-server` on PATH, started on a free
//! port with no persistence: never the system service.
#![cfg(feature = "cluster")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed when the test ends however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        signal(&self.0, "CONT");
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn signal(child: &Child, sig: &str) {
    Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("kill runs");
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binds");
    l.local_addr().expect("addr").port()
}

/// A private redis-server on `port`; `None` if the port was taken meanwhile.
fn redis_on(port: u16) -> Option<Proc> {
    let bin = std::env::var("SIGNALROOM_REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
    let dir = std::env::temp_dir();
    let mut child = Command::new(&bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} (set SIGNALROOM_REDIS_BIN): {e}"));
    let stdout = child.stdout.take().expect("piped");
    let proc = Proc(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("reads");
        if line.contains("Ready to accept connections") {
            return Some(proc);
        }
        if line.contains("Address already in use") {
            return None;
        }
    }
    None
}

fn redis() -> (Proc, u16) {
    for _ in 0..5 {
        let port = free_port();
        if let Some(proc) = redis_on(port) {
            return (proc, port);
        }
    }
    panic!("no free port for redis-server in 5 attempts");
}

/// One command in RESP; the reply's first line (`:1`, `+OK`, `$-1`, ...) and,
/// for a bulk string, its value on the next line.
fn resp(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("redis connects");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut frame = format!("*{}\r\n", args.len());
    for a in args {
        frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(frame.as_bytes()).expect("writes");
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).expect("a reply");
    if line.starts_with('$') && !line.starts_with("$-1") {
        let mut value = String::new();
        reader.read_line(&mut value).expect("a value");
        line.push_str(&value);
    }
    line.trim_end().to_owned()
}

/// The keys matching `pattern` (`KEYS`).
fn keys(port: u16, pattern: &str) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("redis connects");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let frame = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
    s.write_all(frame.as_bytes()).expect("writes");
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).expect("a reply");
    let n: usize = line.trim_end()[1..].parse().expect("an array");
    (0..n)
        .map(|_| {
            let mut len = String::new();
            reader.read_line(&mut len).expect("a length");
            let mut key = String::new();
            reader.read_line(&mut key).expect("a key");
            key.trim_end().to_owned()
        })
        .collect()
}

/// The registration keys of the runs of node `name` (`sr:node:{name}.{suffix}`).
fn registered(port: u16, name: &str) -> Vec<String> {
    keys(port, &format!("sr:node:{name}.*"))
}

/// A node on a free port; returns it with its HTTP port.
fn node(args: &[&str]) -> (Proc, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalroom"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("piped");
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let port = line
        .trim()
        .strip_prefix("signalroom listening on http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"));
    (proc, port)
}

/// GET `path`: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("node connects");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("writes");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reads");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// Waits until `cond` holds, at most `limit` (the contract's bound); says what did not happen.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

#[test]
fn a_node_registers_with_a_short_ttl_and_leaves_on_sigterm() {
    let (_redis, rport) = redis();
    let (mut n1, hport) = node(&["--redis-url", &url(rport), "--node-id", "n1"]);
    within(Duration::from_secs(5), "n1 registered", || {
        registered(rport, "n1").len() == 1
    });
    // Each run is its own node: the name, a dot and a random suffix.
    let key = registered(rport, "n1").remove(0);
    let suffix = &key["sr:node:n1.".len()..];
    assert!(
        suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    let ttl: i64 = resp(rport, &["PTTL", &key])[1..].parse().expect("a number");
    assert!((1..=3000).contains(&ttl), "ttl {ttl} ms");
    let record = resp(rport, &["GET", &key]);
    assert!(record.contains(r#""node":"n1."#), "{record}");
    assert!(record.contains(&format!("127.0.0.1:{hport}")), "{record}");
    within(Duration::from_secs(5), "healthy", || {
        get(hport, "/healthz").0 == 200
    });
    let (_, metrics) = get(hport, "/metrics");
    assert!(metrics.contains("signalroom_redis_up 1"), "{metrics}");
    assert!(
        metrics.contains("signalroom_redis_rtt_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signalroom_redis_errors_total 0"),
        "{metrics}"
    );

    signal(&n1.0, "TERM");
    let status = n1.0.wait().expect("waits");
    assert!(status.success(), "exit status {status}");
    assert_eq!(registered(rport, "n1"), Vec::<String>::new());
}

#[test]
fn nodes_without_an_id_get_distinct_random_ones() {
    let (_redis, rport) = redis();
    let (_a, _) = node(&["--redis-url", &url(rport)]);
    let (_b, _) = node(&["--redis-url", &url(rport)]);
    within(Duration::from_secs(5), "two nodes registered", || {
        resp(rport, &["EXISTS", "sr:boot"]) == ":1" && keys(rport, "sr:node:*").len() == 2
    });
    let keys = keys(rport, "sr:node:*");
    let ids: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("sr:node:"))
        .collect();
    assert_eq!(ids.len(), 2, "{keys:?}");
    assert_ne!(ids[0], ids[1]);
    // A random name (16 hex digits), a dot, the run's suffix (8).
    assert!(
        ids.iter()
            .all(|id| id.len() == 25 && id.as_bytes()[16] == b'.'),
        "{ids:?}"
    );
}

#[test]
fn healthz_is_503_while_redis_hangs_and_200_when_it_answers_again() {
    let (redis, rport) = redis();
    let (_n1, hport) = node(&["--redis-url", &url(rport), "--node-id", "n1"]);
    within(Duration::from_secs(5), "healthy", || {
        get(hport, "/healthz").0 == 200
    });
    signal(&redis.0, "STOP");
    within(Duration::from_secs(5), "503 while Redis hangs", || {
        get(hport, "/healthz").0 == 503
    });
    let (status, body) = get(hport, "/healthz");
    assert_eq!(status, 503);
    assert!(body.contains("unavailable"), "{body}");
    let (_, metrics) = get(hport, "/metrics");
    assert!(metrics.contains("signalroom_redis_up 0"), "{metrics}");
    assert!(
        !metrics.contains("signalroom_redis_errors_total 0"),
        "{metrics}"
    );
    signal(&redis.0, "CONT");
    within(Duration::from_secs(5), "200 once Redis answers", || {
        get(hport, "/healthz").0 == 200
    });
}

#[test]
fn a_node_registers_again_when_redis_returns_empty() {
    let (redis, rport) = redis();
    let (_n1, hport) = node(&["--redis-url", &url(rport), "--node-id", "n1"]);
    within(Duration::from_secs(5), "n1 registered", || {
        registered(rport, "n1").len() == 1
    });
    drop(redis);
    within(Duration::from_secs(5), "503 while Redis is gone", || {
        get(hport, "/healthz").0 == 503
    });
    let _again = redis_on(rport).expect("the same port is free again");
    within(Duration::from_secs(10), "n1 registered again", || {
        registered(rport, "n1").len() == 1
    });
    within(Duration::from_secs(5), "healthy again", || {
        get(hport, "/healthz").0 == 200
    });
}

#[test]
fn a_node_started_before_redis_is_unhealthy_until_redis_comes() {
    let rport = free_port();
    let (_n1, hport) = node(&["--redis-url", &url(rport), "--node-id", "n1"]);
    assert_eq!(get(hport, "/healthz").0, 503);
    let Some(_redis) = redis_on(rport) else {
        panic!("port {rport} was taken meanwhile");
    };
    within(
        Duration::from_secs(10),
        "registered once Redis runs",
        || registered(rport, "n1").len() == 1,
    );
    within(Duration::from_secs(5), "healthy", || {
        get(hport, "/healthz").0 == 200
    });
}

/// The value of a gauge or counter in `/metrics` (no labels).
fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, text) = get(port, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn nodes_with_different_room_settings_are_told() {
    let (_redis, rport) = redis();
    let (_n1, p1) = node(&["--redis-url", &url(rport), "--node-id", "n1"]);
    let (_n2, p2) = node(&["--redis-url", &url(rport), "--node-id", "n2"]);
    within(Duration::from_secs(5), "both healthy", || {
        get(p1, "/healthz").0 == 200 && get(p2, "/healthz").0 == 200
    });
    // The same settings: both published one digest.
    within(Duration::from_secs(5), "one digest", || {
        resp(rport, &["HLEN", "sr:settings"]) == ":1"
    });
    assert_eq!(metric(p1, "signalroom_cluster_settings_differ"), Some(0.0));
    // A third node with another --max-peers: every node says so.
    let (_n3, p3) = node(&[
        "--redis-url",
        &url(rport),
        "--node-id",
        "n3",
        "--max-peers",
        "7",
    ]);
    for port in [p1, p2, p3] {
        within(Duration::from_secs(5), "settings differ", || {
            metric(port, "signalroom_cluster_settings_differ") == Some(1.0)
        });
    }
}
