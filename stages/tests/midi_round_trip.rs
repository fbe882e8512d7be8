//! encode(decode(encode(f))) == encode(f), and the notes survive, on the
//! real corpus (`/work/shared/corpus`, skipped with a message when absent)
//! and on generated files with the quirks real files have.

use std::path::{Path, PathBuf};

use vgmake_stages::midi::{
    self, DecodeOptions, EncodeOptions, InstrumentGroups, NoteFormat, Transpose, encoder, read_song,
};
use vgmake_stages::sample::check::check_line;

fn corpus_dir() -> Option<PathBuf> {
    // `../shared` beside the repository (stages/ is one level down).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    dir.is_dir().then_some(dir)
}

fn midi_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "mid") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn option_sets() -> Vec<EncodeOptions> {
    let base = EncodeOptions::default();
    vec![
        base,
        EncodeOptions {
            steps_per_beat: 12,
            velocity_step: 1,
            tempo_step: 1,
            note_off_velocity: false,
            ..base
        },
        EncodeOptions {
            instrument_groups: InstrumentGroups::Family,
            transpose: Transpose::C,
            ..base
        },
        EncodeOptions {
            steps_per_beat: 4,
            instrument_groups: InstrumentGroups::Chip,
            transpose: Transpose::C,
            velocity_step: 32,
            ..base
        },
    ]
}

/// Checks the round trip of one file's bytes under every option set, in
/// both note formats; returns the tokens of each format (summed over the
/// option sets).
fn check_round_trip(name: &str, bytes: &[u8]) -> [usize; 2] {
    let mut tokens = [0; 2];
    for (options, format) in option_sets()
        .into_iter()
        .flat_map(|o| [(o, NoteFormat::OnOff), (o, NoteFormat::Duration)])
    {
        let song = read_song(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let line = encoder::encode_song_as(&song, &options, format);
        tokens[(format == NoteFormat::Duration) as usize] += line.split(' ').count();
        let decode = DecodeOptions {
            steps_per_beat: options.steps_per_beat,
        };
        // Every encoded song passes the sampler's validity check.
        if let Err(why) = check_line(&line, options.steps_per_beat) {
            panic!("{name} ({}): {why}", options.fingerprint_as(format));
        }
        let decoded = midi::decode_tokens(&line, &decode).unwrap();
        let again = midi::encode_bytes_as(&decoded, &options, format).unwrap();
        assert!(
            line == again,
            "{name} ({}): round trip differs at token {}",
            options.fingerprint_as(format),
            line.split(' ')
                .zip(again.split(' '))
                .position(|(a, b)| a != b)
                .unwrap_or(usize::MAX)
        );
        // The notes survive: count, pitch, program, onset and length on the grid.
        let expected = encoder::grid_notes_as(&song, &options, format);
        let parsed = midi::parse_tokens(&line).unwrap().notes;
        assert_eq!(parsed.len(), expected.len(), "{name}");
        assert_eq!(parsed, expected, "{name}");
        let from_decoded = encoder::grid_notes_as(&read_song(&decoded).unwrap(), &options, format);
        assert_eq!(from_decoded, expected, "{name}");
        // The same notes as the on/off format, only lengths rounded (with
        // transpose = c the key is estimated on the rounded lengths, and a
        // close call may choose another key).
        if format == NoteFormat::Duration && options.transpose == Transpose::None {
            let on_off = encoder::grid_notes(&song, &options);
            assert_eq!(on_off.len(), expected.len(), "{name}");
            for (a, b) in on_off.iter().zip(&expected) {
                assert_eq!(
                    (a.program, a.pitch, a.start, a.velocity),
                    (b.program, b.pitch, b.start, b.velocity),
                    "{name}"
                );
                let (la, lb) = (a.end - a.start, b.end - b.start);
                let spb = options.steps_per_beat as u64;
                // Less than a sixteenth off up to a bar, a beat beyond.
                let unit = if la <= 4 * spb { (spb / 4).max(1) } else { spb };
                assert!(la.abs_diff(lb) < unit, "{name}: length {la} -> {lb}");
            }
        }
    }
    tokens
}

#[test]
fn corpus_round_trips() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: ../shared/corpus (beside the repository) is absent");
        return;
    };
    let files = midi_files(&dir);
    assert!(files.len() >= 100, "found only {} files", files.len());
    let mut tokens = [0; 2];
    for path in &files {
        let t = check_round_trip(&path.display().to_string(), &std::fs::read(path).unwrap());
        tokens[0] += t[0];
        tokens[1] += t[1];
    }
    // Durations replace end tokens: songs get shorter.
    eprintln!(
        "corpus tokens: on/off {}, duration {} ({:.1}%)",
        tokens[0],
        tokens[1],
        100.0 * tokens[1] as f64 / tokens[0] as f64
    );
    assert!(tokens[1] < tokens[0]);
}

#[test]
fn demo_corpus_round_trips() {
    let dir = vgmake_stages::data::default_dir().join("demo");
    let files = midi_files(&dir);
    assert!(!files.is_empty());
    for path in &files {
        check_round_trip(&path.display().to_string(), &std::fs::read(path).unwrap());
    }
}

/// A small seeded generator (xorshift64*), to need no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn varlen(mut n: u32, out: &mut Vec<u8>) {
    let mut bytes = vec![(n & 0x7F) as u8];
    n >>= 7;
    while n > 0 {
        bytes.push((n & 0x7F) as u8 | 0x80);
        n >>= 7;
    }
    out.extend(bytes.iter().rev());
}

/// A random format-1 file: odd ticks per quarter, several tracks and
/// channels, program changes mid-song, drums, tempo changes, overlapping
/// and zero-length notes, velocity-0 note-offs, running status, notes never
/// ended, sysex and text events.
fn generated_file(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let tpq = [96u16, 97, 120, 384, 480, 1000, 7][rng.below(7) as usize];
    let tracks = 1 + rng.below(5) as usize;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for t in 0..tracks {
        let mut body = Vec::new();
        let mut running = 0u8;
        if t == 0 {
            for _ in 0..rng.below(4) {
                let micros = 300_000 + rng.below(700_000) as u32;
                varlen(rng.below(tpq as u64 * 8) as u32, &mut body);
                body.extend_from_slice(&[0xFF, 0x51, 3]);
                body.extend_from_slice(&micros.to_be_bytes()[1..]);
                running = 0;
            }
        }
        for _ in 0..rng.below(200) {
            varlen(
                rng.below(tpq as u64) as u32 / (1 + rng.below(4) as u32),
                &mut body,
            );
            let channel = rng.below(16) as u8;
            let status = match rng.below(20) {
                0 => 0xC0 | channel,
                1 => {
                    body.extend_from_slice(&[0xF0, 3, 0x7E, 0x7F, 0xF7]);
                    running = 0;
                    continue;
                }
                2 => {
                    body.extend_from_slice(&[0xFF, 0x01, 2, b'h', b'i']);
                    running = 0;
                    continue;
                }
                3..=9 => 0x80 | channel,
                _ => 0x90 | channel,
            };
            if status != running {
                body.push(status);
                running = status;
            }
            let pitch = 36 + rng.below(60) as u8;
            match status >> 4 {
                0xC => body.push(rng.below(128) as u8),
                0x9 => body.extend_from_slice(&[pitch, rng.below(128) as u8]),
                _ => body.extend_from_slice(&[pitch, 64]),
            }
        }
        body.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);
        chunks.push(body);
    }
    let mut out = b"MThd\0\0\0\x06\0\x01".to_vec();
    out.extend_from_slice(&(tracks as u16).to_be_bytes());
    out.extend_from_slice(&tpq.to_be_bytes());
    for body in chunks {
        out.extend_from_slice(b"MTrk");
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

#[test]
fn generated_files_round_trip() {
    let mut checked = 0;
    for seed in 0..300 {
        let bytes = generated_file(seed);
        if matches!(read_song(&bytes), Err(midi::MidiError::NoNotes)) {
            continue;
        }
        check_round_trip(&format!("generated #{seed}"), &bytes);
        checked += 1;
    }
    assert!(checked > 200, "only {checked} generated files had notes");
}

#[test]
fn more_than_fifteen_programs_share_channels_and_round_trip() {
    // 20 programs sounding at once, 15 of them on one pitch, then each
    // program moves to another pitch. (16 or more notes of one pitch at once
    // cannot fit 15 melodic channels: a known limit.)
    let pitch = |p: u32, round: u32| if p < 15 { 60 + round } else { 40 + p + round };
    let mut line = String::from("start tempo:120");
    for round in 0..2 {
        for p in 0..20 {
            line += &format!(" i{p}:v80:{}", pitch(p, round));
        }
        line += " wait:4";
        for p in 0..20 {
            line += &format!(" end:i{p}:v80:{}", pitch(p, round));
        }
    }
    line += " finish";
    let options = EncodeOptions::default();
    let bytes = midi::decode_tokens(&line, &DecodeOptions::default()).unwrap();
    assert_eq!(midi::encode_bytes(&bytes, &options).unwrap(), line);
}
