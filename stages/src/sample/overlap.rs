//! How alike two sets of values are: the overlapped area of their
//! histograms (Yang & Lerch 2018 use kernel density estimates; histograms
//! over shared bins give the same reading without a bandwidth to choose).

/// Equal-width bins over the range of both sets.
pub const BINS: usize = 10;

/// The overlapped area of the normalized histograms of `a` and `b`, with
/// [`BINS`] bins spanning the smallest to the largest value of either:
/// `sum over bins of min(share of a, share of b)`; 1 = the same
/// distribution, 0 = disjoint. `None` when either set is empty. When every
/// value is equal both histograms are one bin, and the area is 1.
pub fn overlapped_area(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let all = a.iter().chain(b);
    let low = all.clone().copied().fold(f64::INFINITY, f64::min);
    let high = all.copied().fold(f64::NEG_INFINITY, f64::max);
    let width = high - low;
    let histogram = |values: &[f64]| {
        let mut bins = [0.0; BINS];
        for &v in values {
            let bin = if width > 0.0 {
                (((v - low) / width * BINS as f64) as usize).min(BINS - 1)
            } else {
                0
            };
            bins[bin] += 1.0 / values.len() as f64;
        }
        bins
    };
    let (ha, hb) = (histogram(a), histogram(b));
    Some(
        ha.iter()
            .zip(&hb)
            .map(|(x, y)| x.min(*y))
            .sum::<f64>()
            .min(1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_by_hand() {
        assert_eq!(
            overlapped_area(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]),
            Some(1.0)
        );
        assert_eq!(overlapped_area(&[0.0, 0.1], &[0.9, 1.0]), Some(0.0));
        // a: half at 0, half at 1; b: a quarter at 0, three at 1.
        let oa = overlapped_area(&[0.0, 0.0, 1.0, 1.0], &[0.0, 1.0, 1.0, 1.0]).unwrap();
        assert!((oa - 0.75).abs() < 1e-12);
        assert_eq!(overlapped_area(&[5.0], &[5.0, 5.0]), Some(1.0));
        assert_eq!(overlapped_area(&[], &[1.0]), None);
    }
}
