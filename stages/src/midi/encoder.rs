//! A [`Song`] to its token line (the format of DESIGN.md).
//!
//! Steps, in this order so that decoding and encoding again gives the same
//! line: programs grouped; onsets and ends rounded to the grid (a note lasts
//! at least one step); velocities rounded; overlapping notes of one
//! (program, pitch) cut where the next starts; key estimated and notes
//! transposed; then the events written position by position: tempo, ends,
//! starts, each sorted by (program, pitch).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::EncodeOptions;
use super::duration::{self, NoteFormat};
use super::interner::Interner;
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

/// Grid positions are capped here (about 2^40 steps: 2 million hours at
/// 16 steps per beat), so that they pack into sort keys.
pub const MAX_STEP: u64 = (1 << 40) - 1;

/// The notes of `song` on the grid, sorted by (start, program, pitch), with
/// no two notes of one (program, pitch) sounding at once.
pub fn grid_notes(song: &Song, options: &EncodeOptions) -> Vec<GridNote> {
    grid_notes_as(song, options, NoteFormat::OnOff)
}

/// [`grid_notes`] in a note format: with [`NoteFormat::Duration`] the
/// lengths are rounded to what `d:` tokens hold ([`duration::round_length`]).
pub fn grid_notes_as(song: &Song, options: &EncodeOptions, format: NoteFormat) -> Vec<GridNote> {
    let spb = options.steps_per_beat;
    let round = |notes: &mut Vec<GridNote>| {
        if format == NoteFormat::Duration {
            round_lengths(notes, spb);
        }
    };
    let stepper = song.clock.stepper(spb);
    // `song.notes` is sorted by start tick, so this is sorted by start:
    // each note goes onto the grid and through the overlap resolution in
    // one pass (no list of unresolved notes).
    let mut notes: Vec<GridNote> = Vec::with_capacity(song.notes.len());
    let mut overlaps = Overlaps::new();
    // Programs and velocities through tables (a division per note, else).
    let programs: [u8; 256] =
        std::array::from_fn(|p| options.instrument_groups.map(p.min(255) as u8));
    let velocities: [u8; 256] =
        std::array::from_fn(|v| round_velocity(v.min(255) as u8, options.velocity_step));
    for n in &song.notes {
        let start = stepper.step(n.start).min(MAX_STEP - 1);
        overlaps.push(
            &mut notes,
            GridNote {
                program: programs[n.program as usize],
                pitch: n.pitch,
                start,
                end: stepper.step(n.end).clamp(start + 1, MAX_STEP),
                velocity: velocities[n.velocity as usize],
            },
        );
    }
    round(&mut notes);
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
            round(&mut notes);
        }
    }
    // Within one start, by (program, pitch); starts are already in order.
    for group in notes.chunk_by_mut(|a, b| a.start == b.start) {
        if group.len() > 1 {
            group.sort_unstable_by_key(|n| (n.program, n.pitch));
        }
    }
    notes
}

/// Given notes sorted by start, cuts each note where the next one of the
/// same (program, pitch) starts; two starting together merge into one (the
/// longer end, the louder velocity). Linear: one slot per (program, pitch).
fn resolve_overlaps(notes: &mut Vec<GridNote>) {
    let mut overlaps = Overlaps::new();
    let mut kept: Vec<GridNote> = Vec::with_capacity(notes.len());
    for note in notes.iter() {
        overlaps.push(&mut kept, *note);
    }
    *notes = kept;
}

/// [`resolve_overlaps`] a note at a time: the last kept note of each
/// (program, pitch).
struct Overlaps {
    last: Vec<u32>,
}

impl Overlaps {
    fn new() -> Overlaps {
        Overlaps {
            last: vec![u32::MAX; 129 * 128],
        }
    }

    /// Appends `note` (starting no earlier than any in `kept`) to `kept`,
    /// cutting or merging with the last one of its (program, pitch).
    #[inline]
    fn push(&mut self, kept: &mut Vec<GridNote>, note: GridNote) {
        let slot = &mut self.last[note.program as usize * 128 + note.pitch as usize];
        if let Some(prev) = kept.get_mut(*slot as usize)
            && note.start < prev.end
        {
            if note.start == prev.start {
                prev.end = prev.end.max(note.end);
                prev.velocity = prev.velocity.max(note.velocity);
                return;
            }
            prev.end = note.start;
        }
        *slot = kept.len() as u32;
        kept.push(note);
    }
}

/// Given notes sorted by start with no overlaps, rounds every length to a
/// note length of the duration format, never past the next start of the
/// same (program, pitch).
fn round_lengths(notes: &mut [GridNote], spb: u32) {
    let mut next_start: Vec<u64> = vec![MAX_STEP; 129 * 128];
    for note in notes.iter_mut().rev() {
        let slot = &mut next_start[note.program as usize * 128 + note.pitch as usize];
        let length = note.end - note.start;
        let limit = (*slot).min(MAX_STEP) - note.start;
        note.end = note.start + duration::round_length(length, limit, spb);
        *slot = note.start;
    }
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

/// The token line of `song` (no trailing newline), in the on/off format.
pub fn encode_song(song: &Song, options: &EncodeOptions) -> String {
    encode_song_as(song, options, NoteFormat::OnOff)
}

/// Where the encoder puts tokens: a text line, or [`Token::code`]s.
pub trait TokenSink {
    fn token(&mut self, token: Token);
}

/// A token line being written (`start` first, tokens separated by spaces).
struct Line(Vec<u8>);

impl TokenSink for Line {
    #[inline]
    fn token(&mut self, token: Token) {
        if !self.0.is_empty() {
            self.0.push(b' ');
        }
        token.write_to(&mut self.0);
    }
}

impl TokenSink for Vec<u64> {
    #[inline]
    fn token(&mut self, token: Token) {
        self.push(token.code());
    }
}

/// The token line of `song` in a note format.
pub fn encode_song_as(song: &Song, options: &EncodeOptions, format: NoteFormat) -> String {
    // About 36 bytes per note (a start, an end, a share of the waits): one
    // allocation, no regrowth (a copy and fresh pages).
    let mut line = Line(Vec::with_capacity(song.notes.len() * 40 + 64));
    encode_song_into(song, options, format, &mut line);
    // Tokens are ASCII by construction.
    String::from_utf8(line.0).unwrap_or_default()
}

/// The song's tokens as [`Token::code`]s (the same tokens as
/// [`encode_song_as`]'s line).
pub fn encode_song_codes(song: &Song, options: &EncodeOptions, format: NoteFormat) -> Vec<u64> {
    let mut codes = Vec::with_capacity(song.notes.len() * 3 + 8);
    encode_song_into(song, options, format, &mut codes);
    codes
}

/// A song's tokens interned as they are made (the encode stage's form):
/// its distinct [`Token::code`]s in order of first use, and each token as
/// an index into them. A song set is then built from a few hundred
/// distinct codes per song instead of a lookup per token, and a song holds
/// 4 bytes a token instead of 8.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interned {
    pub codes: Vec<u64>,
    pub ids: Vec<u32>,
}

impl Interned {
    /// Interns a song given as codes.
    pub fn from_codes(codes: &[u64]) -> Interned {
        let mut sink = Interner::new(codes.len());
        codes.iter().for_each(|&c| sink.code(c));
        sink.finish()
    }

    /// The tokens as codes again.
    pub fn to_codes(&self) -> Vec<u64> {
        self.ids.iter().map(|&i| self.codes[i as usize]).collect()
    }
}

impl TokenSink for Interner {
    #[inline]
    fn token(&mut self, token: Token) {
        self.code(token.code());
    }
}

/// The song's tokens interned ([`Interned`]; the same tokens as
/// [`encode_song_codes`]).
pub fn encode_song_interned(song: &Song, options: &EncodeOptions, format: NoteFormat) -> Interned {
    let mut sink = Interner::new(song.notes.len() * 3 + 8);
    encode_song_into(song, options, format, &mut sink);
    sink.finish()
}

/// The song's tokens, in order, into `out`.
pub fn encode_song_into<S: TokenSink>(
    song: &Song,
    options: &EncodeOptions,
    format: NoteFormat,
    out: &mut S,
) {
    let notes = grid_notes_as(song, options, format);
    let mut tempos = grid_tempos(song, options);
    // A tempo change after the last note changes nothing audible.
    let last_end = notes.iter().map(|n| n.end).max().unwrap_or(0);
    tempos.retain(|t| t.0 == 0 || t.0 < last_end);
    if format == NoteFormat::Duration {
        return duration_line(&notes, &tempos, options.steps_per_beat, out);
    }
    // Starts are the notes, in order. Ends are kept in a min-heap of the
    // notes sounding, packed as (position, program, pitch) and ordered as
    // numbers: no two notes of one (program, pitch) end together (overlaps
    // are resolved), and the one ending has the velocity of the last start
    // of its (program, pitch), kept in `velocities`. The heap holds only
    // the notes sounding (a few dozen): against a radix-sorted list of
    // every end, 6% fewer instructions and 18% fewer L1 misses over the
    // corpus, 1.02-1.03x the codec's speed (BENCHMARKS.md, session 15).
    let mut ends: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(64);
    let mut velocities = [0u8; 129 * 128];

    let push = |token: Token, out: &mut S| out.token(token);
    out.token(Token::Start);
    let (mut s, mut t) = (0, 0);
    let mut now = 0u64;
    loop {
        // The next position holding an event (u64::MAX: none; positions
        // are at most MAX_STEP).
        let position = tempos
            .get(t)
            .map_or(u64::MAX, |x| x.0)
            .min(ends.peek().map_or(u64::MAX, |k| k.0 >> 15))
            .min(notes.get(s).map_or(u64::MAX, |n| n.start));
        if position == u64::MAX {
            break;
        }
        if position > now {
            let wait = (position - now).min(u32::MAX as u64) as u32;
            push(Token::Wait(wait), out);
            now = position;
        }
        while let Some(&(_, bpm)) = tempos.get(t).filter(|x| x.0 == position) {
            push(Token::Tempo(bpm), out);
            t += 1;
        }
        while let Some(&Reverse(k)) = ends.peek().filter(|k| k.0 >> 15 == position) {
            ends.pop();
            let slot = (k & 0x7FFF) as usize;
            let velocity = options.note_off_velocity.then_some(velocities[slot]);
            push(
                Token::NoteOff {
                    program: (slot >> 7) as u8,
                    velocity,
                    pitch: (slot & 0x7F) as u8,
                },
                out,
            );
        }
        while let Some(n) = notes.get(s).filter(|n| n.start == position) {
            velocities[n.program as usize * 128 + n.pitch as usize] = n.velocity;
            // Ends come after starts (a note lasts at least one step).
            ends.push(Reverse(
                (n.end << 15) | (n.program as u64) << 7 | n.pitch as u64,
            ));
            push(
                Token::NoteOn {
                    program: n.program,
                    velocity: n.velocity,
                    pitch: n.pitch,
                },
                out,
            );
            s += 1;
        }
    }
    out.token(Token::Finish);
}

/// The duration-format line: per grid position, tempo, then each start
/// (by program, pitch) followed by its `d:` tokens.
fn duration_line<S: TokenSink>(notes: &[GridNote], tempos: &[(u64, u32)], spb: u32, out: &mut S) {
    let push = |token: Token, out: &mut S| out.token(token);
    out.token(Token::Start);
    let (mut s, mut t) = (0, 0);
    let mut now = 0u64;
    loop {
        let next = [tempos.get(t).map(|x| x.0), notes.get(s).map(|n| n.start)]
            .into_iter()
            .flatten()
            .min();
        let Some(position) = next else { break };
        if position > now {
            let wait = (position - now).min(u32::MAX as u64) as u32;
            push(Token::Wait(wait), out);
            now = position;
        }
        while let Some(&(_, bpm)) = tempos.get(t).filter(|x| x.0 == position) {
            push(Token::Tempo(bpm), out);
            t += 1;
        }
        while let Some(n) = notes.get(s).filter(|n| n.start == position) {
            push(
                Token::NoteOn {
                    program: n.program,
                    velocity: n.velocity,
                    pitch: n.pitch,
                },
                out,
            );
            for d in duration::tie(n.end - n.start, spb) {
                push(Token::Duration(d), out);
            }
            s += 1;
        }
    }
    out.token(Token::Finish);
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::midi::testing::smf;
    use crate::midi::{EncodeOptions, InstrumentGroups, Transpose, encode_bytes};

    #[test]
    fn exact_tokens_grid_order_and_short_notes() {
        // 100 ticks per quarter (not a multiple of 16): a tempo change, a
        // zero-length drum hit, two notes starting together given in reverse
        // order, and a note ending where another of its pitch starts.
        let body = [
            0x00, 0xFF, 0x51, 0x03, 0x07, 0xA1, 0x20, // 120 bpm
            0x00, 0xC0, 33, // program 33 on channel 1
            0x00, 0x90, 64, 64, // i33 64 at 0
            0x00, 0x90, 40, 101, // i33 40 at 0
            0x03, 0x99, 36, 100, // drum at tick 3 -> step 0 (3*16/100 = 0.48)
            0x00, 0x89, 36, 0, // ... zero length: kept one step
            0x2F, 0xFF, 0x51, 0x03, 0x06, 0x1A, 0x80, // tick 50 (step 8): 150 bpm
            0x00, 0x80, 64, 0, // 64 ends at step 8
            0x00, 0x90, 64, 90, // and starts again
            0x32, 0x80, 40, 0, 0x00, 0x80, 64, 0, // tick 100 (step 16): both end
            0x00, 0xFF, 0x2F, 0x00,
        ];
        let line = encode_bytes(&smf(100, &[&body]), &EncodeOptions::default()).unwrap();
        assert_eq!(
            line,
            "start tempo:120 i33:v100:40 i33:v60:64 i128:v100:36 wait:1 end:i128:v100:36 \
             wait:7 tempo:150 end:i33:v60:64 i33:v90:64 wait:8 end:i33:v100:40 end:i33:v90:64 finish"
        );
        let options = EncodeOptions {
            note_off_velocity: false,
            instrument_groups: InstrumentGroups::Family,
            velocity_step: 1,
            ..EncodeOptions::default()
        };
        let line = encode_bytes(&smf(100, &[&body]), &options).unwrap();
        assert!(
            line.starts_with(
                "start tempo:120 i32:v101:40 i32:v64:64 i128:v100:36 wait:1 end:i128:36 "
            ),
            "{line}"
        );
    }

    #[test]
    fn transpose_moves_d_major_down_a_tone() {
        // D major triad and scale, on channel 1; a drum that must not move.
        let mut body = Vec::new();
        for (i, pitch) in [62u8, 66, 69, 62, 64, 66, 67, 69, 71, 73, 74]
            .iter()
            .enumerate()
        {
            let length = if i < 3 { 0x60 } else { 0x18 };
            body.extend_from_slice(&[0x00, 0x90, *pitch, 80, length, 0x80, *pitch, 0]);
        }
        body.extend_from_slice(&[
            0x00, 0x99, 42, 80, 0x10, 0x89, 42, 0, 0x00, 0xFF, 0x2F, 0x00,
        ]);
        let options = EncodeOptions {
            transpose: Transpose::C,
            ..EncodeOptions::default()
        };
        let line = encode_bytes(&smf(96, &[&body]), &options).unwrap();
        assert!(
            line.starts_with("start tempo:120 i0:v80:60 wait:16 end:i0:v80:60 i0:v80:64"),
            "{line}"
        );
        assert!(line.contains("i128:v80:42"), "drums stay: {line}");
    }

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
