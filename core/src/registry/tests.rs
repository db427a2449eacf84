//! The registry's rules, one behaviour per test, and its invariants over
//! random command sequences.

use super::invariants::Witness;
use super::*;
use crate::error::ErrorCode;
use proptest::prelude::*;
use serde_json::json;

type Reg = Registry<u32>;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn reg(max_peers: usize) -> Reg {
    Registry::new(Config {
        max_peers,
        max_signal_bytes: 32,
        http_peer_ttl_ms: 1_000,
        ice_servers: Vec::new(),
        turn: None,
    })
}

fn raw(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("valid json")
}

fn join_mode(
    r: &mut Reg,
    conn: u32,
    room: &str,
    peer: &str,
    user: &str,
    mode: &str,
) -> Outcome<u32> {
    r.connect(&conn);
    join_open(r, conn, room, peer, user, mode)
}

/// A join as the connection sends it, whether or not it is still open.
fn join_open(
    r: &mut Reg,
    conn: u32,
    room: &str,
    peer: &str,
    user: &str,
    mode: &str,
) -> Outcome<u32> {
    let payload =
        raw(json!({"room_name": room, "peer_id": peer, "username": user, "updates": mode}));
    r.handle(&conn, ClientEvent::JoinRoom, Some(&payload), false, T0)
}

fn join(r: &mut Reg, conn: u32, room: &str, peer: &str, user: &str) -> Outcome<u32> {
    join_mode(r, conn, room, peer, user, "full")
}

fn reply_json(o: &Outcome<u32>) -> serde_json::Value {
    serde_json::to_value(&o.reply.as_ref().expect("a reply").event.payload).expect("serializes")
}

fn reply_name(o: &Outcome<u32>) -> &'static str {
    o.reply.as_ref().expect("a reply").event.name.as_str()
}

fn error_code(o: &Outcome<u32>) -> ErrorCode {
    o.reply
        .as_ref()
        .and_then(Reply::error_body)
        .expect("an error")
        .code
}

fn names(o: &Outcome<u32>) -> Vec<(&'static str, Vec<u32>)> {
    o.deliveries
        .iter()
        .map(|d| (d.event.name.as_str(), d.to.clone()))
        .collect()
}

fn payload(d: &Delivery<u32>) -> serde_json::Value {
    serde_json::to_value(&d.event.payload).expect("serializes")
}

#[test]
fn an_emptied_registry_gives_its_tables_back() {
    // Filled and emptied over and over, maps with removal markers would grow to twice
    // their peak; an emptied registry holds no table at all (`cargo xtask soak`).
    let mut r = reg(10);
    for round in 0..3 {
        for conn in 0..500u32 {
            join(
                &mut r,
                conn,
                &format!("room-{}", conn % 50),
                &format!("p{conn}"),
                "u",
            );
        }
        assert!(r.sessions.capacity() >= 500, "round {round}");
        for conn in 0..500u32 {
            if conn % 2 == 0 {
                r.disconnect(&conn);
            } else {
                r.drop_connection(&conn);
            }
        }
        assert_eq!(
            (
                r.open.capacity(),
                r.sessions.capacity(),
                r.grants.capacity()
            ),
            (0, 0, 0),
            "round {round}"
        );
        assert!(r.rooms.is_empty());
    }
}

#[test]
fn first_join_creates_the_room_at_version_one() {
    let mut r = reg(10);
    let o = join(&mut r, 1, "room", "a", "Alice");
    assert_eq!(reply_name(&o), "join_room_success");
    let j = reply_json(&o);
    assert_eq!(j["version"], 1);
    assert_eq!(j["total_peers"], 1);
    assert_eq!(j["max_peers"], 10);
    assert_eq!(j["peers"][0]["peer_id"], "a");
    assert_eq!(j["peers"][0]["joined_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(j["ice_servers"], json!([]));
    assert_eq!(names(&o), vec![("peer_list_updated", vec![1])]);
    assert_eq!(payload(&o.deliveries[0])["version"], 1);
}

#[test]
fn second_join_is_announced_to_everyone_in_join_order() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "Alice");
    let o = join(&mut r, 2, "room", "b", "Bob");
    assert_eq!(names(&o), vec![("peer_list_updated", vec![1, 2])]);
    let list = payload(&o.deliveries[0]);
    assert_eq!(list["version"], 2);
    assert_eq!(list["peers"][0]["peer_id"], "a");
    assert_eq!(list["peers"][1]["peer_id"], "b");
}

#[test]
fn delta_members_get_peer_joined_and_the_delta_joiner_nothing_more() {
    let mut r = reg(10);
    join_mode(&mut r, 1, "room", "a", "A", "delta");
    let o = join_mode(&mut r, 2, "room", "b", "B", "delta");
    assert_eq!(names(&o), vec![("peer_joined", vec![1])]);
    let d = payload(&o.deliveries[0]);
    assert_eq!(d["peer"]["peer_id"], "b");
    assert_eq!(d["version"], 2);
    assert_eq!(d["total_peers"], 2);
}

#[test]
fn full_and_delta_members_share_a_room() {
    let mut r = reg(10);
    join_mode(&mut r, 1, "room", "a", "A", "delta");
    join(&mut r, 2, "room", "b", "B");
    let o = join(&mut r, 3, "room", "c", "C");
    assert_eq!(
        names(&o),
        vec![("peer_list_updated", vec![2, 3]), ("peer_joined", vec![1])]
    );
}

#[test]
fn leave_tells_the_rest_and_answers_the_leaver() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    join_mode(&mut r, 2, "room", "b", "B", "delta");
    let o = r.leave(&1);
    assert_eq!(reply_json(&o), json!({"room_name": "room", "peer_id": "a"}));
    assert_eq!(names(&o), vec![("peer_left", vec![2])]);
    assert_eq!(payload(&o.deliveries[0])["version"], 3);
}

#[test]
fn leave_when_in_no_room_is_an_error() {
    let mut r = reg(10);
    let o = r.leave(&1);
    assert_eq!(reply_name(&o), "leave_room_error");
    assert_eq!(
        reply_json(&o),
        json!({"error": "Not in any room", "code": "not_in_room"})
    );
}

#[test]
fn the_last_leave_deletes_the_room_and_a_new_one_starts_at_one() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 2, "room", "b", "B");
    r.leave(&1);
    let o = r.leave(&2);
    assert!(o.deliveries.is_empty());
    assert!(r.rooms().is_empty());
    let o = join(&mut r, 1, "room", "a", "A");
    assert_eq!(reply_json(&o)["version"], 1);
}

#[test]
fn disconnect_removes_without_a_reply() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 2, "room", "b", "B");
    let d = r.disconnect(&2);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].to, vec![1]);
    assert_eq!(r.room("room").expect("exists").peer_count, 1);
    assert!(r.disconnect(&2).is_empty());
}

#[test]
fn a_full_room_refuses_newcomers_but_not_its_members() {
    let mut r = reg(2);
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 2, "room", "b", "B");
    let o = join(&mut r, 3, "room", "c", "C");
    assert_eq!(error_code(&o), ErrorCode::RoomFull);
    assert_eq!(reply_json(&o)["error"], "Room room is full (max 2 peers)");
    assert_eq!(reply_json(&o)["room_name"], "room");
    let o = join(&mut r, 2, "room", "b2", "B");
    assert_eq!(reply_name(&o), "join_room_success");
}

#[test]
fn capacity_is_checked_before_peer_id() {
    let mut r = reg(1);
    join(&mut r, 1, "room", "a", "A");
    assert_eq!(
        error_code(&join(&mut r, 2, "room", "a", "A")),
        ErrorCode::RoomFull
    );
}

#[test]
fn a_taken_peer_id_is_refused_and_changes_nothing() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 2, "other", "x", "X");
    let o = join(&mut r, 2, "room", "a", "Mallory");
    assert_eq!(error_code(&o), ErrorCode::PeerIdTaken);
    assert_eq!(reply_json(&o)["error"], "Peer ID a is already in room room");
    assert!(o.deliveries.is_empty());
    assert_eq!(r.membership(&2), Some(("other", "x")));
    assert_eq!(r.room("room").expect("exists").version, 1);
}

#[test]
fn an_identical_rejoin_succeeds_without_a_broadcast() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    let o = join(&mut r, 1, "room", "a", "A");
    assert_eq!(reply_name(&o), "join_room_success");
    assert_eq!(reply_json(&o)["version"], 1);
    assert!(o.deliveries.is_empty());
}

#[test]
fn an_identical_rejoin_can_switch_the_update_mode() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    assert!(
        join_mode(&mut r, 1, "room", "a", "A", "delta")
            .deliveries
            .is_empty()
    );
    let o = join(&mut r, 2, "room", "b", "B");
    assert_eq!(
        names(&o),
        vec![("peer_list_updated", vec![2]), ("peer_joined", vec![1])]
    );
}

#[test]
fn a_rename_updates_the_entry_and_broadcasts() {
    let mut r = reg(10);
    join_mode(&mut r, 1, "room", "a", "A", "delta");
    join(&mut r, 2, "room", "b", "B");
    let o = join_mode(&mut r, 1, "room", "a", "Alice", "delta");
    assert_eq!(reply_json(&o)["version"], 3);
    assert_eq!(reply_json(&o)["peers"][0]["username"], "Alice");
    assert_eq!(names(&o), vec![("peer_list_updated", vec![2])]);
    let o = join(&mut r, 2, "room", "b", "Bob");
    assert_eq!(
        names(&o),
        vec![("peer_list_updated", vec![2]), ("peer_joined", vec![1])]
    );
    assert_eq!(payload(&o.deliveries[1])["peer"]["username"], "Bob");
}

#[test]
fn another_peer_id_in_the_same_room_is_a_leave_then_a_join() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 2, "room", "b", "B");
    let o = join(&mut r, 1, "room", "a2", "A");
    assert_eq!(reply_json(&o)["version"], 4);
    let versions: Vec<_> = o
        .deliveries
        .iter()
        .map(|d| payload(d)["version"].clone())
        .collect();
    assert_eq!(versions, vec![json!(3), json!(4)]);
    assert_eq!(o.deliveries[0].to, vec![2]);
    assert_eq!(o.deliveries[1].to, vec![2, 1]);
}

#[test]
fn moving_rooms_leaves_the_old_one_first() {
    let mut r = reg(10);
    join(&mut r, 1, "one", "a", "A");
    join(&mut r, 2, "one", "b", "B");
    let o = join(&mut r, 1, "two", "a", "A");
    assert_eq!(o.deliveries[0].to, vec![2]);
    assert_eq!(payload(&o.deliveries[0])["room_name"], "one");
    assert_eq!(o.deliveries[1].to, vec![1]);
    assert_eq!(r.membership(&1), Some(("two", "a")));
    assert_eq!(r.room("one").expect("exists").peer_count, 1);
}

#[test]
fn a_refused_join_keeps_the_old_room() {
    let mut r = reg(1);
    join(&mut r, 1, "one", "a", "A");
    join(&mut r, 2, "two", "b", "B");
    assert_eq!(
        error_code(&join(&mut r, 1, "two", "a", "A")),
        ErrorCode::RoomFull
    );
    assert_eq!(r.membership(&1), Some(("one", "a")));
}

#[test]
fn binary_join_is_an_invalid_payload() {
    let mut r = reg(10);
    r.connect(&1);
    let p = raw(json!({"room_name": "r", "peer_id": "p", "username": "u"}));
    let o = r.handle(&1, ClientEvent::JoinRoom, Some(&p), true, T0);
    assert_eq!(reply_name(&o), "join_room_error");
    assert_eq!(error_code(&o), ErrorCode::InvalidPayload);
    assert!(r.rooms().is_empty());
}

#[test]
fn binary_join_names_a_valid_room_and_only_a_valid_one() {
    let mut r = reg(10);
    r.connect(&1);
    // The attachment may sit in any field; the room is named when it is valid.
    let p = raw(
        json!({"room_name": "r", "peer_id": "p", "username": {"_placeholder": true, "num": 0}}),
    );
    let o = r.handle(&1, ClientEvent::JoinRoom, Some(&p), true, T0);
    assert_eq!(error_code(&o), ErrorCode::InvalidPayload);
    assert_eq!(reply_json(&o)["room_name"], "r");
    let p = raw(json!({"room_name": "r", "peer_id": "p", "username": "u"}));
    let o = r.handle(&1, ClientEvent::JoinRoom, Some(&p), true, T0);
    assert_eq!(reply_json(&o)["room_name"], "r");
    for bad in [
        json!({"room_name": {"_placeholder": true, "num": 0}, "peer_id": "p", "username": "u"}),
        json!({"room_name": "a\u{1}", "peer_id": "p", "username": "u"}),
        json!("not an object"),
    ] {
        let p = raw(bad);
        let o = r.handle(&1, ClientEvent::JoinRoom, Some(&p), true, T0);
        assert_eq!(error_code(&o), ErrorCode::InvalidPayload);
        assert!(reply_json(&o).get("room_name").is_none());
    }
    assert!(r.rooms().is_empty());
}

#[test]
fn get_peers_answers_the_current_list() {
    let mut r = reg(10);
    let o = r.get_peers(&1);
    assert_eq!(reply_name(&o), "get_peers_error");
    assert_eq!(error_code(&o), ErrorCode::NotInRoom);
    join(&mut r, 1, "room", "a", "A");
    let o = r.get_peers(&1);
    assert_eq!(reply_name(&o), "peer_list");
    assert_eq!(reply_json(&o)["total_peers"], 1);
}

fn signal(r: &mut Reg, conn: u32, payload: serde_json::Value) -> Outcome<u32> {
    r.connect(&conn);
    let p = raw(payload);
    r.handle(&conn, ClientEvent::Signal, Some(&p), false, T0)
}

#[test]
fn a_signal_goes_to_its_target_only_and_is_acked_silently() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 2, "room", "b", "B");
    join(&mut r, 3, "room", "c", "C");
    let o = signal(&mut r, 1, json!({"to": "b", "data": {"sdp": "x"}}));
    let reply = o.reply.as_ref().expect("ack");
    assert!(!reply.emit);
    assert_eq!(reply_json(&o), json!({"to": "b"}));
    assert_eq!(o.deliveries.len(), 1);
    assert_eq!(o.deliveries[0].to, vec![2]);
    assert_eq!(
        payload(&o.deliveries[0]),
        json!({"room_name": "room", "from": "a", "data": {"sdp": "x"}})
    );
}

#[test]
fn signal_errors_come_in_the_documented_order() {
    let mut r = reg(10);
    let big = "x".repeat(40);
    // invalid_payload before not_in_room
    assert_eq!(
        error_code(&signal(&mut r, 1, json!({"data": 1}))),
        ErrorCode::InvalidPayload
    );
    // not_in_room before payload_too_large
    assert_eq!(
        error_code(&signal(&mut r, 1, json!({"to": "b", "data": big}))),
        ErrorCode::NotInRoom
    );
    join(&mut r, 1, "room", "a", "A");
    // payload_too_large before peer_not_found
    assert_eq!(
        error_code(&signal(&mut r, 1, json!({"to": "zz", "data": big}))),
        ErrorCode::PayloadTooLarge
    );
    let o = signal(&mut r, 1, json!({"to": "zz", "data": 1}));
    assert_eq!(error_code(&o), ErrorCode::PeerNotFound);
    assert_eq!(reply_name(&o), "signal_error");
    assert!(o.reply.as_ref().expect("reply").emit);
}

#[test]
fn signals_do_not_cross_rooms_or_reach_http_peers() {
    let mut r = reg(10);
    join(&mut r, 1, "one", "a", "A");
    join(&mut r, 2, "two", "b", "B");
    assert_eq!(
        error_code(&signal(&mut r, 1, json!({"to": "b", "data": 1}))),
        ErrorCode::PeerNotFound
    );
    let (res, _) = r.http_join("one", &json!({"peer_id": "h", "username": "H"}), T0);
    res.expect("http join");
    assert_eq!(
        error_code(&signal(&mut r, 1, json!({"to": "h", "data": 1}))),
        ErrorCode::PeerNotFound
    );
}

#[test]
fn http_peers_join_renew_and_expire() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    let (res, d) = r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0);
    let ok = res.expect("joined");
    assert_eq!(ok.version, 2);
    assert_eq!(ok.expires_at, T0.plus_ms(1_000).to_rfc3339());
    assert_eq!(d.len(), 1);
    assert_eq!(r.next_expiry(), Some(T0.plus_ms(1_000)));
    // Renewal without a change: no broadcast, later expiry.
    let (res, d) = r.http_join(
        "room",
        &json!({"peer_id": "h", "username": "H"}),
        T0.plus_ms(500),
    );
    assert_eq!(res.expect("renewed").version, 2);
    assert!(d.is_empty());
    assert!(r.expire(T0.plus_ms(1_000)).is_empty());
    // Renewal with a new name: broadcast.
    let (_, d) = r.http_join(
        "room",
        &json!({"peer_id": "h", "username": "Hank"}),
        T0.plus_ms(500),
    );
    assert_eq!(d.len(), 1);
    let d = r.expire(T0.plus_ms(1_500));
    assert_eq!(d.len(), 1);
    assert_eq!(payload(&d[0])["total_peers"], 1);
    assert_eq!(r.next_expiry(), None);
}

#[test]
fn http_join_refuses_socket_held_ids_and_full_rooms() {
    let mut r = reg(2);
    join(&mut r, 1, "room", "a", "A");
    let (res, _) = r.http_join("room", &json!({"peer_id": "a", "username": "A"}), T0);
    let rej = res.expect_err("taken");
    assert_eq!(rej.error.code(), ErrorCode::PeerIdTaken);
    assert_eq!(rej.error.http_status(), 409);
    r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0)
        .0
        .expect("ok");
    let (res, _) = r.http_join("room", &json!({"peer_id": "i", "username": "I"}), T0);
    assert_eq!(res.expect_err("full").error.code(), ErrorCode::RoomFull);
    // The HTTP peer already there renews even in a full room.
    r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0)
        .0
        .expect("renew");
    // A socket cannot take an HTTP peer's id.
    join(&mut r, 3, "x", "y", "Y");
    assert_eq!(
        error_code(&join(&mut r, 3, "room", "h", "H")),
        ErrorCode::RoomFull
    );
}

#[test]
fn http_leave_removes_only_http_peers() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    assert_eq!(
        r.http_leave("room", "a").expect_err("socket").code(),
        ErrorCode::PeerNotFound
    );
    r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0)
        .0
        .expect("ok");
    let d = r.http_leave("room", "h").expect("removed");
    assert_eq!(d[0].to, vec![1]);
    assert_eq!(r.next_expiry(), None);
    assert!(r.http_leave("room", "h").is_err());
}

#[test]
fn an_http_peer_alone_keeps_a_room_alive_until_it_expires() {
    let mut r = reg(10);
    r.http_join("solo", &json!({"peer_id": "h", "username": "H"}), T0)
        .0
        .expect("ok");
    assert_eq!(r.room_count(), 1);
    r.expire(T0.plus_ms(1_000));
    assert_eq!(r.room_count(), 0);
    assert_eq!(
        r.room("solo").expect_err("gone").code(),
        ErrorCode::RoomNotFound
    );
}

#[test]
fn a_closed_connection_cannot_join_so_no_ghost_is_left() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 2, "room", "b", "B");
    r.disconnect(&2);
    // The transport hands over a packet it had queued before the close.
    let o = join_open(&mut r, 2, "other", "b", "B", "full");
    assert!(o.reply.is_none() && o.deliveries.is_empty());
    assert!(r.membership(&2).is_none());
    assert!(
        r.room("other").is_err(),
        "no room made for a dead connection"
    );
    // Never connected at all: the same.
    assert!(
        join_open(&mut r, 9, "room", "z", "Z", "full")
            .reply
            .is_none()
    );
    assert_eq!(r.peer_count(), 1);
}

fn reasons(r: &mut Reg) -> Vec<(String, LeaveReason)> {
    r.take_changes()
        .into_iter()
        .filter_map(|c| match c.kind {
            ChangeKind::PeerLeft { peer_id, reason } => Some((peer_id, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_departure_is_recorded_with_its_reason() {
    let mut r = reg(10);
    let left = |p: &str, why| vec![(p.to_owned(), why)];
    join(&mut r, 9, "room", "keep", "K");
    join(&mut r, 1, "room", "a", "A");
    r.take_changes();
    r.leave(&1);
    assert_eq!(reasons(&mut r), left("a", LeaveReason::Left));
    join(&mut r, 1, "room", "a", "A");
    join(&mut r, 1, "room", "a2", "A");
    assert_eq!(reasons(&mut r), left("a", LeaveReason::Left));
    join(&mut r, 1, "elsewhere", "a2", "A");
    assert_eq!(reasons(&mut r), left("a2", LeaveReason::Moved));
    r.disconnect(&1);
    join(&mut r, 2, "room", "b", "B");
    r.take_changes();
    r.drop_connection(&2);
    assert_eq!(reasons(&mut r), left("b", LeaveReason::Dropped));
    r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0)
        .0
        .expect("joined");
    r.take_changes();
    r.http_leave("room", "h").expect("removed");
    assert_eq!(reasons(&mut r), left("h", LeaveReason::Deleted));
    r.http_join("room", &json!({"peer_id": "h", "username": "H"}), T0)
        .0
        .expect("joined");
    r.take_changes();
    r.expire(T0.plus_ms(1_000));
    assert_eq!(reasons(&mut r), left("h", LeaveReason::Expired));
}

#[test]
fn renewals_and_identical_rejoins_are_not_changes_but_renames_are() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    let started = r.take_changes();
    assert_eq!(started.len(), 2);
    assert_eq!(started[0].kind, ChangeKind::RoomStarted);
    assert!(matches!(&started[1].kind, ChangeKind::PeerJoined(p) if p.peer_id == "a"));
    join(&mut r, 1, "room", "a", "A");
    let body = json!({"peer_id": "h", "username": "H"});
    r.http_join("room", &body, T0).0.expect("joined");
    r.take_changes();
    r.http_join("room", &body, T0).0.expect("renewed");
    assert!(r.take_changes().is_empty());
    join(&mut r, 1, "room", "a", "Alice");
    let renamed = r.take_changes();
    assert_eq!(renamed.len(), 1);
    assert!(matches!(&renamed[0].kind, ChangeKind::PeerUpdated(p) if p.username == "Alice"));
    assert_eq!(renamed[0].version, 3);
}

#[test]
fn the_last_departure_finishes_the_room_at_its_own_version() {
    let mut r = reg(10);
    join(&mut r, 1, "room", "a", "A");
    r.take_changes();
    r.leave(&1);
    let c = r.take_changes();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].version, 2);
    assert_eq!(c[1].kind, ChangeKind::RoomFinished);
    assert_eq!(c[1].version, 2);
}

// ---- Invariants over random command sequences ----

#[derive(Debug, Clone)]
pub(super) enum Op {
    Join {
        conn: u32,
        room: u8,
        peer: u8,
        user: u8,
        delta: bool,
    },
    Connect(u32),
    Leave(u32),
    Disconnect(u32),
    Drop(u32),
    Signal {
        conn: u32,
        to: u8,
    },
    GetPeers(u32),
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
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let conn = 0u32..6;
    prop_oneof![
        4 => (conn.clone(), 0u8..3, 0u8..5, 0u8..2, any::<bool>())
            .prop_map(|(conn, room, peer, user, delta)| Op::Join { conn, room, peer, user, delta }),
        2 => conn.clone().prop_map(Op::Connect),
        1 => conn.clone().prop_map(Op::Leave),
        1 => conn.clone().prop_map(Op::Disconnect),
        1 => conn.clone().prop_map(Op::Drop),
        1 => (conn.clone(), 0u8..5).prop_map(|(conn, to)| Op::Signal { conn, to }),
        1 => conn.prop_map(Op::GetPeers),
        1 => (0u8..3, 0u8..5, 0u8..2).prop_map(|(room, peer, user)| Op::HttpJoin { room, peer, user }),
        1 => (0u8..3, 0u8..5).prop_map(|(room, peer)| Op::HttpLeave { room, peer }),
        1 => (0u16..1500).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_sequences(ops in prop::collection::vec(op(), 1..80)) {
        let mut r = Registry::new(Config { max_peers: 3, max_signal_bytes: 64, http_peer_ttl_ms: 1_000, ice_servers: vec![], turn: None });
        let mut w = Witness::default();
        let mut ledger = Ledger::default();
        let mut now = T0;
        for op in ops {
            match op {
                Op::Join { conn, room, peer, user, delta } => {
                    let mode = if delta { "delta" } else { "full" };
                    let before = r.membership(&conn).map(|(a, b)| (a.to_owned(), b.to_owned()));
                    let open = r.is_open(&conn);
                    let o = join_open(&mut r, conn, &format!("r{room}"), &format!("p{peer}"), &format!("u{user}"), mode);
                    if !open {
                        prop_assert!(o.reply.is_none() && o.deliveries.is_empty(), "a closed connection was answered");
                        prop_assert!(r.membership(&conn).is_none());
                    }
                    if o.reply.as_ref().and_then(Reply::error_body).is_some() {
                        prop_assert!(o.deliveries.is_empty());
                        let after = r.membership(&conn).map(|(a, b)| (a.to_owned(), b.to_owned()));
                        prop_assert_eq!(before, after);
                    }
                    w.outcome(&conn, &o);
                }
                Op::Leave(conn) => {
                    let o = r.leave(&conn);
                    w.outcome(&conn, &o);
                }
                Op::Connect(conn) => r.connect(&conn),
                Op::Disconnect(conn) | Op::Drop(conn) => {
                    let d = if matches!(op, Op::Drop(_)) { r.drop_connection(&conn) } else { r.disconnect(&conn) };
                    w.disconnected(&conn);
                    w.deliveries(&d);
                }
                Op::Signal { conn, to } => {
                    let p = raw(json!({"to": format!("p{to}"), "data": "x"}));
                    let o = r.handle(&conn, ClientEvent::Signal, Some(&p), false, T0);
                    for d in &o.deliveries {
                        prop_assert_eq!(d.to.len(), 1);
                        let target = d.to[0];
                        prop_assert_eq!(r.membership(&target).map(|m| m.0), r.membership(&conn).map(|m| m.0));
                    }
                }
                Op::GetPeers(conn) => {
                    let o = r.get_peers(&conn);
                    if let Payload::PeerList(l) = &o.reply.expect("reply").event.payload {
                        prop_assert_eq!(&l.peers, &r.room(&l.room_name).expect("exists").peers);
                    }
                }
                Op::HttpJoin { room, peer, user } => {
                    let (_, d) = r.http_join(&format!("r{room}"), &json!({"peer_id": format!("p{peer}"), "username": format!("u{user}")}), now);
                    w.deliveries(&d);
                }
                Op::HttpLeave { room, peer } => {
                    if let Ok(d) = r.http_leave(&format!("r{room}"), &format!("p{peer}")) {
                        w.deliveries(&d);
                    }
                }
                Op::Advance(ms) => {
                    now = now.plus_ms(u64::from(ms));
                    let d = r.expire(now);
                    w.deliveries(&d);
                    prop_assert!(r.next_expiry().is_none_or(|at| at > now));
                }
            }
            ledger.apply(&r.take_changes());
            ledger.check(&r);
            w.check(&r);
        }
    }
}

/// The rooms as rebuilt only from the recorded changes.
#[derive(Default)]
struct Ledger {
    rooms: BTreeMap<String, (u64, Vec<String>)>,
}

impl Ledger {
    fn apply(&mut self, changes: &[RoomChange]) {
        for c in changes {
            let name = &c.room_name;
            if c.kind == ChangeKind::RoomStarted {
                assert!(!self.rooms.contains_key(name), "{name} started twice");
                assert_eq!(c.version, 1);
                self.rooms.insert(name.clone(), (0, Vec::new()));
                continue;
            }
            let (version, peers) = self
                .rooms
                .get_mut(name)
                .expect("a change of a started room");
            match &c.kind {
                ChangeKind::RoomFinished => {
                    assert!(peers.is_empty(), "{name} finished with peers");
                    assert_eq!(c.version, *version);
                    self.rooms.remove(name);
                    continue;
                }
                ChangeKind::PeerJoined(p) => {
                    assert!(!peers.contains(&p.peer_id));
                    peers.push(p.peer_id.clone());
                }
                ChangeKind::PeerUpdated(p) => assert!(peers.contains(&p.peer_id)),
                ChangeKind::PeerLeft { peer_id, .. } => {
                    assert!(peers.contains(peer_id));
                    peers.retain(|p| p != peer_id);
                }
                ChangeKind::RoomStarted => unreachable!(),
            }
            assert_eq!(
                c.version,
                *version + 1,
                "{name}: a change skipped or repeated a version"
            );
            *version = c.version;
        }
    }

    /// Every room the ledger holds is the registry's, at the same version with the same peers.
    fn check(&self, r: &Reg) {
        let rebuilt: BTreeMap<String, (u64, Vec<String>)> = self
            .rooms
            .iter()
            .filter(|(_, (_, peers))| !peers.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let actual: BTreeMap<String, (u64, Vec<String>)> = r
            .rooms
            .iter()
            .map(|(k, room)| {
                let ids = room
                    .members
                    .iter()
                    .map(|m| m.peer.peer_id.clone())
                    .collect();
                (k.clone(), (room.version, ids))
            })
            .collect();
        assert_eq!(rebuilt, actual, "the changes do not add up to the rooms");
        assert_eq!(
            self.rooms.len(),
            actual.len(),
            "a room emptied without finishing"
        );
    }
}
