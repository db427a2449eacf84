//! The connection count behind `--max-connections` and
//! `--max-connections-per-ip`, and the watch on new polling sessions that
//! `--handshake-timeout` closes when they never poll.
//!
//! What is counted, as the protocol says: Engine.IO sessions plus TCP
//! connections not yet in one. A TCP connection is counted from its accept;
//! it stops counting when it carries a request of a session (then the session
//! counts) and when it closes. A WebSocket session is its TCP connection, so it
//! stays counted through that connection. A polling session has no connection
//! of its own: it is counted by its id, from the handshake that created it
//! until its socket disconnects (or, if it never sent its Socket.IO CONNECT,
//! until the connect timeout has closed it). Only a request that would create
//! a session is ever refused; a request of an existing session never is.
//!
//! One `std::sync::Mutex` guards the book: every operation is a few map
//! updates, and none awaits while holding it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use signalroom_core::Error;
use socketioxide::socket::Sid;

/// The counts and the polling sessions under watch.
#[derive(Debug, Default)]
pub struct Book {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Counted TCP connections (not yet in a session, or a WebSocket session),
    /// with their client address once their first request told it.
    conns: HashMap<u64, Option<IpAddr>>,
    polling: HashMap<Sid, Polling>,
}

#[derive(Debug)]
struct Polling {
    ip: IpAddr,
    created: Instant,
    /// It polled or began its WebSocket upgrade.
    polled: bool,
    /// Its Socket.IO socket connected.
    connected: bool,
    /// Already told to disconnect for never polling.
    closing: bool,
}

/// The caps, 0 meaning none.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// The whole server's.
    pub total: usize,
    /// One address's.
    pub per_ip: usize,
}

impl Book {
    /// A TCP connection was accepted.
    pub fn open(&mut self, conn: u64) {
        self.conns.insert(conn, None);
        self.total += 1;
    }

    /// A TCP connection closed, or it joined a session (which counts instead).
    pub fn release(&mut self, conn: u64) {
        if let Some(ip) = self.conns.remove(&conn) {
            self.total = self.total.saturating_sub(1);
            if let Some(ip) = ip {
                self.forget_ip(ip);
            }
            tidy(&mut self.conns);
        }
    }

    /// A counted connection's first request named its client.
    pub fn identify(&mut self, conn: u64, ip: IpAddr) {
        if let Some(slot @ None) = self.conns.get_mut(&conn) {
            *slot = Some(ip);
            *self.per_ip.entry(ip).or_default() += 1;
        }
    }

    /// Whether `conn` may create a new session for `ip`: the others, not
    /// counting this connection itself, must be under the caps.
    pub fn admit(&self, conn: u64, ip: IpAddr, caps: Caps) -> Result<(), Error> {
        let mine = self.conns.get(&conn);
        let total = self.total - usize::from(mine.is_some());
        if caps.total > 0 && total >= caps.total {
            return Err(Error::ServerFull);
        }
        let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0)
            - usize::from(mine.is_some_and(|m| *m == Some(ip)));
        if caps.per_ip > 0 && from_ip >= caps.per_ip {
            return Err(Error::TooManyConnections);
        }
        Ok(())
    }

    /// A polling handshake on `conn` created session `sid`.
    pub fn polling_created(&mut self, conn: u64, sid: Sid, ip: IpAddr, now: Instant) {
        self.release(conn);
        self.total += 1;
        *self.per_ip.entry(ip).or_default() += 1;
        self.polling.insert(
            sid,
            Polling {
                ip,
                created: now,
                polled: false,
                connected: false,
                closing: false,
            },
        );
    }

    /// A request naming session `sid` arrived on `conn`: a poll or an upgrade
    /// (`first_poll`), or a POST. Only a session that exists takes the
    /// connection over; a made-up `sid` leaves the connection counted.
    pub fn session_request(&mut self, conn: u64, sid: Option<Sid>, first_poll: bool) {
        let Some(p) = sid.and_then(|sid| self.polling.get_mut(&sid)) else {
            return;
        };
        if first_poll {
            p.polled = true;
        }
        self.release(conn);
    }

    /// A Socket.IO socket connected.
    pub fn socket_connected(&mut self, sid: Sid) {
        if let Some(p) = self.polling.get_mut(&sid) {
            p.connected = true;
        }
    }

    /// A Socket.IO socket disconnected.
    pub fn socket_gone(&mut self, sid: Sid) {
        if let Some(p) = self.polling.remove(&sid) {
            self.total = self.total.saturating_sub(1);
            self.forget_ip(p.ip);
            tidy(&mut self.polling);
        }
    }

    /// Sessions that never polled within `handshake` (to disconnect), and
    /// forgets those that never connected within `connect` (the engine has
    /// closed them by then).
    pub fn sweep(
        &mut self,
        now: Instant,
        handshake: Option<Duration>,
        connect: Duration,
    ) -> Vec<Sid> {
        let mut kick = Vec::new();
        let mut gone = Vec::new();
        for (sid, p) in &mut self.polling {
            let age = now.saturating_duration_since(p.created);
            if !p.connected && age > connect + Duration::from_secs(1) {
                gone.push(*sid);
            } else if let Some(limit) = handshake
                && p.connected
                && !p.polled
                && !p.closing
                && age >= limit
            {
                p.closing = true;
                kick.push(*sid);
            }
        }
        for sid in gone {
            self.socket_gone(sid);
        }
        kick
    }

    /// Everything counted: sessions plus connections not in one.
    pub fn total(&self) -> usize {
        self.total
    }

    fn forget_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// Gives back most of a map's table once it holds under a quarter of what the table
/// can: deletion markers would otherwise make a map that fills and drains over and over
/// grow to twice its peak, and a map drained to a few entries (a keep-alive connection
/// that outlives its burst) would keep the table of its peak. Shrinking to twice the
/// entries leaves room to grow again, so a map never shrinks more often than it halves.
fn tidy<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.len() * 4 < map.capacity() && (map.is_empty() || map.capacity() > 16) {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn caps(total: usize, per_ip: usize) -> Caps {
        Caps { total, per_ip }
    }

    #[test]
    fn emptied_maps_give_their_tables_back() {
        let mut b = Book::default();
        let now = Instant::now();
        let sids: Vec<Sid> = (0..300u64)
            .map(|conn| {
                b.open(conn);
                b.identify(conn, A);
                let sid = Sid::new();
                b.polling_created(conn, sid, A, now);
                sid
            })
            .collect();
        for (conn, sid) in sids.into_iter().enumerate() {
            b.release(conn as u64);
            b.socket_gone(sid);
        }
        assert_eq!(b.total(), 0);
        assert_eq!((b.conns.capacity(), b.polling.capacity()), (0, 0));
    }

    #[test]
    fn a_map_drained_to_a_few_entries_keeps_a_small_table() {
        // A keep-alive connection that outlives a burst of 1,000 must not keep the
        // burst's table (the soak samples memory while its own scrape is connected).
        let mut b = Book::default();
        for conn in 0..1000u64 {
            b.open(conn);
        }
        for conn in 1..1000u64 {
            b.release(conn);
        }
        assert_eq!(b.total(), 1);
        assert!(b.conns.capacity() <= 16, "capacity {}", b.conns.capacity());
    }

    #[test]
    fn connections_and_sessions_count_once_each() {
        let mut b = Book::default();
        let now = Instant::now();
        b.open(1);
        b.identify(1, A);
        assert_eq!(b.total(), 1);
        // The handshake on connection 1 creates a polling session: still one.
        let sid = Sid::new();
        b.polling_created(1, sid, A, now);
        assert_eq!(b.total(), 1);
        // Its polls on other connections do not count.
        b.open(2);
        b.identify(2, A);
        b.session_request(2, Some(sid), true);
        assert_eq!(b.total(), 1);
        // A made-up session id does not take a connection out of the count.
        b.open(3);
        b.session_request(3, Some(Sid::new()), true);
        b.session_request(3, None, false);
        assert_eq!(b.total(), 2);
        b.release(3);
        b.socket_connected(sid);
        b.socket_gone(sid);
        b.release(1);
        b.release(2);
        assert_eq!(b.total(), 0);
        assert!(b.per_ip.is_empty());
    }

    #[test]
    fn caps_refuse_new_sessions_only_past_the_others() {
        let mut b = Book::default();
        b.open(1);
        b.identify(1, A);
        assert!(b.admit(1, A, caps(1, 1)).is_ok());
        b.open(2);
        b.identify(2, A);
        assert_eq!(b.admit(2, A, caps(1, 0)), Err(Error::ServerFull));
        assert_eq!(b.admit(2, A, caps(0, 1)), Err(Error::TooManyConnections));
        b.open(3);
        b.identify(3, B);
        assert!(b.admit(3, B, caps(0, 1)).is_ok());
        assert!(b.admit(3, B, caps(0, 0)).is_ok());
    }

    #[test]
    fn a_session_that_never_polls_is_kicked_and_one_that_never_connects_forgotten() {
        let mut b = Book::default();
        let t0 = Instant::now();
        let (lazy, silent, good) = (Sid::new(), Sid::new(), Sid::new());
        for (i, sid) in [lazy, silent, good].into_iter().enumerate() {
            b.open(i as u64);
            b.polling_created(i as u64, sid, A, t0);
        }
        b.socket_connected(lazy);
        b.socket_connected(good);
        b.session_request(9, Some(good), true);
        let h = Some(Duration::from_secs(10));
        let c = Duration::from_secs(10);
        assert!(b.sweep(t0 + Duration::from_secs(5), h, c).is_empty());
        assert_eq!(b.sweep(t0 + Duration::from_secs(10), h, c), vec![lazy]);
        assert!(b.sweep(t0 + Duration::from_secs(10), h, c).is_empty());
        assert_eq!(b.total(), 3);
        b.sweep(t0 + Duration::from_secs(12), h, c);
        assert_eq!(b.total(), 2);
        assert!(b.sweep(t0 + Duration::from_secs(60), None, c).is_empty());
    }
}
