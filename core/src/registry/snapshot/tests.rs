//! Snapshots round-trip exactly, refuse what is inconsistent, and removing a
//! node's connections is one version per peer.

use super::*;
use crate::cluster::ConnId;
use crate::protocol::{Event, Payload};
use crate::registry::tests::{Op, op};
use crate::registry::{ChangeKind, ClientEvent, Config, LeaveReason, Outcome};
use proptest::prelude::*;
use serde_json::json;
use serde_json::value::RawValue;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn config() -> Config {
    Config {
        max_peers: 3,
        max_signal_bytes: 64,
        http_peer_ttl_ms: 1_000,
        ..Config::default()
    }
}

fn raw(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("valid json")
}

fn join<C: Clone + Eq + Hash>(
    r: &mut Registry<C>,
    conn: &C,
    room: &str,
    peer: &str,
    mode: &str,
) -> Outcome<C> {
    r.connect(conn);
    join_as(r, conn, room, peer, peer, mode, T0)
}

fn join_as<C: Clone + Eq + Hash>(
    r: &mut Registry<C>,
    conn: &C,
    room: &str,
    peer: &str,
    user: &str,
    mode: &str,
    now: Timestamp,
) -> Outcome<C> {
    let p = raw(json!({"room_name": room, "peer_id": peer, "username": user, "updates": mode}));
    r.handle(conn, ClientEvent::JoinRoom, Some(&p), false, now)
}

/// Every room of a registry, every connection's place and whether it is
/// open, the next lease expiry.
type State<C> = (
    Vec<RoomSnapshot<C>>,
    Vec<(Option<(String, String)>, bool)>,
    Option<Timestamp>,
);

/// Every room of a registry as snapshots, plus what else must carry over.
fn state<C: Clone + Eq + Hash + Ord>(r: &Registry<C>, conns: &[C]) -> State<C> {
    let rooms = r
        .room_names()
        .map(|n| r.export_room(n).expect("listed room exists"))
        .collect();
    let memberships = conns
        .iter()
        .map(|c| {
            let place = r.membership(c).map(|(a, b)| (a.to_owned(), b.to_owned()));
            (place, r.is_open(c))
        })
        .collect();
    (rooms, memberships, r.next_expiry())
}

/// A registry rebuilt from JSON snapshots of every room of `r`.
fn rebuilt<C>(r: &Registry<C>) -> Registry<C>
where
    C: Clone + Eq + Hash + Serialize + for<'de> Deserialize<'de>,
{
    let mut copy = Registry::new(r.config().clone());
    for name in r.room_names() {
        let snap = r.export_room(name).expect("listed room exists");
        let text = serde_json::to_string(&snap).expect("serializes");
        let back: RoomSnapshot<C> = serde_json::from_str(&text).expect("parses");
        copy.import_room(back)
            .expect("a registry's own rooms import");
    }
    copy
}

/// [`rebuilt`], plus the connections open in `r` that are in no room: their
/// nodes tell a new owner about them as their commands come.
fn rebuilt_with_open(r: &Registry<u32>, conns: &[u32]) -> Registry<u32> {
    let mut copy = rebuilt(r);
    for c in conns.iter().filter(|c| r.is_open(c)) {
        copy.connect(c);
    }
    copy
}

#[test]
fn a_room_round_trips_with_its_modes_and_leases() {
    let mut r: Registry<u32> = Registry::new(config());
    join(&mut r, &1, "room", "a", "full");
    join(&mut r, &2, "room", "b", "delta");
    let (res, _) = r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0);
    assert!(res.is_ok());
    let snap = r.export_room("room").expect("exists");
    assert_eq!(snap.version, 3);
    assert_eq!(
        serde_json::to_value(&snap.members[1].holder).expect("serializes"),
        json!({"kind": "socket", "conn": 2, "mode": "delta"})
    );
    assert_eq!(
        snap.members[2].holder,
        HolderSnapshot::Http {
            expires_at: T0.0 + 1_000
        }
    );
    let mut copy = rebuilt(&r);
    assert_eq!(state(&copy, &[1, 2]), state(&r, &[1, 2]));
    assert!(copy.take_changes().is_empty(), "importing is not a change");
    assert_eq!(copy.rooms(), r.rooms());
    assert!(r.export_room("nowhere").is_none());
}

#[test]
fn an_inconsistent_snapshot_is_refused_and_changes_nothing() {
    let mut r: Registry<u32> = Registry::new(config());
    join(&mut r, &1, "room", "a", "full");
    join(&mut r, &2, "other", "b", "full");
    let before = state(&r, &[1, 2]);
    let good = r.export_room("room").expect("exists");

    let mut empty = good.clone();
    empty.members.clear();
    assert_eq!(
        r.import_room(empty),
        Err(SnapshotError::Empty("room".into()))
    );
    let mut v0 = good.clone();
    v0.version = 0;
    assert!(r.import_room(v0).is_err());
    let mut dup = good.clone();
    dup.members.push(dup.members[0].clone());
    assert!(matches!(
        r.import_room(dup),
        Err(SnapshotError::DuplicatePeer { .. })
    ));
    let mut twice = good.clone();
    let mut second = twice.members[0].clone();
    second.peer.peer_id = "z".into();
    twice.members.push(second);
    assert!(matches!(
        r.import_room(twice),
        Err(SnapshotError::ConnectionTaken { .. })
    ));
    let mut taken = good.clone();
    taken.members[0].holder = HolderSnapshot::Socket {
        conn: 2,
        mode: UpdateMode::Full,
    };
    assert!(matches!(
        r.import_room(taken),
        Err(SnapshotError::ConnectionTaken { .. })
    ));
    assert_eq!(state(&r, &[1, 2]), before);
}

#[test]
fn an_import_replaces_the_room_of_that_name() {
    let mut r: Registry<u32> = Registry::new(config());
    join(&mut r, &1, "room", "a", "full");
    let old = r.export_room("room").expect("exists");
    join(&mut r, &2, "room", "b", "full");
    let (res, _) = r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0);
    assert!(res.is_ok());
    r.import_room(old.clone()).expect("imports");
    assert_eq!(r.export_room("room"), Some(old));
    assert_eq!(r.membership(&2), None);
    assert_eq!(r.next_expiry(), None);
}

#[test]
fn forgetting_a_room_drops_its_memberships_and_leases_silently() {
    let mut r: Registry<u32> = Registry::new(config());
    join(&mut r, &1, "room", "a", "full");
    let (res, _) = r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0);
    assert!(res.is_ok());
    r.take_changes();
    let snap = r.forget_room("room").expect("existed");
    assert_eq!(snap.members.len(), 2);
    assert_eq!(r.room_count(), 0);
    assert_eq!(r.membership(&1), None);
    assert!(!r.is_open(&1));
    assert_eq!(r.next_expiry(), None);
    assert!(r.take_changes().is_empty(), "forgetting is not a change");
    assert!(r.expire(T0.plus_ms(5_000)).is_empty());
    assert!(r.forget_room("room").is_none());
}

#[test]
fn a_socket_that_moved_elsewhere_leaves_as_moved_and_stays_open() {
    let mut r: Registry<u32> = Registry::new(config());
    join(&mut r, &1, "a", "x", "full");
    join(&mut r, &2, "a", "y", "full");
    r.take_changes();
    assert!(r.moved_out(&1, "other").is_empty());
    assert!(r.moved_out(&9, "a").is_empty());
    assert!(r.take_changes().is_empty());
    let d = r.moved_out(&1, "a");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].to, [2]);
    assert_eq!(r.membership(&1), None);
    assert!(r.is_open(&1));
    let changes: Vec<ChangeKind> = r.take_changes().into_iter().map(|c| c.kind).collect();
    assert_eq!(
        changes,
        [ChangeKind::PeerLeft {
            peer_id: "x".into(),
            reason: LeaveReason::Moved
        }]
    );
    // Open, so it can join again here.
    join(&mut r, &1, "a", "x", "full");
    assert_eq!(r.membership(&1), Some(("a", "x")));
}

#[test]
fn a_dead_nodes_peers_leave_one_version_each() {
    let c = |node: &str, sid: &str| ConnId::new(node, sid);
    let mut r: Registry<ConnId> = Registry::new(Config {
        max_peers: 10,
        ..config()
    });
    join(&mut r, &c("n1", "a"), "room", "a", "full");
    join(&mut r, &c("n2", "b"), "room", "b", "full");
    join(&mut r, &c("n1", "c"), "room", "c", "delta");
    join(&mut r, &c("n2", "d"), "room", "d", "delta");
    assert_eq!(r.member_nodes(), ["n1", "n2"]);
    r.take_changes();
    let d = r.remove_node("n2");
    let changes: Vec<(u64, ChangeKind)> = r
        .take_changes()
        .into_iter()
        .map(|c| (c.version, c.kind))
        .collect();
    let dropped = |peer: &str| ChangeKind::PeerLeft {
        peer_id: peer.into(),
        reason: LeaveReason::Dropped,
    };
    assert_eq!(changes, [(5, dropped("b")), (6, dropped("d"))]);
    assert!(!r.is_open(&c("n2", "b")));
    let seen: Vec<(String, Vec<String>, u64)> = d
        .iter()
        .map(|d| {
            let v = serde_json::to_value(&d.event.payload).expect("serializes");
            (
                d.event.name.as_str().to_owned(),
                d.to.iter().map(ToString::to_string).collect(),
                v["version"].as_u64().expect("a version"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("peer_list_updated".into(), vec!["n1/a".into()], 5),
            ("peer_left".into(), vec!["n1/c".into()], 5),
            ("peer_list_updated".into(), vec!["n1/a".into()], 6),
            ("peer_left".into(), vec!["n1/c".into()], 6),
        ]
    );
    assert_eq!(r.member_nodes(), ["n1"]);
    assert!(r.remove_node("n2").is_empty());
}

fn event_text(e: &Event) -> String {
    let payload = match &e.payload {
        Payload::Signal(s) => format!("{}<-{}:{}", s.room_name, s.from, s.data.get()),
        p => serde_json::to_string(p).expect("serializes"),
    };
    format!("{} {payload}", e.name.as_str())
}

/// Applies `op` at `now` (advanced by `Advance`) and describes everything it produced.
fn apply<C: Clone + Eq + Hash + std::fmt::Debug>(
    r: &mut Registry<C>,
    op: &Op,
    conn_of: &impl Fn(u32) -> C,
    now: &mut Timestamp,
) -> String {
    let deliveries = |ds: &[Delivery<C>]| -> String {
        ds.iter()
            .map(|d| format!("{:?} {}", d.to, event_text(&d.event)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let outcome = |o: Outcome<C>| -> String {
        let reply = o
            .reply
            .map(|r| format!("{} {}", r.emit, event_text(&r.event)));
        format!("{reply:?}\n{}", deliveries(&o.deliveries))
    };
    match op {
        Op::Join {
            conn,
            room,
            peer,
            user,
            delta,
        } => {
            let mode = if *delta { "delta" } else { "full" };
            outcome(join_as(
                r,
                &conn_of(*conn),
                &format!("r{room}"),
                &format!("p{peer}"),
                &format!("u{user}"),
                mode,
                *now,
            ))
        }
        Op::Leave(conn) => outcome(r.leave(&conn_of(*conn))),
        Op::Connect(conn) => {
            r.connect(&conn_of(*conn));
            String::new()
        }
        Op::Disconnect(conn) => deliveries(&r.disconnect(&conn_of(*conn))),
        Op::Drop(conn) => deliveries(&r.drop_connection(&conn_of(*conn))),
        Op::Signal { conn, to } => {
            let p = raw(json!({"to": format!("p{to}"), "data": {"sdp": "x"}}));
            outcome(r.handle(&conn_of(*conn), ClientEvent::Signal, Some(&p), false, *now))
        }
        Op::GetPeers(conn) => outcome(r.get_peers(&conn_of(*conn))),
        Op::HttpJoin { room, peer, user } => {
            let body = json!({"peer_id": format!("p{peer}"), "username": format!("u{user}")});
            let (res, ds) = r.http_join(&format!("r{room}"), &body, *now);
            let res = res.map_err(|e| e.error.code().as_str());
            format!("{res:?}\n{}", deliveries(&ds))
        }
        Op::HttpLeave { room, peer } => {
            match r.http_leave(&format!("r{room}"), &format!("p{peer}")) {
                Ok(ds) => deliveries(&ds),
                Err(e) => e.code().as_str().to_owned(),
            }
        }
        Op::Advance(ms) => {
            *now = now.plus_ms(u64::from(*ms));
            deliveries(&r.expire(*now))
        }
    }
}

fn node_conn(i: u32) -> ConnId {
    ConnId::new(format!("n{}", i % 3), format!("s{i}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Export every room, import into an empty registry: the copy holds the
    /// same rooms (members, order, versions, leases, modes) and answers every
    /// later command exactly as the original does.
    #[test]
    fn a_reimported_registry_is_indistinguishable(
        before in prop::collection::vec(op(), 0..60),
        after in prop::collection::vec(op(), 0..40),
    ) {
        let conns: Vec<u32> = (0..6).collect();
        let mut r: Registry<u32> = Registry::new(config());
        let mut now = T0;
        for op in &before {
            apply(&mut r, op, &|c| c, &mut now);
        }
        let mut copy = rebuilt_with_open(&r, &conns);
        prop_assert_eq!(state(&copy, &conns), state(&r, &conns));
        prop_assert_eq!(copy.rooms(), r.rooms());
        let mut now_copy = now;
        for op in &after {
            let a = apply(&mut r, op, &|c| c, &mut now);
            let b = apply(&mut copy, op, &|c| c, &mut now_copy);
            prop_assert_eq!(a, b, "diverged at {:?}", op);
        }
        prop_assert_eq!(state(&copy, &conns), state(&r, &conns));
    }

    /// Removing a node: no member of it is left; every room that loses k
    /// members moves on exactly k versions (unless it empties), and each
    /// remaining socket member hears of every one of them, once, in order.
    #[test]
    fn removing_a_node_is_one_announced_version_per_peer(
        ops in prop::collection::vec(op(), 0..80),
        node in 0u32..3,
    ) {
        let mut r: Registry<ConnId> = Registry::new(config());
        let mut now = T0;
        for op in &ops {
            apply(&mut r, op, &node_conn, &mut now);
        }
        let node = format!("n{node}");
        let rooms_before: Vec<RoomSnapshot<ConnId>> =
            r.room_names().map(|n| r.export_room(n).expect("exists")).collect();
        let deliveries = r.remove_node(&node);
        prop_assert!(!r.member_nodes().contains(&node.as_str()));
        for d in &deliveries {
            prop_assert!(!d.to.is_empty());
            prop_assert!(d.to.iter().all(|c| c.node != node), "told a removed member: {:?}", d.to);
        }
        for before in rooms_before {
            let removed = before.members.iter().filter(|m| matches!(&m.holder, HolderSnapshot::Socket { conn, .. } if conn.node == node)).count() as u64;
            let Some(after) = r.export_room(&before.name) else {
                prop_assert_eq!(removed as usize, before.members.len());
                continue;
            };
            prop_assert_eq!(after.version, before.version + removed);
            prop_assert_eq!(after.members.len() as u64, before.members.len() as u64 - removed);
            for m in &after.members {
                let HolderSnapshot::Socket { conn, .. } = &m.holder else { continue };
                let heard: Vec<u64> = deliveries
                    .iter()
                    .filter(|d| d.to.contains(conn))
                    .map(|d| match &d.event.payload {
                        Payload::PeerList(l) => { assert_eq!(l.room_name, before.name); l.version }
                        Payload::PeerLeft(l) => { assert_eq!(l.room_name, before.name); l.version }
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                prop_assert_eq!(heard, ((before.version + 1)..=after.version).collect::<Vec<_>>());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// Redis lost everything and the owner died: the nodes put their still
    /// connected members back, in any order, into an empty registry. Each room
    /// comes back with exactly its socket members, ordered by join time, at a
    /// version above everything its members saw.
    #[test]
    fn restored_members_rebuild_their_rooms(
        ops in prop::collection::vec(op(), 0..60),
        order in any::<prop::sample::Index>(),
        backwards in any::<bool>(),
    ) {
        let mut r: Registry<u32> = Registry::new(config());
        let mut now = T0;
        for op in &ops {
            apply(&mut r, op, &|c| c, &mut now);
        }
        let lost: Vec<RoomSnapshot<u32>> =
            r.room_names().map(|n| r.export_room(n).expect("exists")).collect();
        let mut members: Vec<(String, u64, MemberSnapshot<u32>)> = lost
            .iter()
            .flat_map(|room| room.members.iter().map(|m| (room.name.clone(), room.version, m.clone())))
            .filter(|(_, _, m)| matches!(m.holder, HolderSnapshot::Socket { .. }))
            .collect();
        // Any order: a later joiner often comes back before an earlier one.
        if !members.is_empty() {
            let k = order.index(members.len());
            members.rotate_left(k);
        }
        if backwards {
            members.reverse();
        }
        let mut healed: Registry<u32> = Registry::new(config());
        for (room, floor, m) in &members {
            let HolderSnapshot::Socket { conn, mode } = &m.holder else { continue };
            healed.connect(conn);
            let restored = healed.restore(conn, room, m.peer.clone(), *mode, *floor, now);
            prop_assert!(restored.is_ok(), "{:?}", restored.err());
        }
        for room in &lost {
            let sockets: Vec<&Peer> = room
                .members
                .iter()
                .filter(|m| matches!(m.holder, HolderSnapshot::Socket { .. }))
                .map(|m| &m.peer)
                .collect();
            let Some(back) = healed.export_room(&room.name) else {
                prop_assert!(sockets.is_empty());
                continue;
            };
            let mut ids: Vec<&str> = back.members.iter().map(|m| m.peer.peer_id.as_str()).collect();
            let mut want: Vec<&str> = sockets.iter().map(|p| p.peer_id.as_str()).collect();
            ids.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(ids, want);
            prop_assert!(back.members.windows(2).all(|w| w[0].peer.joined_at <= w[1].peer.joined_at));
            prop_assert!(back.version > room.version);
            for m in &back.members {
                let HolderSnapshot::Socket { conn, .. } = &m.holder else { continue };
                prop_assert_eq!(healed.membership(conn), Some((room.name.as_str(), m.peer.peer_id.as_str())));
            }
        }
    }
}
