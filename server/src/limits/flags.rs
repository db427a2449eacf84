//! The abuse-limit flags, flattened into [`crate::Config`]. Each has an
//! environment variable `SIGNALROOM_<FLAG>`, a range that clap checks (a bad
//! value is a one-line error and exit code 2), and 0 turns it off.

use clap::Args;

use super::client_ip::TrustedProxy;

/// The "Abuse limits" flags of the protocol.
#[derive(Debug, Clone, Args)]
pub struct LimitFlags {
    /// Seconds a new TCP connection may take to send its request headers, and a
    /// keep-alive connection may sit idle between requests; also how long a new
    /// Engine.IO session may take to connect, poll or finish its WebSocket upgrade
    /// (0: off).
    #[arg(long, env = "SIGNALROOM_HANDSHAKE_TIMEOUT", default_value_t = 10.0, value_parser = seconds_or_zero)]
    pub handshake_timeout: f64,

    /// Sustained client events per second per connection; over it an event is
    /// answered `rate_limited` (0: off).
    #[arg(long, env = "SIGNALROOM_MAX_EVENTS_PER_SECOND", default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_events_per_second: u32,

    /// Client events a connection may send at once before the rate applies (0: off).
    #[arg(long, env = "SIGNALROOM_EVENT_BURST", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub event_burst: u32,

    /// Engine.IO sessions plus TCP connections not yet in one; a new session past
    /// it gets 503 `server_full`. Never more than the open-file limit allows (0: only that).
    #[arg(long, env = "SIGNALROOM_MAX_CONNECTIONS", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub max_connections: u32,

    /// The same count per client address; past it: 503 `too_many_connections` (0: off).
    #[arg(long, env = "SIGNALROOM_MAX_CONNECTIONS_PER_IP", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub max_connections_per_ip: u32,

    /// Requests per second per client address on /api/webrtc/*, with bursts of
    /// twice as many; past it: 429 `rate_limited` with Retry-After (0: off).
    #[arg(long, env = "SIGNALROOM_REST_RATE_PER_IP", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rest_rate_per_ip: u32,

    /// A reverse proxy's address (or CIDR block) whose X-Forwarded-For is believed:
    /// the client is then the header's first address (repeat, or comma-separate).
    #[arg(
        long = "trusted-proxy",
        env = "SIGNALROOM_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<TrustedProxy>,
}

fn seconds_or_zero(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "expected seconds between 0 (off) and 86400, got {text:?}"
        )),
    }
}
