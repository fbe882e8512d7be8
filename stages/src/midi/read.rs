//! Standard MIDI files (and RIFF RMID wrappers) to a plain note list.
//!
//! midly parses chunks and events lazily (no allocation per event). The
//! tracks of a file are merged by time before notes are paired, because in
//! format 1 the 16 channels (and their programs) are shared by every track.
//! Lenient where real files are sloppy: a malformed meta event is skipped,
//! running status survives a meta event, stray system bytes are skipped, and a
//! track that cannot be read further keeps what was read before.

use std::io::Read;
use std::path::Path;

use midly::{MetaMessage, MidiMessage, Timing, TrackEventKind};

use super::MidiError;

/// Percussion: channel 10 (9 counting from 0) becomes program 128.
pub const DRUM_PROGRAM: u8 = 128;
const DRUM_CHANNEL: u8 = 9;
/// MIDI's default tempo: 120 beats per minute.
pub const DEFAULT_MICROS_PER_QUARTER: u32 = 500_000;

/// Limits that keep one hostile or broken file from costing gigabytes or
/// hours downstream (a 200 MB file of 25 million notes took 2.26 GB to
/// encode; 400 delta-times near 2^28 made the synthesizer ask for 97 TB).
/// Real songs stay far below each: the largest file of vgmusic.com is under
/// 1 MB.
///
/// Files larger than this are not read.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Note, program and tempo events kept per song at most.
pub const MAX_EVENTS: usize = 2_000_000;
/// Songs lasting more quarter notes than this (over 13 hours at 120 bpm)
/// are refused: their delta-times are corrupt.
pub const MAX_BEATS: u64 = 100_000;

/// One note in file ticks. `program` is the GM program 0-127, or 128 for drums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note {
    pub start: u64,
    pub end: u64,
    pub program: u8,
    pub pitch: u8,
    pub velocity: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempoChange {
    pub tick: u64,
    pub micros_per_quarter: u32,
}

/// How file ticks map to quarter notes: `beats = ticks * num / den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub num: u64,
    pub den: u64,
}

impl Clock {
    /// The nearest grid step of `tick` with `steps_per_beat` steps per quarter
    /// (halves round up, so the result is the same on every machine).
    pub fn step(&self, tick: u64, steps_per_beat: u32) -> u64 {
        // The common case fits 64 bits (ticks < 2^40, spb and num small).
        if tick < 1 << 40 && steps_per_beat < 1 << 10 && self.num < 1 << 11 && self.den < 1 << 32 {
            let scaled = tick * steps_per_beat as u64 * self.num;
            return (2 * scaled + self.den) / (2 * self.den);
        }
        let scaled = tick as u128 * steps_per_beat as u128 * self.num as u128;
        let den = self.den as u128;
        ((2 * scaled + den) / (2 * den)).min(u64::MAX as u128) as u64
    }
}

/// A file's musical content: notes sorted by start, the tempo map, the clock.
#[derive(Debug, Clone)]
pub struct Song {
    pub notes: Vec<Note>,
    /// Tempo changes in time order (empty: 120 bpm throughout).
    pub tempos: Vec<TempoChange>,
    pub clock: Clock,
    /// Things repaired or ignored while reading ("track 2: malformed meta
    /// event skipped at byte 120").
    pub warnings: Vec<String>,
}

/// Kinds of events kept from a track, before notes are paired.
#[derive(Debug, Clone, Copy)]
enum Kind {
    NoteOn {
        channel: u8,
        pitch: u8,
        velocity: u8,
    },
    NoteOff {
        channel: u8,
        pitch: u8,
    },
    Program {
        channel: u8,
        program: u8,
    },
    /// Microseconds per quarter as 3 big-endian bytes (keeps `Event` at 16
    /// bytes: the merge moves every event).
    Tempo([u8; 3]),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    tick: u64,
    track: u16,
    kind: Kind,
}

const _: () = assert!(std::mem::size_of::<Event>() == 16);

/// The bytes of the MIDI file at `path`. Only regular files are opened (a
/// device such as `/dev/zero` never ends, a FIFO waits for a writer), and
/// at most [`MAX_FILE_BYTES`] of them.
pub fn read_file(path: &Path) -> Result<Vec<u8>, MidiError> {
    let io = |e: std::io::Error| MidiError::Io(format!("{}: {e}", path.display()));
    let check = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(MidiError::Io(format!(
                "{}: a {}, not a regular file",
                path.display(),
                crate::walk::kind_name(meta.file_type())
            )));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_large(meta.len()));
        }
        Ok(())
    };
    // Checked before opening too: opening a FIFO blocks.
    check(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn too_large(bytes: u64) -> MidiError {
    MidiError::TooBig(format!(
        "file too large: {bytes} bytes, more than the {} MiB a MIDI file is read up to",
        MAX_FILE_BYTES >> 20
    ))
}

/// Reads a MIDI file's bytes (SMF format 0, 1 or 2, or RIFF RMID).
///
/// Format 2 files hold independent sequences; they are concatenated, each
/// starting where the previous one ended. SMPTE time division is converted
/// to quarter notes at 120 bpm (the file's tempo events then mean nothing).
pub fn read_song(bytes: &[u8]) -> Result<Song, MidiError> {
    check_magic(bytes)?;
    let (header, tracks) =
        midly::parse(bytes).map_err(|e| MidiError::Malformed(format!("header: {e}")))?;
    let mut warnings = Vec::new();
    let (clock, smpte) = match header.timing {
        Timing::Metrical(tpq) if tpq.as_int() == 0 => {
            return Err(MidiError::Malformed(
                "ticks per quarter note is 0 in the header".into(),
            ));
        }
        Timing::Metrical(tpq) => (
            Clock {
                num: 1,
                den: tpq.as_int() as u64,
            },
            false,
        ),
        Timing::Timecode(fps, subframes) => {
            if subframes == 0 {
                return Err(MidiError::Malformed(
                    "SMPTE time division with 0 ticks per frame".into(),
                ));
            }
            warnings.push("SMPTE time division: converted at 120 bpm".to_string());
            // Ticks per second = fps * subframes; at 120 bpm a quarter is 1/2 s.
            // 29.97 fps (drop frame) is 30000/1001.
            let (fps_num, fps_den) = match fps.as_int() {
                29 => (30_000u64, 1_001u64),
                n => (n as u64, 1),
            };
            (
                Clock {
                    num: 2 * fps_den,
                    den: fps_num * subframes as u64,
                },
                true,
            )
        }
    };
    let sequential = header.format == midly::Format::Sequential;

    // About one event per 3 bytes in real files.
    let mut events: Vec<Event> = Vec::with_capacity((bytes.len() / 3).min(MAX_EVENTS + 1));
    let mut track_ranges: Vec<(usize, usize)> = Vec::new();
    let mut track_ends: Vec<u64> = Vec::new();
    let mut offset = 0u64;
    for (index, track) in tracks.enumerate() {
        let Ok(track) = track else { continue };
        let Ok(track_no) = u16::try_from(index) else {
            warnings.push("more than 65535 tracks: the rest ignored".into());
            break;
        };
        let start = if sequential { offset } else { 0 };
        let first = events.len();
        let end = read_track(
            track.unread(),
            track_no,
            start,
            smpte,
            &mut events,
            &mut warnings,
        );
        track_ranges.push((first, events.len()));
        track_ends.push(end);
        offset = end;
        if events.len() > MAX_EVENTS {
            return Err(MidiError::TooBig(format!(
                "too many events: more than {MAX_EVENTS} notes, program and tempo changes \
                 (a real song has far fewer)"
            )));
        }
    }
    if track_ends.is_empty() {
        return Err(MidiError::Malformed("no track chunk".into()));
    }
    let events = merge_tracks(events, &track_ranges);
    let (notes, tempos) = pair_notes(&events, &track_ends);
    if notes.is_empty() {
        return Err(MidiError::NoNotes);
    }
    let last = notes
        .iter()
        .map(|n| n.end)
        .chain(tempos.iter().map(|t| t.tick))
        .max()
        .unwrap_or(0);
    let beats = clock.step(last, 1);
    if beats > MAX_BEATS {
        return Err(MidiError::TooBig(format!(
            "song too long: it lasts {beats} beats (quarter notes), more than {MAX_BEATS}; \
             its delta-times are probably corrupt"
        )));
    }
    Ok(Song {
        notes,
        tempos,
        clock,
        warnings,
    })
}

fn check_magic(bytes: &[u8]) -> Result<(), MidiError> {
    if bytes.is_empty() {
        return Err(MidiError::Empty);
    }
    match bytes.get(..4) {
        Some(b"MThd") | Some(b"RIFF") => Ok(()),
        _ => {
            let head: String = bytes
                .iter()
                .take(8)
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        (b as char).to_string()
                    } else {
                        format!("\\x{b:02x}")
                    }
                })
                .collect();
            Err(MidiError::NotMidi(head))
        }
    }
}

/// Merges the tracks' events (each already in time order) into one time
/// order; at one tick, earlier tracks first, then file order: a stable sort
/// by tick, done as a radix sort of (tick, index) keys when they fit 64 bits.
fn merge_tracks(events: Vec<Event>, ranges: &[(usize, usize)]) -> Vec<Event> {
    let tracks_with_events = ranges.iter().filter(|r| r.0 < r.1).count();
    if tracks_with_events <= 1 {
        return events;
    }
    let max_tick = events.iter().map(|e| e.tick).max().unwrap_or(0);
    let index_bits = usize::BITS - events.len().leading_zeros();
    if (max_tick.checked_shl(index_bits).unwrap_or(u64::MAX) >> index_bits) != max_tick {
        let mut events = events;
        events.sort_by_key(|e| e.tick);
        return events;
    }
    let mut keys: Vec<u64> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.tick << index_bits) | i as u64)
        .collect();
    super::radix::radix_sort(&mut keys);
    let mask = (1u64 << index_bits) - 1;
    keys.iter().map(|&k| events[(k & mask) as usize]).collect()
}

/// Reads one track chunk's events into `out`; returns the tick where it ends.
fn read_track(
    raw: &[u8],
    track: u16,
    start: u64,
    smpte: bool,
    out: &mut Vec<Event>,
    warnings: &mut Vec<String>,
) -> u64 {
    let total = raw.len();
    let mut rest = raw;
    let mut tick = start;
    let mut running: Option<u8> = None;
    // The last channel status, kept across meta events for files that
    // (wrongly) rely on running status surviving them.
    let mut last_channel_status: Option<u8> = None;
    // True once the song has more events than it may: reading stops.
    let mut push = |tick: u64, kind: Kind| {
        out.push(Event { tick, track, kind });
        out.len() > MAX_EVENTS
    };
    loop {
        let mut iter = midly::EventIter::new(rest);
        *iter.running_status_mut() = running;
        let failed_at = loop {
            let before = iter.unread();
            match iter.next() {
                Some(Ok(event)) => {
                    tick += event.delta.as_int() as u64;
                    match event.kind {
                        TrackEventKind::Midi { channel, message } => {
                            let channel = channel.as_int();
                            last_channel_status = iter.running_status();
                            if let Some(kind) = channel_event(channel, message)
                                && push(tick, kind)
                            {
                                return tick;
                            }
                        }
                        TrackEventKind::Meta(MetaMessage::Tempo(t)) if !smpte => {
                            if t.as_int() > 0 {
                                let b = t.as_int().to_be_bytes();
                                if push(tick, Kind::Tempo([b[1], b[2], b[3]])) {
                                    return tick;
                                }
                            }
                        }
                        TrackEventKind::Meta(MetaMessage::EndOfTrack) => return tick,
                        _ => {}
                    }
                }
                Some(Err(_)) | None if !before.is_empty() => break before,
                _ => return tick,
            }
        };
        let at = total - failed_at.len();
        match recover(failed_at, last_channel_status) {
            Some(step) => {
                tick += step.delta;
                if let Some((channel, message)) = step.channel_event
                    && let Some(kind) = channel_event(channel, message)
                    && push(tick, kind)
                {
                    return tick;
                }
                if let Some(what) = step.skipped {
                    warnings.push(format!("track {track}: {what} skipped at byte {at}"));
                }
                running = step.running;
                rest = step.rest;
            }
            None => {
                warnings.push(format!(
                    "track {track}: unreadable event at byte {at}, rest of the track ignored"
                ));
                return tick;
            }
        }
    }
}

fn channel_event(channel: u8, message: MidiMessage) -> Option<Kind> {
    match message {
        MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => Some(Kind::NoteOn {
            channel,
            pitch: key.as_int(),
            velocity: vel.as_int(),
        }),
        MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => Some(Kind::NoteOff {
            channel,
            pitch: key.as_int(),
        }),
        MidiMessage::ProgramChange { program } => Some(Kind::Program {
            channel,
            program: program.as_int(),
        }),
        _ => None,
    }
}

/// What was done to get past an event midly could not read.
struct Recovery<'a> {
    delta: u64,
    rest: &'a [u8],
    running: Option<u8>,
    channel_event: Option<(u8, MidiMessage)>,
    /// Set when something was dropped (for the warnings).
    skipped: Option<&'static str>,
}

/// Gets past one event midly rejected, always consuming bytes (so reading
/// ends); `None` when the track cannot be read further.
fn recover(raw: &[u8], last_channel_status: Option<u8>) -> Option<Recovery<'_>> {
    let (delta, mut rest) = read_varlen(raw)?;
    let status = *rest.first()?;
    let recovery = |rest, running, channel_event, skipped| {
        Some(Recovery {
            delta,
            rest,
            running,
            channel_event,
            skipped,
        })
    };
    match status {
        0xFF => {
            // A meta event too short for its type (a 1-byte key signature).
            let (_, after_type) = rest.split_at_checked(2)?;
            let (len, body) = read_varlen(after_type)?;
            let (_, after) = body.split_at_checked(usize::try_from(len).ok()?)?;
            recovery(after, None, None, Some("malformed meta event"))
        }
        0x00..=0x7F => {
            // Running status across a meta or sysex event.
            let status = last_channel_status?;
            let len = if matches!(status >> 4, 0xC | 0xD) {
                1
            } else {
                2
            };
            let (data, after) = rest.split_at_checked(len)?;
            if data.iter().any(|&b| b >= 0x80) {
                return None;
            }
            let bytes = [status, data[0], *data.get(1).unwrap_or(&0)];
            let event = match midly::live::LiveEvent::parse(&bytes[..=len]) {
                Ok(midly::live::LiveEvent::Midi { channel, message }) => {
                    Some((channel.as_int(), message))
                }
                _ => None,
            };
            recovery(after, Some(status), event, None)
        }
        0xF1..=0xF6 | 0xF8..=0xFE => {
            // System common / real-time bytes do not belong in a file.
            let len = match status {
                0xF2 => 3,
                0xF1 | 0xF3 => 2,
                _ => 1,
            };
            rest = rest.get(len..)?;
            recovery(
                rest,
                last_channel_status,
                None,
                Some("system common/real-time event"),
            )
        }
        _ => None,
    }
}

/// A MIDI variable-length quantity (at most 4 bytes).
fn read_varlen(raw: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in raw.iter().enumerate().take(4) {
        value = (value << 7) | (b & 0x7F) as u64;
        if b < 0x80 {
            return Some((value, &raw[i + 1..]));
        }
    }
    None
}

/// Pairs note-ons with note-offs in time order.
///
/// - a note-on with velocity 0 is a note-off;
/// - a note-on on a sounding (channel, pitch) ends the sounding note first;
/// - a note-off with nothing sounding is ignored;
/// - notes never ended close where their track ends;
/// - the program is the channel's program at the note-on.
fn pair_notes(events: &[Event], track_ends: &[u64]) -> (Vec<Note>, Vec<TempoChange>) {
    const OPEN: u64 = u64::MAX;
    let mut notes: Vec<Note> = Vec::with_capacity(events.len() / 2);
    let mut tempos = Vec::new();
    let mut programs = [0u8; 16];
    // (channel * 128 + pitch) -> (index into notes, track) of the sounding note.
    let mut sounding: Vec<Option<(u32, u16)>> = vec![None; 16 * 128];
    for event in events {
        match event.kind {
            Kind::NoteOn {
                channel,
                pitch,
                velocity,
            } => {
                let slot = &mut sounding[channel as usize * 128 + pitch as usize];
                if let Some((i, _)) = slot.take() {
                    notes[i as usize].end = event.tick;
                }
                *slot = Some((notes.len() as u32, event.track));
                notes.push(Note {
                    start: event.tick,
                    end: OPEN,
                    program: if channel == DRUM_CHANNEL {
                        DRUM_PROGRAM
                    } else {
                        programs[channel as usize]
                    },
                    pitch,
                    velocity,
                });
            }
            Kind::NoteOff { channel, pitch } => {
                if let Some((i, _)) = sounding[channel as usize * 128 + pitch as usize].take() {
                    notes[i as usize].end = event.tick;
                }
            }
            Kind::Program { channel, program } => programs[channel as usize] = program,
            Kind::Tempo([a, b, c]) => tempos.push(TempoChange {
                tick: event.tick,
                micros_per_quarter: u32::from_be_bytes([0, a, b, c]),
            }),
        }
    }
    for (i, track) in sounding.into_iter().flatten() {
        let i = i as usize;
        notes[i].end = track_ends[track as usize].max(notes[i].start);
    }
    (notes, tempos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::testing::smf;

    #[test]
    fn pairs_notes_with_running_status_and_velocity_zero() {
        // Note-on 60, then (running status) note-on 60 vel 0 after 96 ticks.
        let body = [0x00, 0x90, 60, 100, 0x60, 60, 0, 0x00, 0xFF, 0x2F, 0x00];
        let song = read_song(&smf(96, &[&body])).unwrap();
        assert_eq!(
            song.notes,
            vec![Note {
                start: 0,
                end: 96,
                program: 0,
                pitch: 60,
                velocity: 100
            }]
        );
    }

    #[test]
    fn retrigger_ends_the_sounding_note_and_open_notes_close_at_track_end() {
        let body = [
            0x00, 0xC1, 33, // program 33 on channel 2
            0x00, 0x91, 40, 90, // on
            0x10, 0x91, 40, 80, // on again: ends the first
            0x20, 0x99, 36, 100, // drum, never ended
            0x30, 0xFF, 0x2F, 0x00,
        ];
        let song = read_song(&smf(96, &[&body])).unwrap();
        let got: Vec<_> = song
            .notes
            .iter()
            .map(|n| (n.start, n.end, n.program, n.pitch))
            .collect();
        assert_eq!(
            got,
            vec![(0, 16, 33, 40), (16, 96, 33, 40), (48, 96, 128, 36)]
        );
    }

    #[test]
    fn program_change_in_another_track_applies_by_time() {
        let conductor = [
            0x00, 0xFF, 0x51, 0x03, 0x07, 0xA1, 0x20, 0x00, 0xFF, 0x2F, 0x00,
        ];
        let programs = [0x00, 0xC0, 5, 0x40, 0xC0, 7, 0x00, 0xFF, 0x2F, 0x00];
        let notes = [
            0x00, 0x90, 60, 64, 0x10, 0x80, 60, 0, 0x40, 0x90, 62, 64, 0x10, 0x80, 62, 0, 0x00,
            0xFF, 0x2F, 0x00,
        ];
        let song = read_song(&smf(48, &[&conductor, &programs, &notes])).unwrap();
        assert_eq!(song.notes[0].program, 5);
        assert_eq!(song.notes[1].program, 7);
        assert_eq!(song.tempos[0].micros_per_quarter, 500_000);
    }

    #[test]
    fn malformed_key_signature_is_skipped_and_running_status_survives_meta() {
        let body = [
            0x00, 0x90, 60, 100, // on
            0x00, 0xFF, 0x59, 0x01, 0x00, // key signature with one byte
            0x10, 62, 100, // running status after a meta event
            0x10, 60, 0, 0x00, 62, 0, 0x00, 0xFF, 0x2F, 0x00,
        ];
        let song = read_song(&smf(96, &[&body])).unwrap();
        assert_eq!(song.notes.len(), 2, "{:?}", song.notes);
        assert_eq!(song.notes[1].pitch, 62);
        assert!(song.warnings.iter().any(|w| w.contains("malformed meta")));
    }

    #[test]
    fn rejects_what_is_not_midi() {
        assert!(matches!(read_song(b""), Err(MidiError::Empty)));
        assert!(matches!(
            read_song(b"hello world"),
            Err(MidiError::NotMidi(_))
        ));
        let body = [0x00, 0xFF, 0x2F, 0x00];
        assert!(matches!(
            read_song(&smf(96, &[&body])),
            Err(MidiError::NoNotes)
        ));
        assert!(matches!(
            read_song(&smf(0, &[&body])),
            Err(MidiError::Malformed(_))
        ));
    }

    #[test]
    fn format_2_sequences_are_concatenated() {
        let first = [
            0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00,
        ];
        let second = [
            0x10, 0x90, 62, 100, 0x10, 0x80, 62, 0, 0x00, 0xFF, 0x2F, 0x00,
        ];
        let mut bytes = smf(96, &[&first, &second]);
        bytes[9] = 2; // format 2
        let song = read_song(&bytes).unwrap();
        let got: Vec<_> = song
            .notes
            .iter()
            .map(|n| (n.start, n.end, n.pitch))
            .collect();
        assert_eq!(got, vec![(0, 96, 60), (112, 128, 62)]);
    }

    #[test]
    fn smpte_division_converts_at_120_bpm() {
        let body = [0x00, 0x90, 60, 100, 0x50, 0x80, 60, 0];
        let mut bytes = smf(96, &[&body]);
        // 25 fps, 40 ticks per frame: 1000 ticks per second, 500 per beat.
        bytes[12] = (-25i8) as u8;
        bytes[13] = 40;
        let song = read_song(&bytes).unwrap();
        assert_eq!(song.clock.step(500, 16), 16);
        assert_eq!(song.clock.step(80, 16), 3);
    }
}
