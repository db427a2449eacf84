//! The owner's steps: what is committed and which node hears what, in which slot.

use super::*;
use crate::registry::ChangeKind;
use serde_json::json;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn owner() -> Owner {
    Owner::new("r", 7, Config::default(), None).expect("an empty owner")
}

fn cmd(home: &str, req: u64, kind: CommandKind) -> Command {
    Command {
        room: "r".into(),
        home: home.into(),
        req,
        deadline: T0.0 + 1_500,
        kind,
        grant: None,
    }
}

fn event(home: &str, sid: &str, req: u64, name: &str, payload: serde_json::Value) -> Command {
    let kind = CommandKind::Event {
        sid: sid.into(),
        event: name.into(),
        payload: Some(RawValue::from_string(payload.to_string()).expect("json")),
        binary: false,
    };
    cmd(home, req, kind)
}

fn join(home: &str, sid: &str, peer: &str) -> Command {
    event(
        home,
        sid,
        1,
        "join_room",
        json!({"room_name": "r", "peer_id": peer, "username": "u"}),
    )
}

/// (node, slot, reply event, [(event, recipients)]) of each batch.
type Shape = (
    String,
    Option<Slot>,
    Option<String>,
    Vec<(String, Vec<String>)>,
);

fn shape(step: &Step) -> Vec<Shape> {
    step.batches
        .iter()
        .map(|(node, b)| {
            let reply = match &b.reply {
                Some(BatchReply::Socket { event, .. }) => Some(event.clone()),
                Some(BatchReply::Moved { .. }) => Some("moved".into()),
                Some(BatchReply::Http { .. }) => Some("http".into()),
                Some(BatchReply::Restored { ok, .. }) => Some(format!("restored {ok}")),
                Some(BatchReply::Relay { home, sid, .. }) => Some(format!("relay to {home} {sid}")),
                None => None,
            };
            let events = b
                .events
                .iter()
                .map(|e| (e.event.clone(), e.to.clone()))
                .collect();
            (node.clone(), b.slot, reply, events)
        })
        .collect()
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn joins_from_two_nodes_reach_both_in_version_order() {
    let mut o = owner();
    let a = o.apply(join("n1", "a", "pa"), T0);
    assert!(matches!(&a.commit, Commit::Changed { info, .. } if info.version == 1));
    assert_eq!(
        shape(&a),
        [(
            s("n1"),
            Some(Slot::Change(1)),
            Some(s("join_room_success")),
            vec![(s("peer_list_updated"), vec![s("a")])]
        )]
    );
    let b = o.apply(join("n2", "b", "pb"), T0);
    assert_eq!(
        shape(&b),
        [
            (
                s("n1"),
                Some(Slot::Change(2)),
                None,
                vec![(s("peer_list_updated"), vec![s("a")])]
            ),
            (
                s("n2"),
                Some(Slot::Change(2)),
                Some(s("join_room_success")),
                vec![(s("peer_list_updated"), vec![s("b")])]
            ),
        ]
    );
    assert_eq!(o.member_nodes(), ["n1", "n2"]);
    assert_eq!(o.version(), 2);
}

#[test]
fn a_taken_peer_id_is_refused_to_its_node_alone_and_changes_nothing() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "p"), T0);
    let step = o.apply(join("n2", "b", "p"), T0);
    assert_eq!(step.commit, Commit::Unchanged);
    assert_eq!(
        shape(&step),
        [(s("n2"), None, Some(s("join_room_error")), vec![])]
    );
    let Some(BatchReply::Socket { payload, .. }) = &step.batches[0].1.reply else {
        panic!("a socket reply");
    };
    assert!(payload.get().contains("peer_id_taken"), "{}", payload.get());
    assert_eq!(o.member_nodes(), ["n1"]);
}

#[test]
fn signals_cross_nodes_without_a_version() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let _ = o.apply(join("n2", "b", "pb"), T0);
    let to_b = event(
        "n1",
        "a",
        3,
        "signal",
        json!({"to": "pb", "data": {"x": 1}}),
    );
    let step = o.apply(to_b, T0);
    assert_eq!(step.commit, Commit::Unchanged);
    // The ack goes with the signal to b's node, which gives it once b took it.
    assert_eq!(
        shape(&step),
        [(
            s("n2"),
            None,
            Some(s("relay to n1 a")),
            vec![(s("signal"), vec![s("b")])]
        )]
    );
    let Some(BatchReply::Relay { req, ack, .. }) = &step.batches[0].1.reply else {
        panic!("a relay");
    };
    assert_eq!((*req, ack.get()), (3, r#"{"to":"pb"}"#));
    assert!(step.batches[0].1.is_signal());
    // A signal between two sockets of one node: one batch, ack and signal.
    let _ = o.apply(join("n1", "c", "pc"), T0);
    let step = o.apply(
        event("n1", "a", 5, "signal", json!({"to": "pc", "data": 1})),
        T0,
    );
    assert_eq!(
        shape(&step),
        [(
            s("n1"),
            None,
            Some(s("signal")),
            vec![(s("signal"), vec![s("c")])]
        )]
    );
    let absent = event("n1", "a", 4, "signal", json!({"to": "zz", "data": 1}));
    let step = o.apply(absent, T0);
    let Some(BatchReply::Socket { event, payload, .. }) = &step.batches[0].1.reply else {
        panic!("a socket reply");
    };
    assert_eq!(event, "signal_error");
    assert!(payload.get().contains("peer_not_found"));
}

#[test]
fn get_peers_is_a_read_after_the_current_version() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let step = o.apply(event("n1", "a", 2, "get_peers", json!({})), T0);
    assert_eq!(
        shape(&step),
        [(s("n1"), Some(Slot::After(1)), Some(s("peer_list")), vec![])]
    );
}

#[test]
fn a_rejoin_under_another_id_sends_the_skipped_version_empty() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let _ = o.apply(join("n2", "b", "pb"), T0);
    let step = o.apply(join("n1", "a", "pz"), T0);
    let slots: Vec<(String, Option<Slot>)> = shape(&step)
        .into_iter()
        .map(|(n, slot, _, _)| (n, slot))
        .collect();
    assert_eq!(
        slots,
        [
            (s("n1"), Some(Slot::Change(3))),
            (s("n1"), Some(Slot::Change(4))),
            (s("n2"), Some(Slot::Change(3))),
            (s("n2"), Some(Slot::Change(4))),
        ]
    );
    assert!(step.batches[0].1.events.is_empty());
    assert!(step.batches[2].1.events.is_empty());
    assert_eq!(step.batches[3].1.events.len(), 2);
}

#[test]
fn the_last_departure_deletes_the_room_and_disconnects_leave_quietly() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let _ = o.apply(join("n2", "b", "pb"), T0);
    let gone = o.apply(
        cmd("n2", 9, CommandKind::Disconnect { sid: "b".into() }),
        T0,
    );
    assert!(matches!(gone.commit, Commit::Changed { .. }));
    assert_eq!(
        shape(&gone),
        [
            (
                s("n1"),
                Some(Slot::Change(3)),
                None,
                vec![(s("peer_list_updated"), vec![s("a")])]
            ),
            (s("n2"), Some(Slot::Change(3)), None, vec![]),
        ]
    );
    let left = o.apply(event("n1", "a", 5, "leave_room", json!({})), T0);
    assert_eq!(left.commit, Commit::Deleted);
    assert_eq!(
        shape(&left),
        [(s("n1"), None, Some(s("leave_room_success")), vec![])]
    );
    assert!(o.is_empty());
}

#[test]
fn a_late_request_is_dropped_a_late_departure_applied_a_failed_commit_rolled_back() {
    let mut o = owner();
    let late = o.apply(join("n1", "a", "pa"), Timestamp(T0.0 + 1_501));
    assert!(late.batches.is_empty());
    assert!(o.is_empty());
    let step = o.apply(join("n1", "a", "pa"), T0);
    o.rollback(step.before);
    assert!(o.is_empty());
    let again = o.apply(join("n1", "a", "pa"), T0);
    assert!(matches!(&again.commit, Commit::Changed { info, .. } if info.version == 1));
    // A departure is applied however late: it cannot be refused.
    let mut gone = cmd("n1", 3, CommandKind::Disconnect { sid: "a".into() });
    gone.deadline = T0.0;
    let step = o.apply(gone, Timestamp(T0.0 + 60_000));
    assert_eq!(step.commit, Commit::Deleted);
    let again = o.apply(join("n1", "a", "pa"), T0);
    assert!(matches!(&again.commit, Commit::Changed { info, .. } if info.version == 1));
    let (snapshot, info) = o.state().expect("the room exists");
    assert_eq!((snapshot.version, info.peer_count), (1, 1));
    o.set_epoch(8);
    let step = o.apply(event("n1", "a", 2, "get_peers", json!({})), T0);
    assert_eq!(step.batches[0].1.epoch, 8);
}

#[test]
fn a_dead_nodes_members_go_one_version_each() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let _ = o.apply(join("n2", "b", "pb"), T0);
    let _ = o.apply(join("n2", "c", "pc"), T0);
    let step = o.remove_node("n2");
    let n1: Vec<Option<Slot>> = step
        .batches
        .iter()
        .filter(|(n, _)| n == "n1")
        .map(|(_, b)| b.slot)
        .collect();
    assert_eq!(n1, [Some(Slot::Change(4)), Some(Slot::Change(5))]);
    assert_eq!(o.member_nodes(), ["n1"]);
    let moved = Owner::moved(&join("n1", "a", "pa"), 7);
    assert!(matches!(moved.reply, Some(BatchReply::Moved { req: 1 })));
}

#[test]
fn http_peers_join_and_leave_through_the_owner_and_expire_there() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let body = json!({"room_name": "r", "peer_id": "h", "username": "H"});
    let step = o.apply(cmd("n2", 5, CommandKind::HttpJoin { body }), T0);
    assert!(matches!(&step.commit, Commit::Changed { info, .. } if info.peer_count == 2));
    // n1's member hears of it in order; n2 gets its REST answer outside the sequence.
    assert_eq!(
        shape(&step),
        [
            (
                s("n1"),
                Some(Slot::Change(2)),
                None,
                vec![(s("peer_list_updated"), vec![s("a")])]
            ),
            (s("n2"), None, Some(s("http")), vec![]),
        ]
    );
    let Some(BatchReply::Http { req, status, body }) = &step.batches[1].1.reply else {
        panic!("an http reply");
    };
    assert_eq!((*req, *status), (5, 200));
    assert!(body.get().contains(r#""peer_id":"h""#), "{}", body.get());
    let taken = json!({"room_name": "r", "peer_id": "pa", "username": "x"});
    let step = o.apply(cmd("n2", 6, CommandKind::HttpJoin { body: taken }), T0);
    assert!(matches!(
        step.batches[0].1.reply,
        Some(BatchReply::Http { status: 409, .. })
    ));
    let expiry = o.next_expiry().expect("a lease");
    assert_eq!(expiry.0, T0.0 + Config::default().http_peer_ttl_ms);
    assert!(o.expire(T0).batches.is_empty());
    let expired = o.expire(expiry);
    assert_eq!(
        shape(&expired),
        [(
            s("n1"),
            Some(Slot::Change(3)),
            None,
            vec![(s("peer_list_updated"), vec![s("a")])]
        )]
    );
    let gone = o.apply(
        cmd(
            "n3",
            7,
            CommandKind::HttpLeave {
                peer_id: "h".into(),
            },
        ),
        T0,
    );
    assert!(matches!(
        gone.batches[0].1.reply,
        Some(BatchReply::Http { status: 404, .. })
    ));
}

fn grant(exp_secs: u64, room: Option<&str>, sub: Option<&str>) -> crate::access::Grant {
    crate::access::Grant {
        exp: exp_secs,
        nbf: None,
        room: room.map(str::to_owned),
        sub: sub.map(str::to_owned),
    }
}

/// The code of a step's socket or REST error answer, with its status for REST.
fn refusal(step: &Step) -> String {
    let text = match &step.batches.last().expect("an answer").1.reply {
        Some(BatchReply::Socket { payload, .. }) => payload.get().to_owned(),
        Some(BatchReply::Http { status, body, .. }) => format!("{status} {}", body.get()),
        _ => panic!("an answer"),
    };
    let code = |c: &str| text.contains(&format!(r#""code":"{c}""#));
    let found = [
        "missing_fields",
        "token_expired",
        "forbidden",
        "room_full",
        "peer_id_taken",
    ]
    .into_iter()
    .find(|c| code(c))
    .unwrap_or("none");
    match text.split_once(' ') {
        Some((status, _)) if status.parse::<u16>().is_ok() => format!("{status} {found}"),
        _ => found.to_owned(),
    }
}

#[test]
fn a_joins_grant_is_judged_by_the_owner_in_the_single_node_order() {
    let config = Config {
        max_peers: 1,
        ..Config::default()
    };
    let mut o = Owner::new("r", 7, config, None).expect("an empty owner");
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let exp = T0.0 / 1000 + 60;
    let with = |mut c: Command, g| {
        c.grant = Some(g);
        c
    };
    // Fields first, then the token's room, then its sub, then capacity / peer_id.
    let empty = event(
        "n2",
        "b",
        1,
        "join_room",
        json!({"room_name": "r", "peer_id": "", "username": "u"}),
    );
    let step = o.apply(with(empty, grant(exp, Some("x"), Some("y"))), T0);
    assert_eq!(refusal(&step), "missing_fields");
    let step = o.apply(
        with(join("n2", "b", "pa"), grant(exp, Some("x"), Some("y"))),
        T0,
    );
    assert_eq!(refusal(&step), "forbidden");
    let Some(BatchReply::Socket { payload, .. }) = &step.batches[0].1.reply else {
        panic!("a socket reply");
    };
    assert!(
        payload.get().contains("Token does not allow room r"),
        "{}",
        payload.get()
    );
    let step = o.apply(
        with(join("n2", "b", "pa"), grant(exp, Some("r"), Some("y"))),
        T0,
    );
    assert!(
        refusal(&step) == "forbidden"
            && format!("{:?}", step.batches[0].1.reply).contains("peer_id pa")
    );
    let step = o.apply(
        with(join("n2", "b", "pb"), grant(exp, Some("r"), Some("pb"))),
        T0,
    );
    assert_eq!(refusal(&step), "room_full");
    // `exp` is judged with the owner's now: a join after it is `token_expired`.
    let late = Timestamp(exp * 1000 + 1);
    let mut expired = with(join("n2", "b", "pb"), grant(exp, Some("r"), Some("pb")));
    expired.deadline = late.0 + 1_500;
    assert_eq!(refusal(&o.apply(expired, late)), "token_expired");
    assert!(
        o.apply(join("n2", "c", "pz"), T0).changes.is_empty(),
        "refused: no change"
    );
}

#[test]
fn a_grant_allows_what_it_names_and_rest_requests_carry_theirs() {
    let mut o = owner();
    let exp = T0.0 / 1000 + 60;
    let mut ok = join("n2", "b", "pb");
    ok.grant = Some(grant(exp, Some("r"), Some("pb")));
    assert!(matches!(o.apply(ok, T0).commit, Commit::Changed { .. }));
    let body = json!({"peer_id": "h", "username": "H"});
    let mut refused = cmd("n3", 5, CommandKind::HttpJoin { body: body.clone() });
    refused.grant = Some(grant(exp, Some("r"), Some("other")));
    assert_eq!(refusal(&o.apply(refused, T0)), "403 forbidden");
    let mut joined = cmd("n3", 6, CommandKind::HttpJoin { body });
    joined.grant = Some(grant(exp, Some("r"), Some("h")));
    assert!(matches!(o.apply(joined, T0).commit, Commit::Changed { .. }));
    let leave = |g| {
        let mut c = cmd(
            "n3",
            7,
            CommandKind::HttpLeave {
                peer_id: "h".into(),
            },
        );
        c.grant = Some(g);
        c
    };
    assert_eq!(
        refusal(&o.apply(leave(grant(exp, Some("x"), None)), T0)),
        "403 forbidden"
    );
    assert!(matches!(
        o.apply(leave(grant(exp, Some("r"), Some("h"))), T0).commit,
        Commit::Changed { .. }
    ));
}

#[test]
fn each_committed_step_carries_the_room_changes_its_webhooks_tell() {
    use crate::registry::{ChangeKind, LeaveReason};
    let mut o = owner();
    let kinds = |step: &Step| -> Vec<(u64, &'static str)> {
        step.changes
            .iter()
            .map(|c| (c.version, c.kind.event_name()))
            .collect()
    };
    let a = o.apply(join("n1", "a", "pa"), T0);
    assert_eq!(kinds(&a), [(1, "room_started"), (1, "peer_joined")]);
    let b = o.apply(join("n2", "b", "pb"), T0);
    assert_eq!(kinds(&b), [(2, "peer_joined")]);
    assert!(
        o.apply(event("n1", "a", 3, "get_peers", json!({})), T0)
            .changes
            .is_empty()
    );
    let dead = o.remove_node("n2");
    assert_eq!(kinds(&dead), [(3, "peer_left")]);
    assert!(matches!(
        &dead.changes[0].kind,
        ChangeKind::PeerLeft { peer_id, reason: LeaveReason::Dropped } if peer_id == "pb"
    ));
    let last = o.apply(
        cmd("n1", 4, CommandKind::Disconnect { sid: "a".into() }),
        T0,
    );
    assert_eq!(kinds(&last), [(4, "peer_left"), (4, "room_finished")]);
    assert_eq!(last.commit, Commit::Deleted);
    // A rolled-back step's changes are the adapter's to drop; nothing is left over.
    let again = o.apply(join("n1", "a", "pa"), T0);
    o.rollback(again.before);
    assert!(
        o.apply(event("n1", "a", 6, "get_peers", json!({})), T0)
            .changes
            .is_empty()
    );
}

fn restore(home: &str, sid: &str, req: u64, peer: &str, joined_at: &str, floor: u64) -> Command {
    let kind = CommandKind::Restore {
        sid: sid.into(),
        peer: crate::protocol::Peer {
            peer_id: peer.into(),
            username: "u".into(),
            joined_at: joined_at.into(),
        },
        mode: crate::protocol::UpdateMode::Full,
        floor,
    };
    cmd(home, req, kind)
}

#[test]
fn a_room_lost_by_the_cluster_is_restored_above_every_floor_in_join_order() {
    let mut o = owner();
    // Made again for n2's member, above the last version n2 delivered (3).
    let b = o.apply(restore("n2", "b", 1, "pb", "2026-01-01T00:00:02Z", 3), T0);
    assert!(matches!(&b.commit, Commit::Changed { info, .. } if info.version == 4));
    let last = b.batches.last().expect("a batch");
    assert_eq!(last.0, "n2");
    assert_eq!(last.1.slot, Some(Slot::Change(4)));
    assert!(matches!(
        &last.1.reply,
        Some(BatchReply::Restored { req: 1, ok: true, sid }) if sid == "b"
    ));
    // n3's member joined earlier: it goes first, and n2's member hears of it.
    let c = o.apply(restore("n3", "c", 2, "pc", "2026-01-01T00:00:01Z", 3), T0);
    assert_eq!(
        shape(&c),
        [
            (
                s("n2"),
                Some(Slot::Change(5)),
                None,
                vec![(s("peer_list_updated"), vec![s("b")])]
            ),
            (
                s("n3"),
                Some(Slot::Change(5)),
                Some(s("restored true")),
                vec![(s("peer_list_updated"), vec![s("c")])]
            ),
        ]
    );
    let Some((snapshot, info)) = o.state() else {
        panic!("a room");
    };
    let ids: Vec<&str> = info.peers.iter().map(|p| p.peer_id.as_str()).collect();
    assert_eq!(ids, ["pc", "pb"]);
    assert_eq!(snapshot.version, 5);
    // Again: a no-op, still answered.
    let again = o.apply(restore("n3", "c", 3, "pc", "2026-01-01T00:00:01Z", 3), T0);
    assert_eq!(again.commit, Commit::Unchanged);
    assert_eq!(
        shape(&again),
        [(s("n3"), None, Some(s("restored true")), vec![])]
    );
    // A restore is applied however late: its socket lived on all along.
    let mut late = restore("n1", "d", 4, "pd", "2026-01-01T00:00:03Z", 0);
    late.deadline = T0.0 - 1;
    assert!(matches!(o.apply(late, T0).commit, Commit::Changed { .. }));
}

#[test]
fn a_restore_whose_peer_id_was_taken_is_refused_and_changes_nothing() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "p"), T0);
    let step = o.apply(restore("n2", "b", 2, "p", "2026-01-01T00:00:00Z", 7), T0);
    assert_eq!(step.commit, Commit::Unchanged);
    assert_eq!(
        shape(&step),
        [(s("n2"), None, Some(s("restored false")), vec![])]
    );
    assert_eq!(o.member_nodes(), ["n1"]);
    assert_eq!(o.version(), 1);
}

#[test]
fn a_stopping_nodes_members_are_disconnected_one_version_each() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let delta = json!({"room_name": "r", "peer_id": "pb", "username": "u", "updates": "delta"});
    let _ = o.apply(event("n2", "b", 1, "join_room", delta), T0);
    let _ = o.apply(join("n1", "c", "pc"), T0);
    let step = o.disconnect_node("n1");
    assert!(matches!(&step.commit, Commit::Changed { info, .. } if info.version == 5));
    let to_n2: Vec<&Batch> = step
        .batches
        .iter()
        .filter(|(n, _)| n == "n2")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(to_n2.len(), 2);
    assert_eq!(to_n2[1].slot, Some(Slot::Change(5)));
    let texts: Vec<&str> = to_n2[1].events.iter().map(|e| e.payload.get()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains(r#""peer_id":"pa""#), "{texts:?}");
    assert!(texts[0].contains(r#""version":4"#), "{texts:?}");
    assert!(texts[1].contains(r#""peer_id":"pc""#) && texts[1].contains(r#""version":5"#));
    assert_eq!(o.member_nodes(), ["n2"]);
    // Its webhooks and metrics: each departure, reason `disconnected`.
    let left: Vec<(u64, String)> = step
        .changes
        .iter()
        .map(|c| match &c.kind {
            ChangeKind::PeerLeft { peer_id, reason } => {
                (c.version, format!("{peer_id} {}", reason.as_str()))
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        left,
        [(4, "pa disconnected".into()), (5, "pc disconnected".into())]
    );
}

/// A mix of changes and signals from three nodes, for the group tests.
fn mixed() -> Vec<Command> {
    let signal = |home: &str, sid: &str, req: u64, to: &str, n: u64| {
        event(
            home,
            sid,
            req,
            "signal",
            json!({"to": to, "data": {"n": n}}),
        )
    };
    vec![
        join("n1", "a", "pa"),
        join("n2", "b", "pb"),
        signal("n1", "a", 2, "pb", 1),
        join("n3", "c", "pc"),
        signal("n2", "b", 2, "pa", 2),
        signal("n1", "a", 3, "pc", 3),
        event("n2", "b", 3, "get_peers", json!({})),
        cmd("n3", 9, CommandKind::Disconnect { sid: "c".into() }),
        signal("n1", "a", 4, "pb", 4),
        join("n1", "a", "pa"),
        signal("n2", "b", 4, "pc", 5),
    ]
}

#[test]
fn a_group_commits_what_one_by_one_would_in_the_same_order() {
    let mut one = owner();
    let mut each = Vec::new();
    let mut last = Commit::Unchanged;
    for c in mixed() {
        let step = one.apply(c, T0);
        if step.commit != Commit::Unchanged {
            last = step.commit.clone();
        }
        each.extend(shape(&step));
    }
    let mut grouped = owner();
    let mut queue: std::collections::VecDeque<Command> = mixed().into();
    let step = grouped.apply_group(&mut queue, 64, T0);
    assert!(queue.is_empty());
    // The webhooks of every change of the group, in order.
    let mut again = owner();
    let changes: Vec<_> = mixed()
        .into_iter()
        .flat_map(|c| again.apply(c, T0).changes)
        .collect();
    assert!(changes.len() >= 4, "{changes:?}");
    assert_eq!(step.changes, changes);
    // Every batch, signals between changes included, in the same order for
    // every node, and the last state written once.
    assert_eq!(shape(&step), each);
    assert_eq!(step.commit, last);
    assert!(matches!(&step.commit, Commit::Changed { info, .. } if info.version == 4));
    assert_eq!(grouped.state(), one.state());
    // A failed commit puts back the room as it was before the whole group.
    assert_eq!(step.before, None);
    grouped.rollback(step.before);
    assert!(grouped.is_empty());
}

#[test]
fn a_group_is_bounded_and_ends_with_the_step_that_empties_the_room() {
    let mut o = owner();
    let mut queue: std::collections::VecDeque<Command> = mixed().into();
    let first = o.apply_group(&mut queue, 2, T0);
    assert_eq!(queue.len(), mixed().len() - 2);
    assert!(matches!(&first.commit, Commit::Changed { info, .. } if info.version == 2));
    let before = o.state().map(|(s, _)| s);
    let second = o.apply_group(&mut queue, 64, T0);
    assert_eq!(second.before, before);
    let mut queue: std::collections::VecDeque<Command> = vec![
        event("n1", "a", 5, "leave_room", json!({})),
        cmd("n2", 9, CommandKind::Disconnect { sid: "b".into() }),
        join("n2", "b", "pb"),
    ]
    .into();
    let gone = o.apply_group(&mut queue, 64, T0);
    assert_eq!(gone.commit, Commit::Deleted);
    assert!(o.is_empty());
    // The join after the room went is left for its next owner.
    assert_eq!(queue.len(), 1);
    // Nothing to apply: nothing to commit.
    let none = o.apply_group(&mut std::collections::VecDeque::new(), 64, T0);
    assert!(none.batches.is_empty() && none.commit == Commit::Unchanged);
}

#[test]
fn a_step_carries_what_it_changed_for_the_owner_to_count() {
    let mut o = owner();
    let kinds = |step: &Step| -> Vec<String> {
        step.changes
            .iter()
            .map(|c| match &c.kind {
                ChangeKind::RoomStarted => s("started"),
                ChangeKind::PeerJoined(p) => format!("joined {}", p.peer_id),
                ChangeKind::PeerUpdated(p) => format!("updated {}", p.peer_id),
                ChangeKind::PeerLeft { peer_id, reason } => {
                    format!("left {peer_id} {}", reason.as_str())
                }
                ChangeKind::RoomFinished => s("finished"),
            })
            .collect()
    };
    let a = o.apply(join("n1", "a", "pa"), T0);
    assert_eq!(kinds(&a), [s("started"), s("joined pa")]);
    assert_eq!(o.peer_count(), 1);
    let b = o.apply(join("n2", "b", "pb"), T0);
    assert_eq!(kinds(&b), [s("joined pb")]);
    // A refused join (peer_id taken) and a read change nothing.
    let taken = o.apply(join("n2", "c", "pa"), T0);
    assert!(kinds(&taken).is_empty());
    let read = o.apply(event("n1", "a", 2, "get_peers", json!({})), T0);
    assert!(kinds(&read).is_empty());
    assert_eq!(o.peer_count(), 2);
    let dead = o.remove_node("n2");
    assert_eq!(kinds(&dead), [s("left pb dropped")]);
    let gone = o.apply(
        cmd("n1", 3, CommandKind::Disconnect { sid: "a".into() }),
        T0,
    );
    assert_eq!(kinds(&gone), [s("left pa disconnected"), s("finished")]);
    assert_eq!(o.peer_count(), 0);
}

#[test]
fn a_socket_its_node_dropped_leaves_with_the_reason_dropped() {
    let mut o = owner();
    let _ = o.apply(join("n1", "a", "pa"), T0);
    let _ = o.apply(join("n2", "b", "pb"), T0);
    let step = o.apply(cmd("n2", 9, CommandKind::Dropped { sid: "b".into() }), T0);
    let left: Vec<String> = step
        .changes
        .iter()
        .map(|c| match &c.kind {
            ChangeKind::PeerLeft { peer_id, reason } => format!("{peer_id} {}", reason.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(left, ["pb dropped"]);
    assert_eq!(o.peer_count(), 1);
}

#[test]
fn a_groups_deadline_is_the_earliest_of_the_requests_it_applied_not_of_those_dropped_as_late() {
    // The requests of a burst cut by a Redis hang reach the owner after
    // their deadline, in one group with a request made since: they are
    // dropped, and must not make the commit of the fresh one late.
    let now = Timestamp(T0.0 + 10_000);
    let fresh = |c: Command| Command {
        deadline: now.0 + 1_500,
        ..c
    };
    let mut o = owner();
    o.apply(join("n1", "a", "pa"), T0);
    let mut queue: std::collections::VecDeque<Command> = vec![
        join("n2", "b", "pb"),
        event("n1", "a", 2, "get_peers", json!({})),
        fresh(join("n2", "z", "pz")),
        join("n1", "c", "pc"),
    ]
    .into();
    let step = o.apply_group(&mut queue, 64, now);
    assert!(queue.is_empty());
    assert!(
        matches!(&step.commit, Commit::Changed { info, .. } if info.version == 2 && info.peer_count == 2),
        "{:?}",
        step.commit
    );
    assert_eq!(step.deadline, Some(now.0 + 1_500));
    // Of several requests applied, the earliest counts.
    let mut queue: std::collections::VecDeque<Command> = vec![
        Command {
            deadline: now.0 + 900,
            ..join("n1", "y", "py")
        },
        fresh(join("n2", "x", "px")),
    ]
    .into();
    assert_eq!(
        o.apply_group(&mut queue, 64, now).deadline,
        Some(now.0 + 900)
    );
    // Departures are applied however late: they set no deadline.
    let mut queue: std::collections::VecDeque<Command> = vec![
        cmd("n1", 9, CommandKind::Disconnect { sid: "y".into() }),
        cmd("n2", 9, CommandKind::MovedOut { sid: "x".into() }),
    ]
    .into();
    let departures = o.apply_group(&mut queue, 64, now);
    assert_ne!(departures.commit, Commit::Unchanged);
    assert_eq!(departures.deadline, None);
}

#[test]
fn a_lost_commit_is_undone_only_once_it_can_no_longer_run() {
    let wrote = Some("{\"v\":2}");
    // Found what it wrote: it ran, whenever.
    assert_eq!(
        read_back(wrote, wrote, 5_000, Some(1_000)),
        ReadBack::Stands
    );
    assert_eq!(read_back(None, None, 0, Some(1_000)), ReadBack::Stands);
    // Not there yet, before its deadline: the script may still run.
    let old = Some("{\"v\":1}");
    assert_eq!(read_back(wrote, old, 999, Some(1_000)), ReadBack::Wait);
    assert_eq!(read_back(wrote, old, 1_000, Some(1_000)), ReadBack::Wait);
    assert_eq!(read_back(None, old, 1_000, Some(1_000)), ReadBack::Wait);
    // Past it: the script would answer `late` and write nothing.
    assert_eq!(read_back(wrote, old, 1_001, Some(1_000)), ReadBack::Undone);
    assert_eq!(read_back(wrote, None, 1_001, Some(1_000)), ReadBack::Undone);
    // No deadline: what was found decides.
    assert_eq!(read_back(wrote, old, 0, None), ReadBack::Undone);
}
