//! Who the client is: the TCP peer's address, or, when the peer is one of the
//! `--trusted-proxy` addresses, the first address of `X-Forwarded-For` (the
//! client as the first proxy saw it). The per-IP limits key on this address.
//! Anyone can write the header, so it is believed only from a trusted peer.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;

/// A trusted proxy: one address, or a CIDR block such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("expected an IP address or CIDR block, got {text:?}"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("bad prefix length in {text:?} (0-{max})")),
            },
        };
        Ok(Self { net, prefix })
    }
}

impl TrustedProxy {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client's address for the per-IP limits.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[TrustedProxy]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|t| t.contains(peer)) {
        return peer;
    }
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.trim().parse::<IpAddr>().ok())
        .map_or(peer, |ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("a header value"));
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_peer() {
        let trusted = [
            "10.0.0.0/8".parse().expect("cidr"),
            "::1".parse().expect("ip"),
        ];
        let h = headers("203.0.113.7, 10.1.1.1");
        assert_eq!(client_ip(ip("10.2.3.4"), &h, &trusted), ip("203.0.113.7"));
        assert_eq!(client_ip(ip("::1"), &h, &trusted), ip("203.0.113.7"));
        assert_eq!(client_ip(ip("192.0.2.1"), &h, &trusted), ip("192.0.2.1"));
        assert_eq!(
            client_ip(ip("10.2.3.4"), &HeaderMap::new(), &trusted),
            ip("10.2.3.4")
        );
        assert_eq!(
            client_ip(ip("10.2.3.4"), &headers("junk"), &trusted),
            ip("10.2.3.4")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn bad_proxies_are_refused() {
        for bad in ["", "10.0.0.0/33", "::/129", "example.org", "10.0.0.1/x"] {
            assert!(bad.parse::<TrustedProxy>().is_err(), "{bad}");
        }
        assert!("0.0.0.0/0".parse::<TrustedProxy>().is_ok());
    }
}
