//! Fuzz target: the validation of what clients send (`signalroom_core::validate`):
//! `join_room` and `signal` payloads as JSON text, and REST join bodies with
//! their path room. Input: the path room, a newline, then the payload text.
//! Whatever the input, parsing must not panic, an accepted join must satisfy
//! the protocol's limits, and a rejection's `room_name` must itself be valid.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use signalroom_core::validate::{
    JoinRequest, MAX_ID_BYTES, MAX_USERNAME_CHARS, Rejection, compact_json_len, parse_http_join,
    parse_join, parse_join_text, parse_signal,
};

fn valid_id(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_ID_BYTES
}

fn check(result: &Result<JoinRequest, Rejection>) {
    match result {
        Ok(req) => {
            assert!(
                valid_id(&req.room_name),
                "accepted room_name {:?}",
                req.room_name
            );
            assert!(valid_id(&req.peer_id), "accepted peer_id {:?}", req.peer_id);
            assert!(!req.username.trim().is_empty(), "accepted a blank username");
            assert!(
                req.username.chars().count() <= MAX_USERNAME_CHARS,
                "accepted a long username"
            );
        }
        Err(r) => {
            if let Some(room) = &r.room_name {
                assert!(
                    valid_id(room),
                    "a rejection echoes an invalid room_name {room:?}"
                );
            }
            let body = r.error.body(r.room_name.as_deref());
            serde_json::to_string(&body).expect("an error body serializes");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, payload) = text.split_once('\n').unwrap_or(("room", text));
    let raw = RawValue::from_string(payload.to_owned()).ok();
    let join = parse_join_text(raw.as_deref());
    check(&join);
    // The text path and the value path agree wherever serde holds the value.
    if let Ok(value) = serde_json::from_str::<Value>(payload) {
        assert_eq!(
            parse_join(Some(&value)),
            join,
            "text and value parsing disagree"
        );
        let http = parse_http_join(path, &value);
        check(&http);
        if let Ok(req) = &http {
            assert_eq!(
                req.room_name, path,
                "a REST join into another room than its path"
            );
        }
    }
    if let Ok(signal) = parse_signal(raw.as_deref()) {
        assert!(!signal.to.trim().is_empty(), "a signal to a blank peer id");
        let text = signal.data.get();
        let len = compact_json_len(signal.data);
        assert!(len > 0, "data of size zero");
        // Compact text is measured as it is relayed, byte for byte. (Text
        // with white space is measured as serde re-serializes it, which also
        // normalizes numbers: `0e400` counts as `0.0`.)
        if !text.bytes().any(|b| b.is_ascii_whitespace()) {
            assert_eq!(len, text.len(), "compact data measured other than as sent");
        }
    }
});
