//! The resequencer's rules, one per test, and its promises over random
//! arrival orders: every change once, in version order; reads right after the
//! change they saw; gaps reported and healed by a resync.

use super::*;
use proptest::prelude::*;

const T0: Timestamp = Timestamp(1_700_000_000_000);

/// A batch that says what it is: (`is_read`, version, serial number).
type Batch = (bool, u64, usize);

fn seq() -> Resequencer<&'static str, Batch> {
    Resequencer::new(8, 1_000)
}

fn versions(items: &[Batch]) -> Vec<u64> {
    items.iter().map(|b| b.1).collect()
}

#[test]
fn the_first_change_of_an_unknown_room_starts_its_sequence() {
    let mut s = seq();
    let r = s.offer(&"r", Slot::Change(7), (false, 7, 0), T0);
    assert_eq!(versions(&r.ready), [7]);
    assert_eq!(s.expected(&"r"), Some(8));
    let r = s.offer(&"r", Slot::Change(6), (false, 6, 1), T0);
    assert!(r.ready.is_empty());
    assert_eq!(versions(&r.stale), [6]);
}

#[test]
fn early_changes_wait_for_the_missing_one() {
    let mut s = seq();
    s.resync(&"r", 1, T0);
    assert!(
        s.offer(&"r", Slot::Change(3), (false, 3, 0), T0)
            .ready
            .is_empty()
    );
    assert!(
        s.offer(&"r", Slot::Change(4), (false, 4, 1), T0)
            .ready
            .is_empty()
    );
    assert_eq!(s.held(), 2);
    let r = s.offer(&"r", Slot::Change(2), (false, 2, 2), T0);
    assert_eq!(versions(&r.ready), [2, 3, 4]);
    assert_eq!(s.held(), 0);
    assert_eq!(s.next_timeout(), None);
}

#[test]
fn duplicates_are_stale() {
    let mut s = seq();
    s.resync(&"r", 0, T0);
    s.offer(&"r", Slot::Change(2), (false, 2, 0), T0);
    let r = s.offer(&"r", Slot::Change(2), (false, 2, 1), T0);
    assert_eq!(r.stale, [(false, 2, 1)]);
    s.offer(&"r", Slot::Change(1), (false, 1, 2), T0);
    let r = s.offer(&"r", Slot::Change(1), (false, 1, 3), T0);
    assert_eq!(r.stale, [(false, 1, 3)]);
}

#[test]
fn a_read_waits_for_the_change_it_saw_and_a_late_one_is_stale() {
    let mut s = seq();
    s.resync(&"r", 1, T0);
    assert!(
        s.offer(&"r", Slot::After(2), (true, 2, 0), T0)
            .ready
            .is_empty()
    );
    let r = s.offer(&"r", Slot::Change(2), (false, 2, 1), T0);
    assert_eq!(r.ready, [(false, 2, 1), (true, 2, 0)]);
    let r = s.offer(&"r", Slot::After(2), (true, 2, 2), T0);
    assert_eq!(r.ready, [(true, 2, 2)]);
    let r = s.offer(&"r", Slot::After(1), (true, 1, 3), T0);
    assert_eq!(r.stale, [(true, 1, 3)]);
    // A read of an untracked room has nothing to wait for.
    let r = s.offer(&"other", Slot::After(9), (true, 9, 4), T0);
    assert_eq!(r.ready, [(true, 9, 4)]);
    assert_eq!(s.expected(&"other"), None);
}

#[test]
fn a_gap_is_reported_after_the_wait_and_again_after_another() {
    let mut s = seq();
    s.resync(&"r", 1, T0);
    s.offer(&"r", Slot::Change(3), (false, 3, 0), T0);
    assert_eq!(s.next_timeout(), Some(T0.plus_ms(1_000)));
    assert!(s.gaps(T0.plus_ms(999)).is_empty());
    let due = s.gaps(T0.plus_ms(1_000));
    assert_eq!(
        due,
        [Gap {
            key: "r",
            expected: 2,
            held: 1
        }]
    );
    assert!(s.gaps(T0.plus_ms(1_500)).is_empty());
    assert_eq!(s.gaps(T0.plus_ms(2_000)).len(), 1);
}

#[test]
fn too_many_held_batches_are_a_gap_at_once() {
    let mut s = seq();
    s.resync(&"r", 0, T0);
    for v in 2..=10 {
        s.offer(&"r", Slot::Change(v), (false, v, 0), T0);
    }
    assert_eq!(s.gaps(T0)[0].held, 9);
}

#[test]
fn a_resync_drops_what_it_covers_and_releases_what_follows() {
    let mut s = seq();
    s.resync(&"r", 1, T0);
    s.offer(&"r", Slot::Change(3), (false, 3, 0), T0);
    s.offer(&"r", Slot::After(3), (true, 3, 1), T0);
    s.offer(&"r", Slot::Change(5), (false, 5, 2), T0);
    s.offer(&"r", Slot::After(4), (true, 4, 3), T0);
    let r = s.resync(&"r", 4, T0);
    assert_eq!(r.stale, [(false, 3, 0), (true, 3, 1)]);
    assert_eq!(r.ready, [(true, 4, 3), (false, 5, 2)]);
    assert_eq!(s.expected(&"r"), Some(6));
    // Never backwards.
    assert!(s.resync(&"r", 2, T0).ready.is_empty());
    assert_eq!(s.expected(&"r"), Some(6));
}

#[test]
fn forget_returns_what_was_held() {
    let mut s = seq();
    s.resync(&"r", 0, T0);
    s.offer(&"r", Slot::Change(2), (false, 2, 0), T0);
    assert_eq!(s.forget(&"r"), [(false, 2, 0)]);
    assert_eq!(s.expected(&"r"), None);
    assert_eq!(s.held(), 0);
}

/// Changes `base+1..=base+n` (some twice) and reads at random versions, in a
/// random order.
fn arrivals() -> impl Strategy<Value = (u64, Vec<(Slot, Batch)>)> {
    (0u64..5, 1u64..30)
        .prop_flat_map(|(base, n)| {
            let dups = prop::collection::vec(1..=n, 0..5);
            let reads = prop::collection::vec(0..=n, 0..8);
            (Just(base), Just(n), dups, reads)
        })
        .prop_flat_map(|(base, n, dups, reads)| {
            let mut all: Vec<(Slot, Batch)> = Vec::new();
            let changes = (1..=n).chain(dups);
            for (i, k) in changes.enumerate() {
                all.push((Slot::Change(base + k), (false, base + k, i)));
            }
            for (i, k) in reads.into_iter().enumerate() {
                all.push((Slot::After(base + k), (true, base + k, 1000 + i)));
            }
            (Just(base), Just(all).prop_shuffle())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn any_arrival_order_comes_out_in_version_order_once_each((base, items) in arrivals()) {
        let n = items.iter().filter_map(|(s, _)| match s { Slot::Change(v) => Some(*v), _ => None }).max().unwrap_or(base) - base;
        let mut s = Resequencer::new(usize::MAX, 1_000);
        s.resync(&"r", base, T0);
        let mut ready = Vec::new();
        let mut stale = Vec::new();
        for (slot, batch) in items.iter().cloned() {
            let r = s.offer(&"r", slot, batch, T0);
            ready.extend(r.ready);
            stale.extend(r.stale);
        }
        // Every change exactly once, in order; nothing left held.
        let changes: Vec<u64> = ready.iter().filter(|b| !b.0).map(|b| b.1).collect();
        prop_assert_eq!(changes, ((base + 1)..=(base + n)).collect::<Vec<_>>());
        prop_assert_eq!(s.held(), 0);
        prop_assert_eq!(s.next_timeout(), None);
        // Nothing lost, nothing invented.
        prop_assert_eq!(ready.len() + stale.len(), items.len());
        prop_assert!(stale.iter().all(|b| items.iter().any(|(_, x)| x == b)));
        // A delivered read comes after the change it saw and before the next one.
        let mut last = base;
        for b in &ready {
            if b.0 {
                prop_assert_eq!(b.1, last, "read at {} delivered after change {}", b.1, last);
            } else {
                last = b.1;
            }
        }
    }

    #[test]
    fn a_missing_change_is_a_gap_until_a_resync((base, items) in arrivals(), pick in any::<prop::sample::Index>()) {
        let n = items.iter().filter_map(|(s, _)| match s { Slot::Change(v) => Some(*v), _ => None }).max().unwrap_or(base) - base;
        let missing = base + 1 + pick.index(n as usize) as u64;
        let mut s = Resequencer::new(usize::MAX, 1_000);
        s.resync(&"r", base, T0);
        let mut ready = Vec::new();
        for (slot, batch) in items.iter().cloned() {
            if slot == Slot::Change(missing) {
                continue;
            }
            ready.extend(s.offer(&"r", slot, batch, T0).ready);
        }
        let changes: Vec<u64> = ready.iter().filter(|b| !b.0).map(|b| b.1).collect();
        prop_assert_eq!(changes, ((base + 1)..missing).collect::<Vec<_>>());
        let later = missing < base + n || items.iter().any(|(s, _)| *s == Slot::After(missing) || matches!(s, Slot::After(v) if *v > missing));
        if later {
            let gaps = s.gaps(T0.plus_ms(1_000));
            prop_assert_eq!(gaps.len(), 1);
            prop_assert_eq!(gaps[0].expected, missing);
        }
        // The resync says the room is at `missing`: everything after it comes out in order.
        let r = s.resync(&"r", missing, T0.plus_ms(1_000));
        let changes: Vec<u64> = r.ready.iter().filter(|b| !b.0).map(|b| b.1).collect();
        prop_assert_eq!(changes, ((missing + 1)..=(base + n)).collect::<Vec<_>>());
        prop_assert_eq!(s.held(), 0);
        prop_assert!(s.gaps(T0.plus_ms(10_000)).is_empty());
    }
}
