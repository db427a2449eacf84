//! Percentiles of latencies.

use std::time::Duration;

/// p50, p99 and max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// How many values.
    pub count: usize,
}

/// Summarises `values` (sorted in place).
pub fn summarize(values: &mut [Duration]) -> Summary {
    if values.is_empty() {
        return Summary::default();
    }
    values.sort_unstable();
    let rank = |q: f64| {
        let n = values.len();
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        ms(values[i])
    };
    Summary {
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: ms(values[values.len() - 1]),
        count: values.len(),
    }
}

/// A duration in milliseconds, rounded to microseconds.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarize(&mut v);
        assert_eq!(
            (s.p50_ms, s.p99_ms, s.max_ms, s.count),
            (50.0, 99.0, 100.0, 100)
        );
        assert_eq!(summarize(&mut []).count, 0);
    }
}
