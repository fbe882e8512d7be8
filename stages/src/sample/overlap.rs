//! How alike two sets of values are, two ways:
//!
//! - [`overlapped_area`]: the overlapped area of the two sets' histograms
//!   over 10 shared bins spanning both (1 = the same distribution);
//! - [`kde_overlap`]: Yang & Lerch (2018): the overlapped area of two
//!   Gaussian kernel density estimates, one of the distances between songs
//!   of the reference set (intra-set), one of the distances between a song
//!   of each set (inter-set). It asks "is a generated song as far from the
//!   real songs as real songs are from each other?", and, unlike shared
//!   bins, it does not jump when one value crosses a bin edge, which
//!   matters with a handful of samples.

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

/// A Gaussian kernel density estimate of `values` at `x`, bandwidth `h`.
fn density(values: &[f64], h: f64, x: f64) -> f64 {
    let norm = 1.0 / (values.len() as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
    values
        .iter()
        .map(|v| (-0.5 * ((x - v) / h).powi(2)).exp())
        .sum::<f64>()
        * norm
}

/// Silverman's rule of thumb, with a floor for sets of equal values.
fn bandwidth(values: &[f64], floor: f64) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    (1.06 * sd * n.powf(-0.2)).max(floor)
}

/// Absolute differences of every pair within `a`.
pub fn intra_distances(a: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            out.push((a[i] - a[j]).abs());
        }
    }
    out
}

/// Absolute differences of every pair of one value of `a` and one of `b`.
pub fn inter_distances(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| (x - y).abs()))
        .collect()
}

/// The overlapped area of the KDEs of two sets of values (integrated on a
/// grid of 512 points over both ranges plus 4 bandwidths); `None` when
/// either is empty.
pub fn kde_area(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let all = a.iter().chain(b);
    let low = all.clone().copied().fold(f64::INFINITY, f64::min);
    let high = all.copied().fold(f64::NEG_INFINITY, f64::max);
    // Equal values get a bandwidth of a thousandth of the scale.
    let floor = (high.abs().max(low.abs()) * 1e-3).max(1e-9);
    let (ha, hb) = (bandwidth(a, floor), bandwidth(b, floor));
    let (from, to) = (low - 4.0 * ha.max(hb), high + 4.0 * ha.max(hb));
    const POINTS: usize = 512;
    let dx = (to - from) / (POINTS - 1) as f64;
    let area: f64 = (0..POINTS)
        .map(|i| {
            let x = from + i as f64 * dx;
            density(a, ha, x).min(density(b, hb, x))
        })
        .sum::<f64>()
        * dx;
    Some(area.clamp(0.0, 1.0))
}

/// Yang & Lerch's overlap of a generated set with a reference set: the KDE
/// overlapped area of the reference's intra-set distances and the
/// inter-set distances. `None` when the reference has fewer than two
/// values or the generated set none.
pub fn kde_overlap(generated: &[f64], reference: &[f64]) -> Option<f64> {
    if reference.len() < 2 {
        return None;
    }
    kde_area(
        &intra_distances(reference),
        &inter_distances(generated, reference),
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

    #[test]
    fn kde_overlap_by_hand() {
        // Two equal sets of distances: the same density, area 1.
        let a = [0.0, 1.0, 2.0, 3.0];
        assert!((kde_area(&a, &a).unwrap() - 1.0).abs() < 1e-3);
        // Far apart: no overlap.
        assert!(kde_area(&[0.0, 0.1, 0.2], &[100.0, 100.1]).unwrap() < 1e-6);
        // Songs drawn from the reference overlap far more than songs far off.
        let reference = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let near = kde_overlap(&[2.0, 3.5, 5.0], &reference).unwrap();
        let far = kde_overlap(&[20.0, 21.0, 22.0], &reference).unwrap();
        assert!(near > 0.7 && far < 0.05, "{near} {far}");
        assert_eq!(intra_distances(&[1.0, 4.0, 6.0]), [3.0, 5.0, 2.0]);
        assert_eq!(inter_distances(&[1.0], &[4.0, 0.0]), [3.0, 1.0]);
        assert_eq!(kde_overlap(&[1.0], &[1.0]), None);
        // Equal values on both sides: the same (narrow) density.
        assert!((kde_overlap(&[5.0, 5.0], &[5.0, 5.0, 5.0]).unwrap() - 1.0).abs() < 1e-3);
    }
}
