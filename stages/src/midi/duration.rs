//! Note lengths for `note_format = "duration"`: which lengths a `d:` token
//! holds, how a length rounds to them, and how a long note is tied.
//!
//! With `spb` grid steps per beat, one `d:` token holds every length up to
//! one beat (`d:1` ..= `d:spb`), then multiples of a sixteenth note
//! (`spb / 4` steps, at least 1) up to one bar of 4 beats. A note longer
//! than a bar is written the way a musician ties it: whole bars (`d:{bar}`)
//! and then the rest, rounded to whole beats (`i0:v80:60 d:64 d:64 d:32` is
//! a note of 10 beats at 16 steps per beat). Lengths round to the nearest
//! of these values, but never past the next start of the same (program,
//! pitch), so rounding makes no overlap and rounding again changes nothing.

/// Whether notes are written as start and end events or as start and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum NoteFormat {
    /// `i80:v100:64 ... wait:8 end:i80:v100:64` (MuseNet style).
    #[default]
    OnOff,
    /// `i80:v100:64 d:8` and no end tokens.
    Duration,
}

impl NoteFormat {
    pub fn parse(text: &str) -> Option<NoteFormat> {
        match text {
            "on_off" => Some(NoteFormat::OnOff),
            "duration" => Some(NoteFormat::Duration),
            _ => None,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            NoteFormat::OnOff => "on_off",
            NoteFormat::Duration => "duration",
        }
    }
}

/// Steps in a bar of 4 beats: the longest single `d:` token.
pub fn bar_steps(spb: u32) -> u64 {
    4 * spb.max(1) as u64
}

/// The step between lengths from one beat to one bar (a sixteenth note).
fn fine_step(spb: u32) -> u64 {
    (spb.max(1) as u64 / 4).max(1)
}

/// Whether a single `d:` token may hold `steps`.
pub fn is_token_length(steps: u64, spb: u32) -> bool {
    let beat = spb.max(1) as u64;
    steps >= 1 && (steps <= beat || (steps <= bar_steps(spb) && steps % fine_step(spb) == 0))
}

/// Whether a note may last `steps` (a token length, or longer than a bar
/// and a whole number of beats).
pub fn is_note_length(steps: u64, spb: u32) -> bool {
    is_token_length(steps, spb) || (steps > bar_steps(spb) && steps % spb.max(1) as u64 == 0)
}

/// `length` (>= 1) rounded to the nearest note length not above `limit`
/// (>= 1); halves round up.
pub fn round_length(length: u64, limit: u64, spb: u32) -> u64 {
    let beat = spb.max(1) as u64;
    let limit = limit.max(1);
    let length = length.clamp(1, limit);
    if length <= beat {
        return length;
    }
    let unit = if length <= bar_steps(spb) {
        fine_step(spb)
    } else {
        beat
    };
    let nearest = (length + unit / 2) / unit * unit;
    let mut rounded = if nearest <= limit {
        nearest
    } else {
        length / unit * unit
    };
    // Between one beat and the first multiple of `unit` above it (when
    // `unit` does not divide a beat), or rounding past a bar with beats.
    while !is_note_length(rounded, spb) && rounded > 1 {
        rounded -= 1;
    }
    rounded.max(1)
}

/// The `d:` tokens of a note of `length` steps (a note length): whole bars,
/// then the rest.
pub fn tie(length: u64, spb: u32) -> impl Iterator<Item = u32> {
    let bar = bar_steps(spb);
    let (bars, rest) = if length <= bar {
        (0, length)
    } else {
        (length / bar, length % bar)
    };
    std::iter::repeat_n(bar.min(u32::MAX as u64) as u32, bars as usize)
        .chain((rest > 0).then_some(rest.min(u32::MAX as u64) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_to_tokens_and_tie_by_bars() {
        // 16 steps per beat: 1..=16 exact, then sixteenths up to a bar.
        assert_eq!(round_length(7, 100, 16), 7);
        assert_eq!(round_length(17, 100, 16), 16);
        assert_eq!(round_length(18, 100, 16), 20);
        assert_eq!(round_length(31, 100, 16), 32);
        // Never past the next start of the same note.
        assert_eq!(round_length(31, 31, 16), 28);
        // Longer than a bar: whole beats.
        assert_eq!(round_length(70, 1000, 16), 64);
        assert_eq!(round_length(72, 1000, 16), 80);
        assert_eq!(round_length(95, 1000, 16), 96);
        assert_eq!(round_length(95, 95, 16), 80);
        let tokens = |l| tie(l, 16).collect::<Vec<_>>();
        assert_eq!(tokens(12), [12]);
        assert_eq!(tokens(64), [64]);
        assert_eq!(tokens(160), [64, 64, 32]);
        assert_eq!(tokens(128), [64, 64]);
        // Rounding a rounded length changes nothing, on odd grids too.
        for spb in [1, 3, 4, 7, 12, 16, 24] {
            for length in 1..400 {
                for limit in [length, length + 1, length + 7, 10_000] {
                    let r = round_length(length, limit, spb);
                    assert!(r >= 1 && r <= limit, "{spb} {length} {limit}: {r}");
                    assert!(is_note_length(r, spb), "{spb} {length}: {r}");
                    assert_eq!(round_length(r, limit, spb), r, "{spb} {length} {limit}");
                    let sum: u64 = tie(r, spb).map(|d| d as u64).sum();
                    assert_eq!(sum, r);
                    assert!(tie(r, spb).all(|d| is_token_length(d as u64, spb)));
                }
            }
        }
    }
}
