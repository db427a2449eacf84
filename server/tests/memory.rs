//! Memory budget per connection, read from jemalloc's own count of allocated bytes.
//!
//! The server runs in this process on jemalloc (as the binary does); the clients are
//! plain blocking sockets speaking just enough WebSocket and Engine.IO by hand, with
//! every buffer allocated before the first measurement, so the growth of
//! `stats.allocated` between two moments is the server's. It fails when one idle
//! connection, or one connection after a burst of full peer lists in rooms of 100,
//! holds more than its budget (bench/README.md, "Where a connection's bytes go",
//! has the breakdown these budgets come from). Bytes, not time: nothing here
//! asserts speed.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;
use signalroom_server::{Config, serve};
use tikv_jemalloc_ctl::{epoch, opt, stats};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Connections measured: two full rooms.
const CONNECTIONS: usize = 200;
/// Peers per room: the protocol's default maximum, and the guide's usage.
const ROOM: usize = 100;
/// Budget of one connected socket in no room, bytes (measured here: 14.2 KB, against
/// 30 KB before issue 10's fixes).
const IDLE_BUDGET: usize = 16_000;
/// Budget of one connection after its room of 100 filled up, every member having
/// received every full list, bytes (measured here: 16.4 KB, against 45 KB and more
/// before issue 10's fixes, up to 160 KB with tungstenite's write buffer kept).
const BURST_BUDGET: usize = 20_000;
/// Each client's read buffer: more than the largest list of a room of 100.
const BUFFER: usize = 32 * 1024;
/// Give up on any step after this long (a bound, not a speed assertion).
const STEP: Duration = Duration::from_secs(60);

/// Bytes allocated through jemalloc right now.
fn allocated() -> usize {
    epoch::advance().expect("jemalloc epoch");
    stats::allocated::read().expect("jemalloc stats.allocated")
}

/// A hand-rolled WebSocket client: one socket and one reusable read buffer.
struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` holding received data not yet consumed.
    filled: usize,
}

impl Client {
    /// Connects with `buf` (allocated by the caller before it measures) as read buffer.
    fn connect(port: u16, buf: Vec<u8>) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("TCP connect");
        tcp.set_read_timeout(Some(STEP)).expect("read timeout");
        tcp.set_nodelay(true).expect("nodelay");
        let mut c = Client {
            tcp,
            buf,
            filled: 0,
        };
        c.tcp
            .write_all(
                b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  Upgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .expect("send the upgrade");
        // The 101 response ends with an empty line; frames follow.
        loop {
            c.fill();
            if let Some(end) = find(&c.buf[..c.filled], b"\r\n\r\n") {
                assert!(c.buf.starts_with(b"HTTP/1.1 101"), "not upgraded");
                c.consume(end + 4);
                break;
            }
        }
        assert!(c.next_frame(|f| f.starts_with(b"0{")), "engine.io open");
        c.send(b"40");
        assert!(c.next_frame(|f| f.starts_with(b"40")), "Socket.IO connect");
        c
    }

    /// Reads more bytes into the buffer (panics on EOF or after `STEP`).
    fn fill(&mut self) {
        assert!(self.filled < self.buf.len(), "frame larger than the buffer");
        match self.tcp.read(&mut self.buf[self.filled..]) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(n) => self.filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Reads frames until one satisfies `want`; true when it came. Pings are answered.
    fn next_frame(&mut self, want: impl Fn(&[u8]) -> bool) -> bool {
        self.next_frame_within(STEP, want)
    }

    /// `next_frame`, giving up after `limit` (also the socket's read timeout meanwhile).
    fn next_frame_within(&mut self, limit: Duration, want: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        self.tcp
            .set_read_timeout(Some(limit))
            .expect("read timeout");
        while Instant::now() < deadline {
            let Some((start, len)) = frame_bounds(&self.buf[..self.filled]) else {
                self.fill();
                continue;
            };
            let payload = &self.buf[start..start + len];
            let hit = want(payload);
            let ping = payload == b"2";
            self.consume(start + len);
            if ping {
                self.send(b"3");
            }
            if hit {
                return true;
            }
        }
        false
    }

    /// Sends a masked text frame (the mask is zero: XOR leaves the bytes as they are).
    fn send(&mut self, payload: &[u8]) {
        let mut head = [0u8; 8];
        head[0] = 0x81;
        let n = if payload.len() < 126 {
            head[1] = 0x80 | payload.len() as u8;
            2
        } else {
            head[1] = 0x80 | 126;
            head[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            4
        };
        // Four zero mask bytes follow the length.
        self.tcp.write_all(&head[..n + 4]).expect("send head");
        self.tcp.write_all(payload).expect("send payload");
    }
}

/// The payload's start and length of the first complete unmasked frame in `b`.
fn frame_bounds(b: &[u8]) -> Option<(usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (start, len) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
        127 if b.len() >= 10 => (10, u64::from_be_bytes(b[2..10].try_into().ok()?) as usize),
        126 | 127 => return None,
        n => (2, n as usize),
    };
    (b.len() >= start + len).then_some((start, len))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// jemalloc's configuration for the measurement: no thread caches, whose freed-but-
/// cached objects would count as allocated (megabytes per thread, noise of kilobytes
/// per connection). jemalloc reads it at start-up, so the test re-runs itself with it.
const MALLOC_CONF: (&str, &str) = ("_RJEM_MALLOC_CONF", "tcache:false");

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "budgets are for release builds: cargo xtask test runs it with --release"
)]
fn one_connection_stays_within_its_memory_budget_idle_and_after_a_burst() {
    if std::env::var(MALLOC_CONF.0).as_deref() != Ok(MALLOC_CONF.1) {
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "one_connection_stays_within_its_memory_budget_idle_and_after_a_burst",
                "--nocapture",
                "--include-ignored",
            ])
            .env(MALLOC_CONF.0, MALLOC_CONF.1)
            .output()
            .expect("the test re-runs itself");
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        eprintln!("{text}");
        assert!(
            out.status.success(),
            "the measurement failed (output above)"
        );
        assert!(
            text.contains("memory per connection"),
            "the measurement did not run"
        );
        return;
    }
    assert!(!opt::tcache::read().expect("opt.tcache"), "tcache is off");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let config = Config::parse_from(["signalroom", "--www-dir", "/nonexistent"]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(config, listener, async {
        stopped.await.ok();
    }));

    // Warm up: the first connection and join allocate the server's lazy state.
    let buffer = || vec![0u8; BUFFER];
    // The first join on a fresh server sometimes goes unanswered, and that socket
    // gets no answer to anything after it (seen about one run in three here, the
    // reply encoded but never queued; reported, not this test's subject): the
    // warm-up tries again from a new connection, a bounded number of times.
    let mut warm = Vec::new();
    let answered = (0..5).any(|i| {
        let mut c = Client::connect(port, buffer());
        let join =
            format!(r#"42["join_room",{{"room_name":"warm","peer_id":"w{i}","username":"w"}}]"#);
        c.send(join.as_bytes());
        let ok = c.next_frame_within(Duration::from_secs(2), |f| {
            find(f, b"peer_list_updated").is_some()
        });
        warm.push(c);
        ok
    });
    assert!(answered, "the warm-up join was never answered");

    let mut buffers: Vec<Vec<u8>> = (0..CONNECTIONS).map(|_| buffer()).collect();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    let before = allocated();
    while let Some(buf) = buffers.pop() {
        clients.push(Client::connect(port, buf));
    }
    let idle = allocated().saturating_sub(before) / CONNECTIONS;

    for (i, c) in clients.iter_mut().enumerate() {
        let join = format!(
            r#"42["join_room",{{"room_name":"room-{}","peer_id":"peer-{i}","username":"user {i}"}}]"#,
            i / ROOM
        );
        c.send(join.as_bytes());
    }
    let full = format!("\"total_peers\":{ROOM}");
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(
            c.next_frame(
                |f| find(f, b"peer_list_updated").is_some() && find(f, full.as_bytes()).is_some()
            ),
            "client {i} never saw its full room"
        );
    }
    let burst = allocated().saturating_sub(before) / CONNECTIONS;

    eprintln!(
        "memory per connection: idle {idle} bytes (budget {IDLE_BUDGET}), after a burst of full lists {burst} bytes (budget {BURST_BUDGET})"
    );
    drop(clients);
    drop(warm);
    stop.send(()).ok();
    rt.block_on(async {
        tokio::time::timeout(STEP, server).await.ok();
    });
    assert!(
        idle <= IDLE_BUDGET,
        "one idle connection holds {idle} bytes, over its budget of {IDLE_BUDGET}"
    );
    assert!(
        burst <= BURST_BUDGET,
        "one connection after a burst of full lists holds {burst} bytes, over its budget of {BURST_BUDGET}"
    );
}
