//! Access tokens: verifying and minting the HS256 JWTs of `--auth-secret`
//! (docs/protocol.md "Access tokens").
//!
//! This module only turns a token into a [`Grant`] (the claims, as plain
//! values) or a refusal: the signature, the algorithm (HS256 and nothing
//! else, `none` included), `exp` (required) and `nbf` are checked by the
//! jsonwebtoken crate with no leeway. What a grant *allows* (which room,
//! which peer_id, a join after `exp`) is decided by the core, for sockets and
//! REST alike. [`socket`] checks the Socket.IO handshake, [`rest`] the
//! `Authorization: Bearer` header of `/api/webrtc/*`.

pub mod rest;
pub mod socket;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use signalroom_core::{Grant, Timestamp};

/// The one algorithm tokens are signed with.
const ALGORITHM: Algorithm = Algorithm::HS256;

/// Verifies tokens against the server's secret.
#[derive(Clone)]
pub struct Access {
    key: DecodingKey,
    validation: Validation,
}

/// Why a token was refused, in words (for logs and the optional `data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl Access {
    /// A verifier for tokens signed with `secret` (not empty: the flags refuse that).
    pub fn new(secret: &str) -> anyhow::Result<Self> {
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Ok(Self {
            key: DecodingKey::from_secret(secret.as_bytes())?,
            validation,
        })
    }

    /// The token's claims, if it is a valid HS256 token of this secret that
    /// has not expired at `now` and is valid from `now` on.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Grant, Refusal> {
        let data = jsonwebtoken::decode::<Grant>(token, &self.key, &self.validation)
            .map_err(|e| Refusal(describe(e.kind()).to_owned()))?;
        let grant = data.claims;
        // jsonwebtoken compares whole seconds; the core's rule is "after exp".
        if grant.expired(now) {
            return Err(Refusal(describe(&ErrorKind::ExpiredSignature).to_owned()));
        }
        Ok(grant)
    }
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "algorithm not allowed (HS256 only)"
        }
        ErrorKind::MissingRequiredClaim(_) => "token has no exp",
        _ => "malformed token",
    }
}

/// Signs a token for `room` / `peer_id` (either may be left open) valid for
/// `ttl_secs` from `now`: what `signalroom token` prints.
pub fn mint(
    secret: &str,
    room: Option<String>,
    peer_id: Option<String>,
    ttl_secs: u64,
    now: Timestamp,
) -> anyhow::Result<String> {
    let claims = Grant {
        exp: (now.0 / 1000).saturating_add(ttl_secs),
        nbf: None,
        room,
        sub: peer_id,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(ALGORITHM),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes())?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let now = crate::hub::now();
        let t = mint("s", Some("r".into()), Some("p".into()), 60, now).expect("mint");
        let g = Access::new("s")
            .expect("a key")
            .verify(&t, now)
            .expect("valid");
        assert_eq!(g.room.as_deref(), Some("r"));
        assert_eq!(g.sub.as_deref(), Some("p"));
        assert_eq!(g.exp, now.0 / 1000 + 60);
    }

    #[test]
    fn another_secret_garbage_and_old_tokens_are_refused() {
        let now = crate::hub::now();
        let t = mint("s", None, None, 60, now).expect("mint");
        assert!(
            Access::new("other")
                .expect("a key")
                .verify(&t, now)
                .is_err()
        );
        assert!(
            Access::new("s")
                .expect("a key")
                .verify("garbage", now)
                .is_err()
        );
        let old = mint("s", None, None, 60, NOW).expect("mint");
        assert_eq!(
            Access::new("s")
                .expect("a key")
                .verify(&old, now)
                .expect_err("expired")
                .0,
            "token expired"
        );
    }
}
