//! Medians, bootstrap intervals and a small deterministic random source (the
//! bench needs shuffles and resamples, not cryptography).

/// xorshift64*: deterministic, seedable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift needs a set bit).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The median (mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// A median with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Median of the samples.
    pub median: f64,
    /// 2.5th percentile of the bootstrap medians.
    pub low: f64,
    /// 97.5th percentile of the bootstrap medians.
    pub high: f64,
}

/// The median of `samples` and its percentile-bootstrap 95% interval from
/// `resamples` resamples.
pub fn bootstrap_median(samples: &[f64], resamples: usize, rng: &mut Rng) -> Estimate {
    let mut medians: Vec<f64> = (0..resamples)
        .map(|_| {
            let resample: Vec<f64> = (0..samples.len())
                .map(|_| samples[rng.below(samples.len())])
                .collect();
            median(&resample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| {
        medians
            .get(((medians.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Estimate {
        median: median(samples),
        low: at(0.025),
        high: at(0.975),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn bootstrap_interval_brackets_the_median_and_narrows_with_agreement() {
        let mut rng = Rng::new(7);
        let spread: Vec<f64> = (0..40).map(|i| 1.0 + f64::from(i) / 100.0).collect();
        let wide = bootstrap_median(&spread, 2000, &mut rng);
        assert!(wide.low <= wide.median && wide.median <= wide.high);
        assert!(wide.high - wide.low > 0.02, "{wide:?}");
        let same = bootstrap_median(&[1.01; 40], 2000, &mut rng);
        assert_eq!((same.low, same.median, same.high), (1.01, 1.01, 1.01));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..50).collect();
        Rng::new(3).shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
