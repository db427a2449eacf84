//! Whether the nodes of a cluster run the same room settings.
//!
//! Each room follows the settings of the node that owns it (`max_peers`, the
//! signal size, HTTP leases, ICE servers, TURN), so nodes that disagree make a
//! room's limits depend on where it happens to live. Every node publishes a
//! digest of its settings with the time it last did; this module judges what
//! the nodes published: only digests published recently count (a node that
//! stopped or was restarted with new settings drops out), and more than one
//! of them is a disagreement.

/// How recently a digest must have been published to count, ms.
pub const SETTINGS_FRESH_MS: u64 = 5_000;

/// Whether the digests published at most [`SETTINGS_FRESH_MS`] before `now`
/// (each `(digest, published at)`, ms on one clock) name more than one set
/// of settings. Returns the distinct fresh digests when they disagree.
pub fn disagreeing(published: &[(String, u64)], now: u64) -> Option<Vec<&str>> {
    let mut fresh: Vec<&str> = published
        .iter()
        .filter(|(_, at)| now.saturating_sub(*at) <= SETTINGS_FRESH_MS)
        .map(|(digest, _)| digest.as_str())
        .collect();
    fresh.sort_unstable();
    fresh.dedup();
    (fresh.len() > 1).then_some(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(digest: &str, at: u64) -> (String, u64) {
        (digest.to_owned(), at)
    }

    #[test]
    fn only_fresh_digests_count_and_two_of_them_disagree() {
        assert_eq!(disagreeing(&[], 10_000), None);
        assert_eq!(disagreeing(&[p("a", 9_000)], 10_000), None);
        assert_eq!(disagreeing(&[p("a", 9_000), p("a", 9_500)], 10_000), None);
        assert_eq!(
            disagreeing(&[p("b", 9_000), p("a", 5_000)], 10_000),
            Some(vec!["a", "b"])
        );
        // A digest last published long ago (its node changed or left) is gone.
        assert_eq!(disagreeing(&[p("a", 9_000), p("b", 4_999)], 10_000), None);
        // A clock that steps back counts a future stamp as fresh, never panics.
        assert_eq!(
            disagreeing(&[p("a", 20_000), p("b", 10_000)], 10_000),
            Some(vec!["a", "b"])
        );
    }
}
