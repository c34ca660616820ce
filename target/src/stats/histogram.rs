//! A latency histogram in log-linear buckets, as HdrHistogram's: each power of two of
//! nanoseconds is cut into 16 equal sub-buckets, so a bucket is at most 1/16 (6.25 %) of its
//! value wide. A fixed array: recording a value is an index computation and an increment, no
//! allocation. Values of 2^36 ns (about 69 s) and more go to the last bucket (`max` keeps the
//! real largest).

use serde::Serialize;

/// Sub-buckets per power of two: 2^SUB_BITS.
const SUB_BITS: u32 = 4;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Values up to 2^MAX_EXPONENT - 1 ns have a bucket of their own width.
const MAX_EXPONENT: u32 = 36;
/// Values below 2 * SUB_BUCKETS are exact (one bucket each); then 16 per power of two.
pub const BUCKETS: usize = (MAX_EXPONENT as usize - SUB_BITS as usize + 1) * SUB_BUCKETS;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; BUCKETS],
    count: u64,
    /// Sum of the values recorded (ns), for the mean and Prometheus' `_sum`.
    sum: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

/// The bucket of `value`.
fn index_of(value: u64) -> usize {
    let value = value.min((1 << MAX_EXPONENT) - 1);
    if value < 2 * SUB_BUCKETS as u64 {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let mantissa = (value >> (exponent - SUB_BITS)) as usize;
    (exponent - SUB_BITS + 1) as usize * SUB_BUCKETS + mantissa - SUB_BUCKETS
}

/// The largest value bucket `index` holds.
pub fn highest_of(index: usize) -> u64 {
    if index < 2 * SUB_BUCKETS {
        return index as u64;
    }
    let exponent = (index / SUB_BUCKETS) as u32 + SUB_BITS - 1;
    let mantissa = (index % SUB_BUCKETS + SUB_BUCKETS) as u64;
    ((mantissa + 1) << (exponent - SUB_BITS)) - 1
}

impl LatencyHistogram {
    pub fn record(&mut self, nanoseconds: u64) {
        self.counts[index_of(nanoseconds)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(nanoseconds);
        self.max = self.max.max(nanoseconds);
    }

    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> u64 {
        self.sum
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which a fraction `quantile` (0 to 1) of the recorded values lie:
    /// the highest value of the bucket holding that rank (never above `max`); 0 when empty.
    pub fn quantile(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((quantile * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest_of(index).min(self.max);
            }
        }
        self.max
    }

    /// How many values are at most `value`, exactly when `value` is the highest of a bucket.
    pub fn count_at_most(&self, value: u64) -> u64 {
        let last = index_of(value);
        self.counts[..=last].iter().sum()
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            mean_ns: self.sum.checked_div(self.count).unwrap_or(0),
            p50_ns: self.quantile(0.5),
            p99_ns: self.quantile(0.99),
            p999_ns: self.quantile(0.999),
            max_ns: self.max,
        }
    }
}

/// What the statistics report of a histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        for index in 0..BUCKETS {
            let high = highest_of(index);
            assert_eq!(index_of(high), index, "highest of {index}");
            assert_eq!(index_of(high + 1), (index + 1).min(BUCKETS - 1));
        }
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact() {
        let mut histogram = LatencyHistogram::default();
        for value in 1..=10 {
            histogram.record(value);
        }
        assert_eq!(histogram.quantile(0.5), 5);
        assert_eq!(histogram.quantile(0.9), 9);
        assert_eq!(histogram.quantile(1.0), 10);
        assert_eq!(histogram.summary().mean_ns, 5);
    }

    #[test]
    fn percentiles_of_a_uniform_distribution_are_within_a_bucket() {
        let mut histogram = LatencyHistogram::default();
        // 1..=100_000 microseconds, in nanoseconds.
        for value in 1..=100_000u64 {
            histogram.record(value * 1000);
        }
        for (quantile, exact) in [
            (0.5, 50_000_000u64),
            (0.99, 99_000_000),
            (0.999, 99_900_000),
        ] {
            let reported = histogram.quantile(quantile);
            assert!(reported >= exact, "p{quantile}: {reported} below {exact}");
            assert!(
                reported - exact <= exact / 16,
                "p{quantile}: {reported} more than a bucket above {exact}"
            );
        }
        assert_eq!(histogram.max(), 100_000_000);
        assert_eq!(histogram.quantile(1.0), 100_000_000);
        assert_eq!(histogram.count(), 100_000);
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        let mut histogram = LatencyHistogram::default();
        for _ in 0..990 {
            histogram.record(20_000);
        }
        for _ in 0..10 {
            histogram.record(5_000_000);
        }
        let p50 = histogram.quantile(0.5);
        assert!((20_000..=20_000 + 20_000 / 16).contains(&p50), "{p50}");
        assert!(histogram.quantile(0.99) < 21_300);
        assert_eq!(histogram.quantile(0.999), 5_000_000);
        assert_eq!(histogram.max(), 5_000_000);
    }

    #[test]
    fn merged_histograms_count_both() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        a.record(100);
        b.record(1_000_000);
        b.record(7);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(a.sum(), 1_000_107);
        assert_eq!(a.count_at_most(highest_of(index_of(100))), 2);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(
            LatencyHistogram::default().summary(),
            LatencySummary::default()
        );
    }
}
