//! The registry with access tokens and TURN: a grant is one more input to a
//! join, checked after the fields and before capacity, for sockets and REST.

use super::*;
use crate::access::turn_credential;
use crate::error::ErrorCode;
use serde_json::json;

const T0: Timestamp = Timestamp(1_700_000_000_000);
const EXP: u64 = 1_700_000_060;

fn reg(max_peers: usize, turn: Option<Turn>) -> Registry<u32> {
    Registry::new(Config {
        max_peers,
        max_signal_bytes: 32,
        http_peer_ttl_ms: 1_000,
        ice_servers: vec![IceServer {
            urls: json!("stun:stun.invalid:3478"),
            username: None,
            credential: None,
        }],
        turn,
    })
}

fn grant(room: Option<&str>, sub: Option<&str>) -> Grant {
    Grant {
        exp: EXP,
        nbf: None,
        room: room.map(str::to_owned),
        sub: sub.map(str::to_owned),
    }
}

fn join_at(
    r: &mut Registry<u32>,
    conn: u32,
    payload: serde_json::Value,
    now: Timestamp,
) -> Outcome<u32> {
    let raw = RawValue::from_string(payload.to_string()).expect("json");
    // Every connection of these tests is open (connecting twice is harmless).
    r.connect(&conn);
    r.handle(&conn, ClientEvent::JoinRoom, Some(&raw), false, now)
}

fn join(r: &mut Registry<u32>, conn: u32, room: &str, peer: &str) -> Outcome<u32> {
    join_at(
        r,
        conn,
        json!({"room_name": room, "peer_id": peer, "username": peer}),
        T0,
    )
}

fn error(o: &Outcome<u32>) -> (ErrorCode, String) {
    let body = o
        .reply
        .as_ref()
        .and_then(Reply::error_body)
        .expect("an error");
    (body.code, body.error.clone())
}

fn reply_json(o: &Outcome<u32>) -> serde_json::Value {
    serde_json::to_value(&o.reply.as_ref().expect("a reply").event.payload).expect("serializes")
}

#[test]
fn field_checks_come_before_the_token() {
    let mut r = reg(10, None);
    let mut g = grant(Some("r"), Some("p"));
    g.exp = 0;
    r.grant(&1, g);
    let o = join_at(
        &mut r,
        1,
        json!({"room_name": "x", "peer_id": "", "username": "u"}),
        T0,
    );
    assert_eq!(error(&o).0, ErrorCode::MissingFields);
}

#[test]
fn an_expired_token_refuses_joins_before_room_and_sub() {
    let mut r = reg(10, None);
    r.grant(&1, grant(Some("r"), Some("p")));
    let late = Timestamp(EXP * 1000 + 1);
    let o = join_at(
        &mut r,
        1,
        json!({"room_name": "x", "peer_id": "q", "username": "u"}),
        late,
    );
    assert_eq!(error(&o), (ErrorCode::TokenExpired, "Token expired".into()));
    assert_eq!(reply_json(&o)["room_name"], "x");
    assert!(o.deliveries.is_empty());
    assert_eq!(r.room_count(), 0);
}

#[test]
fn the_room_is_checked_before_the_sub_and_both_before_capacity() {
    let mut r = reg(1, None);
    join(&mut r, 9, "r", "other");
    r.grant(&1, grant(Some("r"), Some("p")));
    assert_eq!(
        error(&join(&mut r, 1, "x", "q")),
        (ErrorCode::Forbidden, "Token does not allow room x".into())
    );
    assert_eq!(
        error(&join(&mut r, 1, "r", "q")),
        (
            ErrorCode::Forbidden,
            "Token does not allow peer_id q".into()
        )
    );
    assert_eq!(error(&join(&mut r, 1, "r", "p")).0, ErrorCode::RoomFull);
}

#[test]
fn a_refused_join_keeps_the_current_membership() {
    let mut r = reg(10, None);
    r.grant(&1, grant(Some("r"), None));
    assert!(
        join(&mut r, 1, "r", "a")
            .reply
            .as_ref()
            .and_then(Reply::error_body)
            .is_none()
    );
    let o = join(&mut r, 1, "elsewhere", "a");
    assert_eq!(error(&o).0, ErrorCode::Forbidden);
    assert_eq!(r.membership(&1), Some(("r", "a")));
}

#[test]
fn membership_outlives_the_token_and_the_grant_goes_with_the_connection() {
    let mut r = reg(10, None);
    r.grant(&1, grant(Some("r"), None));
    join(&mut r, 1, "r", "a");
    // Long after exp, still a member; get_peers still answers.
    let late = Timestamp(EXP * 1000 + 60_000);
    let o = r.get_peers(&1);
    assert_eq!(reply_json(&o)["total_peers"], 1);
    assert_eq!(r.membership(&1), Some(("r", "a")));
    let o = join_at(
        &mut r,
        1,
        json!({"room_name": "r", "peer_id": "a", "username": "a"}),
        late,
    );
    assert_eq!(error(&o).0, ErrorCode::TokenExpired);
    r.disconnect(&1);
    // The same id reused by a new connection carries no old grant.
    assert!(
        join(&mut r, 1, "anywhere", "b")
            .reply
            .as_ref()
            .and_then(Reply::error_body)
            .is_none()
    );
}

#[test]
fn rest_joins_and_deletes_obey_the_grant() {
    let mut r = reg(10, None);
    let g = grant(Some("r"), Some("h"));
    let body = json!({"peer_id": "h", "username": "H"});
    let (res, _) = r.http_join_granted("x", &body, Some(&g), T0);
    let rej = res.expect_err("other room");
    assert_eq!(
        (rej.error.code(), rej.error.http_status()),
        (ErrorCode::Forbidden, 403)
    );
    let (res, _) =
        r.http_join_granted("r", &json!({"peer_id": "i", "username": "I"}), Some(&g), T0);
    assert_eq!(
        res.expect_err("other sub").error.code(),
        ErrorCode::Forbidden
    );
    // A bad body is a 400 before the 403.
    let (res, _) = r.http_join_granted("x", &json!({"peer_id": 1, "username": "I"}), Some(&g), T0);
    assert_eq!(res.expect_err("bad body").error.http_status(), 400);
    r.http_join_granted("r", &body, Some(&g), T0)
        .0
        .expect("allowed");
    r.http_join("r", &json!({"peer_id": "i", "username": "I"}), T0)
        .0
        .expect("no token");
    assert_eq!(
        r.http_leave_granted("r", "i", Some(&g))
            .expect_err("other sub")
            .code(),
        ErrorCode::Forbidden
    );
    // forbidden comes before peer_not_found
    assert_eq!(
        r.http_leave_granted("x", "h", Some(&g))
            .expect_err("other room")
            .code(),
        ErrorCode::Forbidden
    );
    r.http_leave_granted("r", "h", Some(&g)).expect("allowed");
}

#[test]
fn turn_credentials_follow_the_static_ice_servers_in_both_join_answers() {
    let turn = Turn {
        secret: "s".into(),
        urls: vec!["turn:127.0.0.1:3478".into(), "turns:127.0.0.1:5349".into()],
        ttl_secs: 600,
    };
    let mut r = reg(10, Some(turn));
    let j = reply_json(&join(&mut r, 1, "r", "alice"));
    let servers = j["ice_servers"].as_array().expect("a list");
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["urls"], "stun:stun.invalid:3478");
    let user = format!("{}:alice", T0.0 / 1000 + 600);
    assert_eq!(servers[1]["username"], user.as_str());
    assert_eq!(
        servers[1]["credential"],
        turn_credential("s", &user).as_str()
    );
    assert_eq!(
        servers[1]["urls"],
        json!(["turn:127.0.0.1:3478", "turns:127.0.0.1:5349"])
    );
    let (res, _) = r.http_join("r", &json!({"peer_id": "bot", "username": "B"}), T0);
    let ok = res.expect("joined");
    assert_eq!(ok.ice_servers.len(), 2);
    assert_eq!(
        ok.ice_servers[1].username.as_deref(),
        Some(format!("{}:bot", T0.0 / 1000 + 600).as_str())
    );
}

#[test]
fn rest_join_answers_carry_the_static_list_without_turn() {
    let mut r = reg(10, None);
    let (res, _) = r.http_join("r", &json!({"peer_id": "bot", "username": "B"}), T0);
    let ok = res.expect("joined");
    assert_eq!(ok.ice_servers.len(), 1);
    assert!(ok.ice_servers[0].username.is_none());
}
