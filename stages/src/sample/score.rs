//! A song as the synthesizer and the piano roll see it: notes in beats
//! (quarter notes) and a tempo map, built from a token line's grid or from
//! any MIDI file through the codec's reader.

use crate::midi::decode::GridSong;
use crate::midi::read::{DEFAULT_MICROS_PER_QUARTER, Song};

/// One note, in beats from the song's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeatNote {
    pub start: f64,
    pub end: f64,
    /// GM program 0-127, or 128 for drums.
    pub program: u8,
    pub pitch: u8,
    pub velocity: u8,
}

/// Notes sorted by start, and tempo changes as (beat, seconds per beat)
/// sorted by beat; before the first change the tempo is 120 bpm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub notes: Vec<BeatNote>,
    pub tempos: Vec<(f64, f64)>,
}

const DEFAULT_SECONDS_PER_BEAT: f64 = DEFAULT_MICROS_PER_QUARTER as f64 / 1e6;

impl Score {
    /// From a parsed token line with `steps_per_beat` grid steps per beat.
    pub fn from_grid(song: &GridSong, steps_per_beat: u32) -> Score {
        let spb = steps_per_beat.max(1) as f64;
        let notes = song
            .notes
            .iter()
            .map(|n| BeatNote {
                start: n.start as f64 / spb,
                end: n.end as f64 / spb,
                program: n.program,
                pitch: n.pitch,
                velocity: n.velocity,
            })
            .collect();
        let tempos = song
            .tempos
            .iter()
            .map(|&(step, bpm)| (step as f64 / spb, 60.0 / bpm.max(1) as f64))
            .collect();
        Score::sorted(notes, tempos)
    }

    /// From a MIDI file read by the codec (ticks to beats by its clock).
    pub fn from_midi(song: &Song) -> Score {
        let beats = |tick: u64| tick as f64 * song.clock.num as f64 / song.clock.den as f64;
        let notes = song
            .notes
            .iter()
            .map(|n| BeatNote {
                start: beats(n.start),
                end: beats(n.end),
                program: n.program,
                pitch: n.pitch,
                velocity: n.velocity,
            })
            .collect();
        let tempos = song
            .tempos
            .iter()
            .map(|t| (beats(t.tick), t.micros_per_quarter.max(1) as f64 / 1e6))
            .collect();
        Score::sorted(notes, tempos)
    }

    fn sorted(mut notes: Vec<BeatNote>, mut tempos: Vec<(f64, f64)>) -> Score {
        notes.sort_by(|a, b| {
            (a.start, a.program, a.pitch)
                .partial_cmp(&(b.start, b.program, b.pitch))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        tempos.sort_by(|a, b| a.0.total_cmp(&b.0));
        Score { notes, tempos }
    }

    /// The beat where the last note ends (0 for no notes).
    pub fn end_beat(&self) -> f64 {
        self.notes.iter().map(|n| n.end).fold(0.0, f64::max)
    }

    /// A function from beats to seconds following the tempo map.
    pub fn clock(&self) -> SecondsClock {
        // Breakpoints (beat, seconds at that beat, seconds per beat after it).
        let mut points = vec![(0.0, 0.0, DEFAULT_SECONDS_PER_BEAT)];
        for &(beat, spb) in &self.tempos {
            let &(b0, s0, r0) = points.last().expect("never empty");
            let beat = beat.max(b0);
            points.push((beat, s0 + (beat - b0) * r0, spb));
        }
        SecondsClock { points }
    }
}

/// Beats to seconds under a tempo map.
#[derive(Debug, Clone)]
pub struct SecondsClock {
    points: Vec<(f64, f64, f64)>,
}

impl SecondsClock {
    pub fn seconds(&self, beat: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= beat).max(1) - 1;
        let (b0, s0, rate) = self.points[i];
        s0 + (beat - b0) * rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::parse_tokens;

    #[test]
    fn grid_to_beats_and_seconds_follow_tempo_changes() {
        let song = parse_tokens(
            "start tempo:120 i80:v100:60 wait:32 tempo:60 wait:16 end:i80:v100:60 finish",
        )
        .unwrap();
        let score = Score::from_grid(&song, 16);
        assert_eq!(score.notes.len(), 1);
        assert_eq!((score.notes[0].start, score.notes[0].end), (0.0, 3.0));
        let clock = score.clock();
        // Two beats at 120 bpm (1 s), then one at 60 bpm (1 s).
        assert!((clock.seconds(2.0) - 1.0).abs() < 1e-9);
        assert!((clock.seconds(3.0) - 2.0).abs() < 1e-9);
        // No tempo: 120 bpm.
        assert!((Score::default().clock().seconds(4.0) - 2.0).abs() < 1e-9);
    }
}
