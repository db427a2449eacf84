//! REST listings in cluster mode, read from `sr:rooms`.
//!
//! Each room's owner writes the room's listing (`RoomInfo` JSON) into the
//! hash `sr:rooms` in the same commit as the change, before anyone hears of
//! it, so every node answers `GET /api/webrtc/rooms[/{room}]` with the same
//! bytes from one `HGETALL` or `HGET`. A Redis that does not answer makes
//! these `unavailable` (503).

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use signalroom_core::Error;

use super::redis::Redis;
use super::scripts::ROOMS_KEY;

/// Every room, keyed by name, as the JSON object the single node answers with.
pub async fn rooms(redis: &Redis) -> Result<String, Error> {
    let mut hgetall = redis::cmd("HGETALL");
    hgetall.arg(ROOMS_KEY);
    let all: BTreeMap<String, String> = redis
        .call("HGETALL rooms", &hgetall)
        .await
        .map_err(|_| Error::Unavailable)?;
    let mut out: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
    for (name, info) in all {
        match RawValue::from_string(info) {
            Ok(raw) => {
                out.insert(name, raw);
            }
            Err(e) => tracing::error!(error = %e, room = %name, "unreadable room listing"),
        }
    }
    serde_json::to_string(&out).map_err(|_| Error::Unavailable)
}

/// One room's listing as JSON, `room_not_found` when there is none.
pub async fn room(redis: &Redis, name: &str) -> Result<String, Error> {
    let mut hget = redis::cmd("HGET");
    hget.arg(ROOMS_KEY).arg(name);
    let info: Option<String> = redis
        .call("HGET rooms", &hget)
        .await
        .map_err(|_| Error::Unavailable)?;
    info.ok_or_else(|| Error::RoomNotFound {
        room_name: name.to_owned(),
    })
}
