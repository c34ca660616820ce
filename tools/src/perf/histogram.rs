//! A latency histogram with log-linear buckets, allocated once before a run: recording is an
//! index computation and an increment.
//!
//! Values are nanoseconds. Below 2^7 ns each value has its own bucket; above, every power of
//! two is split into 128 equal buckets, so a bucket is at most 1/128 (< 0.8 %) of its values
//! wide. Values from 2^36 ns (about 69 s) up land in the last bucket; `max` stays exact.

const SUB_BUCKET_BITS: u32 = 7;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// The first power of two that is no longer resolved.
const TOP_BIT: u32 = 36;
const BUCKETS: usize = ((TOP_BIT - SUB_BUCKET_BITS + 1) as u64 * SUB_BUCKETS) as usize;

pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, nanos: u64) {
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
        self.sum += u128::from(nanos);
        self.max = self.max.max(nanos);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.sum as f64 / self.total as f64
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which `fraction` (0..=1) of the recorded values lie: the middle of the
    /// bucket holding that rank, never above the exact maximum, which is what the top rank
    /// gives. 0 when nothing was recorded.
    pub fn quantile(&self, fraction: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let exact = fraction.clamp(0.0, 1.0) * self.total as f64;
        // Products like 0.99 * 1000 come out a rounding error above the integer they mean.
        let rank = ((exact - exact * 4.0 * f64::EPSILON).ceil() as u64).max(1);
        if rank >= self.total {
            return self.max as f64;
        }
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bounds_of(bucket);
                return ((low + high) as f64 / 2.0).min(self.max as f64);
            }
        }
        self.max as f64
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS {
        return nanos as usize;
    }
    let top = (63 - nanos.leading_zeros()).min(TOP_BIT - 1);
    let nanos = nanos.min((1 << TOP_BIT) - 1);
    let shift = top - SUB_BUCKET_BITS;
    let sub = (nanos >> shift) - SUB_BUCKETS;
    ((u64::from(shift) + 1) * SUB_BUCKETS + sub) as usize
}

/// The values `[low, high)` that land in `bucket`.
fn bounds_of(bucket: usize) -> (u64, u64) {
    let bucket = bucket as u64;
    if bucket < SUB_BUCKETS {
        return (bucket, bucket + 1);
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let low = (SUB_BUCKETS + bucket % SUB_BUCKETS) << shift;
    (low, low + (1 << shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_whose_bounds_hold_it() {
        let samples = (0..2000).chain((0..40).map(|bit| (1u64 << bit) + 12345 % (1 << bit)));
        for nanos in samples.filter(|&n| n < 1 << TOP_BIT) {
            let (low, high) = bounds_of(bucket_of(nanos));
            assert!(
                low <= nanos && nanos < high,
                "{nanos} not in [{low}, {high})"
            );
            assert!((high - low) as f64 <= (low as f64 / 128.0).max(1.0));
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut histogram = Histogram::default();
        for micros in 1..=10_000u64 {
            histogram.record(micros * 1000);
        }
        let close = |value: f64, expected: f64| (value - expected).abs() <= expected * 0.01;
        assert!(
            close(histogram.quantile(0.5), 5_000_000.0),
            "{}",
            histogram.quantile(0.5)
        );
        assert!(
            close(histogram.quantile(0.99), 9_900_000.0),
            "{}",
            histogram.quantile(0.99)
        );
        assert!(
            close(histogram.quantile(0.999), 9_990_000.0),
            "{}",
            histogram.quantile(0.999)
        );
        assert!(close(histogram.mean(), 5_000_500.0));
        assert_eq!(histogram.max(), 10_000_000);
        assert_eq!(histogram.count(), 10_000);
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        let mut histogram = Histogram::default();
        for _ in 0..990 {
            histogram.record(10_000);
        }
        for _ in 0..10 {
            histogram.record(5_000_000);
        }
        assert!((histogram.quantile(0.5) - 10_000.0).abs() < 100.0);
        assert!((histogram.quantile(0.99) - 10_000.0).abs() < 100.0);
        assert!((histogram.quantile(0.999) - 5_000_000.0).abs() < 50_000.0);
        assert_eq!(histogram.quantile(1.0), 5_000_000.0);
    }

    #[test]
    fn empty_is_all_zero() {
        let histogram = Histogram::default();
        assert_eq!(
            (histogram.quantile(0.5), histogram.mean(), histogram.max()),
            (0.0, 0.0, 0)
        );
    }
}
