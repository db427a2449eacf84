//! The per-connection event rate: a token bucket, plus the rule that cuts off
//! a connection that keeps flooding after it has been told to slow down.
//!
//! The rule lives here, not in the server, so that it is tested without a
//! clock: the caller passes `now` with every event and acts on the
//! [`Verdict`]. A bucket holds up to `burst` events and refills at
//! `per_second`; every client event takes one (unknown events too). An event
//! that finds the bucket empty is refused. From the first refusal the bucket
//! watches the connection for [`FLOOD_WINDOW_MS`]: if over that window it kept
//! sending at [`FLOOD_FACTOR`] times the rate or more, it is disconnected;
//! otherwise the watch ends and the next refusal starts a new one. The
//! disconnect is said once; events still arriving after it are refused.
//!
//! Tokens are counted in thousandths so that integer milliseconds refill
//! exactly: `per_second` tokens a second is `per_second` thousandths a
//! millisecond.

use crate::time::Timestamp;

/// How long a refused connection is watched before it may be disconnected.
pub const FLOOD_WINDOW_MS: u64 = 5_000;

/// A connection still sending at this multiple of the rate after the window is disconnected.
pub const FLOOD_FACTOR: u64 = 10;

/// Thousandths of a token per event.
const UNIT: u64 = 1_000;

/// The limits: `per_second` events a second with bursts of `burst`.
/// Either one 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRateConfig {
    /// The sustained rate, events per second.
    pub per_second: u32,
    /// The most events accepted at once after a quiet period.
    pub burst: u32,
}

impl EventRateConfig {
    /// Whether the limit is on.
    pub fn enabled(self) -> bool {
        self.per_second > 0 && self.burst > 0
    }
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Allow,
    /// Answer its `*_error` with `rate_limited`; change nothing.
    Refuse,
    /// Refuse it and disconnect the connection: it kept flooding.
    Disconnect,
}

/// One connection's bucket.
#[derive(Debug, Clone)]
pub struct EventRate {
    config: EventRateConfig,
    /// Thousandths of a token available.
    tokens: u64,
    last: Timestamp,
    /// Since when the connection has been watched, and how many events it sent since.
    flood: Option<(Timestamp, u64)>,
    /// [`Verdict::Disconnect`] was given: the rest is refused.
    cut: bool,
}

impl EventRate {
    /// A full bucket at `now`.
    pub fn new(config: EventRateConfig, now: Timestamp) -> Self {
        Self {
            config,
            tokens: u64::from(config.burst) * UNIT,
            last: now,
            flood: None,
            cut: false,
        }
    }

    /// Takes one event at `now`. A `now` earlier than the last one (a clock
    /// step back) refills nothing.
    pub fn check(&mut self, now: Timestamp) -> Verdict {
        if !self.config.enabled() {
            return Verdict::Allow;
        }
        if self.cut {
            // Events already on their way when the connection was cut.
            return Verdict::Refuse;
        }
        let elapsed = now.0.saturating_sub(self.last.0);
        self.last = Timestamp(self.last.0.max(now.0));
        let capacity = u64::from(self.config.burst) * UNIT;
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(u64::from(self.config.per_second)))
            .min(capacity);
        let allowed = self.tokens >= UNIT;
        if allowed {
            self.tokens -= UNIT;
        }
        self.watch(now, allowed)
    }

    /// The flood rule, given whether the bucket let this event through.
    fn watch(&mut self, now: Timestamp, allowed: bool) -> Verdict {
        let verdict = if allowed {
            Verdict::Allow
        } else {
            Verdict::Refuse
        };
        let Some((since, count)) = self.flood.as_mut() else {
            if !allowed {
                self.flood = Some((now, 1));
            }
            return verdict;
        };
        *count += 1;
        let window = now.0.saturating_sub(since.0);
        if window < FLOOD_WINDOW_MS {
            return verdict;
        }
        // At FLOOD_FACTOR times the rate, a window of `window` ms holds
        // FLOOD_FACTOR * per_second * window / 1000 events.
        let flood_line = (FLOOD_FACTOR * u64::from(self.config.per_second)).saturating_mul(window);
        if count.saturating_mul(UNIT) >= flood_line {
            self.cut = true;
            return Verdict::Disconnect;
        }
        self.flood = if allowed { None } else { Some((now, 1)) };
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(per_second: u32, burst: u32) -> EventRate {
        EventRate::new(EventRateConfig { per_second, burst }, Timestamp(1_000_000))
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp(1_000_000 + ms)
    }

    #[test]
    fn a_burst_is_accepted_then_the_next_event_refused() {
        let mut b = bucket(200, 2000);
        for _ in 0..2000 {
            assert_eq!(b.check(at(0)), Verdict::Allow);
        }
        assert_eq!(b.check(at(0)), Verdict::Refuse);
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let mut b = bucket(200, 10);
        for _ in 0..10 {
            b.check(at(0));
        }
        assert_eq!(b.check(at(0)), Verdict::Refuse);
        // 5 ms at 200/s is one token.
        assert_eq!(b.check(at(5)), Verdict::Allow);
        assert_eq!(b.check(at(5)), Verdict::Refuse);
        // A long quiet period refills to the burst, no further.
        for _ in 0..10 {
            assert_eq!(b.check(at(60_000)), Verdict::Allow);
        }
        assert_eq!(b.check(at(60_000)), Verdict::Refuse);
    }

    #[test]
    fn zero_turns_the_limit_off() {
        for mut b in [bucket(0, 10), bucket(10, 0)] {
            for _ in 0..100_000 {
                assert_eq!(b.check(at(0)), Verdict::Allow);
            }
        }
    }

    #[test]
    fn a_mesh_of_a_hundred_is_never_refused_by_the_defaults() {
        // A peer meeting 99 others: about ten signals each, within a second.
        let mut b = bucket(200, 2000);
        for i in 0..1000 {
            assert_eq!(b.check(at(i)), Verdict::Allow, "event {i}");
        }
        // ... and again a few seconds later, as a second room's worth.
        for i in 0..1000 {
            assert_eq!(b.check(at(5_000 + i)), Verdict::Allow, "event {i}");
        }
    }

    #[test]
    fn a_steady_flood_at_ten_times_the_rate_is_disconnected_after_the_window() {
        let mut b = bucket(10, 20);
        let mut verdicts = Vec::new();
        // 100 events a second: one every 10 ms.
        for i in 0..1000 {
            let v = b.check(at(i * 10));
            verdicts.push((i * 10, v));
            if v == Verdict::Disconnect {
                break;
            }
        }
        let (when, last) = *verdicts.last().expect("some events");
        assert_eq!(last, Verdict::Disconnect);
        let first_refusal = verdicts
            .iter()
            .find(|(_, v)| *v == Verdict::Refuse)
            .map(|(t, _)| *t)
            .expect("refused first");
        assert_eq!(when - first_refusal, FLOOD_WINDOW_MS);
        // Disconnect is said once; what still arrives is refused.
        assert_eq!(b.check(at(when + 10)), Verdict::Refuse);
        assert_eq!(b.check(at(when + 60_000)), Verdict::Refuse);
    }

    #[test]
    fn a_sender_just_under_ten_times_the_rate_is_refused_but_kept() {
        let mut b = bucket(10, 20);
        // 90 events a second for a minute.
        let mut refused = 0;
        for i in 0..5_400u64 {
            let v = b.check(at(i * 1000 / 90));
            assert_ne!(v, Verdict::Disconnect, "event {i}");
            if v == Verdict::Refuse {
                refused += 1;
            }
        }
        assert!(refused > 4_000, "most were refused: {refused}");
    }

    #[test]
    fn a_flood_that_stops_is_forgiven() {
        let mut b = bucket(10, 20);
        for _ in 0..500 {
            b.check(at(0));
        }
        // Quiet for the window, then polite.
        for i in 0..100 {
            assert_ne!(b.check(at(6_000 + i * 200)), Verdict::Disconnect);
        }
    }

    #[test]
    fn a_clock_step_back_refills_nothing_and_does_not_panic() {
        let mut b = bucket(10, 1);
        assert_eq!(b.check(at(1_000)), Verdict::Allow);
        assert_eq!(b.check(at(0)), Verdict::Refuse);
        assert_eq!(b.check(Timestamp(0)), Verdict::Refuse);
        assert_eq!(b.check(Timestamp(u64::MAX)), Verdict::Allow);
    }
}
