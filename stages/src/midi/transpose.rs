//! Key estimation (Krumhansl-Schmuckler) and transposition to C major /
//! A minor, to shrink the vocabulary.
//!
//! The pitch-class histogram is weighted by each note's length in grid steps
//! (not ticks), so a decoded song estimates exactly as its source did and the
//! round trip holds.

use super::read::DRUM_PROGRAM;

/// Whether songs are moved to a common key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transpose {
    #[default]
    None,
    /// Major keys to C major, minor keys to A minor.
    C,
}

impl Transpose {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "c" => Some(Self::C),
            _ => None,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::C => "c",
        }
    }
}

// Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
const MAJOR: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
const MINOR: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

/// A key: tonic pitch class 0-11 (0 = C) and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub tonic: u8,
    pub minor: bool,
}

/// The most likely key of a duration-weighted pitch-class histogram, or
/// `None` when it is empty. Ties go to the lower tonic, major first.
pub fn estimate_key(histogram: &[u64; 12]) -> Option<Key> {
    if histogram.iter().all(|&h| h == 0) {
        return None;
    }
    let mut best: Option<(f64, Key)> = None;
    for minor in [false, true] {
        let profile = if minor { &MINOR } else { &MAJOR };
        for tonic in 0..12u8 {
            let r = correlation(histogram, profile, tonic as usize);
            if best.is_none_or(|(b, _)| r > b) {
                best = Some((r, Key { tonic, minor }));
            }
        }
    }
    best.map(|(_, key)| key)
}

/// Pearson correlation of the histogram with the profile rotated to `tonic`.
fn correlation(histogram: &[u64; 12], profile: &[f64; 12], tonic: usize) -> f64 {
    let xs: [f64; 12] = std::array::from_fn(|pc| histogram[(pc + tonic) % 12] as f64);
    let mean_x = xs.iter().sum::<f64>() / 12.0;
    let mean_y = profile.iter().sum::<f64>() / 12.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(profile) {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// The shift in semitones (-6..=5, the smallest interval) that moves `key`
/// to C major or A minor.
pub fn shift_to_c(key: Key) -> i32 {
    let target = if key.minor { 9 } else { 0 };
    let up = (target - key.tonic as i32).rem_euclid(12);
    if up >= 6 { up - 12 } else { up }
}

/// Shifts a pitch, moving it by octaves when it would leave 0..=127.
pub fn shift_pitch(pitch: u8, shift: i32) -> u8 {
    let mut p = pitch as i32 + shift;
    while p < 0 {
        p += 12;
    }
    while p > 127 {
        p -= 12;
    }
    p as u8
}

/// The histogram of the non-drum notes given as (program, pitch, length).
pub fn histogram(notes: impl Iterator<Item = (u8, u8, u64)>) -> [u64; 12] {
    let mut h = [0u64; 12];
    for (program, pitch, length) in notes {
        if program != DRUM_PROGRAM {
            h[pitch as usize % 12] += length;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(tonic: u8, steps: &[u8]) -> [u64; 12] {
        let notes = steps.iter().map(|s| (0u8, 60 + tonic + s, 4u64));
        // The tonic triad sounds longer, as in real music.
        let triad = [0u8, 4, 7].into_iter().map(|s| (0u8, 60 + tonic + s, 8u64));
        histogram(notes.chain(triad))
    }

    #[test]
    fn finds_major_keys_and_moves_them_by_the_smallest_interval() {
        let major = [0, 2, 4, 5, 7, 9, 11];
        for tonic in 0..12 {
            let key = estimate_key(&scale(tonic, &major)).unwrap();
            assert_eq!(
                key,
                Key {
                    tonic,
                    minor: false
                }
            );
            let shift = shift_to_c(key);
            assert!((-6..=5).contains(&shift));
            assert_eq!((tonic as i32 + shift).rem_euclid(12), 0);
        }
    }

    #[test]
    fn finds_a_minor_key_and_ignores_drums() {
        // E minor: the tonic triad E G B dominates.
        let mut h = histogram([(0u8, 64u8, 10u64), (0, 67, 8), (0, 71, 8), (0, 66, 2)].into_iter());
        let drums = histogram([(DRUM_PROGRAM, 61u8, 1000u64)].into_iter());
        assert_eq!(drums, [0; 12]);
        h[0] += 0;
        let key = estimate_key(&h).unwrap();
        assert_eq!(
            key,
            Key {
                tonic: 4,
                minor: true
            }
        );
        assert_eq!(shift_to_c(key), 5); // E -> A
        assert_eq!(estimate_key(&[0; 12]), None);
    }

    #[test]
    fn shifted_pitches_stay_in_range() {
        assert_eq!(shift_pitch(2, -5), 9);
        assert_eq!(shift_pitch(125, 5), 118);
        assert_eq!(shift_pitch(60, -1), 59);
    }
}
