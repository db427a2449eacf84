//! Who may do what: the rules of access tokens and the TURN credentials
//! handed to joiners (docs/protocol.md "Access tokens", "TURN credentials").
//!
//! Decoding and verifying a token's signature is the server's business (it
//! holds the secret and the JWT library); what the verified claims *allow* is
//! decided here, once, for Socket.IO and REST alike: a [`Grant`] is one more
//! input to a join, a listing or a delete. The TURN credential is a pure
//! function of the secret, the peer and `now`, so it lives here too and is
//! tested without a clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use crate::error::Error;
use crate::protocol::IceServer;
use crate::time::Timestamp;

/// The claims of a verified access token, as plain values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Grant {
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The only room the token may join, see or change; `None`: any room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The only peer_id the token may join or delete as; `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl Grant {
    /// Whether the token's `exp` has passed at `now` (a join *after* `exp` is refused).
    pub fn expired(&self, now: Timestamp) -> bool {
        now.0 > self.exp.saturating_mul(1000)
    }

    /// May the holder join `room_name` as `peer_id` at `now`? Checked in the
    /// protocol's order: `token_expired`, then the room, then the peer_id.
    pub fn allows_join(&self, room_name: &str, peer_id: &str, now: Timestamp) -> Result<(), Error> {
        if self.expired(now) {
            return Err(Error::TokenExpired);
        }
        self.allows_room(room_name)?;
        self.allows_peer(peer_id)
    }

    /// May the holder see or change `room_name`?
    pub fn allows_room(&self, room_name: &str) -> Result<(), Error> {
        match &self.room {
            Some(room) if room != room_name => Err(Error::ForbiddenRoom {
                room_name: room_name.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// May the holder act as `peer_id`?
    pub fn allows_peer(&self, peer_id: &str) -> Result<(), Error> {
        match &self.sub {
            Some(sub) if sub != peer_id => Err(Error::ForbiddenPeer {
                peer_id: peer_id.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// May the holder list every room? Only a token not tied to one room.
    pub fn allows_listing(&self) -> Result<(), Error> {
        match &self.room {
            Some(_) => Err(Error::ForbiddenListing),
            None => Ok(()),
        }
    }

    /// May the holder remove the HTTP peer `peer_id` of `room_name`?
    pub fn allows_delete(&self, room_name: &str, peer_id: &str) -> Result<(), Error> {
        self.allows_room(room_name)?;
        self.allows_peer(peer_id)
    }
}

/// Checks an optional grant: no grant (tokens off) allows everything.
pub fn check(
    grant: Option<&Grant>,
    rule: impl FnOnce(&Grant) -> Result<(), Error>,
) -> Result<(), Error> {
    grant.map_or(Ok(()), rule)
}

/// The TURN REST API settings (coturn's `use-auth-secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The secret shared with the TURN server; never sent to anyone.
    pub secret: String,
    /// The TURN server's URLs (`turn:host:3478`, `turns:...`).
    pub urls: Vec<String>,
    /// How long a credential is valid, in seconds.
    pub ttl_secs: u64,
}

impl Turn {
    /// The ICE server entry for `peer_id` at `now`: username `<expiry>:<peer_id>`
    /// and credential base64(HMAC-SHA1(secret, username)).
    pub fn ice_server(&self, peer_id: &str, now: Timestamp) -> IceServer {
        let expiry = (now.0 / 1000).saturating_add(self.ttl_secs);
        let username = format!("{expiry}:{peer_id}");
        IceServer {
            urls: serde_json::Value::from(self.urls.clone()),
            credential: Some(turn_credential(&self.secret, &username)),
            username: Some(username),
        }
    }
}

/// base64(HMAC-SHA1(secret, username)), as coturn computes it.
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const NOW: Timestamp = Timestamp(1_700_000_000_500);

    fn grant(room: Option<&str>, sub: Option<&str>) -> Grant {
        Grant {
            exp: 1_700_000_100,
            nbf: None,
            room: room.map(str::to_owned),
            sub: sub.map(str::to_owned),
        }
    }

    #[test]
    fn an_unrestricted_grant_allows_any_room_and_peer() {
        let g = grant(None, None);
        assert!(g.allows_join("any", "one", NOW).is_ok());
        assert!(g.allows_listing().is_ok());
        assert!(g.allows_delete("r", "p").is_ok());
    }

    #[test]
    fn expiry_comes_first_then_room_then_peer() {
        let mut g = grant(Some("r"), Some("p"));
        g.exp = 1_700_000_000;
        let late = Timestamp(1_700_000_000_001);
        assert_eq!(
            g.allows_join("other", "q", late).expect_err("refused"),
            Error::TokenExpired
        );
        assert!(
            g.allows_join("r", "p", Timestamp(1_700_000_000_000))
                .is_ok()
        );
        let g = grant(Some("r"), Some("p"));
        let e = g.allows_join("other", "q", NOW).expect_err("refused");
        assert_eq!(e.to_string(), "Token does not allow room other");
        assert_eq!(e.code(), ErrorCode::Forbidden);
        let e = g.allows_join("r", "q", NOW).expect_err("refused");
        assert_eq!(e.to_string(), "Token does not allow peer_id q");
        assert_eq!(e.code(), ErrorCode::Forbidden);
        assert!(g.allows_join("r", "p", NOW).is_ok());
    }

    #[test]
    fn a_room_token_may_not_list_every_room() {
        assert_eq!(
            grant(Some("r"), None)
                .allows_listing()
                .expect_err("refused")
                .code(),
            ErrorCode::Forbidden
        );
        assert!(grant(Some("r"), None).allows_room("r").is_ok());
    }

    #[test]
    fn delete_is_bound_by_room_and_sub() {
        let g = grant(Some("r"), Some("p"));
        assert!(g.allows_delete("r", "p").is_ok());
        assert!(g.allows_delete("r", "q").is_err());
        assert!(g.allows_delete("s", "p").is_err());
    }

    #[test]
    fn no_grant_allows_everything() {
        assert!(check(None, |g| g.allows_listing()).is_ok());
        let g = grant(Some("r"), None);
        assert!(check(Some(&g), |g| g.allows_listing()).is_err());
    }

    #[test]
    fn turn_credential_matches_rfc_2202_hmac_sha1() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        // HMAC-SHA1 = effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        assert_eq!(
            turn_credential("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn turn_entry_uses_expiry_colon_peer_and_a_url_list() {
        let turn = Turn {
            secret: "s3cret".into(),
            urls: vec!["turn:127.0.0.1:3478".into()],
            ttl_secs: 86_400,
        };
        let e = turn.ice_server("alice", NOW);
        assert_eq!(e.username.as_deref(), Some("1700086400:alice"));
        assert_eq!(e.urls, serde_json::json!(["turn:127.0.0.1:3478"]));
        assert_eq!(
            e.credential.as_deref(),
            Some(turn_credential("s3cret", "1700086400:alice").as_str())
        );
    }
}
