//! A deterministic train/validation split: the same items, fraction and seed always give the
//! same split, on every machine and Rust version (the shuffle is our own SplitMix64 generator
//! driving a Fisher-Yates shuffle, not a library's, whose streams may change between versions).

use super::issue::{DataError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainValidationSplit<T> {
    pub train: Vec<T>,
    pub validation: Vec<T>,
}

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast, and the same stream everywhere.
/// Also draws the resamples of an evaluation's confidence intervals.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (the slight modulo bias is irrelevant for a split).
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

/// How many of `n` items go to validation: `round(n * fraction)`, but at least one when the
/// fraction is above zero, and at least one left for training (a single item always trains).
fn validation_count(n: usize, fraction: f64) -> usize {
    if n < 2 {
        return 0;
    }
    let count = (n as f64 * fraction).round() as usize;
    let count = if fraction > 0.0 { count.max(1) } else { count };
    count.min(n - 1)
}

/// Marks `count` of `n` places, chosen by a Fisher-Yates shuffle seeded with `seed`: the first
/// `count` of the shuffled order, so the same seed with a larger count marks a superset.
fn chosen_by_seed(n: usize, count: usize, seed: u64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut chosen = vec![false; n];
    for &index in &order[..count] {
        chosen[index] = true;
    }
    chosen
}

/// Puts a randomly chosen `validation_fraction` of `items` aside for validation. Both parts
/// keep the items' original order.
pub fn split_train_validation<T>(
    items: Vec<T>,
    validation_fraction: f64,
    seed: u64,
) -> Result<TrainValidationSplit<T>> {
    if !(0.0..1.0).contains(&validation_fraction) {
        return Err(DataError::InvalidOption(format!(
            "the validation fraction must be at least 0 and below 1, not {validation_fraction}"
        )));
    }
    let n = items.len();
    let in_validation = chosen_by_seed(n, validation_count(n, validation_fraction), seed);
    let mut split = TrainValidationSplit {
        train: Vec::new(),
        validation: Vec::new(),
    };
    for (item, validation) in items.into_iter().zip(in_validation) {
        if validation {
            split.validation.push(item);
        } else {
            split.train.push(item);
        }
    }
    Ok(split)
}

/// A share of `items` chosen by `seed`, in their original order: `round(n * fraction)` of them,
/// at least one. A larger share keeps every item a smaller one chose (the same shuffle, cut
/// longer), so runs on 10%, 30% and all of a set add examples rather than swap them.
pub fn take_share<T>(items: Vec<T>, fraction: f64, seed: u64) -> Result<Vec<T>> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(DataError::InvalidOption(format!(
            "the share of the training examples must be above 0 and at most 1, not {fraction}"
        )));
    }
    let n = items.len();
    if fraction == 1.0 || n == 0 {
        return Ok(items);
    }
    let keep = ((n as f64 * fraction).round() as usize).clamp(1, n);
    // Another stream than the validation split's, so the two choices are independent.
    let chosen = chosen_by_seed(n, keep, seed ^ 0x5EED_0F5A_4E5E_0001);
    Ok(items
        .into_iter()
        .zip(chosen)
        .filter_map(|(item, keep)| keep.then_some(item))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_and_leave_both_sides_something() {
        assert_eq!(validation_count(100, 0.1), 10);
        assert_eq!(
            validation_count(5, 0.01),
            1,
            "a positive fraction sets at least one aside"
        );
        assert_eq!(
            validation_count(2, 0.9),
            1,
            "at least one item stays for training"
        );
        assert_eq!(validation_count(10, 0.0), 0);
        assert_eq!(validation_count(1, 0.5), 0, "a single item trains");
        assert!(split_train_validation(vec![1], 1.0, 0).is_err());
        assert!(split_train_validation(vec![1], f64::NAN, 0).is_err());
    }

    #[test]
    fn a_larger_share_keeps_what_a_smaller_one_chose() {
        let items: Vec<u32> = (0..200).collect();
        let tenth = take_share(items.clone(), 0.1, 7).unwrap();
        let third = take_share(items.clone(), 0.3, 7).unwrap();
        assert_eq!((tenth.len(), third.len()), (20, 60));
        assert!(tenth.iter().all(|i| third.contains(i)));
        assert!(third.windows(2).all(|w| w[0] < w[1]), "original order");
        assert_ne!(
            tenth,
            (0..20).collect::<Vec<_>>(),
            "chosen, not the first rows"
        );
        assert_eq!(take_share(items.clone(), 1.0, 7).unwrap(), items);
        assert_eq!(take_share(vec![1, 2, 3], 0.01, 7).unwrap().len(), 1);
        assert_eq!(
            take_share(items.clone(), 0.3, 7).unwrap(),
            third,
            "deterministic"
        );
        for bad in [0.0, 1.5, f64::NAN] {
            assert!(take_share(vec![1], bad, 7).is_err(), "{bad}");
        }
    }
}
