//! Exact statistics over small sets of values (block times, propagation delays, resource samples), and the
//! time series KPIs are drawn from: buckets of one second that widen (double) past a bound, so a series
//! stays small at any length.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Count, mean, standard deviation and nearest-rank percentiles of a set of values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub count: u64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The value at quantile `q` of sorted `values` by nearest rank: the smallest value with at least `q` of them
/// at or below it.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

impl Spread {
    /// Of `values` (none: `None`). Population standard deviation.
    pub fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Some(Spread {
            count: values.len() as u64,
            mean,
            stddev: variance.sqrt(),
            min: values[0],
            p50: nearest_rank(&values, 0.5),
            p90: nearest_rank(&values, 0.9),
            p99: nearest_rank(&values, 0.99),
            max: values[values.len() - 1],
        })
    }
}

/// Mean and largest of a resource over a time span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanPeak {
    pub mean: f64,
    pub peak: f64,
    pub samples: u64,
}

impl MeanPeak {
    pub fn of(values: impl Iterator<Item = f64>) -> Option<MeanPeak> {
        let (mut sum, mut peak, mut n) = (0.0, f64::MIN, 0u64);
        for v in values.filter(|v| v.is_finite()) {
            sum += v;
            peak = peak.max(v);
            n += 1;
        }
        (n > 0).then(|| MeanPeak {
            mean: sum / n as f64,
            peak,
            samples: n,
        })
    }
}

/// A latency histogram for one time bucket: 1 µs to 1 h at two significant digits (about 1% error), small
/// enough to keep hundreds.
pub fn coarse_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// A latency histogram for totals: 1 µs to 1 h at three significant digits (0.1%), as the load generator's.
pub fn fine_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Counts per time bucket.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    /// Calls sent (by send time).
    pub sent: u64,
    /// Calls answered, ok or not (by answer time).
    pub answered: u64,
    /// Failed calls (by answer time), dropped ones included.
    pub failed: u64,
    /// Successful reads (calls that send no transaction).
    pub reads: u64,
    pub tx_sent: u64,
    pub tx_included: u64,
    pub tx_confirmed: u64,
    /// Latency of successful calls answered in the bucket.
    pub latency: Option<Histogram<u32>>,
}

impl Bucket {
    fn merge(&mut self, other: Bucket) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.failed += other.failed;
        self.reads += other.reads;
        self.tx_sent += other.tx_sent;
        self.tx_included += other.tx_included;
        self.tx_confirmed += other.tx_confirmed;
        if let Some(h) = other.latency {
            match &mut self.latency {
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => self.latency = Some(h),
            }
        }
    }
}

/// Buckets from the load's start, one second wide at first; past `max` buckets they double in width.
#[derive(Debug, Clone)]
pub struct Series {
    pub width_us: u64,
    pub buckets: Vec<Bucket>,
    max: usize,
}

impl Series {
    pub fn new(max: usize) -> Series {
        Series {
            width_us: 1_000_000,
            buckets: Vec::new(),
            max: max.max(2),
        }
    }

    /// The bucket holding `at_us`, made (and the buckets widened) as needed.
    pub fn at(&mut self, at_us: u64) -> &mut Bucket {
        let mut index = (at_us / self.width_us) as usize;
        while index >= self.max {
            self.widen();
            index = (at_us / self.width_us) as usize;
        }
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, Bucket::default);
        }
        &mut self.buckets[index]
    }

    fn widen(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        self.width_us *= 2;
        for (i, bucket) in old.into_iter().enumerate() {
            if i % 2 == 0 {
                self.buckets.push(bucket);
            } else if let Some(last) = self.buckets.last_mut() {
                last.merge(bucket);
            }
        }
    }

    pub fn width_s(&self) -> f64 {
        self.width_us as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_use_nearest_rank_and_ignore_what_is_not_finite() {
        let s = Spread::of((1..=100).map(f64::from).chain([f64::NAN]).collect()).unwrap();
        assert_eq!(
            (s.count, s.min, s.p50, s.p90, s.p99, s.max),
            (100, 1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert!((s.stddev - 28.866).abs() < 1e-3);
        assert!(Spread::of(vec![]).is_none());
        assert_eq!(nearest_rank(&[3.0], 0.99), 3.0);
        let mp = MeanPeak::of([1.0, 5.0, 3.0].into_iter()).unwrap();
        assert_eq!((mp.mean, mp.peak, mp.samples), (3.0, 5.0, 3));
    }

    #[test]
    fn a_series_widens_past_its_bound_and_keeps_every_count() {
        let mut series = Series::new(4);
        for second in 0..10u64 {
            series.at(second * 1_000_000 + 5).sent += 1;
        }
        assert_eq!(series.width_us, 4_000_000);
        assert_eq!(series.buckets.iter().map(|b| b.sent).collect::<Vec<_>>(), vec![4, 4, 2]);
    }
}
