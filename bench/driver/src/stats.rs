//! Small summaries of repeated measurements.

use serde::{Deserialize, Serialize};

/// Median, extremes and the 90th percentile of a set of measurements.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Summary {
    pub runs: usize,
    pub median: f64,
    pub min: f64,
    pub p90: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        // Nearest-rank percentile.
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
        Self {
            runs: n,
            median,
            min: sorted[0],
            p90: sorted[rank - 1],
            max: sorted[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!((s.min, s.p90, s.max), (1.0, 9.0, 10.0));
    }
}
