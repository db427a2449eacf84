//! Fuzz target: the server's whole event path from raw Socket.IO packet text
//! (`signalroom_server::fuzzing::Harness`: socketioxide's parser, the adapter's
//! decode, the registry, payload encoding), with the registry's invariants
//! checked after every packet.
//!
//! Input: records separated by `\x1e` (engine.io's polling separator). A record
//! `<d><packet>` with a digit `d` is a packet from connection `d % 4`; `#<bytes>`
//! is a binary attachment of the packet before it; `x<d>` closes connection `d`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use signalroom_core::registry::invariants::Witness;
use signalroom_core::{Config, Timestamp};
use signalroom_server::fuzzing::Harness;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new(Config {
        max_peers: 3,
        max_signal_bytes: 64,
        http_peer_ttl_ms: 1_000,
        ..Config::default()
    });
    let mut w = Witness::default();
    let records: Vec<&[u8]> = data.split(|b| *b == 0x1e).take(64).collect();
    let mut i = 0;
    while i < records.len() {
        let rec = records[i];
        i += 1;
        match rec.first() {
            Some(d @ b'0'..=b'9') => {
                let conn = u32::from(d - b'0') % 4;
                let Ok(text) = std::str::from_utf8(&rec[1..]) else {
                    continue;
                };
                let mut attachments = Vec::new();
                while i < records.len() && records[i].first() == Some(&b'#') {
                    attachments.push(&records[i][1..]);
                    i += 1;
                }
                if let Some(o) = h.packet(conn, text, &attachments, T0) {
                    if o.reply.is_none() {
                        // A parse error closed the connection.
                        w.disconnected(&conn);
                    }
                    w.outcome(&conn, &o);
                }
            }
            Some(b'x') => {
                let conn = u32::from(rec.get(1).copied().unwrap_or(0)) % 4;
                let d = h.disconnect(conn);
                w.disconnected(&conn);
                w.deliveries(&d);
            }
            _ => {}
        }
        w.check(&h.registry);
    }
});
