//! A lean Socket.IO v5 client over a raw engine.io WebSocket: just enough to drive load.
//!
//! Frames are parsed in place: an event's name and a few numeric fields are found by
//! scanning the text, never by building the peer list.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How the generator's clients read what they receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Clients {
    /// Scan each frame in place for the few fields the scenario needs.
    Fast,
    /// Also parse every message into a JSON value, as real clients do.
    Parse,
}

impl Clients {
    /// The name in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            Clients::Fast => "fast",
            Clients::Parse => "parse",
        }
    }
}

/// One Socket.IO connection, with counters of what it received.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    /// Parse every received message into a JSON value (`Clients::Parse`).
    parse: bool,
    /// Socket.IO packets received (pings excluded).
    pub msgs: u64,
    /// Bytes of those packets (the WebSocket text payloads).
    pub bytes: u64,
}

/// A received Socket.IO packet, borrowed from the frame text.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `42[<name>, ...]` or `42<ack>[<name>, ...]`.
    Event {
        /// The event name.
        name: &'a str,
        /// The whole frame, for field look-ups.
        body: &'a str,
    },
    /// `43<id>[...]`.
    Ack {
        /// The ack id.
        id: u64,
        /// The whole frame, for field look-ups.
        body: &'a str,
    },
    /// Anything else (connect, disconnect, errors).
    Other,
}

/// Parses a Socket.IO packet inside an engine.io message frame (`4...`).
pub fn parse(frame: &str) -> Packet<'_> {
    let b = frame.as_bytes();
    if b.len() < 3 || b[0] != b'4' {
        return Packet::Other;
    }
    let kind = b[1];
    let mut i = 2;
    let mut id: Option<u64> = None;
    while i < b.len() && b[i].is_ascii_digit() {
        id = Some(id.unwrap_or(0) * 10 + u64::from(b[i] - b'0'));
        i += 1;
    }
    match kind {
        b'2' => {
            // ["name", ...]
            if b.get(i) != Some(&b'[') || b.get(i + 1) != Some(&b'"') {
                return Packet::Other;
            }
            let start = i + 2;
            match memchr::memchr(b'"', &b[start..]) {
                Some(len) => Packet::Event {
                    name: &frame[start..start + len],
                    body: frame,
                },
                None => Packet::Other,
            }
        }
        b'3' => match id {
            Some(id) => Packet::Ack { id, body: frame },
            None => Packet::Other,
        },
        _ => Packet::Other,
    }
}

/// Finds `"key":<unsigned number>` in `body`, looking at the tail first (where the list
/// messages keep `total_peers` and `version`, after the peers), then everywhere.
///
/// A match cannot come from inside a JSON string (quotes are escaped there); the peer
/// objects have no such keys, so the first hit is the top-level field.
pub fn num_field(body: &str, key: &str) -> Option<u64> {
    let b = body.as_bytes();
    let mut pat = Vec::with_capacity(key.len() + 3);
    pat.push(b'"');
    pat.extend_from_slice(key.as_bytes());
    pat.extend_from_slice(b"\":");
    const TAIL: usize = 512;
    let tail_start = b.len().saturating_sub(TAIL);
    let pos = memchr::memmem::rfind(&b[tail_start..], &pat)
        .map(|p| p + tail_start)
        .or_else(|| memchr::memmem::find(b, &pat))?;
    let mut i = pos + pat.len();
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let mut n: Option<u64> = None;
    while i < b.len() && b[i].is_ascii_digit() {
        n = Some(
            n.unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(u64::from(b[i] - b'0')),
        );
        i += 1;
    }
    n
}

/// Parses a Socket.IO packet's JSON arguments into a value and drops it: the work a
/// real client does for every message (`Clients::Parse`). Returns whether it parsed.
pub fn parse_fully(frame: &str) -> bool {
    let Some(start) = frame.find('[') else {
        return false;
    };
    std::hint::black_box(serde_json::from_str::<serde_json::Value>(&frame[start..])).is_ok()
}

/// Escapes a string for a JSON literal (our own names and ids: plain ASCII in practice).
pub fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

impl Conn {
    /// Opens `ws://addr/socket.io/?EIO=4&transport=websocket` and connects to namespace `/`.
    pub async fn connect(
        addr: SocketAddr,
        read_buffer: usize,
        parse: bool,
        timeout: Duration,
    ) -> Result<Conn> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, read_buffer, parse))
            .await
            .map_err(|_| anyhow!("connect to {addr} timed out after {timeout:?}"))?
    }

    async fn connect_inner(addr: SocketAddr, read_buffer: usize, parse: bool) -> Result<Conn> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("TCP connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
            .await
            .context("WebSocket handshake")?;
        let mut conn = Conn {
            ws,
            parse,
            msgs: 0,
            bytes: 0,
        };
        // engine.io open packet `0{...}`.
        let open = conn
            .next_raw()
            .await?
            .context("closed before engine.io open")?;
        if !open.starts_with('0') {
            bail!("expected engine.io open, got {open:.80}");
        }
        conn.send_raw("40").await?;
        loop {
            let frame = conn
                .next_raw()
                .await?
                .context("closed before Socket.IO connect")?;
            if frame.starts_with("40") {
                break;
            }
            if frame.starts_with("44") {
                bail!("Socket.IO connect refused: {frame:.200}");
            }
        }
        conn.msgs = 0;
        conn.bytes = 0;
        Ok(conn)
    }

    /// Sends one text frame.
    pub async fn send_raw(&mut self, text: impl Into<String>) -> Result<()> {
        self.ws
            .send(Message::text(text.into()))
            .await
            .context("WebSocket send")
    }

    /// Emits `42["name",payload]` (`payload` is JSON text).
    pub async fn emit(&mut self, name: &str, payload: &str) -> Result<()> {
        self.send_raw(format!("42[\"{name}\",{payload}]")).await
    }

    /// Emits with an ack id: `42<id>["name",payload]`.
    pub async fn emit_ack(&mut self, id: u64, name: &str, payload: &str) -> Result<()> {
        self.send_raw(format!("42{id}[\"{name}\",{payload}]")).await
    }

    /// The next text frame, answering engine.io pings on the way; `None` when closed.
    async fn next_raw(&mut self) -> Result<Option<tokio_tungstenite::tungstenite::Utf8Bytes>> {
        loop {
            let Some(msg) = self.ws.next().await else {
                return Ok(None);
            };
            match msg.context("WebSocket receive")? {
                Message::Text(t) => {
                    if t.as_str() == "2" {
                        self.send_raw("3").await?;
                        continue;
                    }
                    return Ok(Some(t));
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
    }

    /// The next Socket.IO packet (text), counted in `msgs`/`bytes`; `None` when closed.
    ///
    /// Cancel-safe except for a ping answer in flight, which only matters after 25 s.
    pub async fn next_frame(
        &mut self,
    ) -> Result<Option<tokio_tungstenite::tungstenite::Utf8Bytes>> {
        let frame = self.next_raw().await?;
        if let Some(f) = &frame {
            self.msgs += 1;
            self.bytes += f.len() as u64;
            if self.parse {
                parse_fully(f);
            }
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_acks() {
        assert_eq!(
            parse(r#"42["peer_list_updated",{"total_peers":3}]"#),
            Packet::Event {
                name: "peer_list_updated",
                body: r#"42["peer_list_updated",{"total_peers":3}]"#
            }
        );
        assert!(matches!(
            parse(r#"4217["x",{}]"#),
            Packet::Event { name: "x", .. }
        ));
        assert!(matches!(
            parse(r#"4317[{"to":"b"}]"#),
            Packet::Ack { id: 17, .. }
        ));
        assert_eq!(parse("40{\"sid\":\"a\"}"), Packet::Other);
        assert!(parse_fully(
            r#"42["peer_list_updated",{"peers":[{"peer_id":"a"}]}]"#
        ));
        assert!(parse_fully(r#"4317[{"to":"b"}]"#));
        assert!(!parse_fully("40"));
        assert_eq!(parse("2"), Packet::Other);
    }

    #[test]
    fn finds_fields() {
        let body = r#"42["peer_list_updated",{"room_name":"r","peers":[{"peer_id":"p1","username":"u \"total_peers\":9"}],"total_peers":12,"version":40}]"#;
        assert_eq!(num_field(body, "total_peers"), Some(12));
        assert_eq!(num_field(body, "version"), Some(40));
        assert_eq!(num_field(body, "max_peers"), None);
        let long = format!(
            r#"42["x",{{"total_peers":7,"peers":[{}"a"]}}]"#,
            "\"a\",".repeat(400)
        );
        assert_eq!(num_field(&long, "total_peers"), Some(7));
    }
}
