//! The home side's decisions, one per test: routing, per-socket order, local
//! answers, moves, filtering, version order, disconnects.

use super::*;
use crate::cluster::Slot;
use crate::cluster::wire::BatchEvent;
use serde_json::json;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn home() -> Home {
    let mut h = Home::new("n1", Config::default(), 8, 1_000);
    h.connect("s");
    h
}

fn raw(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("json")
}

fn join(room: &str) -> Option<Box<RawValue>> {
    Some(raw(
        json!({"room_name": room, "peer_id": "p", "username": "u"}),
    ))
}

/// The commands among `actions`: (room, req, kind name).
fn sent(actions: &[Action]) -> Vec<(String, u64, &'static str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(c) => Some((
                c.room.clone(),
                c.req,
                match &c.kind {
                    CommandKind::Event { .. } => "event",
                    CommandKind::Disconnect { .. } => "disconnect",
                    CommandKind::MovedOut { .. } => "moved_out",
                    _ => "other",
                },
            )),
            _ => None,
        })
        .collect()
}

fn reply(room: &str, version: u64, req: u64, event: &str, events: Vec<BatchEvent>) -> Batch {
    Batch {
        room: room.into(),
        epoch: 1,
        slot: Some(Slot::Change(version)),
        reply: Some(BatchReply::Socket {
            req,
            sid: "s".into(),
            event: event.into(),
            payload: raw(json!({"version": version})),
            emit: true,
        }),
        events,
    }
}

fn update(room: &str, version: u64, to: &[&str]) -> Batch {
    Batch {
        room: room.into(),
        epoch: 1,
        slot: Some(Slot::Change(version)),
        reply: None,
        events: vec![BatchEvent {
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            event: "peer_list_updated".into(),
            payload: raw(json!({"room_name": room, "version": version})),
        }],
    }
}

/// (sockets, version) of each event emitted.
fn emitted(actions: &[Action]) -> Vec<(Vec<String>, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit { to, payload, .. } => {
                let v: serde_json::Value = serde_json::from_str(payload.get()).expect("json");
                Some((to.clone(), v["version"].as_u64().expect("a version")))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn what_no_room_can_answer_is_answered_here_by_the_registry() {
    let mut h = home();
    let out = h.event(
        "s",
        ClientEvent::JoinRoom,
        Some(raw(json!({"room_name": "r"}))),
        false,
        9,
    );
    let [Action::Answer { reply, .. }] = out.as_slice() else {
        panic!("one local answer: {out:?}");
    };
    assert_eq!(
        reply.error_body().expect("an error").code.as_str(),
        "missing_fields"
    );
    let out = h.event("s", ClientEvent::LeaveRoom, None, false, 9);
    let [Action::Answer { reply, .. }] = out.as_slice() else {
        panic!("one local answer: {out:?}");
    };
    assert_eq!(
        reply.error_body().expect("an error").code.as_str(),
        "not_in_room"
    );
    let out = h.event("s", ClientEvent::JoinRoom, join("r"), true, 9);
    assert!(matches!(out.as_slice(), [Action::Answer { .. }]));
    // An unknown socket: nothing.
    assert!(
        h.event("ghost", ClientEvent::LeaveRoom, None, false, 9)
            .is_empty()
    );
}

#[test]
fn a_join_goes_to_its_room_and_what_follows_waits_for_its_answer() {
    let mut h = home();
    let out = h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    assert_eq!(sent(&out), [("r".to_owned(), 1, "event")]);
    let Action::Send(c) = &out[0] else {
        unreachable!()
    };
    assert_eq!((c.home.as_str(), c.deadline), ("n1", 9));
    // Queued behind the join, even one that could be answered here.
    assert!(
        h.event("s", ClientEvent::GetPeers, None, false, 9)
            .is_empty()
    );
    assert!(
        h.event(
            "s",
            ClientEvent::Signal,
            Some(raw(json!({"to": "x", "data": 1}))),
            false,
            9
        )
        .is_empty()
    );
    let out = h.receive(reply("r", 1, 1, "join_room_success", vec![]), T0, 10);
    assert!(matches!(&out[0], Action::Reply { event, .. } if event == "join_room_success"));
    // Now in r: get_peers goes there, and the signal waits for it.
    assert_eq!(sent(&out[1..]), [("r".to_owned(), 2, "event")]);
    assert_eq!(h.room_of("s"), Some("r"));
    let mut answer = reply("r", 1, 2, "peer_list", vec![]);
    answer.slot = Some(Slot::After(1));
    let out = h.receive(answer, T0, 11);
    assert_eq!(sent(&out), [("r".to_owned(), 3, "event")]);
}

#[test]
fn a_move_leaves_the_old_room_and_its_events_stop() {
    let mut h = home();
    h.connect("t");
    h.event("s", ClientEvent::JoinRoom, join("a"), false, 9);
    h.receive(reply("a", 1, 1, "join_room_success", vec![]), T0, 9);
    h.event("t", ClientEvent::JoinRoom, join("a"), false, 9);
    let mut tj = reply("a", 2, 2, "join_room_success", vec![]);
    tj.reply = Some(BatchReply::Socket {
        req: 2,
        sid: "t".into(),
        event: "join_room_success".into(),
        payload: raw(json!({})),
        emit: true,
    });
    h.receive(tj, T0, 9);
    let out = h.event("s", ClientEvent::JoinRoom, join("b"), false, 9);
    assert_eq!(sent(&out), [("b".to_owned(), 3, "event")]);
    // Until the answer, s is still in a.
    assert_eq!(
        emitted(&h.receive(update("a", 3, &["s", "t"]), T0, 9)),
        [(vec!["s".into(), "t".into()], 3)]
    );
    let out = h.receive(reply("b", 1, 3, "join_room_success", vec![]), T0, 12);
    assert_eq!(sent(&out), [("a".to_owned(), 4, "moved_out")]);
    assert_eq!(h.room_of("s"), Some("b"));
    // a's next change (s leaving) reaches t only.
    assert_eq!(
        emitted(&h.receive(update("a", 4, &["s", "t"]), T0, 9)),
        [(vec!["t".into()], 4)]
    );
    // The same room again: no move.
    h.event("s", ClientEvent::JoinRoom, join("b"), false, 9);
    let out = h.receive(reply("b", 1, 5, "join_room_success", vec![]), T0, 9);
    assert!(sent(&out).is_empty(), "{out:?}");
}

#[test]
fn batches_come_out_in_version_order() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(reply("r", 4, 1, "join_room_success", vec![]), T0, 9);
    assert!(h.receive(update("r", 6, &["s"]), T0, 9).is_empty());
    let out = h.receive(update("r", 5, &["s"]), T0, 9);
    assert_eq!(
        emitted(&out),
        [(vec!["s".into()], 5), (vec!["s".into()], 6)]
    );
    // Stale: dropped.
    assert!(h.receive(update("r", 5, &["s"]), T0, 9).is_empty());
}

#[test]
fn leaving_ends_the_room_here_so_a_new_room_of_that_name_starts_afresh() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(reply("r", 7, 1, "join_room_success", vec![]), T0, 9);
    h.event("s", ClientEvent::LeaveRoom, None, false, 9);
    let out = h.receive(reply("r", 8, 2, "leave_room_success", vec![]), T0, 9);
    assert!(matches!(&out[0], Action::Reply { event, .. } if event == "leave_room_success"));
    assert_eq!(h.room_of("s"), None);
    assert_eq!(h.sequence().expected(&"r".to_owned()), None);
    // Deleted and created again: version 1 is not stale.
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    let out = h.receive(reply("r", 1, 3, "join_room_success", vec![]), T0, 9);
    assert!(matches!(&out[0], Action::Reply { .. }), "{out:?}");
}

#[test]
fn a_batch_sent_after_the_last_member_here_left_does_not_hide_a_new_room_of_that_name() {
    // The one socket here in "r" disconnects; before its owner hears of it, another
    // member leaves and the owner sends that change (version 3) to this node too.
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(reply("r", 2, 1, "join_room_success", vec![]), T0, 9);
    h.disconnect("s", 9);
    assert!(h.receive(update("r", 3, &["s"]), T0, 9).is_empty());
    // The room empties and is created again: its versions start at 1 and reach a new
    // socket here, its own answer and the update of the next join alike.
    h.connect("s");
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    let out = h.receive(reply("r", 1, 3, "join_room_success", vec![]), T0, 9);
    assert!(matches!(&out[0], Action::Reply { .. }), "{out:?}");
    let out = h.receive(update("r", 2, &["s"]), T0, 9);
    assert_eq!(emitted(&out), [(vec!["s".to_owned()], 2)]);
}

#[test]
fn a_disconnect_reaches_its_room_and_the_room_it_was_joining() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("a"), false, 9);
    h.receive(reply("a", 1, 1, "join_room_success", vec![]), T0, 9);
    h.event("s", ClientEvent::JoinRoom, join("b"), false, 9);
    let out = h.disconnect("s", 20);
    assert_eq!(
        sent(&out),
        [
            ("a".to_owned(), 3, "disconnect"),
            ("b".to_owned(), 4, "disconnect")
        ]
    );
    // The join's late answer finds nobody.
    assert!(
        h.receive(reply("b", 1, 2, "join_room_success", vec![]), T0, 9)
            .is_empty()
    );
    assert!(h.disconnect("s", 20).is_empty());
}

#[test]
fn a_moved_answer_sends_the_request_again_and_giving_up_frees_the_socket() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.event("s", ClientEvent::LeaveRoom, None, false, 9);
    let moved = Batch {
        room: "r".into(),
        epoch: 1,
        slot: None,
        reply: Some(BatchReply::Moved { req: 1 }),
        events: vec![],
    };
    assert_eq!(
        sent(&h.receive(moved, T0, 9)),
        [("r".to_owned(), 1, "event")]
    );
    // The adapter answered `unavailable`: the queued leave starts (answered
    // here, as s is in no room).
    let out = h.give_up(1, 9);
    assert!(matches!(out.as_slice(), [Action::Answer { .. }]), "{out:?}");
    assert!(h.give_up(1, 9).is_empty());
}

#[test]
fn a_join_that_succeeds_after_it_was_answered_unavailable_is_undone() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    assert!(h.give_up(1, 9).is_empty());
    let late = h.receive(reply("r", 1, 1, "join_room_success", vec![]), T0, 9);
    assert_eq!(sent(&late), [("r".to_owned(), 2, "disconnect")]);
    assert!(
        !late.iter().any(|a| matches!(a, Action::Reply { .. })),
        "{late:?}"
    );
    assert_eq!(h.room_of("s"), None);
    // A late error changes nothing and needs no undo.
    h.event("s", ClientEvent::JoinRoom, join("q"), false, 9);
    assert!(h.give_up(3, 9).is_empty());
    assert!(
        h.receive(reply("q", 1, 3, "join_room_error", vec![]), T0, 9)
            .is_empty()
    );
}

#[test]
fn a_sockets_grant_travels_with_its_joins_only() {
    let mut h = home();
    let grant = crate::access::Grant {
        exp: 1_700_000_100,
        nbf: None,
        room: Some("r".into()),
        sub: None,
    };
    h.grant("s", grant.clone());
    let out = h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    let Action::Send(c) = &out[0] else {
        panic!("a command")
    };
    assert_eq!(c.grant.as_ref(), Some(&grant));
    let out = h.receive(reply("r", 1, 1, "join_room_success", vec![]), T0, 10);
    assert_eq!(h.room_of("s"), Some("r"));
    assert!(out.iter().all(|a| !matches!(a, Action::Send(_))));
    let out = h.event("s", ClientEvent::GetPeers, None, false, 11);
    let Action::Send(c) = &out[0] else {
        panic!("a command")
    };
    assert_eq!(c.grant, None, "only a join is judged against the token");
    // A socket without a token sends none.
    h.connect("t");
    let out = h.event("t", ClientEvent::JoinRoom, join("r"), false, 12);
    let Action::Send(c) = &out[0] else {
        panic!("a command")
    };
    assert_eq!(c.grant, None);
}

fn success(room: &str, version: u64, req: u64) -> Batch {
    Batch {
        room: room.into(),
        epoch: 1,
        slot: Some(Slot::Change(version)),
        reply: Some(BatchReply::Socket {
            req,
            sid: "s".into(),
            event: "join_room_success".into(),
            payload: raw(json!({
                "room_name": room, "peer_id": "p", "total_peers": 1, "max_peers": 10,
                "version": version, "ice_servers": [],
                "peers": [{"peer_id": "p", "username": "u", "joined_at": "2026-01-01T00:00:00Z"}],
            })),
            emit: true,
        }),
        events: vec![],
    }
}

fn restored(room: &str, version: Option<u64>, req: u64, ok: bool) -> Batch {
    Batch {
        room: room.into(),
        epoch: 2,
        slot: version.map(Slot::Change),
        reply: Some(BatchReply::Restored {
            req,
            sid: "s".into(),
            ok,
        }),
        events: vec![],
    }
}

#[test]
fn a_member_the_room_lost_is_restored_above_what_was_delivered_and_goes_on_from_there() {
    let mut h = home();
    h.event(
        "s",
        ClientEvent::JoinRoom,
        Some(raw(
            json!({"room_name": "r", "peer_id": "p", "username": "u", "updates": "delta"}),
        )),
        false,
        9,
    );
    assert!(h.members(0).is_empty(), "a join in flight is not checked");
    h.receive(success("r", 2, 1), T0, 9);
    h.receive(update("r", 3, &["s"]), T0, 9);
    assert_eq!(h.members(0), [("s".into(), "r".into(), "p".into())]);
    let Some(Action::Send(command)) = h.restore("s", 20) else {
        panic!("a restore");
    };
    let CommandKind::Restore {
        sid,
        peer,
        mode,
        floor,
    } = command.kind
    else {
        panic!("a restore");
    };
    assert_eq!((sid.as_str(), peer.peer_id.as_str(), floor), ("s", "p", 3));
    assert_eq!(peer.joined_at, "2026-01-01T00:00:00Z");
    assert_eq!(mode, UpdateMode::Delta);
    assert!(h.restoring());
    assert!(
        h.members(0).is_empty(),
        "not checked again while it is outstanding"
    );
    // Back at 6 (another member was restored at 5, on another node): the
    // sequence goes on from there, and 7 follows.
    let out = h.receive(restored("r", Some(6), command.req, true), T0, 9);
    assert!(out.is_empty(), "{out:?}");
    assert!(!h.restoring());
    assert_eq!(
        emitted(&h.receive(update("r", 7, &["s"]), T0, 9)),
        [(vec!["s".into()], 7)]
    );
    // Refused: the socket is disconnected (its client joins again).
    let Some(Action::Send(command)) = h.restore("s", 20) else {
        panic!("a restore");
    };
    let out = h.receive(restored("r", None, command.req, false), T0, 9);
    assert!(
        matches!(&out[..], [Action::Disconnect { sid }] if sid == "s"),
        "{out:?}"
    );
    // A restore unanswered past its deadline counts as lost: checked again.
    let _ = h.restore("s", 20);
    assert!(h.members(20).is_empty());
    assert_eq!(h.members(21).len(), 1);
}

#[test]
fn a_member_that_left_is_not_restored() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(success("r", 1, 1), T0, 9);
    h.event("s", ClientEvent::LeaveRoom, None, false, 9);
    h.receive(reply("r", 2, 2, "leave_room_success", vec![]), T0, 9);
    assert!(h.members(0).is_empty());
    assert!(h.restore("s", 9).is_none());
}

#[test]
fn versions_lost_with_redis_are_skipped_once_the_gap_is_due() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(success("r", 1, 1), T0, 9);
    // 2 and 3 were lost; 4 and 5 wait for them.
    assert!(emitted(&h.receive(update("r", 4, &["s"]), T0, 9)).is_empty());
    assert!(emitted(&h.receive(update("r", 5, &["s"]), T0, 9)).is_empty());
    assert!(h.skip_gaps(T0.plus_ms(999), 9).is_empty(), "not due yet");
    let out = h.skip_gaps(T0.plus_ms(1_000), 9);
    assert_eq!(
        emitted(&out),
        [(vec!["s".into()], 4), (vec!["s".into()], 5)]
    );
    assert_eq!(
        emitted(&h.receive(update("r", 6, &["s"]), T0, 9)),
        [(vec!["s".into()], 6)]
    );
    // A lost version seen late is stale.
    assert!(emitted(&h.receive(update("r", 3, &["s"]), T0, 9)).is_empty());
}

#[test]
fn a_join_answered_unavailable_and_listed_after_all_is_undone() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    let _ = h.give_up(1, 9);
    assert_eq!(h.doubtful(), [("s".into(), "r".into())]);
    let undo = h.checked("s", "r", true, 20);
    let Some(Action::Send(command)) = undo else {
        panic!("an undo");
    };
    assert_eq!(command.room, "r");
    assert!(matches!(command.kind, CommandKind::Disconnect { ref sid } if sid == "s"));
    assert!(h.doubtful().is_empty());
    // Not listed: nothing to undo.
    let q = sent(&h.event("s", ClientEvent::JoinRoom, join("q"), false, 9))[0].1;
    let _ = h.give_up(q, 9);
    assert!(h.checked("s", "q", false, 20).is_none());
    assert!(h.doubtful().is_empty());
    // A socket that closes with a doubtful join tells that room too.
    let p = sent(&h.event("s", ClientEvent::JoinRoom, join("p"), false, 9))[0].1;
    let _ = h.give_up(p, 9);
    let out = h.disconnect("s", 9);
    assert_eq!(sent(&out), [("p".to_owned(), p + 1, "disconnect")]);
}

#[test]
fn a_request_moved_more_than_three_times_is_answered_unavailable() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.event("s", ClientEvent::GetPeers, None, false, 9);
    let moved = || Batch {
        room: "r".into(),
        epoch: 1,
        slot: None,
        reply: Some(BatchReply::Moved { req: 1 }),
        events: vec![],
    };
    for _ in 0..MAX_MOVES {
        assert_eq!(
            sent(&h.receive(moved(), T0, 9)),
            [("r".to_owned(), 1, "event")]
        );
    }
    let out = h.receive(moved(), T0, 9);
    let Some(Action::Answer { sid, reply }) = out.first() else {
        panic!("an answer: {out:?}");
    };
    assert_eq!(sid, "s");
    assert_eq!(reply.event.name.as_str(), "join_room_error");
    let body = reply.error_body().expect("an error");
    assert_eq!(body.code, crate::ErrorCode::Unavailable);
    assert_eq!(body.room_name.as_deref(), Some("r"));
    // The next request starts; the join was doubtful.
    assert!(sent(&out).is_empty(), "get_peers is answered here: {out:?}");
    assert!(matches!(out.last(), Some(Action::Answer { .. })));
    assert_eq!(h.doubtful(), [("s".into(), "r".into())]);
}

#[test]
fn a_dropped_socket_leaves_its_room_as_dropped() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(reply("r", 1, 1, "join_room_success", vec![]), T0, 9);
    let out = h.dropped("s", 9);
    let [Action::Send(c)] = &out[..] else {
        panic!("one departure: {out:?}");
    };
    assert_eq!(c.room, "r");
    assert!(matches!(&c.kind, CommandKind::Dropped { sid } if sid == "s"));
    assert!(h.dropped("s", 9).is_empty(), "once");
}

/// A signal ack for socket `s`'s request `req`, with the signal for `to` in the same batch.
fn signal_ack(room: &str, req: u64, to: &str) -> Batch {
    Batch {
        room: room.into(),
        epoch: 1,
        slot: None,
        reply: Some(BatchReply::Socket {
            req,
            sid: "s".into(),
            event: "signal".into(),
            payload: raw(json!({"to": "q"})),
            emit: false,
        }),
        events: vec![BatchEvent {
            to: vec![to.into()],
            event: "signal".into(),
            payload: raw(json!({"room_name": room, "from": "p", "data": 1})),
        }],
    }
}

#[test]
fn a_signal_to_a_socket_of_this_node_is_acked_only_once_queued_for_it() {
    let mut h = home();
    h.connect("t");
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(success("r", 1, 1), T0, 10);
    h.event("t", ClientEvent::JoinRoom, join("r"), false, 9);
    let mut t_joined = success("r", 2, 2);
    if let Some(BatchReply::Socket { sid, .. }) = &mut t_joined.reply {
        *sid = "t".into();
    }
    h.receive(t_joined, T0, 10);
    let out = h.event(
        "s",
        ClientEvent::Signal,
        Some(raw(json!({"to": "q", "data": 1}))),
        false,
        9,
    );
    assert_eq!(sent(&out), [("r".to_owned(), 3, "event")]);

    // Target here, in the room: one Relay, with both answers; nothing emitted besides.
    let out = h.receive(signal_ack("r", 3, "t"), T0, 11);
    assert_eq!(out.len(), 1, "{out:?}");
    let Action::Relay {
        sid,
        to,
        ack,
        refused,
        ..
    } = &out[0]
    else {
        panic!("not a relay: {out:?}")
    };
    assert_eq!((sid.as_str(), to.as_str()), ("s", "t"));
    assert_eq!(ack.get(), r#"{"to":"q"}"#);
    let refused: serde_json::Value = serde_json::from_str(refused.get()).expect("json");
    assert_eq!(refused["code"], "peer_not_found");

    // Target on another node (not a socket here): the owner's ack stands.
    h.event(
        "s",
        ClientEvent::Signal,
        Some(raw(json!({"to": "q", "data": 1}))),
        false,
        9,
    );
    let out = h.receive(signal_ack("r", 4, "elsewhere"), T0, 12);
    assert!(
        matches!(&out[0], Action::Reply { event, emit: false, .. } if event == "signal"),
        "{out:?}"
    );
}

#[test]
fn a_signal_from_another_node_is_answered_to_its_node_once_queued_here() {
    let mut h = home();
    h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    h.receive(success("r", 1, 1), T0, 10);
    let relayed = |to: &str| Batch {
        room: "r".into(),
        epoch: 3,
        slot: None,
        reply: Some(BatchReply::Relay {
            home: "n2".into(),
            req: 7,
            sid: "x".into(),
            ack: raw(json!({"to": "p"})),
        }),
        events: vec![BatchEvent {
            to: vec![to.into()],
            event: "signal".into(),
            payload: raw(json!({"room_name": "r", "from": "q", "data": 1})),
        }],
    };
    let answer = |b: &Batch| match &b.reply {
        Some(BatchReply::Socket {
            req,
            sid,
            event,
            payload,
            emit,
        }) => (
            *req,
            sid.clone(),
            event.clone(),
            payload.get().to_owned(),
            *emit,
        ),
        other => panic!("not a socket answer: {other:?}"),
    };
    // The target is here, in the room: both answers ready, for n2's sender.
    let out = h.receive(relayed("s"), T0, 11);
    assert_eq!(out.len(), 1, "{out:?}");
    let Action::RelayFor {
        to,
        home,
        acked,
        refused,
        ..
    } = &out[0]
    else {
        panic!("not a relay: {out:?}")
    };
    assert_eq!((to.as_str(), home.as_str()), ("s", "n2"));
    assert_eq!(
        answer(acked),
        (
            7,
            "x".into(),
            "signal".into(),
            r#"{"to":"p"}"#.into(),
            false
        )
    );
    let (req, sid, event, payload, emit) = answer(refused);
    assert_eq!(
        (req, sid.as_str(), event.as_str(), emit),
        (7, "x", "signal_error", true)
    );
    assert!(payload.contains("peer_not_found"), "{payload}");
    assert_eq!(
        (acked.slot, acked.epoch, acked.room.as_str()),
        (None, 3, "r")
    );
    // The target is no longer here: refused at once.
    let out = h.receive(relayed("gone"), T0, 12);
    let [Action::Forward { node, batch }] = out.as_slice() else {
        panic!("not a forward: {out:?}")
    };
    assert_eq!(node, "n2");
    assert_eq!(answer(batch).2, "signal_error");
}

#[test]
fn an_event_refused_by_the_rate_is_answered_in_its_turn() {
    let mut h = home();
    let out = h.event("s", ClientEvent::JoinRoom, join("r"), false, 9);
    assert_eq!(sent(&out), [("r".to_owned(), 1, "event")]);
    // Refused while the join is with its owner: it waits for the join's answer.
    assert!(
        h.refused("s", ClientEvent::GetPeers, Error::RateLimited, 9)
            .is_empty()
    );
    let out = h.receive(success("r", 1, 1), T0, 10);
    assert!(matches!(&out[0], Action::Reply { event, .. } if event == "join_room_success"));
    let Action::Answer { sid, reply } = &out[1] else {
        panic!("not an answer: {out:?}")
    };
    assert_eq!(sid, "s");
    assert_eq!(
        reply.error_body().map(|b| b.code),
        Some(crate::ErrorCode::RateLimited)
    );
    assert_eq!(out.len(), 2, "{out:?}");
    // With nothing in flight it is answered at once.
    let out = h.refused("s", ClientEvent::Signal, Error::RateLimited, 11);
    assert!(
        matches!(&out[..], [Action::Answer { reply, .. }] if reply.event.name.as_str() == "signal_error")
    );
}
