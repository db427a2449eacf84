//! The abuse limits of the protocol ("Abuse limits" in docs/protocol.md): the
//! handshake timeout, the per-connection event rate, the total and per-IP
//! connection caps, the per-IP REST rate, and who the client is behind a
//! trusted proxy. A signaling server is open to the internet by design and
//! has no login by default, so each limit bounds what one client can cost
//! the others, and the defaults never refuse a well-behaved client.
//!
//! The rules with state over time live in the core where they can (the event
//! bucket is `signalroom_core::EventRate`, fed `now` from here); this module
//! keeps the counts, answers refusals, and counts them in
//! `signalroom_limit_refusals_total{kind}`. The HTTP side is one middleware,
//! [`guard`], around the whole router; the accept loop (`crate::listen`) tags
//! every request with its connection ([`ConnInfo`]) and closes connections
//! that are slow to send their headers; [`drain_refused`] makes sure a refusal
//! reaches a client that is still sending.

mod client_ip;
mod connections;
mod counted;
mod drain;
mod flags;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use signalroom_core::{Error, EventRate, EventRateConfig, Verdict};
use socketioxide::SocketIo;
use socketioxide::socket::{Sid, Socket};

pub use client_ip::TrustedProxy;
pub use counted::Counted;
pub use drain::drain_refused;
pub use flags::LimitFlags;

use crate::hub::now;
use connections::{Book, Caps};

/// The refusal kinds counted in `signalroom_limit_refusals_total`.
pub const KINDS: [&str; 6] = [
    "handshake_timeout",
    "rate_limited",
    "flood_disconnect",
    "server_full",
    "too_many_connections",
    "rest_rate_limited",
];

/// Counts one refusal of `kind` (one of [`KINDS`]).
pub fn refused(kind: &'static str) {
    metrics::counter!("signalroom_limit_refusals_total", "kind" => kind).increment(1);
}

/// The limits in force and the counts they apply to.
pub struct Limits {
    flags: LimitFlags,
    caps: Caps,
    book: Mutex<Book>,
    rest: Option<DefaultKeyedRateLimiter<IpAddr>>,
    next_conn: AtomicU64,
}

/// Which accepted connection a request came on, inserted by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The connection's number.
    pub id: u64,
    /// The TCP peer.
    pub peer: SocketAddr,
}

/// A connection's place in the count, given back when dropped.
pub struct ConnGuard {
    limits: Arc<Limits>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.limits.book().release(self.id);
    }
}

/// One connection's event bucket, kept in its socket's extensions.
#[derive(Clone)]
struct EventBucket(Arc<Mutex<EventRate>>);

impl Limits {
    /// The limits `flags` ask for. The connection cap is lowered to what the
    /// open-file limit (raised to its hard limit first) leaves room for.
    pub fn new(flags: &LimitFlags) -> Self {
        for kind in KINDS {
            metrics::counter!("signalroom_limit_refusals_total", "kind" => kind).absolute(0);
        }
        let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(u64::MAX);
        // Room for the listener, the demo page's files, lingering closes and
        // a session's second polling connection.
        let reserve = (files / 20).max(64);
        let by_files = usize::try_from(files.saturating_sub(reserve)).unwrap_or(usize::MAX);
        let wanted = match flags.max_connections {
            0 => usize::MAX,
            n => n as usize,
        };
        let total = wanted.min(by_files.max(1));
        if total < wanted && flags.max_connections > 0 {
            tracing::info!(
                max_connections = total,
                open_files = files,
                "--max-connections lowered to what the open-file limit allows"
            );
        }
        let rest = NonZeroU32::new(flags.rest_rate_per_ip).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            flags: flags.clone(),
            caps: Caps {
                total,
                per_ip: flags.max_connections_per_ip as usize,
            },
            book: Mutex::new(Book::default()),
            rest,
            next_conn: AtomicU64::new(0),
        }
    }

    /// The handshake timeout, `None` when off.
    pub fn handshake_timeout(&self) -> Option<Duration> {
        (self.flags.handshake_timeout > 0.0)
            .then(|| Duration::from_secs_f64(self.flags.handshake_timeout))
    }

    /// The Socket.IO connect timeout: the handshake timeout, else
    /// socketioxide's default of 45 s.
    pub fn connect_timeout(&self) -> Duration {
        self.handshake_timeout().unwrap_or(Duration::from_secs(45))
    }

    /// The effective `--max-connections` (after the open-file limit).
    pub fn max_connections(&self) -> usize {
        self.caps.total
    }

    /// Takes the lock on the counts; a poisoned lock still holds counts.
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a newly accepted TCP connection.
    pub fn accepted(self: &Arc<Self>, peer: SocketAddr) -> (ConnInfo, ConnGuard) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.book().open(id);
        let guard = ConnGuard {
            limits: self.clone(),
            id,
        };
        (ConnInfo { id, peer }, guard)
    }

    /// A new Socket.IO connection: its event bucket, and its session counted as connected.
    pub fn socket_connected(&self, socket: &Socket) {
        let config = EventRateConfig {
            per_second: self.flags.max_events_per_second,
            burst: self.flags.event_burst,
        };
        socket
            .extensions
            .insert(EventBucket(Arc::new(Mutex::new(EventRate::new(
                config,
                now(),
            )))));
        self.book().socket_connected(socket.id);
    }

    /// A Socket.IO connection closed.
    pub fn socket_gone(&self, sid: Sid) {
        self.book().socket_gone(sid);
    }

    /// Takes one client event of `socket` from its bucket.
    pub fn event(&self, socket: &Socket) -> Verdict {
        let Some(EventBucket(bucket)) = socket.extensions.get::<EventBucket>() else {
            return Verdict::Allow;
        };
        let verdict = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(now());
        match verdict {
            Verdict::Allow => {}
            Verdict::Refuse => refused("rate_limited"),
            Verdict::Disconnect => {
                refused("flood_disconnect");
                tracing::warn!(sid = %socket.id, "disconnecting a connection that keeps flooding");
            }
        }
        verdict
    }

    /// Once a second: closes sessions that never polled, forgets dead ones,
    /// trims the REST limiter's memory. Runs until aborted.
    pub async fn sweep(self: Arc<Self>, io: SocketIo) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        metrics::gauge!("signalroom_max_connections").set(self.max_connections() as f64);
        loop {
            tick.tick().await;
            metrics::gauge!("signalroom_counted_connections").set(self.counted() as f64);
            let kick = self.book().sweep(
                Instant::now(),
                self.handshake_timeout(),
                self.connect_timeout(),
            );
            for sid in kick {
                refused("handshake_timeout");
                if let Some(socket) = io.get_socket(sid) {
                    socket.disconnect().ok();
                }
            }
            if let Some(rest) = &self.rest {
                rest.retain_recent();
            }
        }
    }

    /// A header-read timeout closed a connection.
    pub fn header_timeout(&self) {
        refused("handshake_timeout");
    }

    /// Engine.IO sessions plus TCP connections not in one.
    pub fn counted(&self) -> usize {
        self.book().total()
    }
}

/// The engine's path (socketioxide's default).
const ENGINE_PATH: &str = "/socket.io/";

/// The middleware around every request: the REST rate, the connection caps,
/// and the bookkeeping of sessions.
pub async fn guard(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let Some(conn) = req.extensions().get::<ConnInfo>().copied() else {
        return next.run(req).await;
    };
    let ip = client_ip::client_ip(conn.peer.ip(), req.headers(), &limits.flags.trusted_proxies);
    limits.book().identify(conn.id, ip);
    let path = req.uri().path();
    if path.starts_with("/api/webrtc/")
        && req.method() != Method::OPTIONS
        && let Some(rest) = &limits.rest
        && let Err(not_until) = rest.check_key(&ip)
    {
        refused("rest_rate_limited");
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return refuse(req, Error::RateLimited, Some(wait)).await;
    }
    if !path.starts_with(ENGINE_PATH) {
        return next.run(req).await;
    }
    let (sid, transport) = engine_query(req.uri().query().unwrap_or(""));
    let polling = transport.as_deref() == Some("polling");
    if let Some(sid) = sid {
        let first_poll = req.method() == Method::GET;
        limits
            .book()
            .session_request(conn.id, sid.parse().ok(), first_poll);
        return next.run(req).await;
    }
    let admitted = limits.book().admit(conn.id, ip, limits.caps);
    if let Err(error) = admitted {
        refused(match error {
            Error::ServerFull => "server_full",
            _ => "too_many_connections",
        });
        return refuse(req, error, None).await;
    }
    let response = next.run(req).await;
    if polling && response.status() == StatusCode::OK {
        return record_polling_session(&limits, conn.id, ip, response).await;
    }
    response
}

/// Reads the new session's id from a polling handshake's open packet
/// (`0{"sid":...}`) and counts the session.
async fn record_polling_session(
    limits: &Limits,
    conn: u64,
    ip: IpAddr,
    response: Response,
) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, 64 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "handshake too large").into_response();
    };
    let sid = bytes
        .strip_prefix(b"0")
        .and_then(|open| serde_json::from_slice::<serde_json::Value>(open).ok())
        .and_then(|open| open.get("sid")?.as_str()?.parse::<Sid>().ok());
    if let Some(sid) = sid {
        limits.book().polling_created(conn, sid, ip, Instant::now());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The `sid` and `transport` query parameters.
fn engine_query(query: &str) -> (Option<String>, Option<String>) {
    let mut sid = None;
    let mut transport = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sid", v)) => sid = Some(v.to_owned()),
            Some(("transport", v)) => transport = Some(v.to_owned()),
            _ => {}
        }
    }
    (sid, transport)
}

/// Refuses `req` once its body (if any) is drained: see [`drain`].
async fn refuse(req: Request, error: Error, retry_after: Option<Duration>) -> Response {
    let mut response = refusal(error, retry_after);
    if !drain::drain(req.into_body()).await {
        drain::close(&mut response);
    }
    response
}

/// A refusal as an HTTP answer: the error's status and `{error, code}`, with
/// `Retry-After` in whole seconds (at least 1) when given.
fn refusal(error: Error, retry_after: Option<Duration>) -> Response {
    crate::metrics::error(error.code());
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = (status, Json(error.body(None))).into_response();
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

impl Limits {
    /// Applies the handshake timeout to socketioxide: a new session must send
    /// its Socket.IO CONNECT, and an upgrade must complete, within it.
    pub fn configure(
        &self,
        builder: socketioxide::SocketIoBuilder,
    ) -> socketioxide::SocketIoBuilder {
        match self.handshake_timeout() {
            Some(t) => builder.connect_timeout(t).upgrade_timeout(t),
            None => builder,
        }
    }
}
