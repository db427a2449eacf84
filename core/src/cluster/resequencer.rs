//! Putting a room's batches back in version order on the node that delivers them.
//!
//! A node's sockets hear of a room's changes through batches, one per version,
//! from whichever node owns the room: through its Redis inbox, or in-process
//! when it owns the room itself, and ownership moves. The protocol promises
//! every member the changes in increasing version order with no gap, so each
//! node keeps, per room, the last version it released: it releases the next
//! one at once, holds early ones until the missing ones come, drops stale and
//! duplicate ones, and reports a gap that stays open too long (by time, given
//! as `now`, or by count) so the adapter can resync from the room's snapshot.
//! Reads (a `get_peers` answer taken at version v) are released right after
//! change v, so nobody gets an older list after a newer one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Where a batch belongs in its room's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The batch of change `v` (the room's version after it).
    Change(u64),
    /// A read of the room taken at version `v`: released once change `v` has been.
    After(u64),
}

/// What an offer or a resync lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released<T> {
    /// Batches to deliver now, in this order.
    pub ready: Vec<T>,
    /// Batches that came too late (already released, duplicated, or older than
    /// a resync); not to be delivered as they are.
    pub stale: Vec<T>,
}

impl<T> Default for Released<T> {
    fn default() -> Self {
        Self {
            ready: Vec::new(),
            stale: Vec::new(),
        }
    }
}

/// A room whose next version has not come in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap<K> {
    /// The room.
    pub key: K,
    /// The version expected next.
    pub expected: u64,
    /// How many batches wait behind it.
    pub held: usize,
}

#[derive(Debug)]
struct Lane<T> {
    /// The last version released.
    done: u64,
    /// Early changes, by version.
    changes: BTreeMap<u64, T>,
    /// Early reads, by the version they were taken at.
    reads: BTreeMap<u64, Vec<T>>,
    /// Since when the lane has been waiting for a missing version.
    waiting_since: Option<Timestamp>,
}

impl<T> Lane<T> {
    fn new(done: u64) -> Self {
        Self {
            done,
            changes: BTreeMap::new(),
            reads: BTreeMap::new(),
            waiting_since: None,
        }
    }

    fn held(&self) -> usize {
        self.changes.len() + self.reads.values().map(Vec::len).sum::<usize>()
    }

    /// Releases everything that is now in order, from `done` on.
    fn release(&mut self, out: &mut Released<T>, now: Timestamp) {
        loop {
            if let Some(reads) = self.reads.remove(&self.done) {
                out.ready.extend(reads);
            }
            let Some(next) = self.done.checked_add(1) else {
                break;
            };
            match self.changes.remove(&next) {
                Some(batch) => {
                    out.ready.push(batch);
                    self.done = next;
                }
                None => break,
            }
        }
        self.waiting_since = if self.held() == 0 {
            None
        } else if out.ready.is_empty() {
            self.waiting_since.or(Some(now))
        } else {
            Some(now)
        };
    }
}

/// Per room `K`, the batches `T` of its changes in version order.
#[derive(Debug)]
pub struct Resequencer<K, T> {
    lanes: BTreeMap<K, Lane<T>>,
    max_held: usize,
    max_wait_ms: u64,
}

impl<K: Ord + Clone, T> Resequencer<K, T> {
    /// A resequencer that reports a gap once a room holds more than `max_held`
    /// batches or has waited `max_wait_ms` for a missing one.
    pub fn new(max_held: usize, max_wait_ms: u64) -> Self {
        Self {
            lanes: BTreeMap::new(),
            max_held,
            max_wait_ms,
        }
    }

    /// Takes one batch of room `key`. The first change seen for a room the
    /// resequencer does not track starts its sequence there; a read of such a
    /// room is released at once.
    pub fn offer(&mut self, key: &K, slot: Slot, batch: T, now: Timestamp) -> Released<T> {
        let mut out = Released::default();
        let Some(lane) = self.lanes.get_mut(key) else {
            if let Slot::Change(v) = slot {
                self.lanes.insert(key.clone(), Lane::new(v));
            }
            out.ready.push(batch);
            return out;
        };
        match slot {
            Slot::Change(v) if v <= lane.done || lane.changes.contains_key(&v) => {
                out.stale.push(batch);
            }
            Slot::Change(v) => {
                lane.changes.insert(v, batch);
            }
            Slot::After(v) if v < lane.done => out.stale.push(batch),
            Slot::After(v) => lane.reads.entry(v).or_default().push(batch),
        }
        lane.release(&mut out, now);
        out
    }

    /// The room is known to be at `version` (a snapshot was read, or the node
    /// delivered that version by other means): batches at or before it that
    /// are still held become stale, reads taken at it and the changes that
    /// follow it are released. Never moves a room's sequence backwards.
    pub fn resync(&mut self, key: &K, version: u64, now: Timestamp) -> Released<T> {
        let mut out = Released::default();
        let lane = self
            .lanes
            .entry(key.clone())
            .or_insert_with(|| Lane::new(version));
        if version > lane.done {
            lane.done = version;
            let later_changes = lane.changes.split_off(&version.saturating_add(1));
            out.stale
                .extend(std::mem::replace(&mut lane.changes, later_changes).into_values());
            let later_reads = lane.reads.split_off(&version);
            out.stale.extend(
                std::mem::replace(&mut lane.reads, later_reads)
                    .into_values()
                    .flatten(),
            );
        }
        lane.release(&mut out, now);
        out
    }

    /// Stops tracking a room (no local member is left in it); returns what it held.
    pub fn forget(&mut self, key: &K) -> Vec<T> {
        self.lanes.remove(key).map_or_else(Vec::new, |lane| {
            let mut left: Vec<T> = lane.changes.into_values().collect();
            left.extend(lane.reads.into_values().flatten());
            left
        })
    }

    /// The version expected next in room `key`, if it is tracked.
    pub fn expected(&self, key: &K) -> Option<u64> {
        self.lanes.get(key).map(|lane| lane.done.saturating_add(1))
    }

    /// The lowest version held in room `key` (a change, or a read's version),
    /// if any: where a sequence whose missing versions are lost goes on.
    pub fn first_held(&self, key: &K) -> Option<u64> {
        let lane = self.lanes.get(key)?;
        let change = lane.changes.keys().next().copied();
        let read = lane
            .reads
            .keys()
            .next()
            .copied()
            .map(|v| v.saturating_add(1));
        change.into_iter().chain(read).min()
    }

    /// Batches held across all rooms.
    pub fn held(&self) -> usize {
        self.lanes.values().map(Lane::held).sum()
    }

    /// The rooms whose gap is due for a resync at `now`: waited too long (each
    /// then waits again before it is reported a second time) or holding too
    /// many batches (reported on every call until resolved).
    pub fn gaps(&mut self, now: Timestamp) -> Vec<Gap<K>> {
        let mut due = Vec::new();
        for (key, lane) in &mut self.lanes {
            let Some(since) = lane.waiting_since else {
                continue;
            };
            let held = lane.held();
            let late = since.plus_ms(self.max_wait_ms) <= now;
            if late || held > self.max_held {
                if late {
                    lane.waiting_since = Some(now);
                }
                due.push(Gap {
                    key: key.clone(),
                    expected: lane.done.saturating_add(1),
                    held,
                });
            }
        }
        due
    }

    /// When the next gap falls due, for the caller's timer.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.lanes
            .values()
            .filter_map(|lane| lane.waiting_since)
            .min()
            .map(|since| since.plus_ms(self.max_wait_ms))
    }
}

#[cfg(test)]
mod tests;
