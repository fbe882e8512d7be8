//! Tokens back to a standard MIDI file (format 1) with midly's writer.
//!
//! Ticks per quarter = `steps_per_beat`, so one grid step is one tick and
//! encoding the result gives the same line. Track 0 holds the tempo map;
//! then one track per program (drums on channel 10). With at most 15 melodic
//! programs each gets its own channel; with more, channels are shared and
//! each note-on is preceded by its program change.

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::MidiError;
use super::encoder::{GridNote, MAX_STEP};
use super::read::DRUM_PROGRAM;
use super::tokens::Token;

const DRUM_CHANNEL: u8 = 9;

/// What decoding needs to know that the tokens do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Grid steps per quarter note the tokens were encoded with.
    pub steps_per_beat: u32,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { steps_per_beat: 16 }
    }
}

/// A token line parsed into grid notes and tempo changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridSong {
    /// Sorted by (start, program, pitch).
    pub notes: Vec<GridNote>,
    /// (step, bpm), the first at step 0 when the line has a leading tempo.
    pub tempos: Vec<(u64, u32)>,
}

/// Parses a token line, in either note format (or a mix). A token outside
/// the grammar is an error naming it; musical slips are repaired: an `end:`
/// for a silent note is ignored, a start of a sounding note ends it first,
/// a `d:` that follows no note start is ignored, notes with no length that
/// are still sounding at `finish` (or the end of the text) end there,
/// zero-length notes are dropped, and tokens after `finish` are ignored.
/// A note start followed by `d:` tokens lasts their sum.
pub fn parse_tokens(text: &str) -> Result<GridSong, MidiError> {
    let mut song = GridSong::default();
    // Per slot: the index in `notes` of its last note; `None` ends are open.
    let mut last: Vec<Option<usize>> = vec![None; 129 * 128];
    let mut notes: Vec<(GridNote, Option<u64>)> = Vec::new();
    // The note whose `d:` tokens may follow.
    let mut pending: Option<usize> = None;
    let mut now = 0u64;
    for (index, text) in text.split_ascii_whitespace().enumerate() {
        let token = Token::parse(text).ok_or_else(|| MidiError::BadToken {
            index,
            token: text.chars().take(40).collect(),
        })?;
        if let Token::Duration(d) = token {
            if let Some(i) = pending {
                let note = &mut notes[i];
                let end = note.1.unwrap_or(note.0.start).saturating_add(d as u64);
                note.1 = Some(end.min(MAX_STEP));
            }
            continue;
        }
        pending = None;
        match token {
            Token::Start | Token::Duration(_) => {}
            Token::Finish => break,
            Token::Wait(n) => {
                now += n as u64;
                if now > MAX_STEP {
                    return Err(MidiError::Malformed(format!(
                        "token {index}: the song runs past {MAX_STEP} grid steps"
                    )));
                }
            }
            Token::Tempo(bpm) => {
                if song.tempos.last().is_some_and(|t| t.0 == now) {
                    song.tempos.pop();
                }
                song.tempos.push((now, bpm));
            }
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => {
                let slot = &mut last[program as usize * 128 + pitch as usize];
                if let Some(i) = *slot {
                    let end = &mut notes[i].1;
                    if end.is_none_or(|e| e > now) {
                        *end = Some(now);
                    }
                }
                *slot = Some(notes.len());
                pending = Some(notes.len());
                let note = GridNote {
                    program,
                    pitch,
                    start: now,
                    end: now,
                    velocity,
                };
                notes.push((note, None));
            }
            Token::NoteOff { program, pitch, .. } => {
                if let Some(i) = last[program as usize * 128 + pitch as usize]
                    && notes[i].1.is_none()
                {
                    notes[i].1 = Some(now);
                }
            }
        }
    }
    song.notes = notes
        .into_iter()
        .map(|(mut note, end)| {
            note.end = end.unwrap_or(now);
            note
        })
        .filter(|n| n.end > n.start)
        .collect();
    song.notes
        .sort_unstable_by_key(|n| (n.start, n.program, n.pitch));
    Ok(song)
}

/// Decodes a token line into the bytes of a standard MIDI file.
pub fn decode_tokens(text: &str, options: &DecodeOptions) -> Result<Vec<u8>, MidiError> {
    let song = parse_tokens(text)?;
    let tpq = u16::try_from(options.steps_per_beat)
        .ok()
        .filter(|&t| (1..=0x7FFF).contains(&t))
        .ok_or_else(|| {
            MidiError::Malformed(format!(
                "steps_per_beat {} does not fit a MIDI header (1..=32767)",
                options.steps_per_beat
            ))
        })?;
    let programs = programs_of(&song.notes);
    let names: Vec<Vec<u8>> = programs
        .iter()
        .map(|&p| match p {
            DRUM_PROGRAM => b"drums".to_vec(),
            p => format!("program {p}").into_bytes(),
        })
        .collect();
    let mut tracks: Vec<Vec<(u64, TrackEventKind)>> = vec![tempo_track(&song.tempos)];
    tracks.extend(note_tracks(&song.notes, &programs, &names));
    let smf = Smf {
        header: Header::new(Format::Parallel, Timing::Metrical(u15::new(tpq))),
        tracks: tracks.into_iter().map(|t| with_deltas(&t)).collect(),
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)
        .map_err(|e| MidiError::Malformed(format!("writing MIDI: {e}")))?;
    Ok(bytes)
}

fn programs_of(notes: &[GridNote]) -> Vec<u8> {
    let mut programs: Vec<u8> = notes.iter().map(|n| n.program).collect();
    programs.sort_unstable();
    programs.dedup();
    programs
}

fn tempo_track(tempos: &[(u64, u32)]) -> Vec<(u64, TrackEventKind<'static>)> {
    tempos
        .iter()
        .map(|&(step, bpm)| {
            let micros = (60_000_000 + bpm as u64 / 2) / bpm.max(1) as u64;
            let micros = micros.clamp(1, 0xFF_FFFF) as u32;
            (
                step,
                TrackEventKind::Meta(MetaMessage::Tempo(u24::new(micros))),
            )
        })
        .collect()
}

/// Events of one program's track, before deltas: (tick, order, event) where
/// order puts note-offs before note-ons at one tick.
type Timed<'a> = (u64, u8, u32, TrackEventKind<'a>);

/// One track per program (`programs` sorted, `names` beside them).
fn note_tracks<'a>(
    notes: &[GridNote],
    programs: &[u8],
    names: &'a [Vec<u8>],
) -> Vec<Vec<(u64, TrackEventKind<'a>)>> {
    let melodic = programs.iter().filter(|&&p| p != DRUM_PROGRAM).count();
    let channels = assign_channels(notes, melodic <= 15, programs);
    let shared = melodic > 15;
    let mut tracks: Vec<Vec<Timed>> = vec![Vec::new(); programs.len()];
    let mut has_program_change = vec![false; programs.len()];
    let mut seq = 0u32;
    let mut push = |track: &mut Vec<Timed<'a>>, tick, order, kind: TrackEventKind<'a>| {
        track.push((tick, order, seq, kind));
        seq += 1;
    };
    for (track, name) in tracks.iter_mut().zip(names) {
        push(
            track,
            0,
            0,
            TrackEventKind::Meta(MetaMessage::TrackName(name)),
        );
    }
    for (note, &channel) in notes.iter().zip(&channels) {
        let index = programs.binary_search(&note.program).unwrap_or(0);
        let track = &mut tracks[index];
        let ch = u4::new(channel);
        if note.program != DRUM_PROGRAM && (shared || !has_program_change[index]) {
            has_program_change[index] = true;
            let pc = MidiMessage::ProgramChange {
                program: u7::new(note.program),
            };
            let tick = if shared { note.start } else { 0 };
            push(track, tick, 1, midi(ch, pc));
        }
        let on = MidiMessage::NoteOn {
            key: u7::new(note.pitch),
            vel: u7::new(note.velocity.clamp(1, 127)),
        };
        push(track, note.start, 1, midi(ch, on));
        let off = MidiMessage::NoteOff {
            key: u7::new(note.pitch),
            vel: u7::new(0),
        };
        push(track, note.end, 0, midi(ch, off));
    }
    tracks
        .into_iter()
        .map(|mut t| {
            t.sort_by_key(|e| (e.0, e.1, e.2));
            t.into_iter().map(|e| (e.0, e.3)).collect()
        })
        .collect()
}

fn midi<'a>(channel: u4, message: MidiMessage) -> TrackEventKind<'a> {
    TrackEventKind::Midi { channel, message }
}

/// A channel for each note (same order as `notes`). Drums get channel 10;
/// with `fixed`, each melodic program its own channel; otherwise a channel
/// where the pitch is free, preferring one that last played the program.
fn assign_channels(notes: &[GridNote], fixed: bool, programs: &[u8]) -> Vec<u8> {
    let melodic: Vec<u8> = (0..16u8).filter(|&c| c != DRUM_CHANNEL).collect();
    if fixed {
        let home: Vec<(u8, u8)> = programs
            .iter()
            .filter(|&&p| p != DRUM_PROGRAM)
            .zip(&melodic)
            .map(|(&p, &c)| (p, c))
            .collect();
        return notes
            .iter()
            .map(|n| match home.iter().find(|h| h.0 == n.program) {
                Some(&(_, c)) => c,
                None => DRUM_CHANNEL,
            })
            .collect();
    }
    // In time order: (ends before starts is implied by the free test).
    let mut order: Vec<usize> = (0..notes.len()).collect();
    order.sort_by_key(|&i| (notes[i].start, notes[i].program, notes[i].pitch));
    // Per channel and pitch: (tick the last note ends, its program).
    let mut busy = vec![[None::<(u64, u8)>; 128]; 16];
    let mut last_program = [None::<u8>; 16];
    let mut channels = vec![DRUM_CHANNEL; notes.len()];
    for i in order {
        let n = notes[i];
        if n.program == DRUM_PROGRAM {
            continue;
        }
        let free = |c: u8| match busy[c as usize][n.pitch as usize] {
            None => true,
            Some((end, program)) => end < n.start || (end == n.start && program == n.program),
        };
        let channel = melodic
            .iter()
            .copied()
            .find(|&c| last_program[c as usize] == Some(n.program) && free(c))
            .or_else(|| melodic.iter().copied().find(|&c| free(c)))
            .unwrap_or(melodic[n.pitch as usize % melodic.len()]);
        busy[channel as usize][n.pitch as usize] = Some((n.end, n.program));
        last_program[channel as usize] = Some(n.program);
        channels[i] = channel;
    }
    channels
}

/// Absolute ticks to delta times, ending with End of Track. A gap longer
/// than a delta can hold (2^28 - 1 ticks) is bridged with empty text events.
fn with_deltas<'a>(events: &[(u64, TrackEventKind<'a>)]) -> Vec<TrackEvent<'a>> {
    const MAX_DELTA: u64 = (1 << 28) - 1;
    let mut out = Vec::with_capacity(events.len() + 1);
    let mut now = 0u64;
    let end = events.last().map_or(0, |e| e.0);
    let kinds = events.iter().map(|e| (e.0, e.1)).chain(std::iter::once((
        end,
        TrackEventKind::Meta(MetaMessage::EndOfTrack),
    )));
    for (tick, kind) in kinds {
        while tick - now > MAX_DELTA {
            out.push(TrackEvent {
                delta: u28::new(MAX_DELTA as u32),
                kind: TrackEventKind::Meta(MetaMessage::Text(b"")),
            });
            now += MAX_DELTA;
        }
        out.push(TrackEvent {
            delta: u28::new((tick - now) as u32),
            kind,
        });
        now = tick;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::{EncodeOptions, encode_bytes};

    #[test]
    fn repairs_musical_slips_and_rejects_bad_tokens() {
        let song = parse_tokens(
            "start tempo:90 end:i1:v10:60 i1:v10:60 i1:v20:60 wait:2 i1:v30:60 wait:3 \
             i128:v50:36 wait:1 finish i5:v10:70",
        )
        .unwrap();
        let notes: Vec<_> = song
            .notes
            .iter()
            .map(|n| (n.program, n.pitch, n.start, n.end, n.velocity))
            .collect();
        // The zero-length first note is dropped, a restart ends the sounding
        // note, notes still sounding end at `finish`, the rest is ignored.
        assert_eq!(
            notes,
            vec![(1, 60, 0, 2, 20), (1, 60, 2, 6, 30), (128, 36, 5, 6, 50)]
        );
        assert_eq!(song.tempos, vec![(0, 90)]);
        let err = parse_tokens("start i1:v10:60 wiat:4 finish").unwrap_err();
        assert_eq!(err.to_string(), "token 2 `wiat:4` is not a valid token");
    }

    #[test]
    fn duration_notes_tie_cut_and_mix_with_ends() {
        let song = parse_tokens(
            "start d:4 i1:v10:60 d:64 d:32 i1:v10:62 d:2 wait:1 i1:v10:62 d:8 \
             i2:v10:40 wait:4 end:i2:v10:40 i1:v10:60 d:1 wait:2 finish",
        )
        .unwrap();
        let notes: Vec<_> = song
            .notes
            .iter()
            .map(|n| (n.program, n.pitch, n.start, n.end))
            .collect();
        // The orphan d:4 is ignored; d:64 d:32 tie into 96 steps, cut at
        // step 5 by the next start of pitch 60; pitch 62 is cut at step 1.
        // A note with a length outlasts `finish`.
        assert_eq!(
            notes,
            vec![
                (1, 60, 0, 5),
                (1, 62, 0, 1),
                (1, 62, 1, 9),
                (2, 40, 1, 5),
                (1, 60, 5, 6)
            ]
        );
    }

    #[test]
    fn decoded_file_has_tempo_track_and_one_track_per_program() {
        let line = "start tempo:150 i33:v90:40 i128:v100:36 wait:4 end:i128:v100:36 \
                    wait:2 tempo:100 wait:2 end:i33:v90:40 finish";
        let bytes = decode_tokens(line, &DecodeOptions::default()).unwrap();
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.tracks.len(), 3, "tempo, program 33, drums");
        assert_eq!(smf.header.timing, Timing::Metrical(u15::new(16)));
        let drum_on = smf.tracks[2].iter().any(|e| {
            matches!(e.kind, TrackEventKind::Midi { channel, message: MidiMessage::NoteOn { .. } } if channel == 9)
        });
        assert!(drum_on, "drums on channel 10");
        assert_eq!(
            encode_bytes(&bytes, &EncodeOptions::default()).unwrap(),
            line
        );
        let endless = format!("start{} finish", " wait:4294967295".repeat(300));
        assert!(parse_tokens(&endless).is_err(), "no file of 2^40 ticks");
        let bad = DecodeOptions { steps_per_beat: 0 };
        assert!(decode_tokens(line, &bad).is_err());
    }
}
