//! Fuzz target: random command sequences against the core registry, checked
//! after every command by the registry's own invariant checker
//! (`signalroom_core::registry::invariants`, the one the property tests use).
//! Names come from small alphabets so that commands collide: same rooms, same
//! peer ids, full rooms, renames, moves, leases running out.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use serde_json::value::RawValue;
use signalroom_core::registry::invariants::Witness;
use signalroom_core::{ClientEvent, Config, Registry, Timestamp};

#[derive(Arbitrary, Debug)]
enum Op {
    Join {
        conn: u8,
        room: u8,
        peer: u8,
        user: u8,
        delta: bool,
    },
    Leave(u8),
    Disconnect(u8),
    Connect(u8),
    /// The adapter drops a slow connection.
    Drop(u8),
    Signal {
        conn: u8,
        to: u8,
        big: bool,
    },
    GetPeers(u8),
    HttpJoin {
        room: u8,
        peer: u8,
        user: u8,
    },
    HttpLeave {
        room: u8,
        peer: u8,
    },
    Advance(u16),
    /// Any event with any payload text.
    Raw {
        conn: u8,
        event: u8,
        payload: String,
        binary: bool,
    },
}

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn raw(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("a value is JSON")
}

fn event(i: u8) -> ClientEvent {
    match i % 4 {
        0 => ClientEvent::JoinRoom,
        1 => ClientEvent::LeaveRoom,
        2 => ClientEvent::GetPeers,
        _ => ClientEvent::Signal,
    }
}

fuzz_target!(|input: (u8, Vec<Op>)| {
    let (cap, ops) = input;
    let mut r: Registry<u8> = Registry::new(Config {
        max_peers: usize::from(cap % 4) + 1,
        max_signal_bytes: 16,
        http_peer_ttl_ms: 1_000,
        ..Config::default()
    });
    let mut w = Witness::default();
    let mut now = T0;
    for conn in 0..6 {
        r.connect(&conn);
    }
    for op in ops.into_iter().take(200) {
        match op {
            Op::Join {
                conn,
                room,
                peer,
                user,
                delta,
            } => {
                let conn = conn % 6;
                let mode = if delta { "delta" } else { "full" };
                let p = raw(json!({
                    "room_name": format!("r{}", room % 3),
                    "peer_id": format!("p{}", peer % 5),
                    "username": format!("u{}", user % 2),
                    "updates": mode,
                }));
                let before = r
                    .membership(&conn)
                    .map(|(a, b)| (a.to_owned(), b.to_owned()));
                let o = r.handle(&conn, ClientEvent::JoinRoom, Some(&p), false, now);
                if o.reply.as_ref().and_then(|x| x.error_body()).is_some() {
                    assert!(
                        o.deliveries.is_empty(),
                        "a refused join announced something"
                    );
                    let after = r
                        .membership(&conn)
                        .map(|(a, b)| (a.to_owned(), b.to_owned()));
                    assert_eq!(before, after, "a refused join moved its connection");
                }
                w.outcome(&conn, &o);
            }
            Op::Leave(conn) => {
                let conn = conn % 6;
                let o = r.handle(&conn, ClientEvent::LeaveRoom, None, false, now);
                w.outcome(&conn, &o);
            }
            Op::Connect(conn) => r.connect(&(conn % 6)),
            Op::Disconnect(conn) | Op::Drop(conn) => {
                let conn = conn % 6;
                let d = if matches!(op, Op::Drop(_)) {
                    r.drop_connection(&conn)
                } else {
                    r.disconnect(&conn)
                };
                w.disconnected(&conn);
                w.deliveries(&d);
            }
            Op::Signal { conn, to, big } => {
                let conn = conn % 6;
                let data = if big { "x".repeat(20) } else { "x".into() };
                let p = raw(json!({"to": format!("p{}", to % 5), "data": data}));
                let o = r.handle(&conn, ClientEvent::Signal, Some(&p), false, now);
                for d in &o.deliveries {
                    assert_eq!(d.to.len(), 1, "a signal reached more than one peer");
                    let from = r.membership(&conn).map(|m| m.0);
                    assert_eq!(
                        r.membership(&d.to[0]).map(|m| m.0),
                        from,
                        "a signal crossed rooms"
                    );
                }
                w.outcome(&conn, &o);
            }
            Op::GetPeers(conn) => {
                let conn = conn % 6;
                let o = r.get_peers(&conn);
                w.outcome(&conn, &o);
            }
            Op::HttpJoin { room, peer, user } => {
                let body = json!({"peer_id": format!("p{}", peer % 5), "username": format!("u{}", user % 2)});
                let (_, d) = r.http_join(&format!("r{}", room % 3), &body, now);
                w.deliveries(&d);
            }
            Op::HttpLeave { room, peer } => {
                if let Ok(d) = r.http_leave(&format!("r{}", room % 3), &format!("p{}", peer % 5)) {
                    w.deliveries(&d);
                }
            }
            Op::Advance(ms) => {
                now = now.plus_ms(u64::from(ms % 1500));
                let d = r.expire(now);
                w.deliveries(&d);
                assert!(
                    r.next_expiry().is_none_or(|at| at > now),
                    "a lease outlived its expiry"
                );
            }
            Op::Raw {
                conn,
                event: e,
                payload,
                binary,
            } => {
                let conn = conn % 6;
                let p = RawValue::from_string(payload).ok();
                let o = r.handle(&conn, event(e), p.as_deref(), binary, now);
                w.outcome(&conn, &o);
            }
        }
        r.take_changes();
        w.check(&r);
    }
});
