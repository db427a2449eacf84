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
    assert_eq!(
        shape(&step),
        [
            (s("n1"), None, Some(s("signal")), vec![]),
            (s("n2"), None, None, vec![(s("signal"), vec![s("b")])]),
        ]
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
