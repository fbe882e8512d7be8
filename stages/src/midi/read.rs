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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// [`Clock::step`] for many ticks at one `steps_per_beat`, with the same
/// results: the division done as a multiplication by a precomputed inverse
/// (the high half of a 64 x 64-bit product), corrected exactly; the
/// encoder's hot loop, where a 64-bit division per note cost 10% of the time.
#[derive(Debug, Clone, Copy)]
pub struct Stepper {
    clock: Clock,
    steps_per_beat: u32,
    /// `steps_per_beat * num`, when the fast path applies (else 0).
    mul: u64,
    /// `2 * den`, and `floor((2^64 - 1) / (2 * den))`.
    div: u64,
    inverse: u64,
}

impl Clock {
    pub fn stepper(&self, steps_per_beat: u32) -> Stepper {
        let fast = steps_per_beat < 1 << 10 && self.num < 1 << 11 && self.den < 1 << 32;
        let div = 2 * self.den;
        Stepper {
            clock: *self,
            steps_per_beat,
            mul: if fast {
                steps_per_beat as u64 * self.num
            } else {
                0
            },
            div,
            inverse: u64::MAX / div.max(1),
        }
    }
}

impl Stepper {
    #[inline]
    pub fn step(&self, tick: u64) -> u64 {
        if tick < 1 << 30 && self.mul != 0 {
            // n < 2^53; the estimate is the quotient or one less.
            let n = 2 * tick * self.mul + self.div / 2;
            let mut q = ((n as u128 * self.inverse as u128) >> 64) as u64;
            if n - q * self.div >= self.div {
                q += 1;
            }
            return q;
        }
        self.clock.step(tick, self.steps_per_beat)
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

impl Default for Event {
    fn default() -> Self {
        Event {
            tick: 0,
            track: 0,
            kind: Kind::Tempo([0; 3]),
        }
    }
}

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
    read_song_with(bytes, read_track, false)
}

/// How one track chunk is read ([`read_track`]; the tests swap in midly's
/// reader to compare).
type TrackReader = fn(&[u8], u16, u64, bool, &mut Vec<Event>, &mut Vec<String>) -> u64;

/// `merge_first`: always merge the tracks' events before pairing notes (the
/// tests compare it with the shortcut for tracks that share no channel).
fn read_song_with(
    bytes: &[u8],
    read_track: TrackReader,
    merge_first: bool,
) -> Result<Song, MidiError> {
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
    let (notes, tempos) = if merge_first || !channels_apart(&events, &track_ranges) {
        let events = merge_tracks(events, &track_ranges);
        pair_notes(&events, &track_ends)
    } else {
        // No channel is shared by two tracks (the usual format 1 file):
        // pairing track after track gives the same notes as pairing in time
        // order, and sorting the notes by start (stable: at one tick, track
        // then file order) gives the same list, with half the items to sort.
        let (mut notes, mut tempos) = pair_notes(&events, &track_ends);
        super::radix::radix_sort_by_key(&mut notes, |n| n.start);
        tempos.sort_by_key(|t| t.tick);
        (notes, tempos)
    };
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

/// Whether every channel's events (notes, program changes) come from one
/// track at most.
fn channels_apart(events: &[Event], ranges: &[(usize, usize)]) -> bool {
    let mut owner = [usize::MAX; 16];
    for (track, &(first, end)) in ranges.iter().enumerate() {
        for event in &events[first..end] {
            let channel = match event.kind {
                Kind::NoteOn { channel, .. }
                | Kind::NoteOff { channel, .. }
                | Kind::Program { channel, .. } => channel,
                Kind::Tempo(_) => continue,
            };
            let o = &mut owner[channel as usize & 15];
            if *o == usize::MAX {
                *o = track;
            } else if *o != track {
                return false;
            }
        }
    }
    true
}

/// Merges the tracks' events (each already in time order) into one time
/// order; at one tick, earlier tracks first, then file order: a stable
/// radix sort by tick (two passes for most songs).
fn merge_tracks(mut events: Vec<Event>, ranges: &[(usize, usize)]) -> Vec<Event> {
    let tracks_with_events = ranges.iter().filter(|r| r.0 < r.1).count();
    if tracks_with_events > 1 {
        super::radix::radix_sort_by_key(&mut events, |e| e.tick);
    }
    events
}

/// Reads one track chunk's events into `out`; returns the tick where it ends.
///
/// The events are read here byte by byte, exactly as midly (without its
/// `strict` feature) reads them: the same events, and a failure at the same
/// byte, after which [`recover`] takes over (the tests compare the two on
/// real and mutated files). Doing it inline rather than through midly's
/// event iterator halves the cost of reading a file.
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
        let data = rest;
        let mut p = 0usize;
        // The offset of the event that could not be read.
        let failed_at = loop {
            if p >= data.len() {
                return tick;
            }
            let event_start = p;
            // Delta-time: at most 4 bytes; at the end of the data, what was read.
            let mut delta = 0u64;
            for _ in 0..4 {
                let Some(&b) = data.get(p) else { break };
                p += 1;
                delta = (delta << 7) | (b & 0x7F) as u64;
                if b < 0x80 {
                    break;
                }
            }
            let Some(&first) = data.get(p) else {
                break event_start;
            };
            let status = if first < 0x80 {
                match running {
                    Some(s) => s,
                    None => break event_start,
                }
            } else {
                p += 1;
                first
            };
            match status {
                0x80..=0xEF => {
                    let len = if matches!(status >> 4, 0xC | 0xD) {
                        1
                    } else {
                        2
                    };
                    let Some(bytes) = data.get(p..p + len) else {
                        break event_start;
                    };
                    let (d0, d1) = (bytes[0], if len == 2 { bytes[1] } else { 0 });
                    if (d0 | d1) >= 0x80 {
                        break event_start;
                    }
                    p += len;
                    running = Some(status);
                    last_channel_status = running;
                    tick += delta;
                    let channel = status & 0x0F;
                    let kind = match status >> 4 {
                        0x9 if d1 > 0 => Kind::NoteOn {
                            channel,
                            pitch: d0,
                            velocity: d1,
                        },
                        0x8 | 0x9 => Kind::NoteOff { channel, pitch: d0 },
                        0xC => Kind::Program {
                            channel,
                            program: d0,
                        },
                        _ => continue,
                    };
                    if push(tick, kind) {
                        return tick;
                    }
                }
                0xFF => {
                    let Some(&kind) = data.get(p) else {
                        break event_start;
                    };
                    let (len, body_at) = lenient_varlen(data, p + 1);
                    let body = &data[body_at..body_at + len.min(data.len() - body_at)];
                    // The meta events midly refuses: a key signature under
                    // 2 bytes, an SMPTE offset that is not a time.
                    let refused = match kind {
                        0x59 => body.len() < 2,
                        0x54 if body.len() >= 5 => smpte_offset_refused(&data[event_start..]),
                        _ => false,
                    };
                    if refused {
                        break event_start;
                    }
                    p = body_at + body.len();
                    running = None;
                    tick += delta;
                    match kind {
                        0x51 if body.len() >= 3 && !smpte => {
                            if body[..3] != [0, 0, 0]
                                && push(tick, Kind::Tempo([body[0], body[1], body[2]]))
                            {
                                return tick;
                            }
                        }
                        0x2F => return tick,
                        _ => {}
                    }
                }
                0xF0 | 0xF7 => {
                    let (len, body_at) = lenient_varlen(data, p);
                    p = body_at + len.min(data.len() - body_at);
                    running = None;
                    tick += delta;
                }
                // System common and real-time bytes (and no status at all).
                _ => break event_start,
            }
        };
        let at = total - (data.len() - failed_at);
        match recover(&data[failed_at..], last_channel_status) {
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

/// A variable-length quantity as midly reads one outside `strict`: at most
/// 4 bytes, and at the end of the data whatever was read. Returns the value
/// and the offset after it.
fn lenient_varlen(data: &[u8], mut p: usize) -> (usize, usize) {
    let mut value = 0usize;
    for _ in 0..4 {
        let Some(&b) = data.get(p) else { break };
        p += 1;
        value = (value << 7) | (b & 0x7F) as usize;
        if b < 0x80 {
            break;
        }
    }
    (value, p)
}

/// Whether midly refuses the SMPTE offset meta event at the start of
/// `event` (rare: asked of midly itself).
#[cold]
fn smpte_offset_refused(event: &[u8]) -> bool {
    !matches!(
        midly::EventIter::new(event).next(),
        Some(Ok(midly::TrackEvent {
            kind: TrackEventKind::Meta(MetaMessage::SmpteOffset(_)),
            ..
        }))
    )
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

    /// The reader before [`read_track`], through midly's event iterator: the
    /// reference the tests hold it to.
    fn read_track_midly(
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

    /// The inline reader against midly's, on the demo files, the real
    /// corpus beside the repository when present, and mutations of them.
    #[test]
    fn inline_reader_reads_exactly_what_midly_reads() {
        let mut files: Vec<Vec<u8>> = Vec::new();
        for dir in [
            crate::data::default_dir().join("demo"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        ] {
            if let Ok(list) = crate::walk::midi_files(&dir) {
                files.extend(list.iter().filter_map(|p| std::fs::read(dir.join(p)).ok()));
            }
        }
        assert!(files.len() >= 50, "{} files", files.len());
        let same = |bytes: &[u8]| {
            let new = read_song_with(bytes, read_track, false);
            let old = read_song_with(bytes, read_track_midly, true);
            match (&new, &old) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.notes, b.notes);
                    assert_eq!(a.tempos, b.tempos);
                    assert_eq!(a.clock, b.clock);
                    assert_eq!(a.warnings, b.warnings);
                }
                (a, b) => assert_eq!(a.as_ref().err(), b.as_ref().err()),
            }
        };
        let mut state = 0x9E3779B97F4A7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for bytes in &files {
            same(bytes);
            // Mutations past the header, where the events are.
            for _ in 0..40 {
                let mut m = bytes.clone();
                for _ in 0..1 + next() % 6 {
                    let i = 22 + (next() as usize) % (m.len().max(23) - 22);
                    match next() % 5 {
                        0 if i < m.len() => m[i] ^= 1 << (next() % 8),
                        1 if i < m.len() => m[i] = next() as u8,
                        2 if i < m.len() => {
                            m[i] = [0xFF, 0xF0, 0xF7, 0xF3, 0x59, 0x54, 0x80, 0x7F]
                                [next() as usize % 8]
                        }
                        3 if i < m.len() => {
                            m.remove(i);
                        }
                        _ => m.insert(i.min(m.len()), next() as u8),
                    }
                }
                same(&m);
            }
        }
    }

    #[test]
    fn stepper_steps_as_the_clock_does() {
        let mut state = 12345u64;
        for (num, den) in [
            (1, 96),
            (1, 480),
            (1, 7),
            (2, 750),
            (2002, 90_000),
            (1, 1),
            (3, 65535),
        ] {
            let clock = Clock { num, den };
            for spb in [1, 4, 16, 24, 960, 1 << 12] {
                let stepper = clock.stepper(spb);
                for i in 0..2000u64 {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let tick = match i % 4 {
                        0 => i,
                        1 => state >> (state % 64),
                        2 => (state >> 34) | 1 << 29,
                        _ => (i * den) / 2 + i % 3,
                    };
                    assert_eq!(
                        stepper.step(tick),
                        clock.step(tick, spb),
                        "{num}/{den} spb {spb} tick {tick}"
                    );
                }
            }
        }
    }
}
