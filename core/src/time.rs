//! Time as a value: the caller reads the clock and passes it in.

use chrono::{DateTime, SecondsFormat};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This instant plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// RFC 3339 in UTC with milliseconds and a `Z` suffix, e.g. `2024-01-15T10:30:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let ms = i64::try_from(self.0).unwrap_or(i64::MAX);
        DateTime::from_timestamp_millis(ms)
            .unwrap_or(DateTime::<chrono::Utc>::MAX_UTC)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_utc_with_z() {
        assert_eq!(
            Timestamp(1_705_314_600_000).to_rfc3339(),
            "2024-01-15T10:30:00.000Z"
        );
        assert_eq!(
            Timestamp(0).plus_ms(1).to_rfc3339(),
            "1970-01-01T00:00:00.001Z"
        );
    }

    #[test]
    fn far_future_does_not_panic() {
        assert!(!Timestamp(u64::MAX).to_rfc3339().is_empty());
    }
}
