//! The server's event path without sockets, for the fuzz targets (`fuzz/`).
//!
//! A live event goes: engine.io message text -> socketioxide's parser
//! (`socketioxide-parser-common`, the one socketioxide itself runs, with its
//! default limits) -> the adapter's [`decode`](crate::socket::decode) ->
//! the registry's `handle` (what `Hub::handle` runs) -> each reply and
//! delivery payload encoded once. [`Harness::packet`] runs exactly those
//! steps, the same functions the live path calls, minus the sockets: what it
//! does not exercise is socketioxide's transport and the emit calls. Hidden
//! from the docs: a test entry point, not API.

use std::collections::HashMap;

use bytes::Bytes;
use signalroom_core::{Delivery, Outcome, Registry, Timestamp};
use socketioxide_core::Str;
use socketioxide_core::packet::PacketData;
use socketioxide_core::parser::{Parse, ParseConfig, ParseError, ParserState};
use socketioxide_parser_common::CommonParser;

use crate::hub::encode;
use crate::socket::decode;

/// A registry and one Socket.IO parser state per connection, driven by raw packets.
pub struct Harness {
    /// The rooms, keyed by connection numbers.
    pub registry: Registry<u32>,
    parsers: HashMap<u32, ParserState>,
    config: ParseConfig,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new(signalroom_core::Config::default())
    }
}

impl Harness {
    /// A harness around an empty registry with these settings.
    pub fn new(config: signalroom_core::Config) -> Self {
        Self {
            registry: Registry::new(config),
            parsers: HashMap::new(),
            config: ParseConfig::default(),
        }
    }

    /// Runs one Socket.IO packet from `conn`, as text (an engine.io message
    /// without its leading `4`), then its binary attachments, through the live
    /// path. `None` when socketioxide would drop it, wait for more
    /// attachments, or not call signalroom (not an event on `/`), or when
    /// signalroom ignores it (unknown event). What makes socketioxide close
    /// the connection (a parse error, no event name, a disconnect packet)
    /// gives the outcome of its disconnect: no reply, the others told.
    ///
    /// Panics if a payload the registry produced cannot be encoded.
    pub fn packet(
        &mut self,
        conn: u32,
        text: &str,
        attachments: &[&[u8]],
        now: Timestamp,
    ) -> Option<Outcome<u32>> {
        if !self.parsers.contains_key(&conn) {
            // A new connection: the server opens it in the registry on connect.
            self.registry.connect(&conn);
        }
        let state = self.parsers.entry(conn).or_default();
        let mut parsed = CommonParser.decode_str(&self.config, state, Str::from(text.to_owned()));
        for bin in attachments {
            if !matches!(parsed, Err(ParseError::NeedsMoreBinaryData)) {
                break;
            }
            parsed = CommonParser.decode_bin(&self.config, state, Bytes::copy_from_slice(bin));
        }
        let packet = match parsed {
            Ok(packet) => packet,
            Err(ParseError::NeedsMoreBinaryData) => return None,
            Err(_) => return Some(self.closed(conn)),
        };
        if packet.ns != "/" {
            // socketioxide ignores packets for namespaces it does not serve.
            return None;
        }
        let value = match packet.inner {
            PacketData::Event(value, _) | PacketData::BinaryEvent(value, _) => value,
            // The client left `/`, or sent what only a server may send.
            PacketData::Disconnect | PacketData::ConnectError(_) => return Some(self.closed(conn)),
            PacketData::Connect(_) | PacketData::EventAck(..) | PacketData::BinaryAck(..) => {
                return None;
            }
        };
        // socketioxide reads the event name before it picks a handler, and
        // closes the connection when there is none.
        if CommonParser.read_event(&value).is_err() {
            return Some(self.closed(conn));
        }
        let cmd = decode(&value)?;
        let outcome = self
            .registry
            .handle(&conn, cmd.event, cmd.payload(), cmd.binary, now);
        // The hub takes the changes after every command (metrics, webhooks).
        self.registry.take_changes();
        if let Some(reply) = &outcome.reply {
            assert!(encode(&reply.event.payload).is_some(), "unencodable reply");
        }
        encode_all(&outcome.deliveries);
        Some(outcome)
    }

    /// The outcome of a connection socketioxide closes: no reply, the others told.
    fn closed(&mut self, conn: u32) -> Outcome<u32> {
        Outcome {
            reply: None,
            deliveries: self.disconnect(conn),
        }
    }

    /// `conn` closed: what the disconnect handler does.
    pub fn disconnect(&mut self, conn: u32) -> Vec<Delivery<u32>> {
        self.parsers.remove(&conn);
        let deliveries = self.registry.disconnect(&conn);
        self.registry.take_changes();
        encode_all(&deliveries);
        deliveries
    }
}

fn encode_all(deliveries: &[Delivery<u32>]) {
    for d in deliveries {
        assert!(encode(&d.event.payload).is_some(), "unencodable delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalroom_core::protocol::Payload;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn name(o: &Outcome<u32>) -> &'static str {
        o.reply.as_ref().expect("a reply").event.name.as_str()
    }

    #[test]
    fn a_join_and_a_signal_run_from_packet_text() {
        let mut h = Harness::default();
        let o = h
            .packet(
                1,
                r#"2["join_room",{"room_name":"r","peer_id":"a","username":"A"}]"#,
                &[],
                T0,
            )
            .expect("handled");
        assert_eq!(name(&o), "join_room_success");
        h.packet(
            2,
            r#"27["join_room",{"room_name":"r","peer_id":"b","username":"B"}]"#,
            &[],
            T0,
        )
        .expect("handled");
        let o = h
            .packet(1, r#"21["signal",{"to":"b","data":{"sdp":"x"}}]"#, &[], T0)
            .expect("handled");
        assert_eq!(o.deliveries[0].to, vec![2]);
        assert!(matches!(o.deliveries[0].event.payload, Payload::Signal(_)));
        assert_eq!(h.registry.peer_count(), 2);
    }

    #[test]
    fn a_binary_join_is_refused_after_its_attachment() {
        let mut h = Harness::default();
        let text = r#"51-["join_room",{"room_name":"r","peer_id":"a","username":"A"},{"_placeholder":true,"num":0}]"#;
        assert!(
            h.packet(1, text, &[], T0).is_none(),
            "waits for the attachment"
        );
        let o = h.packet(1, text, &[b"x"], T0).expect("closed");
        // The first header is still pending: a second text packet is a parse error.
        assert!(o.reply.is_none());
        let o = h.packet(2, text, &[b"x"], T0).expect("handled");
        assert_eq!(name(&o), "join_room_error");
        assert_eq!(h.registry.peer_count(), 0);
    }

    #[test]
    fn garbage_and_unknown_events_change_nothing() {
        let mut h = Harness::default();
        for text in [r#"2["nope",{}]"#, r#"2/x,["join_room",{}]"#, "31[]", "0"] {
            assert!(h.packet(1, text, &[], T0).is_none(), "{text}");
        }
        for text in ["", "2[", "9", "2{}", "2[1]", "1", "4\"no\""] {
            let Some(o) = h.packet(1, text, &[], T0) else {
                panic!("{text:?}: a parse error closes");
            };
            assert!(o.reply.is_none() && o.deliveries.is_empty(), "{text}");
        }
        assert_eq!(h.registry.room_count(), 0);
    }

    #[test]
    fn a_parse_error_disconnects_like_socketioxide() {
        let mut h = Harness::default();
        h.packet(
            1,
            r#"2["join_room",{"room_name":"r","peer_id":"a","username":"A"}]"#,
            &[],
            T0,
        )
        .expect("handled");
        h.packet(
            2,
            r#"2["join_room",{"room_name":"r","peer_id":"b","username":"B"}]"#,
            &[],
            T0,
        )
        .expect("handled");
        let o = h.packet(1, "9x", &[], T0).expect("closed");
        assert!(o.reply.is_none());
        assert_eq!(o.deliveries[0].to, vec![2]);
        assert_eq!(h.registry.peer_count(), 1);
    }
}
