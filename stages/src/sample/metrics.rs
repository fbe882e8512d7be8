//! Music metrics of one song on its token grid, after Yang & Lerch (2018),
//! "On the evaluation of generative models in music", with the definitions
//! MusPy uses where theirs leave a choice.
//!
//! Time is in grid steps, `steps_per_beat` per beat (quarter note; the
//! encode parameter, 16 by default); a bar is 4 beats, since the tokens keep
//! no time signature. A note covers steps `start..end`. Pitch metrics use
//! the melodic notes (not drums); rhythm metrics use every note. A metric
//! that needs notes a song lacks is `None` (`null` in JSON).

use serde::Serialize;

use crate::midi::DRUM_PROGRAM;
use crate::midi::encoder::GridNote;

/// Beats per bar (4/4 assumed).
pub const BEATS_PER_BAR: u64 = 4;

/// The metric names, in report order (the keys of `overlap`).
pub const METRICS: [&str; 12] = [
    "pitch_count",
    "pitch_range",
    "pitch_classes",
    "polyphony",
    "scale_consistency",
    "pitch_class_entropy",
    "empty_beat_rate",
    "groove_consistency",
    "notes_per_beat",
    "note_length_mean",
    "note_length_p95",
    "long_note_share",
];

/// A note longer than this many beats counts in `long_note_share`.
pub const LONG_NOTE_BEATS: f64 = 4.0;

/// The metrics of one song.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SongMetrics {
    /// Grammar validity: the line passes [`super::check::check_line`].
    pub valid: bool,
    /// Notes, drums included.
    pub notes: usize,
    /// Beats up to the last note's end, rounded up.
    pub beats: u64,
    /// Distinct melodic pitches (MIDI numbers).
    pub pitch_count: Option<f64>,
    /// Highest minus lowest melodic pitch, in semitones.
    pub pitch_range: Option<f64>,
    /// Distinct pitch classes (0-11) among melodic notes: 1..=12.
    pub pitch_classes: Option<f64>,
    /// Mean number of melodic notes sounding, over the steps where at least
    /// one sounds: sum of note lengths / steps covered by any note.
    pub polyphony: Option<f64>,
    /// The largest share of melodic notes (each note once) whose pitch
    /// class lies in one major scale; natural minor scales are the same
    /// sets as their relative majors, so they are covered.
    pub scale_consistency: Option<f64>,
    /// Shannon entropy (bits) of the melodic notes' pitch-class histogram
    /// (note counts): 0 for one class, log2(12) = 3.585 for all equally.
    pub pitch_class_entropy: Option<f64>,
    /// Share of the beats (up to the last note's end) during which no note
    /// sounds.
    pub empty_beat_rate: Option<f64>,
    /// 1 - mean over consecutive bars of the Hamming distance between their
    /// onset vectors (one bit per grid step of a bar: a note starts there)
    /// divided by the steps per bar; `None` with fewer than two bars.
    pub groove_consistency: Option<f64>,
    /// Notes per beat.
    pub notes_per_beat: Option<f64>,
    /// Mean note length in beats (every note, drums included).
    pub note_length_mean: Option<f64>,
    /// 95th percentile of the note lengths in beats (nearest rank).
    pub note_length_p95: Option<f64>,
    /// Share of the notes longer than [`LONG_NOTE_BEATS`] beats.
    pub long_note_share: Option<f64>,
    /// The longest note in beats.
    pub note_length_max: Option<f64>,
}

impl SongMetrics {
    /// The metric named `name` (one of [`METRICS`]).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "pitch_count" => self.pitch_count,
            "pitch_range" => self.pitch_range,
            "pitch_classes" => self.pitch_classes,
            "polyphony" => self.polyphony,
            "scale_consistency" => self.scale_consistency,
            "pitch_class_entropy" => self.pitch_class_entropy,
            "empty_beat_rate" => self.empty_beat_rate,
            "groove_consistency" => self.groove_consistency,
            "notes_per_beat" => self.notes_per_beat,
            "note_length_mean" => self.note_length_mean,
            "note_length_p95" => self.note_length_p95,
            "long_note_share" => self.long_note_share,
            "note_length_max" => self.note_length_max,
            _ => None,
        }
    }
}

/// Computes the metrics of a song's grid notes.
pub fn measure(notes: &[GridNote], steps_per_beat: u32, valid: bool) -> SongMetrics {
    let spb = steps_per_beat.max(1) as u64;
    let melodic: Vec<&GridNote> = notes.iter().filter(|n| n.program != DRUM_PROGRAM).collect();
    let end = notes.iter().map(|n| n.end).max().unwrap_or(0);
    let beats = end.div_ceil(spb);
    let any_melodic = !melodic.is_empty();
    let any = !notes.is_empty();
    let mut class_counts = [0usize; 12];
    for n in &melodic {
        class_counts[n.pitch as usize % 12] += 1;
    }
    let mut lengths: Vec<f64> = notes
        .iter()
        .map(|n| (n.end - n.start) as f64 / spb as f64)
        .collect();
    lengths.sort_unstable_by(f64::total_cmp);
    let p95 = lengths
        .get(((lengths.len() as f64 * 0.95).ceil() as usize).max(1) - 1)
        .copied();
    let pitches = melodic.iter().map(|n| n.pitch);
    let mut distinct = [false; 128];
    pitches.clone().for_each(|p| distinct[p as usize] = true);
    SongMetrics {
        valid,
        notes: notes.len(),
        beats,
        pitch_count: any_melodic.then(|| distinct.iter().filter(|&&d| d).count() as f64),
        pitch_range: any_melodic.then(|| {
            (pitches.clone().max().unwrap_or(0) - pitches.clone().min().unwrap_or(0)) as f64
        }),
        pitch_classes: any_melodic.then(|| class_counts.iter().filter(|&&c| c > 0).count() as f64),
        polyphony: any_melodic.then(|| polyphony(&melodic)),
        scale_consistency: any_melodic
            .then(|| scale_consistency(&class_counts) / melodic.len() as f64),
        pitch_class_entropy: any_melodic.then(|| entropy(&class_counts)),
        empty_beat_rate: any.then(|| empty_beat_rate(notes, spb, beats)),
        groove_consistency: groove_consistency(notes, spb * BEATS_PER_BAR, end),
        notes_per_beat: any.then(|| notes.len() as f64 / beats.max(1) as f64),
        note_length_mean: any.then(|| lengths.iter().sum::<f64>() / lengths.len() as f64),
        note_length_p95: p95,
        long_note_share: any.then(|| {
            lengths.iter().filter(|&&l| l > LONG_NOTE_BEATS).count() as f64 / lengths.len() as f64
        }),
        note_length_max: lengths.last().copied(),
    }
}

fn polyphony(notes: &[&GridNote]) -> f64 {
    let total: u64 = notes.iter().map(|n| n.end - n.start).sum();
    let mut spans: Vec<(u64, u64)> = notes.iter().map(|n| (n.start, n.end)).collect();
    spans.sort_unstable();
    let mut covered = 0;
    let mut current: Option<(u64, u64)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                covered += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        covered += ce - cs;
    }
    total as f64 / covered.max(1) as f64
}

/// The most notes that fit one major scale.
fn scale_consistency(class_counts: &[usize; 12]) -> f64 {
    const MAJOR: [usize; 7] = [0, 2, 4, 5, 7, 9, 11];
    (0..12)
        .map(|tonic| {
            MAJOR
                .iter()
                .map(|d| class_counts[(tonic + d) % 12])
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0) as f64
}

fn entropy(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.log2()
        })
        .sum::<f64>()
        .max(0.0)
}

/// Beats with no note sounding over all beats. Counted over the notes'
/// beat spans, merged, rather than with an array per beat: a song may
/// claim 2^40 steps, and this runs on generated songs too.
fn empty_beat_rate(notes: &[GridNote], spb: u64, beats: u64) -> f64 {
    let mut spans: Vec<(u64, u64)> = notes
        .iter()
        .map(|n| (n.start / spb, (n.end.max(1) - 1) / spb))
        .collect();
    spans.sort_unstable();
    let mut busy = 0u64;
    let mut current: Option<(u64, u64)> = None;
    for (first, last) in spans {
        let last = last.min(beats.saturating_sub(1));
        if first > last {
            continue;
        }
        current = match current {
            Some((cf, cl)) if first <= cl + 1 => Some((cf, cl.max(last))),
            Some((cf, cl)) => {
                busy += cl - cf + 1;
                Some((first, last))
            }
            None => Some((first, last)),
        };
    }
    if let Some((cf, cl)) = current {
        busy += cl - cf + 1;
    }
    beats.saturating_sub(busy) as f64 / beats.max(1) as f64
}

/// From the distinct onsets as (bar, step in the bar), sorted, rather than
/// an array per step (see [`empty_beat_rate`]). The Hamming distance of two
/// bars is |A| + |B| - 2 |A and B|: each bar's onsets count once per pair of
/// consecutive bars it is in, less twice those it shares with the bar
/// before.
fn groove_consistency(notes: &[GridNote], steps_per_bar: u64, end: u64) -> Option<f64> {
    let bars = end.div_ceil(steps_per_bar);
    if bars < 2 {
        return None;
    }
    let width = steps_per_bar;
    let mut onsets: Vec<(u64, u64)> = notes
        .iter()
        .map(|n| (n.start / width, n.start % width))
        .collect();
    onsets.sort_unstable();
    onsets.dedup();
    let mut distance = 0u64;
    let mut previous: &[(u64, u64)] = &[];
    for this in onsets.chunk_by(|a, b| a.0 == b.0) {
        let bar = this[0].0;
        let pairs = u64::from(bar > 0) + u64::from(bar + 1 < bars);
        distance += this.len() as u64 * pairs;
        if bar > 0 && previous.first().is_some_and(|p| p.0 == bar - 1) {
            distance -= 2 * shared_steps(previous, this);
        }
        previous = this;
    }
    Some(1.0 - distance as f64 / ((bars - 1) * width) as f64)
}

/// How many steps in the bar two sorted onset lists share.
fn shared_steps(a: &[(u64, u64)], b: &[(u64, u64)]) -> u64 {
    let (mut i, mut j, mut shared) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].1.cmp(&b[j].1) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::parse_tokens;

    fn metrics(line: &str, spb: u32) -> SongMetrics {
        measure(&parse_tokens(line).unwrap().notes, spb, true)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn a_c_major_arpeggio_by_hand() {
        // spb = 4. C4, E4, G4 one beat each, then C5 with G4 held under it
        // for one beat, then one silent beat, then a drum on the last beat.
        let line = "start i0:v80:60 wait:4 end:i0:v80:60 i0:v80:64 wait:4 end:i0:v80:64 \
                    i0:v80:67 wait:4 i0:v80:72 wait:4 end:i0:v80:67 end:i0:v80:72 \
                    wait:4 i128:v90:36 wait:1 end:i128:v90:36 finish";
        let m = metrics(line, 4);
        assert_eq!(m.notes, 5);
        // Last end at step 21 -> 6 beats (21 / 4 rounded up).
        assert_eq!(m.beats, 6);
        assert!(close(m.pitch_count, 4.0));
        assert!(close(m.pitch_range, 12.0));
        // Classes C, E, G.
        assert!(close(m.pitch_classes, 3.0));
        // Melodic note lengths 4 + 4 + 8 + 4 = 20 over 16 covered steps.
        assert!(close(m.polyphony, 1.25));
        assert!(close(m.scale_consistency, 1.0));
        // Counts C: 2, E: 1, G: 1 -> H = 0.5 + 0.5 + 0.5 = 1.5 bits.
        assert!(close(m.pitch_class_entropy, 1.5));
        // Beat 4 (steps 16..20) is silent: 1 of 6.
        assert!(close(m.empty_beat_rate, 1.0 / 6.0));
        // Bars of 16 steps: bar 0 onsets {0, 4, 8, 12}, bar 1 onsets {4}
        // (step 20): they differ at 0, 8, 12 -> 1 - 3/16.
        assert!(close(m.groove_consistency, 13.0 / 16.0));
        assert!(close(m.notes_per_beat, 5.0 / 6.0));
        // Lengths 1, 1, 2, 1 and 0.25 beats: mean 1.05; the 95th percentile
        // (nearest rank 5 of 5) is the longest.
        assert!(close(m.note_length_mean, 1.05));
        assert!(close(m.note_length_p95, 2.0));
        assert!(close(m.note_length_max, 2.0));
        assert!(close(m.long_note_share, 0.0));
        let long = metrics(
            "start i0:v80:60 d:64 d:16 i0:v80:64 d:4 wait:4 i0:v80:65 d:4 finish",
            16,
        );
        assert!(close(long.note_length_max, 5.0));
        assert!(close(long.long_note_share, 1.0 / 3.0));
        assert!(close(long.note_length_p95, 5.0));
    }

    #[test]
    fn chromatic_notes_drums_only_and_one_bar() {
        // All 12 classes once: entropy log2(12); one major scale holds 7 of 12.
        let mut line = String::from("start");
        for p in 60..72 {
            line += &format!(" i0:v80:{p} wait:1 end:i0:v80:{p}");
        }
        line += " finish";
        let m = metrics(&line, 16);
        assert!(close(m.pitch_class_entropy, 12f64.log2()));
        assert!(close(m.pitch_count, 12.0));
        assert!(close(m.pitch_range, 11.0));
        assert!(close(m.scale_consistency, 7.0 / 12.0));
        assert!(close(m.polyphony, 1.0));
        assert_eq!(m.groove_consistency, None, "one bar only");
        let drums = metrics("start i128:v90:36 wait:16 end:i128:v90:36 finish", 16);
        assert_eq!(drums.pitch_range, None);
        assert!(close(drums.empty_beat_rate, 0.0));
        assert!(close(drums.notes_per_beat, 1.0));
    }
}
