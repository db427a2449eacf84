//! The browser side's view of one room: which peers are in it, and which peer
//! connections that implies.
//!
//! A client learns the room's list three ways: the full list in `join_room_success`
//! (which starts a new version sequence), full lists (`peer_list_updated`, or the
//! answer to `get_peers`), and deltas (`peer_joined` / `peer_left`), each stamped with
//! the room's `version`. [`PeerTracker`] folds them into the current list and tells its
//! caller what changed (`added` / `removed`), dropping stale and duplicated versions.
//! A delta that skips versions is held back, and the caller is told once to ask the
//! server for the full list; held deltas are applied as soon as the missing ones (or a
//! newer full list) arrive, so even out-of-order delivery ends in the right list.
//!
//! The module is sans-I/O: no clock, no randomness, no sockets. It is generic over the
//! peer record ([`RoomMember`]) so the browser library can keep the JavaScript objects
//! it received and the server side can use its own types.
//!
//! The pairing rules live here too, so both ends of a pair agree without talking:
//! [`role`] says who is polite in perfect negotiation, and [`plan_links`] says which
//! peer connections to open and close.

/// A peer record as a tracker needs it: an identity and a display name.
pub trait RoomMember: Clone {
    /// The peer's id, unique within its room.
    fn peer_id(&self) -> &str;
    /// The peer's display name; a change of it is reported as an update.
    fn username(&self) -> &str;
}

impl RoomMember for crate::protocol::Peer {
    fn peer_id(&self) -> &str {
        &self.peer_id
    }
    fn username(&self) -> &str {
        &self.username
    }
}

/// One change of a room's list, as carried by `peer_joined` / `peer_left`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta<P> {
    /// `peer_joined`: a new peer, or a known `peer_id` with a new username.
    Joined(P),
    /// `peer_left`: the peer with this id is gone.
    Left(String),
}

/// What one input changed in the list.
///
/// `added` holds peers that are new and peers whose username changed (the new entry);
/// `removed` holds peers that are gone. A peer_id is never in both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDiff<P> {
    /// Peers that appeared, or whose entry changed.
    pub added: Vec<P>,
    /// Peers that disappeared.
    pub removed: Vec<P>,
}

impl<P> PeerDiff<P> {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The result of feeding a full list or a delta to a [`PeerTracker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<P> {
    /// The change, when the list moved to a newer version; `None` for stale,
    /// duplicated, held-back or foreign-room input.
    pub change: Option<PeerDiff<P>>,
    /// The caller should ask the server for the full list (`get_peers`): a version
    /// gap was seen. Reported once per gap, until a full list arrives.
    pub request_full_list: bool,
}

impl<P> Outcome<P> {
    fn nothing() -> Self {
        Outcome {
            change: None,
            request_full_list: false,
        }
    }
}

/// At most this many out-of-order deltas are held back; beyond it the full list
/// the tracker asked for will repair the state.
pub const MAX_HELD_DELTAS: usize = 256;

/// The client's view of the room it is in. See the module documentation.
#[derive(Debug, Clone)]
pub struct PeerTracker<P> {
    room: Option<String>,
    self_id: Option<String>,
    peers: Vec<P>,
    version: u64,
    /// Deltas that came ahead of a gap, sorted by version, without duplicates.
    /// (A sorted `Vec`, not a `BTreeMap`: it stays tiny, and the browser build is smaller.)
    held: Vec<(u64, Delta<P>)>,
    awaiting_full_list: bool,
}

impl<P: RoomMember> Default for PeerTracker<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: RoomMember> PeerTracker<P> {
    /// A tracker outside any room.
    pub fn new() -> Self {
        PeerTracker {
            room: None,
            self_id: None,
            peers: Vec::new(),
            version: 0,
            held: Vec::new(),
            awaiting_full_list: false,
        }
    }

    /// The room joined last, if any.
    pub fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    /// This client's own peer_id in the room, if joined.
    pub fn self_id(&self) -> Option<&str> {
        self.self_id.as_deref()
    }

    /// The current list, this client included, in join order.
    pub fn peers(&self) -> &[P] {
        &self.peers
    }

    /// The version of the current list (0 before any join).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A successful join (`join_room_success`): starts a new version sequence.
    ///
    /// The change is computed against the previous list when it was of the same room
    /// (so an automatic rejoin reports only what really changed), else everything old
    /// is removed and everything new added.
    pub fn joined(
        &mut self,
        room: &str,
        self_id: &str,
        peers: Vec<P>,
        version: u64,
    ) -> PeerDiff<P> {
        let same_room = self.room.as_deref() == Some(room);
        let old = self.clear_list();
        self.room = Some(room.to_owned());
        self.self_id = Some(self_id.to_owned());
        self.peers = peers;
        self.version = version;
        if same_room {
            diff(&old, &self.peers)
        } else {
            PeerDiff {
                added: self.peers.clone(),
                removed: old,
            }
        }
    }

    /// This client left the room (`leave_room_success`): everyone is removed.
    pub fn left(&mut self) -> PeerDiff<P> {
        let old = self.clear_list();
        self.room = None;
        self.self_id = None;
        PeerDiff {
            added: Vec::new(),
            removed: old,
        }
    }

    /// A full list of `room` at `version` (`peer_list_updated` or `peer_list`).
    pub fn full_list(&mut self, room: &str, peers: Vec<P>, version: u64) -> Outcome<P> {
        if self.room.as_deref() != Some(room) {
            return Outcome::nothing();
        }
        self.awaiting_full_list = false;
        if version <= self.version {
            return self.gap_outcome(None);
        }
        let old = std::mem::replace(&mut self.peers, peers);
        self.version = version;
        self.held.retain(|(v, _)| *v > version);
        self.apply_held();
        let change = diff(&old, &self.peers);
        self.gap_outcome(Some(change))
    }

    /// A delta of `room` that brings it to `version` (`peer_joined` / `peer_left`).
    pub fn delta(&mut self, room: &str, version: u64, delta: Delta<P>) -> Outcome<P> {
        if self.room.as_deref() != Some(room) || version <= self.version {
            return Outcome::nothing();
        }
        if version > self.version + 1 {
            if self.held.len() < MAX_HELD_DELTAS
                && let Err(at) = self.held.binary_search_by_key(&version, |(v, _)| *v)
            {
                self.held.insert(at, (version, delta));
            }
            return self.gap_outcome(None);
        }
        let old = self.peers.clone();
        apply(&mut self.peers, delta);
        self.version = version;
        self.apply_held();
        let change = diff(&old, &self.peers);
        self.gap_outcome(Some(change))
    }

    /// The `get_peers` request failed: a later gap may ask again.
    pub fn full_list_failed(&mut self) {
        self.awaiting_full_list = false;
    }

    /// Which connections to open and close, given the ones that exist now.
    pub fn link_plan<'a>(&self, existing: impl IntoIterator<Item = &'a str>) -> LinkPlan {
        let me = self.self_id.as_deref().unwrap_or("");
        plan_links(me, self.peers.iter().map(RoomMember::peer_id), existing)
    }

    fn clear_list(&mut self) -> Vec<P> {
        self.version = 0;
        self.held.clear();
        self.awaiting_full_list = false;
        std::mem::take(&mut self.peers)
    }

    /// Applies held deltas that now follow the current version without a gap.
    fn apply_held(&mut self) {
        while self
            .held
            .first()
            .is_some_and(|(v, _)| *v == self.version + 1)
        {
            let (version, delta) = self.held.remove(0);
            apply(&mut self.peers, delta);
            self.version = version;
        }
    }

    fn gap_outcome(&mut self, change: Option<PeerDiff<P>>) -> Outcome<P> {
        let ask = !self.held.is_empty() && !self.awaiting_full_list;
        if ask {
            self.awaiting_full_list = true;
        }
        Outcome {
            change: change.filter(|c| !c.is_empty()),
            request_full_list: ask,
        }
    }
}

fn apply<P: RoomMember>(peers: &mut Vec<P>, delta: Delta<P>) {
    match delta {
        Delta::Joined(peer) => match peers.iter_mut().find(|p| p.peer_id() == peer.peer_id()) {
            Some(slot) => *slot = peer,
            None => peers.push(peer),
        },
        Delta::Left(id) => peers.retain(|p| p.peer_id() != id),
    }
}

/// The change from `old` to `new`, matching entries by peer_id.
pub fn diff<P: RoomMember>(old: &[P], new: &[P]) -> PeerDiff<P> {
    let find = |list: &[P], id: &str| list.iter().position(|p| p.peer_id() == id);
    let added = new
        .iter()
        .filter(|n| match find(old, n.peer_id()) {
            Some(i) => old[i].username() != n.username(),
            None => true,
        })
        .cloned()
        .collect();
    let removed = old
        .iter()
        .filter(|o| find(new, o.peer_id()).is_none())
        .cloned()
        .collect();
    PeerDiff { added, removed }
}

/// A side's part in perfect negotiation with one other peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The smaller peer_id: creates the data channel, makes the first offer, and on
    /// an offer collision keeps its own offer.
    Impolite,
    /// The larger peer_id: waits for the first offer, and on a collision rolls back.
    Polite,
}

impl Role {
    /// Whether this side opens the data channel and makes the first offer.
    pub fn makes_first_offer(self) -> bool {
        self == Role::Impolite
    }

    /// Whether this side yields on an offer collision.
    pub fn is_polite(self) -> bool {
        self == Role::Polite
    }
}

/// This side's role towards `other`, from the byte order of the two peer_ids: both
/// ends compute it alone and always get opposite answers.
pub fn role(self_id: &str, other_id: &str) -> Role {
    if self_id < other_id {
        Role::Impolite
    } else {
        Role::Polite
    }
}

/// A peer connection to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// The other peer.
    pub peer_id: String,
    /// This side's role in it.
    pub role: Role,
}

/// Which peer connections to open and close so that there is exactly one per other
/// peer in the room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPlan {
    /// Peers in the room without a connection, in list order.
    pub open: Vec<LinkSpec>,
    /// Connections to peers no longer in the room, in the given order.
    pub close: Vec<String>,
}

/// Plans connections from this side (`self_id`) to every other id of `wanted`,
/// given the connections that `existing` holds.
pub fn plan_links<'a, 'b>(
    self_id: &str,
    wanted: impl IntoIterator<Item = &'a str>,
    existing: impl IntoIterator<Item = &'b str>,
) -> LinkPlan {
    let wanted: Vec<&str> = wanted.into_iter().filter(|id| *id != self_id).collect();
    let existing: Vec<&str> = existing.into_iter().collect();
    let mut plan = LinkPlan::default();
    for id in &wanted {
        if !existing.contains(id) && !plan.open.iter().any(|l| l.peer_id == *id) {
            plan.open.push(LinkSpec {
                peer_id: (*id).to_owned(),
                role: role(self_id, id),
            });
        }
    }
    for id in existing {
        if !wanted.contains(&id) && !plan.close.iter().any(|c| c == id) {
            plan.close.push(id.to_owned());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct P(pub(super) String, pub(super) String);

    impl RoomMember for P {
        fn peer_id(&self) -> &str {
            &self.0
        }
        fn username(&self) -> &str {
            &self.1
        }
    }

    fn p(id: &str) -> P {
        P(id.into(), format!("user {id}"))
    }

    fn ids(list: &[P]) -> Vec<&str> {
        list.iter().map(|p| p.0.as_str()).collect()
    }

    fn joined(peers: &[&str], version: u64) -> PeerTracker<P> {
        let mut t = PeerTracker::new();
        t.joined("r", "a", peers.iter().map(|i| p(i)).collect(), version);
        t
    }

    #[test]
    fn join_reports_everyone_as_added() {
        let mut t = PeerTracker::new();
        let d = t.joined("r", "b", vec![p("a"), p("b")], 2);
        assert_eq!(ids(&d.added), ["a", "b"]);
        assert!(d.removed.is_empty());
        assert_eq!(t.version(), 2);
        assert_eq!(t.self_id(), Some("b"));
    }

    #[test]
    fn next_delta_is_applied_in_join_order() {
        let mut t = joined(&["a"], 1);
        let o = t.delta("r", 2, Delta::Joined(p("b")));
        assert_eq!(o.change.map(|c| ids(&c.added).join(",")), Some("b".into()));
        assert!(!o.request_full_list);
        t.delta("r", 3, Delta::Joined(p("c")));
        let o = t.delta("r", 4, Delta::Left("b".into()));
        assert_eq!(ids(&o.change.expect("a change").removed), ["b"]);
        assert_eq!(ids(t.peers()), ["a", "c"]);
    }

    #[test]
    fn stale_and_duplicated_versions_are_dropped() {
        let mut t = joined(&["a"], 1);
        t.delta("r", 2, Delta::Joined(p("b")));
        assert_eq!(t.delta("r", 2, Delta::Joined(p("b"))), Outcome::nothing());
        assert_eq!(t.delta("r", 1, Delta::Left("a".into())), Outcome::nothing());
        assert_eq!(t.full_list("r", vec![p("a")], 2).change, None);
        assert_eq!(ids(t.peers()), ["a", "b"]);
    }

    #[test]
    fn a_gap_asks_for_the_full_list_once_and_holds_the_delta() {
        let mut t = joined(&["a"], 1);
        let o = t.delta("r", 3, Delta::Joined(p("c")));
        assert!(o.request_full_list && o.change.is_none());
        let o = t.delta("r", 4, Delta::Joined(p("d")));
        assert!(!o.request_full_list, "asked once per gap");
        let o = t.delta("r", 2, Delta::Joined(p("b")));
        assert_eq!(ids(&o.change.expect("a change").added), ["b", "c", "d"]);
        assert_eq!(t.version(), 4);
    }

    #[test]
    fn a_full_list_closes_a_gap_and_later_held_deltas_follow() {
        let mut t = joined(&["a"], 1);
        t.delta("r", 3, Delta::Joined(p("c")));
        t.delta("r", 5, Delta::Left("a".into()));
        let o = t.full_list("r", vec![p("a"), p("b"), p("c"), p("d")], 4);
        let change = o.change.expect("a change");
        assert_eq!(ids(&change.added), ["b", "c", "d"]);
        assert_eq!(
            ids(&change.removed),
            ["a"],
            "the held delta 5 followed the list of 4"
        );
        assert_eq!(ids(t.peers()), ["b", "c", "d"]);
        assert_eq!(t.version(), 5);
        assert!(!o.request_full_list);
    }

    #[test]
    fn a_gap_left_after_a_full_list_asks_again() {
        let mut t = joined(&["a"], 1);
        assert!(t.delta("r", 5, Delta::Joined(p("e"))).request_full_list);
        assert!(t.full_list("r", vec![p("a"), p("c")], 3).request_full_list);
    }

    #[test]
    fn a_failed_full_list_request_may_be_asked_again() {
        let mut t = joined(&["a"], 1);
        assert!(t.delta("r", 3, Delta::Joined(p("c"))).request_full_list);
        t.full_list_failed();
        assert!(t.delta("r", 4, Delta::Joined(p("d"))).request_full_list);
    }

    #[test]
    fn a_rename_is_reported_as_added_in_place() {
        let mut t = joined(&["a", "b"], 2);
        let o = t.delta("r", 3, Delta::Joined(P("a".into(), "Alice".into())));
        let change = o.change.expect("a change");
        assert_eq!(change.added, [P("a".into(), "Alice".into())]);
        assert!(change.removed.is_empty());
        assert_eq!(ids(t.peers()), ["a", "b"]);
    }

    #[test]
    fn input_for_another_room_is_ignored() {
        let mut t = joined(&["a"], 1);
        assert_eq!(
            t.delta("other", 2, Delta::Joined(p("b"))),
            Outcome::nothing()
        );
        assert_eq!(t.full_list("other", vec![p("z")], 9), Outcome::nothing());
        assert_eq!(ids(t.peers()), ["a"]);
    }

    #[test]
    fn a_rejoin_of_the_same_room_reports_only_the_difference() {
        let mut t = joined(&["a", "b", "c"], 3);
        t.delta("r", 4, Delta::Joined(p("d")));
        let d = t.joined("r", "a", vec![p("b"), p("a"), p("e")], 2);
        assert_eq!(ids(&d.added), ["e"]);
        assert_eq!(ids(&d.removed), ["c", "d"]);
        assert_eq!(t.version(), 2, "a join starts a new version sequence");
        assert!(t.delta("r", 3, Delta::Joined(p("f"))).change.is_some());
    }

    #[test]
    fn joining_another_room_replaces_everyone() {
        let mut t = joined(&["a", "b"], 2);
        let d = t.joined("s", "a", vec![p("a")], 1);
        assert_eq!(ids(&d.removed), ["a", "b"]);
        assert_eq!(ids(&d.added), ["a"]);
    }

    #[test]
    fn leaving_removes_everyone_and_ignores_later_deltas() {
        let mut t = joined(&["a", "b"], 2);
        let d = t.left();
        assert_eq!(ids(&d.removed), ["a", "b"]);
        assert_eq!(t.room(), None);
        assert_eq!(t.delta("r", 3, Delta::Joined(p("c"))), Outcome::nothing());
        assert!(t.peers().is_empty());
    }

    #[test]
    fn protocol_peers_can_be_tracked() {
        use crate::protocol::Peer;
        let peer = |id: &str| Peer {
            peer_id: id.into(),
            username: id.into(),
            joined_at: "2024-01-15T10:30:00.000Z".into(),
        };
        let mut t = PeerTracker::new();
        t.joined("r", "a", vec![peer("a")], 1);
        let o = t.delta("r", 2, Delta::Joined(peer("b")));
        assert_eq!(o.change.map(|c| c.added), Some(vec![peer("b")]));
    }

    #[test]
    fn roles_are_opposite_and_the_smaller_id_offers_first() {
        assert_eq!(role("alice", "bob"), Role::Impolite);
        assert_eq!(role("bob", "alice"), Role::Polite);
        assert!(role("alice", "bob").makes_first_offer());
        assert!(role("bob", "alice").is_polite());
    }

    #[test]
    fn the_plan_opens_missing_links_and_closes_departed_ones() {
        let plan = plan_links("b", ["a", "b", "c", "d"], ["c", "x"]);
        assert_eq!(
            plan.open,
            [
                LinkSpec {
                    peer_id: "a".into(),
                    role: Role::Polite
                },
                LinkSpec {
                    peer_id: "d".into(),
                    role: Role::Impolite
                },
            ]
        );
        assert_eq!(plan.close, ["x"]);
    }

    #[test]
    fn outside_a_room_the_plan_closes_everything() {
        let mut t = joined(&["a", "b"], 2);
        assert_eq!(t.link_plan(["b"]).open, []);
        t.left();
        assert_eq!(t.link_plan(["b"]).close, ["b"]);
    }
}

#[cfg(test)]
mod properties {
    //! Random rooms: a true history of lists, delivered to a tracker as deltas in any
    //! order with duplicates, mixed with full lists of random versions.
    use super::*;
    use proptest::prelude::*;

    use super::tests::P;

    /// A change to the true room: join (or rename) `id` as `name`, or remove `id`.
    #[derive(Debug, Clone)]
    enum Op {
        Join(u8, u8),
        Leave(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..8, 0u8..3).prop_map(|(i, n)| Op::Join(i, n)),
            2 => (0u8..8).prop_map(Op::Leave),
        ]
    }

    /// The true lists: `states[k]` is the list at version `start + k`, and
    /// `deltas[k]` leads from `states[k]` to `states[k + 1]`.
    struct History {
        states: Vec<Vec<P>>,
        deltas: Vec<Delta<P>>,
    }

    fn history(ops: &[Op]) -> History {
        let mut list = vec![P("me".into(), "me".into())];
        let mut states = vec![list.clone()];
        let mut deltas = Vec::new();
        for op in ops {
            let delta = match *op {
                Op::Join(i, n) => {
                    let peer = P(format!("p{i}"), format!("name{n}"));
                    if list.contains(&peer) {
                        continue; // an identical rejoin is not a change
                    }
                    Delta::Joined(peer)
                }
                Op::Leave(i) => {
                    let id = format!("p{i}");
                    if !list.iter().any(|p| p.0 == id) {
                        continue;
                    }
                    Delta::Left(id)
                }
            };
            apply(&mut list, delta.clone());
            states.push(list.clone());
            deltas.push(delta);
        }
        History { states, deltas }
    }

    /// What is delivered: delta `k` (bringing version `start + k + 1`), or the full list
    /// of state `k`.
    #[derive(Debug, Clone)]
    enum Msg {
        Delta(usize),
        Full(usize),
    }

    fn deliveries(n: usize) -> impl Strategy<Value = Vec<Msg>> {
        // Every delta at least once, some twice, some full lists, shuffled.
        let extra = proptest::collection::vec(
            prop_oneof![
                (0..n.max(1)).prop_map(Msg::Delta),
                (0..=n).prop_map(Msg::Full),
            ],
            0..6,
        );
        extra
            .prop_map(move |mut extra| {
                if n == 0 {
                    extra.retain(|m| matches!(m, Msg::Full(_)));
                }
                extra.extend((0..n).map(Msg::Delta));
                extra
            })
            .prop_shuffle()
    }

    fn scenario() -> impl Strategy<Value = (Vec<Op>, Vec<Msg>, u64)> {
        proptest::collection::vec(op(), 0..24).prop_flat_map(|ops| {
            let n = history(&ops).deltas.len();
            (Just(ops), deliveries(n), 1u64..5)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn diffs_replay_to_the_list_and_the_list_is_a_true_state(
            (ops, msgs, start) in scenario()
        ) {
            let h = history(&ops);
            let mut t = PeerTracker::new();
            let first = t.joined("r", "me", h.states[0].clone(), start);
            // The mirror: what a caller that only saw the diffs believes.
            let mut mirror: Vec<P> = first.added;
            let mut last_version = start;
            let mut last_list = t.peers().to_vec();
            for msg in msgs {
                let outcome = match msg {
                    Msg::Delta(k) => t.delta("r", start + k as u64 + 1, h.deltas[k].clone()),
                    Msg::Full(k) => t.full_list("r", h.states[k].clone(), start + k as u64),
                };
                prop_assert!(t.version() >= last_version, "versions never go back");
                if let Some(change) = outcome.change {
                    prop_assert!(t.version() > last_version, "a change always moves forward");
                    for r in &change.removed {
                        prop_assert!(!change.added.iter().any(|a| a.0 == r.0));
                        mirror.retain(|m| m.0 != r.0);
                    }
                    for a in change.added {
                        apply(&mut mirror, Delta::Joined(a));
                    }
                } else {
                    // Entries are the same; only their order may follow a newer list.
                    let mut now = t.peers().to_vec();
                    now.sort_by(|x, y| x.0.cmp(&y.0));
                    last_list.sort_by(|x, y| x.0.cmp(&y.0));
                    prop_assert_eq!(now, last_list, "a silent input changes no entry");
                }
                last_version = t.version();
                last_list = t.peers().to_vec();
                let k = (t.version() - start) as usize;
                prop_assert_eq!(t.peers(), h.states[k].as_slice(), "the list is the true one of its version");
                let mut a: Vec<_> = mirror.clone();
                let mut b: Vec<_> = t.peers().to_vec();
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
                prop_assert_eq!(a, b, "the diffs add up to the list");
            }
            // Every delta was delivered at least once: the tracker reached the end.
            prop_assert_eq!(t.version(), start + h.deltas.len() as u64);
            prop_assert_eq!(t.peers(), h.states[h.deltas.len()].as_slice());
        }

        #[test]
        fn a_gap_is_reported_exactly_when_a_delta_skips_ahead(
            (ops, msgs, start) in scenario()
        ) {
            let h = history(&ops);
            let mut t = PeerTracker::new();
            t.joined("r", "me", h.states[0].clone(), start);
            let mut asked = false;
            for msg in msgs {
                let before = t.version();
                let outcome = match msg {
                    Msg::Delta(k) => t.delta("r", start + k as u64 + 1, h.deltas[k].clone()),
                    Msg::Full(k) => {
                        asked = false;
                        t.full_list("r", h.states[k].clone(), start + k as u64)
                    }
                };
                if outcome.request_full_list {
                    prop_assert!(!asked, "asked at most once until a full list comes");
                    asked = true;
                }
                if let Msg::Delta(k) = msg {
                    let v = start + k as u64 + 1;
                    if v > before + 1 && !asked {
                        prop_assert!(false, "a gap at {} after {} went unreported", v, before);
                    }
                }
            }
        }

        #[test]
        fn roles_always_disagree(a in "[a-z0-9-]{1,6}", b in "[a-z0-9-]{1,6}") {
            prop_assume!(a != b);
            prop_assert_ne!(role(&a, &b), role(&b, &a));
            prop_assert!(role(&a, &b).makes_first_offer() != role(&b, &a).makes_first_offer());
        }

        #[test]
        fn applying_a_plan_gives_one_link_per_other_peer(
            wanted in proptest::collection::vec("[a-d]", 0..6),
            existing in proptest::collection::btree_set("[a-f]", 0..6),
        ) {
            let plan = plan_links("a", wanted.iter().map(String::as_str), existing.iter().map(String::as_str));
            let mut links: Vec<String> = existing.iter().filter(|e| !plan.close.contains(e)).cloned().collect();
            links.extend(plan.open.iter().map(|l| l.peer_id.clone()));
            links.sort();
            let mut want: Vec<String> = wanted.iter().filter(|w| *w != "a").cloned().collect();
            want.sort();
            want.dedup();
            prop_assert_eq!(links, want);
        }
    }
}
