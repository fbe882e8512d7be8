//! A [`Song`] to its token line (the format of DESIGN.md).
//!
//! Steps, in this order so that decoding and encoding again gives the same
//! line: programs grouped; onsets and ends rounded to the grid (a note lasts
//! at least one step); velocities rounded; overlapping notes of one
//! (program, pitch) cut where the next starts; key estimated and notes
//! transposed; then the events written position by position: tempo, ends,
//! starts, each sorted by (program, pitch).

use super::EncodeOptions;
use super::read::{DEFAULT_MICROS_PER_QUARTER, Song};
use super::tokens::Token;
use super::transpose::{self, Transpose};

/// A note on the grid, as it appears in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GridNote {
    pub program: u8,
    pub pitch: u8,
    pub start: u64,
    pub end: u64,
    pub velocity: u8,
}

/// The notes of `song` on the grid, sorted by (program, pitch, start), with
/// no two notes of one (program, pitch) sounding at once.
pub fn grid_notes(song: &Song, options: &EncodeOptions) -> Vec<GridNote> {
    let spb = options.steps_per_beat;
    let mut notes: Vec<GridNote> = song
        .notes
        .iter()
        .map(|n| {
            let start = song.clock.step(n.start, spb);
            GridNote {
                program: options.instrument_groups.map(n.program),
                pitch: n.pitch,
                start,
                end: song.clock.step(n.end, spb).max(start + 1),
                velocity: round_velocity(n.velocity, options.velocity_step),
            }
        })
        .collect();
    resolve_overlaps(&mut notes);
    if options.transpose == Transpose::C {
        let lengths = notes.iter().map(|n| (n.program, n.pitch, n.end - n.start));
        let key = transpose::estimate_key(&transpose::histogram(lengths));
        if let Some(shift) = key.map(transpose::shift_to_c).filter(|&s| s != 0) {
            for n in notes
                .iter_mut()
                .filter(|n| n.program != super::DRUM_PROGRAM)
            {
                n.pitch = transpose::shift_pitch(n.pitch, shift);
            }
            // Octave wrapping at the range ends can make new overlaps.
            resolve_overlaps(&mut notes);
        }
    }
    notes
}

/// Sorts by (program, pitch, start) and cuts each note where the next one of
/// the same (program, pitch) starts; two starting together merge into one
/// (the longer end, the louder velocity).
fn resolve_overlaps(notes: &mut Vec<GridNote>) {
    notes.sort_unstable();
    let mut kept: Vec<GridNote> = Vec::with_capacity(notes.len());
    for note in notes.drain(..) {
        if let Some(last) = kept.last_mut()
            && (last.program, last.pitch) == (note.program, note.pitch)
            && note.start < last.end
        {
            if note.start == last.start {
                last.end = last.end.max(note.end);
                last.velocity = last.velocity.max(note.velocity);
                continue;
            }
            last.end = note.start;
        }
        kept.push(note);
    }
    *notes = kept;
}

/// Velocity rounded to a multiple of `step`, within 1..=127.
pub fn round_velocity(velocity: u8, step: u8) -> u8 {
    let step = step.max(1) as u32;
    let mut rounded = (velocity as u32 + step / 2) / step * step;
    if rounded > 127 {
        rounded -= step;
    }
    rounded.clamp(step.min(127), 127) as u8
}

/// Beats per minute of a tempo, rounded to a multiple of `step` (at least `step`).
pub fn round_tempo(micros_per_quarter: u32, step: u32) -> u32 {
    let step = step.max(1) as u64;
    let per_step = micros_per_quarter as u64 * step;
    let rounded = (2 * 60_000_000 + per_step) / (2 * per_step) * step;
    rounded.clamp(step, u32::MAX as u64) as u32
}

/// The tempo at the start and each change, on the grid: (step, bpm), with
/// the first at step 0 and no two consecutive equal.
fn grid_tempos(song: &Song, options: &EncodeOptions) -> Vec<(u64, u32)> {
    let first = round_tempo(DEFAULT_MICROS_PER_QUARTER, options.tempo_step);
    let mut tempos: Vec<(u64, u32)> = vec![(0, first)];
    for change in &song.tempos {
        let step = song.clock.step(change.tick, options.steps_per_beat);
        let bpm = round_tempo(change.micros_per_quarter, options.tempo_step);
        // The last change at one grid position wins.
        while tempos.len() > 1 && tempos.last().is_some_and(|t| t.0 == step) {
            tempos.pop();
        }
        if tempos.len() == 1 && step == 0 {
            tempos[0].1 = bpm;
        } else {
            tempos.push((step, bpm));
        }
    }
    tempos.dedup_by_key(|t| t.1);
    tempos
}

/// The token line of `song` (no trailing newline).
pub fn encode_song(song: &Song, options: &EncodeOptions) -> String {
    let notes = grid_notes(song, options);
    let mut tempos = grid_tempos(song, options);
    // A tempo change after the last note changes nothing audible.
    let last_end = notes.iter().map(|n| n.end).max().unwrap_or(0);
    tempos.retain(|t| t.0 == 0 || t.0 < last_end);
    let mut starts: Vec<(u64, u8, u8, u8)> = notes
        .iter()
        .map(|n| (n.start, n.program, n.pitch, n.velocity))
        .collect();
    let mut ends: Vec<(u64, u8, u8, u8)> = notes
        .iter()
        .map(|n| (n.end, n.program, n.pitch, n.velocity))
        .collect();
    starts.sort_unstable();
    ends.sort_unstable();

    let mut out = String::with_capacity(notes.len() * 24 + 32);
    let push = |token: Token, out: &mut String| {
        out.push(' ');
        token.write_to(out);
    };
    out.push_str("start");
    let (mut s, mut e, mut t) = (0, 0, 0);
    let mut now = 0u64;
    loop {
        // The next position holding an event.
        let next = [
            tempos.get(t).map(|x| x.0),
            ends.get(e).map(|x| x.0),
            starts.get(s).map(|x| x.0),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(position) = next else { break };
        if position > now {
            let wait = (position - now).min(u32::MAX as u64) as u32;
            push(Token::Wait(wait), &mut out);
            now = position;
        }
        while let Some(&(_, bpm)) = tempos.get(t).filter(|x| x.0 == position) {
            push(Token::Tempo(bpm), &mut out);
            t += 1;
        }
        while let Some(&(_, program, pitch, velocity)) = ends.get(e).filter(|x| x.0 == position) {
            let velocity = options.note_off_velocity.then_some(velocity);
            push(
                Token::NoteOff {
                    program,
                    velocity,
                    pitch,
                },
                &mut out,
            );
            e += 1;
        }
        while let Some(&(_, program, pitch, velocity)) = starts.get(s).filter(|x| x.0 == position) {
            push(
                Token::NoteOn {
                    program,
                    velocity,
                    pitch,
                },
                &mut out,
            );
            s += 1;
        }
    }
    out.push_str(" finish");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_of_velocity_and_tempo() {
        assert_eq!(round_velocity(64, 10), 60);
        assert_eq!(round_velocity(65, 10), 70);
        assert_eq!(round_velocity(127, 10), 120);
        assert_eq!(round_velocity(1, 10), 10);
        assert_eq!(round_velocity(127, 1), 127);
        assert_eq!(round_velocity(3, 1), 3);
        assert_eq!(round_tempo(500_000, 10), 120);
        assert_eq!(round_tempo(400_000, 10), 150);
        assert_eq!(round_tempo(461_538, 1), 130);
        assert_eq!(round_tempo(60_000_000, 10), 10, "never 0");
    }
}
