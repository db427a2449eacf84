//! Parsing and checking what clients send, before anything changes.
//!
//! `join_room` is checked row by row as the protocol's table says: each row
//! over all three fields (room_name, peer_id, username) before the next row,
//! so the first failing row reports its first failing field.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, Field};
use crate::protocol::UpdateMode;

/// The most bytes (UTF-8) a `room_name` or `peer_id` may have.
pub const MAX_ID_BYTES: usize = 128;
/// The most characters (Unicode scalar values) a `username` may have.
pub const MAX_USERNAME_CHARS: usize = 64;

const FIELDS: [Field; 3] = ["room_name", "peer_id", "username"];

/// A checked `join_room` (or REST join) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The room to join.
    pub room_name: String,
    /// The peer id to hold in it.
    pub peer_id: String,
    /// The display name.
    pub username: String,
    /// How the joiner wants to hear of changes.
    pub updates: UpdateMode,
}

/// A refused request: the error, and the room it named when that name was valid
/// (error payloads echo it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub error: Error,
    /// The request's room, when valid.
    pub room_name: Option<String>,
}

impl Rejection {
    fn new(error: Error, room_name: Option<String>) -> Self {
        Self { error, room_name }
    }
}

/// Checks a `join_room` payload (`None` when the event carried none).
pub fn parse_join(payload: Option<&Value>) -> Result<JoinRequest, Rejection> {
    let Some(Value::Object(map)) = payload else {
        return Err(Rejection::new(Error::NotAnObject, None));
    };
    let values = FIELDS.map(|f| map.get(f));
    let room_name = match values[0] {
        Some(Value::String(s)) if check_field(FIELDS[0], s).is_ok() && !is_blank(s) => {
            Some(s.clone())
        }
        _ => None,
    };
    let reject = |error| Err(Rejection::new(error, room_name.clone()));

    let missing: Vec<Field> = FIELDS
        .iter()
        .zip(values)
        .filter(|(_, v)| match v {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => is_blank(s),
            Some(_) => false,
        })
        .map(|(f, _)| *f)
        .collect();
    if !missing.is_empty() {
        return reject(Error::MissingFields { missing });
    }
    let mut strings = [""; 3];
    for (i, field) in FIELDS.iter().enumerate() {
        match values[i] {
            Some(Value::String(s)) => strings[i] = s,
            _ => return reject(Error::NotAString { field }),
        }
    }
    for (field, value) in FIELDS.iter().zip(strings) {
        if let Some(max) = too_long(field, value) {
            return reject(Error::TooLong { field, max });
        }
    }
    for (field, value) in FIELDS.iter().zip(strings) {
        if value.chars().any(char::is_control) {
            return reject(Error::ControlCharacters { field });
        }
    }
    let updates = match map.get("updates") {
        Some(Value::String(s)) if s == "delta" => UpdateMode::Delta,
        _ => UpdateMode::Full,
    };
    Ok(JoinRequest {
        room_name: strings[0].to_owned(),
        peer_id: strings[1].to_owned(),
        username: strings[2].to_owned(),
        updates,
    })
}

/// Checks a `join_room` payload given as the client's JSON text.
///
/// Valid JSON that serde cannot hold as a value (a number like `1e400`, a
/// lone surrogate escape) still leaves an object an object: such a field is
/// reported as the wrong type, in the table's order, not the whole payload.
pub fn parse_join_text(payload: Option<&RawValue>) -> Result<JoinRequest, Rejection> {
    let Some(raw) = payload else {
        return parse_join(None);
    };
    if let Ok(value) = serde_json::from_str::<Value>(raw.get()) {
        return parse_join(Some(&value));
    }
    let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
        return parse_join(None);
    };
    let object = fields
        .into_iter()
        .map(|(k, v)| {
            // Not a string, whatever it was meant to be.
            let v = serde_json::from_str::<Value>(v.get()).unwrap_or(Value::Array(Vec::new()));
            (k, v)
        })
        .collect();
    parse_join(Some(&Value::Object(object)))
}

/// Checks a REST join: the room comes from the path; a `room_name` in the body
/// (other than `null`) must name the same room.
pub fn parse_http_join(path_room: &str, body: &Value) -> Result<JoinRequest, Rejection> {
    let Value::Object(map) = body else {
        return Err(Rejection::new(Error::NotAnObject, None));
    };
    let mut merged = map.clone();
    match map.get("room_name") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == path_room => {}
        Some(other) => {
            let valid_path = check_field("room_name", path_room).is_ok() && !is_blank(path_room);
            return Err(Rejection::new(
                Error::RoomMismatch {
                    body: other.to_string(),
                    path: path_room.to_owned(),
                },
                valid_path.then(|| path_room.to_owned()),
            ));
        }
    }
    merged.insert("room_name".into(), Value::String(path_room.to_owned()));
    let mut request = parse_join(Some(&Value::Object(merged)))?;
    request.updates = UpdateMode::Full;
    Ok(request)
}

/// A checked `signal`: the target and the data, still as the client's JSON text.
#[derive(Debug, Clone)]
pub struct SignalRequest<'a> {
    /// The target peer id.
    pub to: String,
    /// The data to relay.
    pub data: &'a RawValue,
}

/// Checks a `signal` payload's shape: an object with a non-empty string `to` and some `data`.
pub fn parse_signal(payload: Option<&RawValue>) -> Result<SignalRequest<'_>, Error> {
    let invalid = |reason| Error::InvalidSignal { reason };
    let raw = payload.ok_or(invalid("expected an object {to, data}"))?;
    let map: BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| invalid("expected an object {to, data}"))?;
    let to = map.get("to").ok_or(invalid("missing field to"))?;
    let to = match serde_json::from_str::<Value>(to.get()) {
        Ok(Value::String(s)) if !is_blank(&s) => s,
        _ => return Err(invalid("field to must be a non-empty string")),
    };
    let data = map
        .get("data")
        .copied()
        .ok_or(invalid("missing field data"))?;
    Ok(SignalRequest { to, data })
}

/// The size of `data` serialized as compact JSON, in UTF-8 bytes.
///
/// The client's text is usually compact already (JSON.stringify is), so its
/// length is the answer unless it could hold insignificant white space.
pub fn compact_json_len(data: &RawValue) -> usize {
    let text = data.get();
    if !text
        .bytes()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        return text.len();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => value.to_string().len(),
        Err(_) => text.len(),
    }
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn too_long(field: Field, value: &str) -> Option<usize> {
    if field == "username" {
        (value.chars().count() > MAX_USERNAME_CHARS).then_some(MAX_USERNAME_CHARS)
    } else {
        (value.len() > MAX_ID_BYTES).then_some(MAX_ID_BYTES)
    }
}

fn check_field(field: Field, value: &str) -> Result<(), ()> {
    if too_long(field, value).is_some() || value.chars().any(char::is_control) {
        Err(())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    fn join(v: Value) -> Result<JoinRequest, Rejection> {
        parse_join(Some(&v))
    }

    fn code(v: Value) -> (ErrorCode, String) {
        let r = join(v).expect_err("must be refused");
        (r.error.code(), r.error.to_string())
    }

    #[test]
    fn a_valid_join_is_accepted_as_given() {
        let r =
            join(json!({"room_name": "r", "peer_id": "p", "username": " Alice "})).expect("valid");
        assert_eq!(r.username, " Alice ");
        assert_eq!(r.updates, UpdateMode::Full);
    }

    #[test]
    fn delta_is_asked_for_with_updates_delta_only() {
        let base = json!({"room_name": "r", "peer_id": "p", "username": "u", "updates": "delta"});
        assert_eq!(join(base).expect("valid").updates, UpdateMode::Delta);
        let other = json!({"room_name": "r", "peer_id": "p", "username": "u", "updates": "Delta"});
        assert_eq!(join(other).expect("valid").updates, UpdateMode::Full);
    }

    #[test]
    fn non_objects_are_invalid_payloads() {
        for v in [json!(null), json!("x"), json!([1]), json!(3)] {
            assert_eq!(code(v).0, ErrorCode::InvalidPayload);
        }
        let r = parse_join(None).expect_err("absent payload");
        assert_eq!(r.error.to_string(), "Invalid payload: expected an object");
    }

    #[test]
    fn missing_fields_lists_absent_null_and_blank_in_order() {
        let r = join(json!({"room_name": " \u{3000}", "username": null})).expect_err("missing");
        assert_eq!(
            r.error,
            Error::MissingFields {
                missing: vec!["room_name", "peer_id", "username"]
            }
        );
        let r = join(json!({"room_name": "r", "peer_id": "p"})).expect_err("missing");
        assert_eq!(
            r.error,
            Error::MissingFields {
                missing: vec!["username"]
            }
        );
        assert_eq!(r.room_name.as_deref(), Some("r"));
    }

    #[test]
    fn missing_is_checked_before_types() {
        let (c, _) = code(json!({"room_name": 5, "peer_id": "", "username": "u"}));
        assert_eq!(c, ErrorCode::MissingFields);
    }

    #[test]
    fn wrong_types_name_the_first_field() {
        let (c, text) = code(json!({"room_name": "r", "peer_id": 7, "username": true}));
        assert_eq!(c, ErrorCode::InvalidField);
        assert_eq!(text, "Field peer_id must be a string");
    }

    #[test]
    fn lengths_count_bytes_for_ids_and_characters_for_names() {
        let ok = "é".repeat(64); // 128 bytes
        assert!(join(json!({"room_name": ok, "peer_id": "p", "username": "ü".repeat(64)})).is_ok());
        let (_, text) =
            code(json!({"room_name": "r", "peer_id": "x".repeat(129), "username": "u"}));
        assert_eq!(text, "Field peer_id is too long (max 128)");
        let (_, text) = code(json!({"room_name": "r", "peer_id": "p", "username": "ü".repeat(65)}));
        assert_eq!(text, "Field username is too long (max 64)");
    }

    #[test]
    fn length_row_comes_before_control_row() {
        let (_, text) =
            code(json!({"room_name": "a\u{1}", "peer_id": "p", "username": "u".repeat(65)}));
        assert_eq!(text, "Field username is too long (max 64)");
    }

    #[test]
    fn control_characters_are_refused_c0_del_and_c1() {
        for bad in ["a\u{0}", "a\nb", "\u{7f}", "x\u{85}", "\u{9f}"] {
            let (_, text) = code(json!({"room_name": "r", "peer_id": "p", "username": bad}));
            assert_eq!(text, "Field username contains control characters");
        }
    }

    #[test]
    fn invalid_room_name_is_not_echoed() {
        let r =
            join(json!({"room_name": "a\u{1}", "peer_id": "p", "username": "u"})).expect_err("bad");
        assert_eq!(r.room_name, None);
        let r = join(json!({"room_name": "ok", "peer_id": "p\u{1}", "username": "u"}))
            .expect_err("bad");
        assert_eq!(r.room_name.as_deref(), Some("ok"));
    }

    #[test]
    fn unrepresentable_field_values_are_wrong_types_not_bad_payloads() {
        for text in [
            r#"{"room_name":1e400,"peer_id":"p","username":"u"}"#,
            r#"{"room_name":"\ud800","peer_id":"p","username":"u"}"#,
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).expect("valid json text");
            let r = parse_join_text(Some(&raw)).expect_err("refused");
            assert_eq!(
                r.error.to_string(),
                "Field room_name must be a string",
                "{text}"
            );
        }
        let raw: Box<RawValue> = serde_json::from_str(r#"[1e400]"#).expect("json");
        assert_eq!(
            parse_join_text(Some(&raw)).expect_err("refused").error,
            Error::NotAnObject
        );
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"room_name":"r","peer_id":"p","username":"u"}"#)
                .expect("json");
        assert!(parse_join_text(Some(&raw)).is_ok());
    }

    #[test]
    fn http_join_takes_the_room_from_the_path() {
        let r = parse_http_join(
            "room",
            &json!({"peer_id": "p", "username": "u", "room_name": null}),
        )
        .expect("valid");
        assert_eq!(r.room_name, "room");
        let r = parse_http_join(
            "room",
            &json!({"peer_id": "p", "username": "u", "room_name": "other"}),
        )
        .expect_err("mismatch");
        assert_eq!(r.error.code(), ErrorCode::RoomMismatch);
        let r = parse_http_join("room", &json!([])).expect_err("not an object");
        assert_eq!(r.error.code(), ErrorCode::InvalidPayload);
    }

    fn signal(text: &str) -> Result<(String, String), Error> {
        let raw: Box<RawValue> = serde_json::from_str(text).expect("json");
        parse_signal(Some(&raw)).map(|s| (s.to, s.data.get().to_owned()))
    }

    #[test]
    fn signal_needs_an_object_with_to_and_data() {
        assert_eq!(
            signal(r#"{"to":"b","data":null}"#).expect("ok"),
            ("b".into(), "null".into())
        );
        for bad in [
            r#"[]"#,
            r#""x""#,
            r#"{"data":1}"#,
            r#"{"to":"","data":1}"#,
            r#"{"to":5,"data":1}"#,
            r#"{"to":"b"}"#,
        ] {
            assert_eq!(
                signal(bad).expect_err(bad).code(),
                ErrorCode::InvalidPayload,
                "{bad}"
            );
        }
        assert!(parse_signal(None).is_err());
    }

    #[test]
    fn compact_length_ignores_insignificant_white_space() {
        let raw: Box<RawValue> = serde_json::from_str(r#"{ "a" : [1, 2] }"#).expect("json");
        assert_eq!(compact_json_len(&raw), r#"{"a":[1,2]}"#.len());
        let raw: Box<RawValue> = serde_json::from_str(r#"{"a":"x y"}"#).expect("json");
        assert_eq!(compact_json_len(&raw), r#"{"a":"x y"}"#.len());
    }
}
