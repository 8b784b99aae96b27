//! Summaries of measured durations: percentiles by the nearest-rank method,
//! shared by the end-to-end, drift and git benchmarks.

use std::time::Duration;

/// Sorted samples of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    /// Takes ownership of the samples and sorts them once.
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Samples { sorted: samples }
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The `p` quantile (0.0–1.0) in milliseconds by nearest rank; NaN when empty,
    /// so a missing figure is visible in a table instead of printed as zero.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let n = self.sorted.len();
        let idx = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.sorted[idx].as_secs_f64() * 1000.0
    }

    /// The median in milliseconds.
    pub fn p50_ms(&self) -> f64 {
        self.percentile_ms(0.50)
    }

    /// The 99th percentile in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        self.percentile_ms(0.99)
    }

    /// The smallest sample in milliseconds (NaN when empty).
    pub fn min_ms(&self) -> f64 {
        self.sorted
            .first()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Samples {
        Samples::new(v.iter().map(|&m| Duration::from_millis(m)).collect())
    }

    #[test]
    fn percentiles_use_the_nearest_rank_of_sorted_samples() {
        let s = ms(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]);
        assert_eq!(s.p50_ms(), 5.0);
        assert_eq!(s.p99_ms(), 10.0);
        assert_eq!(s.min_ms(), 1.0);
        assert_eq!(s.percentile_ms(0.0), 1.0);
    }

    #[test]
    fn an_empty_measurement_is_not_a_number_rather_than_zero() {
        assert!(ms(&[]).p50_ms().is_nan());
        assert!(ms(&[]).min_ms().is_nan());
    }
}
