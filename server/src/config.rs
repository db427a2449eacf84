//! Command-line and environment configuration (`signalroom --help`).
//!
//! Every flag is also an environment variable `SIGNALROOM_<FLAG>`; the port
//! additionally honours `PORT`, as hosting platforms set it.

use std::time::Duration;

use clap::{Parser, Subcommand};
use signalroom_core::protocol::IceServer;

/// signalroom: a WebRTC rendezvous server. Peers meet in rooms over Socket.IO
/// and exchange offers, answers and ICE candidates through it.
#[derive(Debug, Clone, Parser)]
#[command(name = "signalroom", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SIGNALROOM_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on (0 picks a free one); `PORT` is read too [default: 3001].
    #[arg(long, env = "SIGNALROOM_PORT")]
    pub port: Option<u16>,

    /// Peers per room, sockets and HTTP peers together.
    #[arg(long, env = "SIGNALROOM_MAX_PEERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_peers: u32,

    /// Lease of a peer joined over REST, in seconds (renewed by posting the join again).
    #[arg(long, env = "SIGNALROOM_HTTP_PEER_TTL", default_value_t = 60.0, value_parser = lease_seconds)]
    pub http_peer_ttl: f64,

    /// Largest Socket.IO message in bytes; a bigger one closes that connection.
    #[arg(long, env = "SIGNALROOM_MAX_MESSAGE_BYTES", default_value_t = 131_072, value_parser = bytes_in(1024, MAX_BYTES))]
    pub max_message_bytes: usize,

    /// Largest `signal` data in bytes, serialized as compact JSON (bigger: `payload_too_large`).
    #[arg(long, env = "SIGNALROOM_MAX_SIGNAL_BYTES", default_value_t = 65_536, value_parser = bytes_in(1, MAX_BYTES))]
    pub max_signal_bytes: usize,

    /// Largest REST request body in bytes (bigger: 413).
    #[arg(long, env = "SIGNALROOM_MAX_BODY_BYTES", default_value_t = 65_536, value_parser = bytes_in(1, MAX_BYTES))]
    pub max_body_bytes: usize,

    /// Packets queued for one connection; a connection this far behind is dropped:
    /// it leaves its room at once and is closed (counted in `signalroom_queue_full_total`).
    #[arg(long, env = "SIGNALROOM_MAX_QUEUED_PACKETS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_queued_packets: u32,

    /// Allowed CORS origin (repeat for several); none given: any origin.
    #[arg(
        long = "cors-origin",
        env = "SIGNALROOM_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Directory served at `/` (the demo page).
    #[arg(long, env = "SIGNALROOM_WWW_DIR", default_value = "www")]
    pub www_dir: String,

    /// ICE servers handed to joiners, as a JSON list of RTCIceServer objects,
    /// e.g. '[{"urls":"stun:stun.example.org:3478"}]'.
    #[arg(long, env = "SIGNALROOM_ICE_SERVERS", default_value = "[]", value_parser = ice_servers)]
    pub ice_servers: IceServers,

    /// Engine.IO ping interval in seconds.
    #[arg(long, env = "SIGNALROOM_PING_INTERVAL", default_value_t = 25.0, value_parser = seconds)]
    pub ping_interval: f64,

    /// Threads that run connections (tokio worker threads); default one per
    /// CPU core. On a small machine shared with other work, fewer threads wake
    /// each other less and use less CPU for the same traffic.
    #[arg(long, env = "SIGNALROOM_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    /// On SIGINT/SIGTERM, how long to wait for clients to be disconnected cleanly
    /// before exiting anyway (a client that stopped reading cannot take its close frame).
    #[arg(long, env = "SIGNALROOM_SHUTDOWN_TIMEOUT", default_value_t = 5.0, value_parser = seconds)]
    pub shutdown_timeout: f64,

    /// POST every room change to this URL (repeat, or comma-separate, for several);
    /// see docs/protocol.md "Webhooks".
    #[arg(long = "webhook-url", env = "SIGNALROOM_WEBHOOK_URLS", value_delimiter = ',', value_parser = webhook_url)]
    pub webhook_urls: Vec<String>,

    /// Sign each webhook body with HMAC-SHA256 under this secret
    /// (`X-Signalroom-Signature: sha256=<hex>`).
    #[arg(long, env = "SIGNALROOM_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Engine.IO ping timeout in seconds.
    #[arg(long, env = "SIGNALROOM_PING_TIMEOUT", default_value_t = 20.0, value_parser = seconds)]
    pub ping_timeout: f64,

    /// The abuse limits (handshake timeout, event rate, connection caps, REST rate).
    #[command(flatten)]
    pub limits: crate::LimitFlags,
    /// Require access tokens (HS256 JWTs signed with this secret) on Socket.IO
    /// and /api/webrtc/*. Off when neither this nor --auth-secret-file is given.
    #[arg(long, env = "SIGNALROOM_AUTH_SECRET", global = true, hide_env_values = true, value_parser = secret)]
    pub auth_secret: Option<Secret>,

    /// Like --auth-secret, read from a file (a trailing newline is ignored).
    #[arg(long, env = "SIGNALROOM_AUTH_SECRET_FILE", global = true, conflicts_with = "auth_secret", value_parser = secret_file)]
    pub auth_secret_file: Option<Secret>,

    /// TURN REST API secret (coturn's static-auth-secret): every join answer
    /// carries TURN credentials for --turn-urls made with it.
    #[arg(long, env = "SIGNALROOM_TURN_SECRET", hide_env_values = true, requires = "turn_urls", value_parser = secret)]
    pub turn_secret: Option<Secret>,

    /// TURN server URLs for the minted credentials, comma-separated (turn:host:3478,...).
    #[arg(
        long,
        env = "SIGNALROOM_TURN_URLS",
        value_delimiter = ',',
        requires = "turn_secret"
    )]
    pub turn_urls: Vec<String>,

    /// How long minted TURN credentials are valid, in seconds (60 to 604800).
    #[arg(long, env = "SIGNALROOM_TURN_TTL", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=604_800))]
    pub turn_ttl: u64,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Join a cluster through this Redis (or Valkey) server, `redis://HOST:PORT[/DB]`;
    /// absent: one node on its own. Cluster mode is not complete yet (docs/cluster.md):
    /// builds without the `cluster` feature refuse this flag.
    #[arg(long, env = "SIGNALROOM_REDIS_URL", value_parser = redis_url)]
    pub redis_url: Option<String>,

    /// This node's name in the cluster, its logs and metrics: 1 to 64 of A-Z a-z 0-9 _ -
    /// [default: random].
    #[arg(long, env = "SIGNALROOM_NODE_ID", value_parser = node_id)]
    pub node_id: Option<String>,
}

/// Commands other than serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print an access token signed with --auth-secret (or the file or env variable).
    Token {
        /// The only room the token may join, see or change (default: any).
        #[arg(long)]
        room: Option<String>,
        /// The only peer_id the token may join or delete as (default: any).
        #[arg(long)]
        peer_id: Option<String>,
        /// Seconds until the token expires.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl: u64,
    },
}

/// A secret from a flag, the environment or a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn secret(text: &str) -> Result<Secret, String> {
    if text.is_empty() {
        return Err("the secret must not be empty".into());
    }
    Ok(Secret(text.to_owned()))
}

fn secret_file(path: &str) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    secret(text).map_err(|e| format!("{path}: {e}"))
}

/// Checks the shape `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`.
fn redis_url(text: &str) -> Result<String, String> {
    let bad = || format!("expected redis://HOST[:PORT][/DB], got {text:?}");
    let rest = text.strip_prefix("redis://").ok_or_else(bad)?;
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.ends_with(']') => (h, Some(p)),
        _ => (host_port, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let db_ok = db.is_empty() || db.parse::<u32>().is_ok();
    if host.is_empty() || !port_ok || !db_ok {
        return Err(bad());
    }
    Ok(text.to_owned())
}

fn node_id(text: &str) -> Result<String, String> {
    signalroom_core::cluster::validate_node_id(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// A parsed `--ice-servers` list (a newtype so clap treats it as one value).
#[derive(Debug, Clone, Default)]
pub struct IceServers(pub Vec<IceServer>);

fn ice_servers(text: &str) -> Result<IceServers, String> {
    serde_json::from_str(text)
        .map(IceServers)
        .map_err(|e| format!("expected a JSON list of {{urls, username?, credential?}}: {e}"))
}

/// An absolute `http://` or `https://` URL.
fn webhook_url(text: &str) -> Result<String, String> {
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(text.to_owned())
        }
        _ => Err(format!("expected an http:// or https:// URL, got {text:?}")),
    }
}

/// The most any byte limit may be (64 MiB).
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// Timers (heartbeat, shutdown): more than 0, at most an hour.
fn seconds(text: &str) -> Result<f64, String> {
    seconds_up_to(text, 3600.0)
}

/// Leases: more than 0, at most 30 days.
fn lease_seconds(text: &str) -> Result<f64, String> {
    seconds_up_to(text, 30.0 * 86_400.0)
}

fn seconds_up_to(text: &str, max: f64) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= max => Ok(s),
        _ => Err(format!(
            "expected a number of seconds above 0 and at most {max}, got {text:?}"
        )),
    }
}

/// A byte count within `min..=max`.
fn bytes_in(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| match text.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of bytes from {min} to {max}, got {text:?}"
        )),
    }
}

impl Config {
    /// The port to bind: the flag, else `PORT`, else 3001.
    pub fn port(&self) -> u16 {
        self.port
            .or_else(|| std::env::var("PORT").ok().and_then(|p| p.parse().ok()))
            .unwrap_or(3001)
    }

    /// The lease as whole milliseconds.
    pub fn http_peer_ttl_ms(&self) -> u64 {
        (self.http_peer_ttl * 1000.0).round().max(1.0) as u64
    }

    /// The registry settings these flags ask for.
    pub fn registry(&self) -> signalroom_core::Config {
        signalroom_core::Config {
            max_peers: self.max_peers as usize,
            max_signal_bytes: self.max_signal_bytes,
            http_peer_ttl_ms: self.http_peer_ttl_ms(),
            ice_servers: self.ice_servers.0.clone(),
            turn: self.turn_secret.as_ref().map(|s| signalroom_core::Turn {
                secret: s.0.clone(),
                urls: self.turn_urls.clone(),
                ttl_secs: self.turn_ttl,
            }),
        }
    }

    /// Refuses flags this build cannot honour: without the `cluster` feature
    /// (`--no-default-features`), `--redis-url`.
    pub fn unsupported(&self) -> Option<&'static str> {
        if cfg!(feature = "cluster") || self.redis_url.is_none() {
            return None;
        }
        Some(
            "--redis-url: this build has no cluster mode (it was built without the \
             `cluster` feature); run it without --redis-url, or use a default build",
        )
    }

    /// The access-token secret, from --auth-secret or --auth-secret-file.
    pub fn auth_secret(&self) -> Option<&str> {
        self.auth_secret
            .as_ref()
            .or(self.auth_secret_file.as_ref())
            .map(|s| s.0.as_str())
    }

    /// Seconds as a `Duration`.
    pub fn seconds(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol() {
        let c = Config::parse_from(["signalroom"]);
        assert_eq!(c.max_peers, 100);
        assert_eq!(c.http_peer_ttl_ms(), 60_000);
        assert_eq!(c.max_message_bytes, 131_072);
        assert_eq!(c.max_signal_bytes, 65_536);
        assert_eq!(c.max_body_bytes, 65_536);
        assert!(c.ice_servers.0.is_empty());
        assert!(c.cors_origins.is_empty());
        assert_eq!(c.limits.handshake_timeout, 10.0);
        assert_eq!(c.limits.max_events_per_second, 200);
        assert_eq!(c.limits.event_burst, 2000);
        assert_eq!(c.limits.max_connections, 50_000);
        assert_eq!(c.limits.max_connections_per_ip, 0);
        assert_eq!(c.limits.rest_rate_per_ip, 0);
        assert!(c.limits.trusted_proxies.is_empty());
    }

    #[test]
    fn ice_servers_are_parsed_and_bad_ones_refused() {
        let c = Config::parse_from([
            "signalroom",
            "--ice-servers",
            r#"[{"urls":"stun:s:3478"},{"urls":["turn:t"],"username":"u","credential":"c"}]"#,
        ]);
        assert_eq!(c.ice_servers.0.len(), 2);
        assert!(Config::try_parse_from(["signalroom", "--ice-servers", "{}"]).is_err());
        assert!(Config::try_parse_from(["signalroom", "--http-peer-ttl", "-1"]).is_err());
        assert!(Config::try_parse_from(["signalroom", "--max-peers", "0"]).is_err());
    }

    #[test]
    fn redis_urls_and_node_ids_are_checked() {
        let parse = |flag: &str, v: &str| Config::try_parse_from(["signalroom", flag, v]);
        for good in [
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "redis://h:1/2",
            "redis://u:p@h:6379/0",
            "redis://[::1]:6379",
        ] {
            assert!(parse("--redis-url", good).is_ok(), "{good}");
        }
        for bad in [
            "http://h:1",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:1/x",
        ] {
            assert!(parse("--redis-url", bad).is_err(), "{bad}");
        }
        assert!(parse("--node-id", "node-1").is_ok());
        assert!(parse("--node-id", "a b").is_err());
        assert!(parse("--node-id", "").is_err());
        let c = Config::parse_from(["signalroom"]);
        assert!(c.redis_url.is_none() && c.unsupported().is_none());
    }

    #[test]
    fn out_of_range_values_are_refused_not_panicked_on() {
        for (flag, value) in [
            ("--ping-interval", "1e30"),
            ("--ping-timeout", "1e20"),
            ("--shutdown-timeout", "1e30"),
            ("--http-peer-ttl", "1e30"),
            ("--ping-interval", "NaN"),
            ("--ping-timeout", "0"),
            ("--max-queued-packets", "0"),
            ("--max-message-bytes", "0"),
            ("--max-signal-bytes", "0"),
            ("--max-body-bytes", "99999999999999999999"),
            ("--max-peers", "4294967295"),
        ] {
            assert!(
                Config::try_parse_from(["signalroom", flag, value]).is_err(),
                "{flag} {value} was accepted"
            );
        }
        let c = Config::parse_from([
            "signalroom",
            "--ping-interval",
            "3600",
            "--max-queued-packets",
            "1",
        ]);
        assert_eq!(c.ping_interval, 3600.0);
        assert_eq!(c.max_queued_packets, 1);
    }
}
